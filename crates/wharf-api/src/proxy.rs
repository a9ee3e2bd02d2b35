//! The proxy mount: `/apps/NAME/...` goes to a replica of the service app NAME. The front
//! ([`crate::front`]) calls [`serve`] on its own thread for every path under `/apps/`;
//! anything that needs the store runs on the main runtime.
//!
//! The steps, in this order: find the app's route (404 for unknown apps and jobs); decide
//! access (a `logged-in` app sends browsers to the login page and API clients a 401
//! before anything reaches the app); strip the `/apps/NAME` prefix; hand the request to
//! `wharf_proxy::forward` with the user, which also removes any `X-Wharf-*` header the
//! client sent.

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::runtime::Handle;
use wharf_proxy::{Access, ForwardContext};

use wharf_model::access::AccessDecision;

use crate::error::ApiError;
use crate::identity::{Credential, Identity};

use crate::ApiState;

/// A request under `/apps/`, on a front thread; `main` runs what needs the store.
pub(crate) async fn serve(
    state: &ApiState,
    main: &Handle,
    peer: SocketAddr,
    request: Request<Body>,
) -> Response {
    let path = request.uri().path();
    let is_app_root = path
        .strip_prefix("/apps/")
        .is_some_and(|app| !app.is_empty() && !app.contains('/'));
    if is_app_root {
        redirect_to_slash(request)
    } else {
        forward(state, main, peer, request).await
    }
}

/// `/apps/NAME` → `/apps/NAME/` (the app's relative links need the slash).
fn redirect_to_slash(request: Request<Body>) -> Response {
    let uri = request.uri();
    let location = match uri.query() {
        Some(query) => format!("{}/?{query}", uri.path()),
        None => format!("{}/", uri.path()),
    };
    let status = if matches!(*request.method(), Method::GET | Method::HEAD) {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let mut response = status.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Everything under `/apps/NAME/`.
async fn forward(
    state: &ApiState,
    main: &Handle,
    peer: SocketAddr,
    mut request: Request<Body>,
) -> Response {
    let Some(app) = request
        .uri()
        .path()
        .strip_prefix("/apps/")
        .and_then(|tail| tail.split_once('/'))
        .map(|(app, _)| app)
    else {
        return wharf_proxy::plain(
            StatusCode::NOT_FOUND,
            "no app here; apps are at /apps/NAME/",
        );
    };
    let Some(route) = state.control.routes().get(app) else {
        let (state, app) = (state.clone(), app.to_owned());
        return main
            .spawn(async move { unknown_app(&state, &app).await })
            .await
            .unwrap_or_else(|_| {
                wharf_proxy::plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            });
    };
    // The app's own path and query: what follows `/apps/NAME`.
    let app_uri = request
        .uri()
        .path_and_query()
        .and_then(|whole| whole.as_str().get(route.prefix().len()..))
        .and_then(|rest| Uri::try_from(rest).ok());

    let identity = match identify(state, main, request.headers()).await {
        Ok(identity) => identity,
        Err(error) => {
            tracing::error!(
                ?error,
                "Could not check a request's credentials for the proxy."
            );
            return wharf_proxy::plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Wharf could not check the request's credentials; try again",
            );
        }
    };
    let access = match route.settings().access {
        Access::Public => "public",
        Access::LoggedIn => "logged-in",
    };
    if wharf_model::access::decide(access, identity.is_some()) != AccessDecision::Allow {
        let original = request
            .uri()
            .path_and_query()
            .map(|value| value.as_str())
            .unwrap_or("/");
        return crate::login_required_response(original, request.headers());
    }

    match app_uri {
        Some(uri) => *request.uri_mut() = uri,
        None => {
            return wharf_proxy::plain(StatusCode::BAD_REQUEST, "the request path is not valid")
        }
    }
    let scheme = if crate::identity::request_is_https(request.headers()) {
        "https"
    } else {
        "http"
    };
    let context = ForwardContext {
        client_addr: Some(peer),
        strip_authorization: identity
            .as_ref()
            .is_some_and(|identity| identity.via == Credential::BearerToken),
        role: identity.as_ref().map(|identity| identity.role.clone()),
        user: identity.map(|identity| identity.user),
        scheme,
    };
    wharf_proxy::forward(&route, request, context).await
}

/// Who sent the request, looked up on the main runtime (only when it carries a
/// credential: anonymous requests to public apps never wait for the store).
async fn identify(
    state: &ApiState,
    main: &Handle,
    headers: &HeaderMap,
) -> Result<Option<Identity>, ApiError> {
    if crate::identity::bearer_token(headers).is_none()
        && crate::identity::session_tokens(headers).is_empty()
    {
        return Ok(None);
    }
    let (state, headers) = (state.clone(), headers.clone());
    main.spawn(async move { crate::identity::identify(&state, &headers).await })
        .await
        .unwrap_or_else(|error| Err(ApiError::internal(error)))
}

async fn unknown_app(state: &ApiState, app: &str) -> Response {
    let message = match state.control.store().find_app(app).await {
        Ok(Some(found)) if found.kind == "job" => {
            format!("{app} is a job; only services are served under /apps/ (start it with `wharf run {app}`)")
        }
        Ok(Some(_)) => format!("{app} has no replicas running; it may still be starting"),
        _ => format!("no app named {app}; `wharf apps` lists them"),
    };
    wharf_proxy::plain(StatusCode::NOT_FOUND, &message)
}
