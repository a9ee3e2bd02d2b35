//! The S3 protocol as `wharf cp` and `wharf ls` speak it: path-style requests to the
//! server's S3 listener with `Authorization: Bearer TOKEN` (the Wharf API token), file
//! bodies streamed from disk, and S3 error documents turned into readable messages.

use std::path::Path;

use anyhow::{anyhow, Context};
use futures::StreamExt;
use indicatif::ProgressBar;
use reqwest::header::{CONTENT_LENGTH, ETAG};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::client::Client;
use crate::s3xml;

/// A connection to one S3 endpoint.
#[derive(Clone)]
pub struct S3Client {
    pub endpoint: String,
    token: String,
    http: reqwest::Client,
}

/// An object as a listing shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified: String,
}

/// Bytes of a file to upload.
#[derive(Debug, Clone, Copy)]
pub struct FileRange<'a> {
    pub path: &'a Path,
    pub offset: u64,
    pub length: u64,
}

/// One page of ListObjectsV2.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    pub prefixes: Vec<String>,
    pub next_token: Option<String>,
}

/// The S3 endpoint: WHARF_S3_URL, else what the server says in /whoami.
pub async fn endpoint_for(api: &Client) -> anyhow::Result<Option<String>> {
    if let Some(url) = std::env::var("WHARF_S3_URL")
        .ok()
        .filter(|url| !url.is_empty())
    {
        return Ok(Some(url.trim_end_matches('/').to_owned()));
    }
    let me: wharf_api::dto::WhoAmI = api.get("/whoami").await?;
    Ok(me.s3_endpoint)
}

/// Percent-encodes everything but unreserved characters (and '/' when `keep_slash`).
pub fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && byte == b'/')
        {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (listings with `encoding-type=url`).
pub fn decode(text: &str) -> anyhow::Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let byte = text
                .get(at + 1..at + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .with_context(|| format!("the server sent a badly encoded key {text:?}"))?;
            out.push(byte);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out)
        .with_context(|| format!("the server sent a key that is not UTF-8: {text:?}"))
}

/// The path of an object. URLs cannot carry `.` and `..` path segments (clients and
/// proxies resolve them), so a key with such a segment is sent as one segment with its
/// slashes escaped; the listener decodes the whole path either way.
pub fn object_path(bucket: &str, key: &str) -> anyhow::Result<String> {
    if key == "." || key == ".." {
        anyhow::bail!("the key {key:?} cannot be addressed in an S3 URL; choose another key");
    }
    let dot_segment = key
        .split('/')
        .any(|segment| segment == "." || segment == "..");
    Ok(format!(
        "/{}/{}",
        encode(bucket, false),
        encode(key, !dot_segment)
    ))
}

impl S3Client {
    /// The endpoint and token of the logged-in server.
    pub async fn from_env() -> anyhow::Result<S3Client> {
        let api = Client::from_env()?;
        let endpoint = endpoint_for(&api).await?.ok_or_else(|| {
            anyhow!(
                "the server at {} has no S3 listener (s3_listen = \"off\"); turn it on in the \
                 server configuration, or set WHARF_S3_URL",
                api.base
            )
        })?;
        S3Client::new(&endpoint, api.token())
    }

    pub fn new(endpoint: &str, token: &str) -> anyhow::Result<S3Client> {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        anyhow::ensure!(
            endpoint.starts_with("http://") || endpoint.starts_with("https://"),
            "the S3 endpoint \"{endpoint}\" is not a URL; write it like http://127.0.0.1:9000"
        );
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()?;
        Ok(S3Client {
            endpoint,
            token: token.to_owned(),
            http,
        })
    }

    /// A request to `path` (already encoded) with a query string (already encoded).
    fn request(&self, method: Method, path: &str, query: &str) -> RequestBuilder {
        let mut url = format!("{}{path}", self.endpoint);
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        self.http.request(method, url).bearer_auth(&self.token)
    }

    fn object(
        &self,
        method: Method,
        bucket: &str,
        key: &str,
        query: &str,
    ) -> anyhow::Result<RequestBuilder> {
        Ok(self.request(method, &object_path(bucket, key)?, query))
    }

    fn transport_error(&self, error: reqwest::Error, what: &str) -> anyhow::Error {
        let message = if error.is_connect() {
            format!(
                "cannot reach the S3 endpoint {} ({what}): is the server's S3 listener on? \
                 (set WHARF_S3_URL to use another address)",
                self.endpoint
            )
        } else {
            format!("{what} failed: {error}")
        };
        failure(None, message)
    }

    /// Sends a request; an error status becomes `Code: message`.
    async fn send(&self, request: RequestBuilder, what: &str) -> anyhow::Result<Response> {
        let response = request
            .send()
            .await
            .map_err(|error| self.transport_error(error, what))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(status_error(response, what).await)
    }

    pub async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<&str>,
    ) -> anyhow::Result<ListPage> {
        let mut query = format!(
            "list-type=2&encoding-type=url&prefix={}",
            encode(prefix, false)
        );
        if let Some(delimiter) = delimiter {
            query.push_str(&format!("&delimiter={}", encode(delimiter, false)));
        }
        if let Some(token) = token {
            query.push_str(&format!("&continuation-token={}", encode(token, false)));
        }
        let what = format!("listing s3://{bucket}/{prefix}");
        let response = self
            .send(
                self.request(Method::GET, &format!("/{}", encode(bucket, false)), &query),
                &what,
            )
            .await?;
        let root = xml_answer(response, &what).await?;
        let url_encoded = root.child_text("EncodingType") == Some("url");
        let text = |value: &str| {
            if url_encoded {
                decode(value)
            } else {
                Ok(value.to_owned())
            }
        };
        let mut page = ListPage::default();
        for entry in root.children_named("Contents") {
            page.objects.push(ListedObject {
                key: text(entry.child_text("Key").unwrap_or_default())?,
                size: entry
                    .child_text("Size")
                    .unwrap_or("0")
                    .trim()
                    .parse()
                    .unwrap_or(0),
                etag: entry
                    .child_text("ETag")
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_owned(),
                last_modified: entry
                    .child_text("LastModified")
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        for common in root.children_named("CommonPrefixes") {
            page.prefixes
                .push(text(common.child_text("Prefix").unwrap_or_default())?);
        }
        if root.child_text("IsTruncated").map(str::trim) == Some("true") {
            let next = root
                .child_text("NextContinuationToken")
                .filter(|token| !token.is_empty())
                .with_context(|| {
                    format!("{what}: the listing is truncated but has no NextContinuationToken")
                })?;
            page.next_token = Some(next.to_owned());
        }
        Ok(page)
    }

    /// Every object under a prefix (no delimiter), following continuation tokens.
    pub async fn list_all(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<ListedObject>> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list_page(bucket, prefix, None, token.as_deref())
                .await?;
            objects.extend(page.objects);
            match page.next_token {
                Some(next) => token = Some(next),
                None => return Ok(objects),
            }
        }
    }

    /// PUT of `length` bytes of a file from `offset` (the whole object, or a part when
    /// `query` names one); returns the ETag. The bytes stream from the file.
    pub async fn put_file_range(
        &self,
        bucket: &str,
        key: &str,
        query: &str,
        range: FileRange<'_>,
        progress: &ProgressBar,
    ) -> anyhow::Result<String> {
        let FileRange {
            path: file,
            offset,
            length,
        } = range;
        let mut opened = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("cannot open {}", file.display()))?;
        opened
            .seek(std::io::SeekFrom::Start(offset))
            .await
            .with_context(|| format!("cannot read {}", file.display()))?;
        let bar = progress.clone();
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = sent.clone();
        let stream = tokio_util::io::ReaderStream::with_capacity(opened.take(length), 256 * 1024)
            .inspect(move |chunk| {
                if let Ok(chunk) = chunk {
                    bar.inc(chunk.len() as u64);
                    counted.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
            });
        let request = self
            .object(Method::PUT, bucket, key, query)?
            .header(CONTENT_LENGTH, length)
            .body(reqwest::Body::wrap_stream(stream));
        let sent_result = self
            .send(request, &format!("uploading to s3://{bucket}/{key}"))
            .await;
        let response = sent_result.inspect_err(|_| {
            // A failed attempt's bytes do not count; a retry sends them again.
            progress.dec(sent.load(std::sync::atomic::Ordering::Relaxed));
        })?;
        Ok(response
            .headers()
            .get(ETAG)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned())
    }

    /// GET of a whole object, to be streamed by the caller.
    pub async fn get_object(&self, bucket: &str, key: &str) -> anyhow::Result<Response> {
        self.send(
            self.object(Method::GET, bucket, key, "")?,
            &format!("downloading s3://{bucket}/{key}"),
        )
        .await
    }

    /// Server-side copy; returns the new object's ETag.
    pub async fn copy_object(
        &self,
        source_bucket: &str,
        source_key: &str,
        bucket: &str,
        key: &str,
    ) -> anyhow::Result<String> {
        let source = format!(
            "{}/{}",
            encode(source_bucket, false),
            encode(source_key, true)
        );
        let what = format!("copying s3://{source_bucket}/{source_key} to s3://{bucket}/{key}");
        let response = self
            .send(
                self.object(Method::PUT, bucket, key, "")?
                    .header("x-amz-copy-source", source),
                &what,
            )
            .await?;
        let root = xml_answer(response, &what).await?;
        Ok(root
            .child_text("ETag")
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned())
    }

    pub async fn create_multipart(&self, bucket: &str, key: &str) -> anyhow::Result<String> {
        let what = format!("starting a multipart upload to s3://{bucket}/{key}");
        let response = self
            .send(self.object(Method::POST, bucket, key, "uploads")?, &what)
            .await?;
        let root = xml_answer(response, &what).await?;
        root.child_text("UploadId")
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .with_context(|| format!("{what}: the answer has no UploadId"))
    }

    pub async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> anyhow::Result<String> {
        let mut body = String::from("<CompleteMultipartUpload>");
        for (index, etag) in etags.iter().enumerate() {
            body.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>\"{}\"</ETag></Part>",
                index + 1,
                xml_escape(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        let what = format!("completing the multipart upload to s3://{bucket}/{key}");
        let query = format!("uploadId={}", encode(upload_id, false));
        let response = self
            .send(
                self.object(Method::POST, bucket, key, &query)?
                    .header("content-type", "application/xml")
                    .body(body),
                &what,
            )
            .await?;
        // S3 may answer 200 and still report an error in the body.
        let root = xml_answer(response, &what).await?;
        Ok(root
            .child_text("ETag")
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned())
    }

    pub async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> anyhow::Result<()> {
        let query = format!("uploadId={}", encode(upload_id, false));
        self.send(
            self.object(Method::DELETE, bucket, key, &query)?,
            &format!("aborting the multipart upload to s3://{bucket}/{key}"),
        )
        .await?;
        Ok(())
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The XML document of a successful answer; an `<Error>` inside it is an error.
async fn xml_answer(response: Response, what: &str) -> anyhow::Result<s3xml::Element> {
    let text = response
        .text()
        .await
        .with_context(|| format!("{what}: the answer could not be read"))?;
    if let Some(error) = s3xml::error_body(&text) {
        anyhow::bail!("{}: {}", error.code, error.message);
    }
    s3xml::parse(&text)
        .map_err(|problem| anyhow!("{what}: the server's answer is not S3 XML ({problem})"))
}

/// A failed S3 request: the status (None when the server was not reached) and a
/// readable message (`Code: message`).
#[derive(Debug)]
pub struct S3Failure {
    pub status: Option<StatusCode>,
    pub message: String,
}

impl std::fmt::Display for S3Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for S3Failure {}

/// Whether trying again may help: the server was not reached or failed inside.
pub fn is_retryable(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<S3Failure>()
        .is_some_and(|failure| failure.status.is_none_or(|status| status.is_server_error()))
}

fn failure(status: Option<StatusCode>, message: String) -> anyhow::Error {
    anyhow::Error::new(S3Failure { status, message })
}

/// An error answer as `Code: message` (HEAD answers have no body: the status speaks).
async fn status_error(response: Response, what: &str) -> anyhow::Error {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if let Some(error) = s3xml::error_body(&text) {
        let message = if error.message.is_empty() {
            what.to_owned()
        } else {
            error.message
        };
        return failure(Some(status), format!("{}: {message}", error.code));
    }
    let message = match status {
        StatusCode::NOT_FOUND => format!("NotFound: {what}: no such bucket or object"),
        StatusCode::FORBIDDEN => {
            format!("AccessDenied: {what}: the token may not do this (run `wharf login` again?)")
        }
        _ => {
            let snippet: String = text.trim().chars().take(300).collect();
            format!("{what}: the S3 endpoint answered {status} {snippet}")
        }
    };
    failure(Some(status), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_survive_url_normalisation() {
        let check = |bucket: &str, key: &str, expect: &str| {
            assert_eq!(object_path(bucket, key).expect("a path"), expect, "{key}");
        };
        check("b", "a/b.csv", "/b/a/b.csv");
        check(
            "b",
            "dir with space/é.txt",
            "/b/dir%20with%20space/%C3%A9.txt",
        );
        check("b", "../x", "/b/..%2Fx");
        check("b", "a/./b", "/b/a%2F.%2Fb");
        check("b", "x/..", "/b/x%2F..");
        check("b", "a+b?c#d%", "/b/a%2Bb%3Fc%23d%25");
        check("b", "..a/b", "/b/..a/b");
        assert!(object_path("b", "..").is_err());
        assert!(object_path("b", ".").is_err());
    }

    #[test]
    fn decoding_reverses_encoding() {
        for text in ["plain", "a b/c", "ünï/ćødé", "100%", "+&=?"] {
            assert_eq!(decode(&encode(text, true)).expect("decodes"), text);
            assert_eq!(decode(&encode(text, false)).expect("decodes"), text);
        }
        assert!(decode("%").is_err());
        assert!(decode("%zz").is_err());
        assert!(decode("%FF").is_err());
    }
}
