//! Who is making a request, for the app proxy and `whoami`: a browser session cookie
//! (`wharf_session`) or an API token (`Authorization: Bearer`). (What an app then
//! receives — no client-sent `X-Wharf-*` headers, no Wharf credentials, `X-Wharf-User`
//! and `X-Wharf-Role` for the identified user — is done by `wharf_proxy::forward`.)
//!
//! The API's own endpoints keep accepting API tokens only (the `Caller` extractor), so a
//! page on another site can never use a browser's cookie to act on the API.

use axum::http::header::{HeaderName, AUTHORIZATION, COOKIE, FORWARDED};
use axum::http::HeaderMap;

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

/// Whether the client reached Wharf over HTTPS: Wharf itself listens on plain HTTP, so
/// HTTPS means a reverse proxy in front of it that says so with `X-Forwarded-Proto:
/// https` (or `Forwarded: proto=https`). The answer only decides the cookie's `Secure`
/// attribute, which restricts where a browser sends the cookie, so a client that fakes
/// the header can only lose its own cookie.
pub(crate) fn request_is_https(headers: &HeaderMap) -> bool {
    // A const name: looking a header up by `&str` parses the name on every call.
    const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    let forwarded_proto = headers
        .get(X_FORWARDED_PROTO)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get(FORWARDED)
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
