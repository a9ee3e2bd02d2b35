//! What the proxy changes in heads on their way through, both ways: the request to a
//! replica (hop-by-hop headers and Wharf's own cookies out, `X-Forwarded-*`, `X-Wharf-*`
//! and `Host` in, written straight into the outgoing head) and the response to the client
//! (hop-by-hop headers out, redirects to the replica's own address made relative to the
//! app's prefix).

use std::net::IpAddr;

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request};

use crate::forward::{ForwardContext, STICKY_COOKIE};
use crate::h1::Outgoing;
use crate::routes::{AppRoute, Replica};

/// Cookies the app never sees: they are Wharf's.
const WHARF_COOKIES: [&str; 2] = [STICKY_COOKIE, "wharf_session"];

// Built at compile time: `HeaderName::from_static` outside a const checks its argument on
// every call.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The name=value pairs of every `Cookie` header.
pub(crate) fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
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

pub(crate) fn is_websocket_upgrade(request: &Request<Body>) -> bool {
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

pub(crate) fn upstream_request(
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

pub(crate) fn clean_response_headers(
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::routes::ReplicaState;

    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
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
