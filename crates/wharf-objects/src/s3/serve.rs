//! The S3 listener: HTTP/1.1 (and h2c) on its own address, path-style addressing and
//! virtual-host style under a configured base domain.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::service::{S3Service, S3ServiceBuilder};

use crate::s3::access::{BearerUser, KeyAccess, KeyAuth, TokenCheck};
use crate::s3::WharfS3;
use crate::service::Objects;

#[derive(Debug, Clone, Default)]
pub struct S3ListenerConfig {
    /// With a base domain, `BUCKET.DOMAIN` addresses a bucket (virtual-host style).
    pub base_domain: Option<String>,
}

/// Builds the s3s service with our authentication and access rules.
pub fn build_service(objects: Objects, config: &S3ListenerConfig) -> Result<S3Service, String> {
    let mut builder = S3ServiceBuilder::new(WharfS3::new(objects.clone()));
    builder.set_auth(KeyAuth {
        objects: objects.clone(),
    });
    builder.set_access(KeyAccess { objects });
    if let Some(domain) = &config.base_domain {
        let valid = !domain.is_empty()
            && domain.split('.').all(|part| {
                !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(format!(
                "s3_base_domain {domain:?} is not a domain name; write e.g. \"s3.example.com\""
            ));
        }
        builder.set_host(BaseDomain {
            domain: domain.to_ascii_lowercase(),
        });
    }
    Ok(builder.build())
}

/// Virtual-host style under one base domain: `BUCKET.DOMAIN[:PORT]` names a bucket;
/// `DOMAIN`, an IP address or any other host name is path style. (s3s's `SingleDomain`
/// would treat other host names as bucket names and does not ignore the port.)
struct BaseDomain {
    domain: String,
}

impl s3s::host::S3Host for BaseDomain {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> s3s::S3Result<s3s::host::VirtualHost<'a>> {
        let path_style = || s3s::host::VirtualHost::new(self.domain.as_str());
        if host.starts_with('[') {
            return Ok(path_style());
        }
        let name = host.split_once(':').map_or(host, |(name, _port)| name);
        let bucket = name
            .len()
            .checked_sub(self.domain.len() + 1)
            .and_then(|end| Some((name.get(..end)?, name.get(end..)?)))
            .filter(|(_, rest)| {
                rest.strip_prefix('.')
                    .is_some_and(|domain| domain.eq_ignore_ascii_case(&self.domain))
            })
            .map(|(bucket, _)| bucket)
            .filter(|bucket| !bucket.is_empty());
        Ok(match bucket {
            Some(bucket) => path_style().with_bucket(bucket.to_ascii_lowercase()),
            None => path_style(),
        })
    }
}

/// Serves S3 on `listener` until `shutdown` resolves. Requests that carry
/// `Authorization: Bearer TOKEN` are authenticated with `tokens` first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: S3Service,
    tokens: Arc<dyn TokenCheck>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "S3 listener could not accept a connection.");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let tokens = tokens.clone();
        let handler = service_fn(move |request| {
            let service = service.clone();
            let tokens = tokens.clone();
            async move { handle(service, tokens, request).await }
        });
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let connection = builder.serve_connection(TokioIo::new(stream), handler);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "S3 connection ended with an error.");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown()).await;
}

async fn handle(
    service: S3Service,
    tokens: Arc<dyn TokenCheck>,
    mut request: http::Request<hyper::body::Incoming>,
) -> Result<s3s::HttpResponse, s3s::HttpError> {
    let bearer = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    if let Some(token) = bearer {
        request.headers_mut().remove(http::header::AUTHORIZATION);
        match tokens.user_for_token(&token).await {
            Some(name) => {
                request.extensions_mut().insert(BearerUser { name });
            }
            None => return Ok(invalid_token_response()),
        }
    }
    let (expects_continue, empty_body) = continue_expectation(request.headers());
    let path_bucket = path_bucket(request.uri());
    let mut response = hyper::service::Service::call(&service, request).await?;
    if response.status() == http::StatusCode::BAD_REQUEST {
        // s3s rejects a bad bucket name before our code runs, with a bare code; say why.
        if let Some((name, problem)) = path_bucket.and_then(|name| {
            wharf_model::name::validate_bucket_name(&name)
                .err()
                .map(|problem| (name, problem))
        }) {
            response = xml_error(
                http::StatusCode::BAD_REQUEST,
                "InvalidBucketName",
                &format!("The bucket name {name:?} is not valid: {problem}"),
            );
        }
    }
    if expects_continue && (empty_body || !response.status().is_success()) {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    Ok(response)
}

/// Whether a request says `Expect: 100-continue`, and whether its body is empty.
///
/// botocore sends that expectation with every PUT, even empty ones, and when the final
/// answer comes without a `100 Continue` first (an empty body needs none; an error is
/// answered before the body is read) it keeps that answer's status line on the pooled
/// connection and misreads the next response on it (boto/botocore#3755): a 60-second
/// stall and a silent retry, or, when the unread body is drained from the next request,
/// a SignatureDoesNotMatch for a request it never sent. `Connection: close` on those
/// answers makes the client open a fresh connection instead.
fn continue_expectation(headers: &http::HeaderMap) -> (bool, bool) {
    let expects = headers
        .get(http::header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let empty = headers
        .get(http::header::CONTENT_LENGTH)
        .is_some_and(|value| value.as_bytes().trim_ascii() == b"0");
    (expects, empty)
}

fn invalid_token_response() -> s3s::HttpResponse {
    xml_error(
        http::StatusCode::FORBIDDEN,
        "InvalidToken",
        "The bearer token is not a valid Wharf API token; run wharf login or create a token",
    )
}

/// The first segment of a path-style request's path, decoded: the bucket it names.
fn path_bucket(uri: &http::Uri) -> Option<String> {
    let segment = uri.path().trim_start_matches('/').split('/').next()?;
    if segment.is_empty() {
        return None;
    }
    percent_decode(segment)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// An S3 XML error answer made here rather than by s3s.
fn xml_error(status: http::StatusCode, code: &str, message: &str) -> s3s::HttpResponse {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{escaped}</Message></Error>"
    );
    let mut response = http::Response::new(s3s::Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    response
}
