//! The browser login: `GET /login` (the page), `POST /login` (check the password, set
//! the session cookie, go to `next`), and `GET`/`POST /logout`.
//!
//! The page is one self-contained HTML document (no scripts, no external assets) and
//! every value it echoes is HTML-escaped. `next` is followed only when it is a path on
//! this server (`wharf_model::access::local_redirect_target`).

use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use wharf_control::LoginOutcome;
use wharf_model::access::local_redirect_target;

use crate::identity::{clear_session_cookie, request_is_https, session_cookie, session_tokens};
use crate::{ApiResult, ApiState};

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub next: Option<String>,
}

/// The login page.
pub async fn login_page(Query(query): Query<LoginQuery>) -> Response {
    let next = local_redirect_target(query.next.as_deref().unwrap_or("/"));
    page(StatusCode::OK, "", next, None)
}

/// Checks the user name and password; on success sets the session cookie and redirects
/// (303) to `next` when it is a local path, else to `/`.
pub async fn login_submit(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> ApiResult<Response> {
    let next = local_redirect_target(form.next.as_deref().unwrap_or("/"));
    let outcome = state
        .control
        .login(form.user.trim(), &form.password)
        .await?;
    let session = match outcome {
        LoginOutcome::LoggedIn(session) => session,
        LoginOutcome::Refused => {
            return Ok(page(
                StatusCode::UNAUTHORIZED,
                &form.user,
                next,
                Some("The user name or password is not right."),
            ))
        }
        LoginOutcome::Throttled { retry_after } => {
            let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            let message = format!(
                "Too many failed logins for this user name. Try again in {seconds} seconds."
            );
            let mut response = page(
                StatusCode::TOO_MANY_REQUESTS,
                &form.user,
                next,
                Some(&message),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
            return Ok(response);
        }
    };
    let max_age = ((session.expires_at - wharf_store::now_millis()) / 1000).max(0) as u64;
    let cookie = session_cookie(&session.token, max_age, request_is_https(&headers));
    Ok(redirect(next, Some(&cookie)))
}

/// Ends the browser's session, clears the cookie and goes back to the login page.
pub async fn logout(State(state): State<ApiState>, headers: HeaderMap) -> ApiResult<Response> {
    for token in session_tokens(&headers).into_iter().take(4) {
        state.control.logout(token).await?;
    }
    let cookie = clear_session_cookie(request_is_https(&headers));
    Ok(redirect("/login", Some(&cookie)))
}

/// The answer to a request for a `logged-in` app without a valid identity: a browser
/// (`Accept` includes `text/html`) is sent (303) to `/login?next=PATH`, so it comes back
/// after logging in; any other client gets 401 with `WWW-Authenticate: Bearer`.
/// `path_and_query` is the path the client asked for, e.g. `/apps/dash/?tab=2`.
pub fn login_required_response(path_and_query: &str, headers: &HeaderMap) -> Response {
    let wants_html = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html {
        let next = local_redirect_target(path_and_query);
        return redirect(&format!("/login?next={}", encode_query_value(next)), None);
    }
    let mut response = crate::ApiError::unauthorized(
        "this app needs a login: send an API token (`Authorization: Bearer TOKEN`) or log in \
         at /login in a browser",
    )
    .into_response();
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer"),
    );
    response
}

/// Percent-encodes a query value: everything but unreserved characters and '/'.
fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A 303 to a local path, optionally setting a cookie; never cached.
fn redirect(location: &str, cookie: Option<&str>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    // A local redirect target has no control characters, so it is a valid header value.
    let location = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/"));
    headers.insert(LOCATION, location);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert(SET_COOKIE, cookie);
    }
    response
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// The login page with a status, the typed user name, the `next` path and a message.
fn page(status: StatusCode, user: &str, next: &str, message: Option<&str>) -> Response {
    let user: String = user.chars().take(200).collect();
    let message = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape_html(m)))
        .unwrap_or_default();
    let autofocus_user = if user.is_empty() { " autofocus" } else { "" };
    let autofocus_password = if user.is_empty() { "" } else { " autofocus" };
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Log in · Wharf</title>
<style>
  body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; background: #f4f5f7;
         color: #1d2430; margin: 0; display: flex; min-height: 100vh;
         align-items: center; justify-content: center; }}
  main {{ background: #fff; padding: 2rem 2.25rem; border-radius: 10px; width: 20rem;
          box-shadow: 0 2px 12px rgba(0, 0, 0, 0.08); }}
  h1 {{ font-size: 1.35rem; margin: 0 0 1.25rem; }}
  label {{ display: block; font-size: 0.9rem; margin: 0.9rem 0 0.3rem; }}
  input[type=text], input[type=password] {{ width: 100%; box-sizing: border-box;
          padding: 0.55rem 0.6rem; border: 1px solid #c3c9d4; border-radius: 6px;
          font-size: 1rem; }}
  button {{ margin-top: 1.4rem; width: 100%; padding: 0.6rem; border: 0;
            border-radius: 6px; background: #1f5fbf; color: #fff; font-size: 1rem;
            cursor: pointer; }}
  .error {{ background: #fdecec; color: #8a1c1c; padding: 0.6rem 0.75rem;
            border-radius: 6px; font-size: 0.9rem; }}
</style>
</head>
<body>
<main>
<h1>Log in to Wharf</h1>
{message}
<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<label for="user">User name</label>
<input type="text" id="user" name="user" value="{user}" autocomplete="username" autocapitalize="none" spellcheck="false" required{autofocus_user}>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required{autofocus_password}>
<button type="submit">Log in</button>
</form>
</main>
</body>
</html>
"#,
        next = escape_html(next),
        user = escape_html(&user),
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

#[cfg(test)]
mod tests {
    use crate::login::*;

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn browsers_are_sent_to_the_login_page_and_programs_get_401() {
        let mut browser = HeaderMap::new();
        browser.insert(
            "accept",
            HeaderValue::from_static("text/html,application/xhtml+xml"),
        );
        let response = login_required_response("/apps/dash/?tab=2&x=%C3%A9", &browser);
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            response.headers()[LOCATION],
            "/login?next=/apps/dash/%3Ftab%3D2%26x%3D%25C3%25A9"
        );
        let response = login_required_response("//evil.example", &browser);
        assert_eq!(response.headers()[LOCATION], "/login?next=/");
        let response = login_required_response("/apps/api/x", &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[tokio::test]
    async fn the_page_echoes_nothing_unescaped() {
        let hostile = r#""><script>alert(1)</script>"#;
        let response = page(
            StatusCode::UNAUTHORIZED,
            hostile,
            "/apps/x/?q=\"><b>",
            Some("<i>no</i>"),
        );
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        let html = body(response).await;
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>") && !html.contains("<i>"), "{html}");
        assert!(html.contains("&quot;&gt;&lt;script&gt;"), "{html}");
        assert!(html.contains(r#"name="next" value="/apps/x/?q=&quot;&gt;&lt;b&gt;""#));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external assets"
        );
    }

    #[tokio::test]
    async fn the_page_keeps_only_local_next_paths() {
        let response = login_page(Query(LoginQuery {
            next: Some("//evil.example/".into()),
        }))
        .await;
        let html = body(response).await;
        assert!(html.contains(r#"name="next" value="/""#), "{html}");
        let response = login_page(Query(LoginQuery {
            next: Some("/apps/dash/".into()),
        }))
        .await;
        assert!(body(response).await.contains(r#"value="/apps/dash/""#));
    }
}
