//! Who is making a request, for the app proxy and `whoami`: a browser session cookie
//! (`wharf_session`) or an API token (`Authorization: Bearer`). Also the headers an app
//! receives: client-sent `X-Wharf-*` headers are removed, Wharf's own credentials are
//! not passed on, and `X-Wharf-User` / `X-Wharf-Role` name the identified user.
//!
//! The API's own endpoints keep accepting API tokens only (the `Caller` extractor), so a
//! page on another site can never use a browser's cookie to act on the API.

use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::ApiError;
use crate::ApiState;

/// The browser session cookie's name.
pub const SESSION_COOKIE: &str = "wharf_session";

/// The header that tells an app who the user is.
pub const USER_HEADER: &str = "x-wharf-user";

/// The header that tells an app the user's role.
pub const ROLE_HEADER: &str = "x-wharf-role";

/// How many `wharf_session` cookies of one request are looked up at most.
const MAX_SESSION_CANDIDATES: usize = 4;

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The `wharf_session` cookie of a browser that logged in.
    SessionCookie,
    /// An API token in `Authorization: Bearer`.
    BearerToken,
}

/// An identified user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub role: String,
    /// Which credential identified the request.
    pub via: Credential,
}

/// Identifies the user of a request from its `Authorization: Bearer` API token (looked at
/// first) or its `wharf_session` cookie. A token or cookie that is not valid (unknown,
/// expired, logged out) counts as none: Ok(None). Errors are only failures of the store.
pub async fn identify(state: &ApiState, headers: &HeaderMap) -> Result<Option<Identity>, ApiError> {
    if let Some(token) = bearer_token(headers) {
        if let Some(user) = state.control.authenticate(token).await? {
            return Ok(Some(Identity {
                user: user.name,
                role: user.role,
                via: Credential::BearerToken,
            }));
        }
    }
    for token in session_tokens(headers)
        .into_iter()
        .take(MAX_SESSION_CANDIDATES)
    {
        if let Some(user) = state.control.session_user(token).await? {
            return Ok(Some(Identity {
                user: user.name,
                role: user.role,
                via: Credential::SessionCookie,
            }));
        }
    }
    Ok(None)
}

/// Prepares the headers of a request forwarded to an app: removes every header the
/// client sent whose name starts with `X-Wharf-`, removes the `wharf_session` cookie
/// (an app never sees a Wharf session), removes `Authorization` when it was the Wharf
/// API token that identified the user, and, for an identified user, sets `X-Wharf-User`
/// and `X-Wharf-Role`.
pub fn forward_identity_headers(headers: &mut HeaderMap, identity: Option<&Identity>) {
    let wharf_headers: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-wharf-"))
        .cloned()
        .collect();
    for name in wharf_headers {
        headers.remove(&name);
    }
    strip_session_cookie(headers);
    if let Some(identity) = identity {
        if identity.via == Credential::BearerToken {
            headers.remove(AUTHORIZATION);
        }
        // Validated user names and roles are always valid header values.
        if let Ok(user) = HeaderValue::from_str(&identity.user) {
            headers.insert(USER_HEADER, user);
        }
        if let Ok(role) = HeaderValue::from_str(&identity.role) {
            headers.insert(ROLE_HEADER, role);
        }
    }
}

/// The token of `Authorization: Bearer TOKEN` (the scheme is case-insensitive).
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The values of every `wharf_session` cookie in the request, in order.
pub(crate) fn session_tokens(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            let value = value.trim().trim_matches('"');
            (name.trim() == SESSION_COOKIE && !value.is_empty()).then_some(value)
        })
        .collect()
}

/// Removes `wharf_session` from every Cookie header, dropping headers left empty.
fn strip_session_cookie(headers: &mut HeaderMap) {
    let values: Vec<HeaderValue> = headers.get_all(COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    headers.remove(COOKIE);
    for value in values {
        let kept: Vec<&[u8]> = value
            .as_bytes()
            .split(|byte| *byte == b';')
            .map(|pair| pair.trim_ascii())
            .filter(|pair| !pair.is_empty())
            .filter(|pair| {
                let name = pair.split(|byte| *byte == b'=').next().unwrap_or_default();
                name.trim_ascii() != SESSION_COOKIE.as_bytes()
            })
            .collect();
        if kept.is_empty() {
            continue;
        }
        if let Ok(joined) = HeaderValue::from_bytes(&kept.join(&b"; "[..])) {
            headers.append(COOKIE, joined);
        }
    }
}

/// Whether the client reached Wharf over HTTPS: Wharf itself listens on plain HTTP, so
/// HTTPS means a reverse proxy in front of it that says so with `X-Forwarded-Proto:
/// https` (or `Forwarded: proto=https`). The answer only decides the cookie's `Secure`
/// attribute, which restricts where a browser sends the cookie, so a client that fakes
/// the header can only lose its own cookie.
pub(crate) fn request_is_https(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get("forwarded")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .is_some_and(|first| {
            first.split(';').any(|pair| {
                pair.trim().split_once('=').is_some_and(|(key, value)| {
                    key.trim().eq_ignore_ascii_case("proto")
                        && value.trim().trim_matches('"').eq_ignore_ascii_case("https")
                })
            })
        });
    forwarded_proto || forwarded
}

/// The `Set-Cookie` value that stores a session in the browser.
pub(crate) fn session_cookie(token: &str, max_age_seconds: u64, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age_seconds}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub(crate) fn clear_session_cookie(secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use crate::identity::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn values<'a>(map: &'a HeaderMap, name: &str) -> Vec<&'a str> {
        map.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    fn ana(via: Credential) -> Identity {
        Identity {
            user: "ana".into(),
            role: "viewer".into(),
            via,
        }
    }

    #[test]
    fn client_sent_wharf_headers_are_replaced_by_the_identity() {
        let mut map = headers(&[
            ("x-wharf-user", "admin"),
            ("X-Wharf-User", "root"),
            ("x-wharf-role", "admin"),
            ("x-wharf-anything", "1"),
            ("x-wharfish", "kept"),
            ("accept", "text/html"),
        ]);
        forward_identity_headers(&mut map, Some(&ana(Credential::SessionCookie)));
        assert_eq!(values(&map, "x-wharf-user"), ["ana"]);
        assert_eq!(values(&map, "x-wharf-role"), ["viewer"]);
        assert!(map.get("x-wharf-anything").is_none());
        assert_eq!(values(&map, "x-wharfish"), ["kept"]);
        assert_eq!(values(&map, "accept"), ["text/html"]);
    }

    #[test]
    fn anonymous_requests_carry_no_wharf_headers() {
        let mut map = headers(&[("x-wharf-user", "admin"), ("x-wharf-role", "admin")]);
        forward_identity_headers(&mut map, None);
        assert!(map
            .keys()
            .all(|name| !name.as_str().starts_with("x-wharf-")));
    }

    #[test]
    fn the_session_cookie_never_reaches_the_app() {
        let mut map = headers(&[
            ("cookie", "theme=dark; wharf_session=abc; shiny=1"),
            ("cookie", "wharf_session=def"),
            ("cookie", "wharf_session_x=kept;wharf_session =ghi"),
        ]);
        forward_identity_headers(&mut map, Some(&ana(Credential::SessionCookie)));
        assert_eq!(
            values(&map, "cookie"),
            ["theme=dark; shiny=1", "wharf_session_x=kept"]
        );
        let mut only = headers(&[("cookie", "wharf_session=abc")]);
        forward_identity_headers(&mut only, None);
        assert!(only.get("cookie").is_none());
    }

    #[test]
    fn authorization_is_kept_unless_it_was_the_wharf_token() {
        let mut by_cookie = headers(&[("authorization", "Bearer app-own-token")]);
        forward_identity_headers(&mut by_cookie, Some(&ana(Credential::SessionCookie)));
        assert_eq!(
            values(&by_cookie, "authorization"),
            ["Bearer app-own-token"]
        );
        let mut anonymous = headers(&[("authorization", "Bearer app-own-token")]);
        forward_identity_headers(&mut anonymous, None);
        assert_eq!(
            values(&anonymous, "authorization"),
            ["Bearer app-own-token"]
        );
        let mut by_token = headers(&[("authorization", "Bearer wharf_123")]);
        forward_identity_headers(&mut by_token, Some(&ana(Credential::BearerToken)));
        assert!(by_token.get("authorization").is_none());
    }

    #[test]
    fn credentials_are_read_from_the_request() {
        let map = headers(&[
            ("authorization", "bearer  tok "),
            ("cookie", "a=1; wharf_session=s1"),
            ("cookie", "wharf_session=\"s2\"; wharf_session="),
        ]);
        assert_eq!(bearer_token(&map), Some("tok"));
        assert_eq!(session_tokens(&map), ["s1", "s2"]);
        for bad in ["Basic abc", "Bearer", "Bearer  ", "Token x"] {
            assert_eq!(
                bearer_token(&headers(&[("authorization", bad)])),
                None,
                "{bad}"
            );
        }
        assert!(session_tokens(&headers(&[("cookie", "wharf_sessionx=1")])).is_empty());
    }

    #[test]
    fn https_is_what_the_proxy_says() {
        let cases: [(&[(&'static str, &str)], bool); 8] = [
            (&[], false),
            (&[("x-forwarded-proto", "https")], true),
            (&[("x-forwarded-proto", "HTTPS")], true),
            (&[("x-forwarded-proto", "http")], false),
            (&[("x-forwarded-proto", "https, http")], true),
            (&[("forwarded", "for=1.2.3.4;proto=https;host=x")], true),
            (&[("forwarded", "proto=\"https\"")], true),
            (&[("forwarded", "proto=http, proto=https")], false),
        ];
        for (pairs, expected) in cases {
            assert_eq!(request_is_https(&headers(pairs)), expected, "{pairs:?}");
        }
    }

    #[test]
    fn cookies_have_the_documented_attributes() {
        assert_eq!(
            session_cookie("t", 60, false),
            "wharf_session=t; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            session_cookie("t", 60, true),
            "wharf_session=t; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            clear_session_cookie(false),
            "wharf_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
        );
    }
}
