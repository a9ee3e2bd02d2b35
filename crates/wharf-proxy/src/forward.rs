//! Forwarding one request to a replica: choice of replica, admission (`max_inflight`, cold
//! start), headers, bodies streamed both ways, WebSocket upgrades.
//!
//! The order of the steps matters:
//! 1. wait for a replica that can take the request (ready, and a free slot), holding the
//!    request while one starts — before anything is sent, so a request that is refused
//!    (503, 429) has had no effect;
//! 2. rewrite the head ([`crate::rewrite`]: hop-by-hop headers out, `X-Forwarded-*` and
//!    `X-Wharf-User` in, Wharf's own cookies out, so an app never sees a credential for
//!    Wharf);
//! 3. forward with the app's timeouts; the slot is held until the response body ends.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;

use crate::h1::{ExchangeError, ReplicaBody};
use crate::pool::send;
use crate::rewrite::{clean_response_headers, cookies, is_websocket_upgrade, upstream_request};
use crate::routes::{AppRoute, InflightGuard, Replica, ReplicaState, RouteSettings};

/// The sticky-session cookie (`REPLICA~SESSION`), scoped to the app's path.
pub const STICKY_COOKIE: &str = "wharf_sticky";

/// What the caller (the API layer) knows about the request.
#[derive(Debug, Clone, Default)]
pub struct ForwardContext {
    /// The peer address of the client connection.
    pub client_addr: Option<SocketAddr>,
    /// The authenticated user, passed to the app as `X-Wharf-User`.
    pub user: Option<String>,
    /// The user's role, passed as `X-Wharf-Role`.
    pub role: Option<String>,
    /// Drop the `Authorization` header: it held a Wharf API token.
    pub strip_authorization: bool,
    /// `http` or `https`, as the client reached Wharf.
    pub scheme: &'static str,
}

/// Forwards `request` — whose path is the app's path (`/` and below, the `/apps/NAME`
/// prefix already removed) — to a replica of `route`, and returns the response to send.
/// The removed prefix (`/apps/NAME`) is sent as `X-Forwarded-Prefix`.
pub async fn forward(
    route: &Arc<AppRoute>,
    mut request: Request<Body>,
    context: ForwardContext,
) -> Response<Body> {
    let prefix = route.prefix();
    let started = Instant::now();
    route.touch();
    let settings = route.settings();
    let sticky = settings
        .sticky
        .then(|| sticky_cookie(request.headers()))
        .flatten();
    let admitted = match admit(
        route,
        &settings,
        sticky.as_ref().map(|s| s.replica.as_str()),
    )
    .await
    {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let response = refusal.response(route);
            route
                .metrics
                .observe_response(response.status().as_u16(), started.elapsed());
            return response;
        }
    };
    let (replica, mut guard) = admitted;
    let new_session_cookie = if !settings.sticky {
        None
    } else {
        match &sticky {
            // A known browser on its replica.
            Some(cookie) if cookie.replica == replica.id => {
                replica.saw_session(&cookie.session);
                None
            }
            // A new browser, or one whose replica is gone: keep its session id.
            other => {
                let session = other
                    .as_ref()
                    .map(|cookie| cookie.session.clone())
                    .unwrap_or_else(new_session_id);
                replica.saw_session(&session);
                Some(format!(
                    "{STICKY_COOKIE}={}~{session}; Path={prefix}/; HttpOnly; SameSite=Lax",
                    replica.id
                ))
            }
        }
    };
    guard.wake_on_release(route.clone());

    let websocket = is_websocket_upgrade(&request);
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut request));
    let session_id = sticky_session_of(&new_session_cookie, &sticky);
    let upstream = upstream_request(request, &replica, route, &context, websocket);
    let sent = tokio::time::timeout(
        settings.read_timeout,
        send(replica.addr, settings.connect_timeout, upstream),
    )
    .await;
    let (incoming, connection) = match sent {
        Ok(Ok(sent)) => sent,
        Ok(Err(error)) => {
            tracing::warn!(app = %route.name, replica = %replica.id, %error, "The replica did not answer.");
            let response = plain(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "{} could not be reached (replica {}): {error}",
                    route.name, replica.id,
                ),
            );
            route
                .metrics
                .observe_response(response.status().as_u16(), started.elapsed());
            return response;
        }
        Err(_) => {
            let response = plain(
                StatusCode::GATEWAY_TIMEOUT,
                &format!(
                    "{} did not answer within {} (read_timeout)",
                    route.name,
                    wharf_duration(settings.read_timeout)
                ),
            );
            route
                .metrics
                .observe_response(response.status().as_u16(), started.elapsed());
            return response;
        }
    };
    let body = ReplicaBody::new(connection, replica.addr, &incoming);
    let mut response = incoming.response;
    route
        .metrics
        .observe_response(response.status().as_u16(), started.elapsed());

    // The client talks to Wharf, not to the replica: an HTTP/1.0 replica (Python's
    // http.server) must not turn the client's keep-alive connection into a closing one.
    // hyper answers HTTP/1.0 clients in 1.0 whatever this says.
    *response.version_mut() = http::Version::HTTP_11;
    let upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    clean_response_headers(response.headers_mut(), upgraded, &replica, prefix);
    if let Some(cookie) = new_session_cookie {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    if upgraded {
        if let (Some(client_upgrade), Some((upstream, early))) =
            (client_upgrade, body.into_upgraded())
        {
            let websocket_guard = replica.begin_websocket(session_id);
            // The request slot is for the handshake; the open WebSocket is counted apart.
            drop(guard);
            let app = route.name.clone();
            tokio::spawn(async move {
                let _websocket_guard = websocket_guard;
                match client_upgrade.await {
                    Ok(client_io) => {
                        // What the replica sent right after its 101 goes first.
                        let _ = crate::pump::pump(TokioIo::new(client_io), upstream, early).await;
                    }
                    Err(error) => {
                        tracing::debug!(%app, %error, "A WebSocket upgrade did not complete.");
                    }
                }
            });
        }
        let (parts, ()) = response.into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    let (parts, ()) = response.into_parts();
    Response::from_parts(
        parts,
        Body::new(GuardedBody {
            body,
            _guard: guard,
        }),
    )
}

/// Why a request gets no replica.
enum Refusal {
    /// No replica became ready in time.
    ColdStartTimeout(Duration),
    /// Every replica stayed at `max_inflight` for the queue timeout.
    QueueFull(Duration),
}

impl Refusal {
    fn response(&self, route: &AppRoute) -> Response<Body> {
        let (status, message) = match self {
            Refusal::ColdStartTimeout(waited) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} has no ready replica; none became ready within {} (cold_start_timeout). Try again shortly.",
                    route.name,
                    wharf_duration(*waited)
                ),
            ),
            Refusal::QueueFull(waited) => (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{} is at its limit of requests in flight (max_inflight) and none finished within {} (queue_timeout). Try again shortly.",
                    route.name,
                    wharf_duration(*waited)
                ),
            ),
        };
        let mut response = plain(status, &message);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }
}

/// Waits for a replica that takes the request: the sticky one while it lives, else the
/// least loaded ready one with a free slot.
async fn admit(
    route: &Arc<AppRoute>,
    settings: &RouteSettings,
    sticky_replica: Option<&str>,
) -> Result<(Arc<Replica>, InflightGuard), Refusal> {
    // Usually a replica takes it at once, without registering for wake-ups.
    if let (Some(admitted), _) = try_admit(route, settings, sticky_replica) {
        return Ok(admitted);
    }
    let started = Instant::now();
    let mut waiting = None;
    let mut had_ready = true;
    loop {
        // Register for wake-ups before looking, so a change in between is not missed.
        let changed = route.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();

        let (admitted, any_ready) = try_admit(route, settings, sticky_replica);
        if let Some(admitted) = admitted {
            if waiting.is_some() {
                if had_ready {
                    route.metrics.observe_queue_wait(started.elapsed());
                } else {
                    route.metrics.observe_cold_start(started.elapsed());
                }
            }
            return Ok(admitted);
        }
        if waiting.is_none() {
            had_ready = any_ready;
            waiting = Some(route.start_waiting());
        }
        let limit = if had_ready {
            settings.queue_timeout
        } else {
            settings.cold_start_timeout
        };
        let Some(left) = limit.checked_sub(started.elapsed()) else {
            return Err(if had_ready {
                Refusal::QueueFull(limit)
            } else {
                Refusal::ColdStartTimeout(limit)
            });
        };
        if tokio::time::timeout(left, changed).await.is_err() {
            return Err(if had_ready {
                Refusal::QueueFull(limit)
            } else {
                Refusal::ColdStartTimeout(limit)
            });
        }
    }
}

/// One look at the replicas: the chosen one with its slot taken, if it had one free, and
/// whether any replica is ready at all.
fn try_admit(
    route: &AppRoute,
    settings: &RouteSettings,
    sticky_replica: Option<&str>,
) -> (Option<(Arc<Replica>, InflightGuard)>, bool) {
    route.with_replicas(|replicas| {
        let any_ready = replicas
            .iter()
            .any(|replica| replica.state() == ReplicaState::Ready);
        let admitted = choose(replicas, sticky_replica).and_then(|replica| {
            let guard = replica.try_begin_request(settings.max_inflight)?;
            Some((replica.clone(), guard))
        });
        (admitted, any_ready)
    })
}

/// The replica for a request: its sticky replica if that still serves (ready or
/// draining), else the ready replica with the least load.
fn choose<'a>(
    replicas: &'a [Arc<Replica>],
    sticky_replica: Option<&str>,
) -> Option<&'a Arc<Replica>> {
    if let Some(id) = sticky_replica {
        if let Some(replica) = replicas.iter().find(|replica| {
            replica.id == id
                && matches!(
                    replica.state(),
                    ReplicaState::Ready | ReplicaState::Draining
                )
        }) {
            return Some(replica);
        }
    }
    replicas
        .iter()
        .filter(|replica| replica.state() == ReplicaState::Ready)
        .min_by_key(|replica| replica.routing_load())
}

struct StickyCookie {
    replica: String,
    session: String,
}

fn sticky_cookie(headers: &HeaderMap) -> Option<StickyCookie> {
    cookies(headers).find_map(|(name, value)| {
        if name != STICKY_COOKIE {
            return None;
        }
        let (replica, session) = value.split_once('~')?;
        let valid = |text: &str| {
            !text.is_empty()
                && text.len() <= 64
                && text
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        };
        (valid(replica) && valid(session)).then(|| StickyCookie {
            replica: replica.to_owned(),
            session: session.to_owned(),
        })
    })
}

fn sticky_session_of(new_cookie: &Option<String>, sticky: &Option<StickyCookie>) -> Option<String> {
    match (new_cookie, sticky) {
        (Some(cookie), _) => cookie
            .split_once('~')
            .and_then(|(_, rest)| rest.split(';').next())
            .map(str::to_owned),
        (None, Some(sticky)) => Some(sticky.session.clone()),
        (None, None) => None,
    }
}

fn new_session_id() -> String {
    use rand::Rng;
    let bytes: [u8; 12] = rand::thread_rng().gen();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A response body that holds the request's slot until it is finished (or dropped). The
/// connection goes back to the pool only once the body ended; one whose body was abandoned
/// is closed.
struct GuardedBody {
    body: ReplicaBody,
    _guard: InflightGuard,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = ExchangeError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ExchangeError>>> {
        Pin::new(&mut self.body).poll_frame(context)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A short plain-text response from the proxy itself.
pub fn plain(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(format!("{message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn wharf_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::tests::headers;

    #[test]
    fn sticky_cookie_is_read_only_when_well_formed() {
        let read = |value: &str| {
            sticky_cookie(&headers(&[("cookie", value)]))
                .map(|cookie| (cookie.replica, cookie.session))
        };
        assert_eq!(
            read("x=1; wharf_sticky=r1~abc"),
            Some(("r1".to_owned(), "abc".to_owned()))
        );
        assert_eq!(read("wharf_sticky=r1"), None);
        assert_eq!(read("wharf_sticky=r1~"), None);
        assert_eq!(read("wharf_sticky=r\"1~abc"), None);
    }
}
