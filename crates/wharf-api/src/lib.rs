//! The HTTP API of Wharf: REST under `/api/v1` (with its OpenAPI document at
//! `/api/v1/openapi.json`), and `/healthz` and `/readyz`. Only this crate knows routes.
//!
//! Layer order (outermost first): tracing of every request, then the body limit, then
//! routing, then (inside `/api/v1`) the JSON error mapper, so even axum's own rejections
//! and the body limit answer in the API's error shape; authentication is an extractor on each handler, so a handler without a
//! `Caller` argument is public by construction (only the health endpoints are, and `/trigger/{app}`, which checks the app's own trigger
//! secret). The browser login (`/login`, `/logout`) sits outside `/api/v1`; its session cookie
//! is accepted only by `whoami` and by [`identify`] (for apps), never by a `Caller`.

mod apps;
pub mod auth;
mod buckets;
pub mod dto;
mod error;
mod events;
pub mod front;
mod git;
mod health;
mod hooks;
pub mod identity;
mod invocations;
mod login;
mod logs;
mod notify;
mod proxy;
mod runs;
mod s3keys;
mod schedules;
mod secrets;
mod services;
mod users;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use utoipa::OpenApi;
use wharf_control::Control;

pub use crate::error::{ApiError, ApiResult};
pub use crate::identity::{identify, Credential, Identity};
pub use crate::login::login_required_response;

/// Largest JSON request body.
pub const JSON_BODY_LIMIT: usize = 1024 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    pub control: Control,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Wharf API", description = "Deploy and run R and Python data work."),
    paths(
        health::healthz, health::readyz, health::whoami,
        apps::list_apps, apps::get_app, apps::deploy, apps::list_versions, apps::rollback,
        apps::delete_app,
        runs::create_run, runs::list_runs, runs::get_run, runs::cancel_run,
        logs::run_logs, logs::list_outputs, logs::get_output,
        s3keys::create_key, s3keys::list_keys, s3keys::revoke_key,
        buckets::list_buckets, buckets::create_bucket, buckets::update_bucket,
        buckets::delete_bucket, events::list_events, hooks::s3_hook,
        git::deploy_git, git::get_git_source,
        notify::list_channels, notify::test_channel, notify::run_notifications,
        schedules::list_schedules, schedules::pause_all, schedules::resume_all,
        schedules::pause_one, schedules::resume_one, schedules::create_trigger_url,
        schedules::trigger_run,
        services::list_replicas, services::replica_logs, services::metrics,
        users::list_users, users::create_user, users::set_password, users::delete_user,
        secrets::list_secrets, secrets::set_secret, secrets::delete_secret,
        invocations::create_invocation, invocations::get_invocation,
        invocations::list_invocations,
    ),
    components(schemas(
        dto::ErrorBody, dto::ErrorDetail, dto::WhoAmI, dto::AppInfo, dto::VersionInfo,
        dto::DeployResult, dto::RollbackRequest, dto::RunCreateRequest, dto::RunInfo,
        dto::LogLine, dto::LogPage, dto::OutputFile, dto::OutputList, dto::Readiness,
        dto::S3KeyCreateRequest, dto::S3KeyCreated, dto::S3KeyInfo,
        dto::BucketInfo, dto::BucketCreateRequest, dto::BucketUpdateRequest, dto::EventItem,
        dto::HookResult, dto::GitDeployRequest, dto::GitSourceInfo, dto::GitDeployResult,
        dto::ChannelInfo, dto::ChannelTestResult, dto::NotificationInfo,
        dto::ScheduleInfo, dto::FireTimeInfo, dto::TriggerUrlRequest,
        dto::TriggerUrlCreated, dto::TriggerRunRequest, dto::ReplicaInfo,
        dto::UserInfo, dto::UserCreateRequest, dto::PasswordRequest, dto::PasswordChanged,
        dto::SecretInfo, dto::SecretSetRequest,
        dto::InvocationAccepted, dto::InvocationInfo, dto::BodyInfo, dto::ResponseInfo,
        dto::CallbackInfo, dto::AttemptInfo,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // The browser session cookie set by POST /login (accepted by whoami and apps).
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Cookie(
                utoipa::openapi::security::ApiKeyValue::new(crate::identity::SESSION_COOKIE),
            )),
        );
    }
}

/// The whole HTTP application.
pub fn router(state: ApiState) -> Router {
    let max_bundle = state.control.config().max_bundle_size as usize;
    let api = Router::new()
        .route("/openapi.json", get(openapi_document))
        .route("/whoami", get(health::whoami))
        .route("/apps", get(apps::list_apps))
        .route("/apps/{app}", get(apps::get_app).delete(apps::delete_app))
        .route(
            "/apps/{app}/versions",
            get(apps::list_versions)
                // The control plane enforces the bundle limit while streaming.
                .post(apps::deploy)
                .layer(DefaultBodyLimit::max(max_bundle.saturating_add(1))),
        )
        .route("/apps/{app}/rollback", post(apps::rollback))
        .route("/apps/{app}/git", get(git::get_git_source))
        .route("/git-apps", post(git::deploy_git))
        .route(
            "/apps/{app}/runs",
            post(runs::create_run).get(runs::list_app_runs),
        )
        .route("/runs", get(runs::list_runs))
        .route("/runs/{id}", get(runs::get_run))
        .route("/runs/{id}/cancel", post(runs::cancel_run))
        .route("/runs/{id}/logs", get(logs::run_logs))
        .route("/runs/{id}/outputs", get(logs::list_outputs))
        .route("/runs/{id}/outputs/{*path}", get(logs::get_output))
        .route("/s3/keys", post(s3keys::create_key).get(s3keys::list_keys))
        .route(
            "/s3/keys/{access_key}",
            axum::routing::delete(s3keys::revoke_key),
        )
        .route(
            "/buckets",
            get(buckets::list_buckets).post(buckets::create_bucket),
        )
        .route(
            "/buckets/{name}",
            axum::routing::patch(buckets::update_bucket).delete(buckets::delete_bucket),
        )
        .route("/events", get(events::list_events))
        .route("/hooks/s3", post(hooks::s3_hook))
        .route("/notify/channels", get(notify::list_channels))
        .route("/notify/channels/{name}/test", post(notify::test_channel))
        .route("/runs/{id}/notifications", get(notify::run_notifications))
        .route("/schedules", get(schedules::list_schedules))
        .route("/apps/{app}/schedules/pause", post(schedules::pause_all))
        .route("/apps/{app}/schedules/resume", post(schedules::resume_all))
        .route(
            "/apps/{app}/schedules/{trigger}/pause",
            post(schedules::pause_one),
        )
        .route(
            "/apps/{app}/schedules/{trigger}/resume",
            post(schedules::resume_one),
        )
        .route(
            "/apps/{app}/trigger-url",
            post(schedules::create_trigger_url),
        )
        // Authenticated by the app's trigger secret, not by an API token.
        .route("/trigger/{app}", post(schedules::trigger_run))
        .route("/apps/{app}/replicas", get(services::list_replicas))
        .route("/replicas/{id}/logs", get(services::replica_logs))
        .route("/secrets", get(secrets::list_secrets))
        .route(
            "/secrets/{name}",
            axum::routing::put(secrets::set_secret).delete(secrets::delete_secret),
        )
        .route("/users", get(users::list_users).post(users::create_user))
        .route("/users/{name}", axum::routing::delete(users::delete_user))
        .route(
            "/users/{name}/password",
            axum::routing::put(users::set_password),
        )
        // The body is read (and capped) by the handler: [invocations] max_request_size.
        .route(
            "/apps/{app}/invocations",
            post(invocations::create_invocation).get(invocations::list_invocations),
        )
        .route("/invocations/{id}", get(invocations::get_invocation))
        .fallback(api_not_found)
        .layer(axum::middleware::map_response(error::json_errors));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(services::metrics))
        // The browser login (HTML, outside the JSON API).
        .route("/login", get(login::login_page).post(login::login_submit))
        .route("/logout", get(login::logout).post(login::logout))
        .nest("/api/v1", api)
        // Service apps (`/apps/...`) never reach the router: the front proxies them.
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                // The path only: a trigger URL's query string carries its secret.
                .make_span_with(|request: &axum::http::Request<axum::body::Body>| {
                    tracing::debug_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                    )
                }),
        )
        .with_state(state)
}

async fn openapi_document(_caller: auth::Caller) -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

async fn api_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no API endpoint at /api/v1{}; the API document is at /api/v1/openapi.json",
        uri.path()
    ))
}

/// Formats stored unix milliseconds as RFC 3339 UTC.
pub(crate) fn rfc3339(millis: i64) -> String {
    wharf_store::millis_to_utc(millis).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
