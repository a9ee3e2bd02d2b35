//! Forwarding one request to a replica: choice of replica, admission (`max_inflight`, cold
//! start), headers, bodies streamed both ways, WebSocket upgrades.
//!
//! The order of the steps matters:
//! 1. wait for a replica that can take the request (ready, and a free slot), holding the
//!    request while one starts — before anything is sent, so a request that is refused
//!    (503, 429) has had no effect;
//! 2. rewrite the head (hop-by-hop headers out, `X-Forwarded-*` and `X-Wharf-User` in,
//!    Wharf's own cookies out, so an app never sees a credential for Wharf);
//! 3. forward with the app's timeouts; the slot is held until the response body ends.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;

use crate::h1::{ExchangeError, Outgoing, ReplicaBody};
use crate::pool::send;
use crate::routes::{AppRoute, InflightGuard, Replica, ReplicaState, RouteSettings};

/// The sticky-session cookie (`REPLICA~SESSION`), scoped to the app's path.
pub const STICKY_COOKIE: &str = "wharf_sticky";
/// Cookies the app never sees: they are Wharf's.
const WHARF_COOKIES: [&str; 2] = [STICKY_COOKIE, "wharf_session"];

// Built at compile time: `HeaderName::from_static` outside a const checks its argument on
// every call.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

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

/// The name=value pairs of every `Cookie` header.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            Some((name.trim(), value.trim()))
        })
}

fn new_session_id() -> String {
    use rand::Rng;
    let bytes: [u8; 12] = rand::thread_rng().gen();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn is_websocket_upgrade(request: &Request<Body>) -> bool {
    let headers = request.headers();
    // Cheapest first: most requests stop at the method or at the missing `Upgrade`.
    request.method() == Method::GET
        && headers
            .get(header::UPGRADE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Headers that belong to one connection (RFC 9110 7.6.1), never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers: the fixed list, `Upgrade`, and those `Connection` names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Usually there is none: one pass over the names instead of a lookup per name.
    let any = headers
        .keys()
        .any(|name| *name == header::UPGRADE || HOP_BY_HOP.contains(name));
    if !any {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

fn upstream_request(
    request: Request<Body>,
    replica: &Replica,
    route: &AppRoute,
    context: &ForwardContext,
    websocket: bool,
) -> Outgoing {
    let (mut parts, body) = request.into_parts();
    // First what is taken away from the request's headers...
    let headers = &mut parts.headers;
    let websocket_upgrade = websocket
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    remove_hop_by_hop(headers);
    // Nothing the client says about itself under X-Wharf-* is believed.
    if headers
        .keys()
        .any(|name| name.as_str().starts_with("x-wharf-"))
    {
        let spoofed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| name.as_str().starts_with("x-wharf-"))
            .cloned()
            .collect();
        for name in spoofed {
            headers.remove(name);
        }
    }
    if context.strip_authorization {
        headers.remove(header::AUTHORIZATION);
    }
    strip_wharf_cookies(headers);

    // ... then what Wharf sets, written straight into the outgoing head in place of any
    // header of the same name (inserting into the request's full map would rehash it).
    let headers = &parts.headers;
    let (client_ip, forwarded_for, replica_host);
    let mut added = Added::default();
    if let Some(upgrade) = &websocket_upgrade {
        added.push("connection", b"upgrade");
        added.push("upgrade", upgrade.as_bytes());
    }
    if let Some(user) = context.user.as_deref().filter(|user| is_header_value(user)) {
        added.push("x-wharf-user", user.as_bytes());
    }
    if let Some(role) = context.role.as_deref().filter(|role| is_header_value(role)) {
        added.push("x-wharf-role", role.as_bytes());
    }
    if let Some(ip) = context.client_addr.map(|address| address.ip()) {
        client_ip = IpText::new(ip);
        forwarded_for = forwarded_for_value(headers, client_ip.as_str());
        added.push(
            "x-forwarded-for",
            forwarded_for
                .as_deref()
                .unwrap_or(client_ip.as_str())
                .as_bytes(),
        );
    }
    let scheme: &[u8] = if context.scheme == "https" {
        b"https"
    } else {
        b"http"
    };
    added.push("x-forwarded-proto", scheme);
    // HTTP/2 clients name the host in the URI, not in a header. (The head sent has the
    // origin form, `/path?query`, whatever form the URI has.)
    let host = headers
        .get(header::HOST)
        .map(HeaderValue::as_bytes)
        .or_else(|| {
            parts
                .uri
                .authority()
                .map(|authority| authority.as_str().as_bytes())
        })
        .filter(|host| is_header_value(host));
    match host {
        Some(host) => {
            added.push("host", host);
            added.push("x-forwarded-host", host);
        }
        None => {
            replica_host = replica.addr.to_string();
            added.push("host", replica_host.as_bytes());
        }
    }
    added.push("x-forwarded-prefix", route.prefix_header.as_bytes());
    Outgoing::new(&parts, body, added.as_slice())
}

/// The headers Wharf sets on a request to a replica (at most [`Added::MAX`]), borrowed
/// from where their values already are.
struct Added<'a> {
    entries: [(&'static str, &'a [u8]); Added::MAX],
    len: usize,
}

impl Default for Added<'_> {
    fn default() -> Self {
        Added {
            entries: [("", b""); Added::MAX],
            len: 0,
        }
    }
}

impl<'a> Added<'a> {
    /// Connection, Upgrade, X-Wharf-User, X-Wharf-Role, Host and four X-Forwarded-*.
    const MAX: usize = 9;

    fn push(&mut self, name: &'static str, value: &'a [u8]) {
        self.entries[self.len] = (name, value);
        self.len += 1;
    }

    fn as_slice(&self) -> &[(&'static str, &'a [u8])] {
        &self.entries[..self.len]
    }
}

/// Whether `value` can be sent as a header value as it is (no control characters, so no
/// line breaks: the same rule as `HeaderValue`'s).
fn is_header_value(value: impl AsRef<[u8]>) -> bool {
    value
        .as_ref()
        .iter()
        .all(|&byte| byte == b'\t' || (byte >= 0x20 && byte != 0x7f))
}

/// `X-Forwarded-For` when the request had one: its value with `client` appended. `None`
/// when it had none: the header is `client` alone.
fn forwarded_for_value(headers: &HeaderMap, client: &str) -> Option<String> {
    let existing = headers
        .get(X_FORWARDED_FOR)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|existing| !existing.is_empty())?;
    Some(format!("{existing}, {client}"))
}

/// An address's display form, without `fmt` for IPv4 (the common case: `fmt` cost more
/// than the rest of the header rewrite).
struct IpText {
    text: [u8; 45],
    len: usize,
}

impl IpText {
    fn new(ip: IpAddr) -> IpText {
        let mut text = [0u8; 45];
        let mut len = 0;
        match ip {
            IpAddr::V4(v4) => {
                for (index, octet) in v4.octets().into_iter().enumerate() {
                    if index > 0 {
                        text[len] = b'.';
                        len += 1;
                    }
                    if octet >= 100 {
                        text[len] = b'0' + octet / 100;
                        len += 1;
                    }
                    if octet >= 10 {
                        text[len] = b'0' + octet / 10 % 10;
                        len += 1;
                    }
                    text[len] = b'0' + octet % 10;
                    len += 1;
                }
            }
            IpAddr::V6(v6) => {
                use std::io::Write as _;
                let mut rest = &mut text[..];
                // 45 bytes hold the longest form (`ffff:…:255.255.255.255`).
                let _ = write!(rest, "{v6}");
                len = 45 - rest.len();
            }
        }
        IpText { text, len }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text[..self.len]).unwrap_or_default()
    }
}

/// Removes Wharf's own cookies from every `Cookie` header (and empty headers after that).
fn strip_wharf_cookies(headers: &mut HeaderMap) {
    if !cookies(headers).any(|(name, _)| WHARF_COOKIES.contains(&name)) {
        return;
    }
    let kept: Vec<String> = cookies(headers)
        .filter(|(name, _)| !WHARF_COOKIES.contains(name))
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(header::COOKIE, value);
        }
    }
}

fn clean_response_headers(
    headers: &mut HeaderMap,
    upgraded: bool,
    replica: &Replica,
    prefix: &str,
) {
    let upgrade = upgraded
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    remove_hop_by_hop(headers);
    if let Some(upgrade) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade);
    }
    // A redirect to the replica's own address becomes one to the app's prefix.
    if let Some(location) = headers
        .get(header::LOCATION)
        .and_then(|value| value.to_str().ok())
    {
        let own = format!("http://{}", replica.addr);
        if let Some(rest) = location.strip_prefix(&own) {
            let rewritten = format!("{prefix}{}", if rest.is_empty() { "/" } else { rest });
            if let Ok(value) = HeaderValue::from_str(&rewritten) {
                headers.insert(header::LOCATION, value);
            }
        }
    }
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

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("accept", "text/html"),
        ]);
        remove_hop_by_hop(&mut map);
        let left: Vec<_> = map.keys().map(|name| name.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn client_addresses_are_written_as_their_display_form() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.9.99.100",
            "255.255.255.255",
            "192.168.1.10",
            "1.20.199.250",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.0.0.1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
        let map = headers(&[("x-forwarded-for", " 203.0.113.7 ")]);
        assert_eq!(
            forwarded_for_value(&map, "10.0.0.2").as_deref(),
            Some("203.0.113.7, 10.0.0.2")
        );
        assert_eq!(forwarded_for_value(&headers(&[]), "10.0.0.2"), None);
        let map = headers(&[("x-forwarded-for", "  ")]);
        assert_eq!(forwarded_for_value(&map, "10.0.0.2"), None);
    }

    #[test]
    fn header_values_with_control_characters_are_not_sent() {
        assert!(is_header_value("alice"));
        assert!(is_header_value("Zoë\tx"));
        assert!(!is_header_value("alice\r\nx-evil: 1"));
        assert!(!is_header_value("a\x7f"));
    }

    #[test]
    fn wharf_cookies_never_reach_the_app() {
        let check = |input: &[(&str, &str)], expect: Option<&str>| {
            let mut map = headers(input);
            strip_wharf_cookies(&mut map);
            let all: Vec<_> = map
                .get_all(header::COOKIE)
                .iter()
                .map(|value| value.to_str().unwrap().to_owned())
                .collect();
            assert_eq!(all.first().map(String::as_str), expect, "{input:?}");
        };
        check(&[("cookie", "a=1; wharf_session=s; b=2")], Some("a=1; b=2"));
        check(
            &[
                ("cookie", "wharf_session=s"),
                ("cookie", "wharf_sticky=r~x"),
            ],
            None,
        );
        check(&[("cookie", "a=1")], Some("a=1"));
        check(&[], None);
    }

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

    #[test]
    fn requests_to_replicas_carry_wharfs_headers_in_place_of_the_clients() {
        let routes = crate::Routes::default();
        let route = routes.upsert("app", crate::RouteSettings::default());
        let replica = Replica::new("r1", "127.0.0.1:4000".parse().unwrap(), ReplicaState::Ready);
        let head = |request: Request<Body>, context: &ForwardContext, websocket: bool| {
            let outgoing = upstream_request(request, &replica, &route, context, websocket);
            String::from_utf8(outgoing.head().to_vec()).unwrap()
        };
        let context = ForwardContext {
            client_addr: Some("10.0.0.2:5555".parse().unwrap()),
            user: Some("alice".into()),
            role: Some("viewer".into()),
            strip_authorization: true,
            scheme: "https",
        };
        let request = Request::builder()
            .uri("/data?x=1")
            .header("host", "wharf.example")
            .header("x-wharf-user", "mallory")
            .header("X-Wharf-Anything", "1")
            .header("x-forwarded-for", "203.0.113.7")
            .header("x-forwarded-proto", "gopher")
            .header("x-forwarded-host", "evil")
            .header("x-forwarded-prefix", "/evil")
            .header("authorization", "Bearer wharf-token")
            .header("connection", "keep-alive, x-hop")
            .header("x-hop", "1")
            .header("cookie", "wharf_session=s; theme=dark")
            .header("accept", "text/html")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            head(request, &context, false),
            "GET /data?x=1 HTTP/1.1\r\n\
             accept: text/html\r\n\
             cookie: theme=dark\r\n\
             x-wharf-user: alice\r\n\
             x-wharf-role: viewer\r\n\
             x-forwarded-for: 203.0.113.7, 10.0.0.2\r\n\
             x-forwarded-proto: https\r\n\
             host: wharf.example\r\n\
             x-forwarded-host: wharf.example\r\n\
             x-forwarded-prefix: /apps/app\r\n\r\n"
        );

        // A WebSocket handshake keeps its upgrade; an HTTP/2 request's host is its
        // authority; a user name that would break the head is not sent.
        let context = ForwardContext {
            user: Some("bob\r\nx-evil: 1".into()),
            scheme: "http",
            ..ForwardContext::default()
        };
        let request = Request::builder()
            .uri("http://h2.example/ws")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-key", "k")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            head(request, &context, true),
            "GET /ws HTTP/1.1\r\n\
             sec-websocket-key: k\r\n\
             connection: upgrade\r\n\
             upgrade: websocket\r\n\
             x-forwarded-proto: http\r\n\
             host: h2.example\r\n\
             x-forwarded-host: h2.example\r\n\
             x-forwarded-prefix: /apps/app\r\n\r\n"
        );

        // Every header Wharf can set, at once (`Added::MAX` of them).
        let context = ForwardContext {
            client_addr: Some("[2001:db8::1]:5555".parse().unwrap()),
            user: Some("alice".into()),
            role: Some("admin".into()),
            strip_authorization: false,
            scheme: "http",
        };
        let request = Request::builder()
            .uri("/ws")
            .header("host", "wharf.example")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Body::empty())
            .unwrap();
        let sent = head(request, &context, true);
        assert_eq!(sent.matches("\r\n").count(), 1 + Added::MAX + 1, "{sent}");
        assert!(sent.contains("x-forwarded-for: 2001:db8::1\r\n"), "{sent}");

        // No host at all: the replica's address.
        let request = Request::builder().uri("/").body(Body::empty()).unwrap();
        let sent = head(request, &ForwardContext::default(), false);
        assert!(sent.contains("host: 127.0.0.1:4000\r\n"), "{sent}");
        assert!(!sent.contains("x-forwarded-host"), "{sent}");
    }
}
