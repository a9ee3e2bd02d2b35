//! A small S3 client for the benchmarks: path-style requests (`URL/BUCKET/KEY`) to a
//! server's S3 listener, authenticated with the admin API token (`Authorization: Bearer`,
//! which the listener accepts besides SigV4), so nothing is signed.
//!
//! Small requests go through `reqwest` (kept-alive connections). The 256 MiB transfers use
//! a plain HTTP/1.1 exchange over a `TcpStream`: the PUT body goes from the file to the
//! socket with `std::io::copy` (which uses `sendfile` on Linux) and the GET body from the
//! socket to the file through a 1 MiB buffer, so the client costs as little CPU as
//! possible on a machine it shares with the server.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::server::Server;

/// Keys and query values the benchmarks use are ASCII; this escapes everything but the
/// unreserved characters (and `/` in paths).
fn percent_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let unreserved = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~');
        if unreserved || (keep_slash && byte == b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn object_path(bucket: &str, key: &str) -> String {
    format!("/{bucket}/{}", percent_encode(key, true))
}

/// One ListObjectsV2 request.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub prefix: Option<String>,
    pub delimiter: Option<String>,
    pub continuation_token: Option<String>,
    pub start_after: Option<String>,
    pub max_keys: usize,
}

impl ListQuery {
    fn query_string(&self) -> String {
        let mut parts = vec![
            "list-type=2".to_owned(),
            format!("max-keys={}", self.max_keys),
        ];
        for (name, value) in [
            ("prefix", &self.prefix),
            ("delimiter", &self.delimiter),
            ("continuation-token", &self.continuation_token),
            ("start-after", &self.start_after),
        ] {
            if let Some(value) = value {
                parts.push(format!("{name}={}", percent_encode(value, false)));
            }
        }
        parts.join("&")
    }
}

/// What one ListObjectsV2 page held.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub keys: Vec<String>,
    pub common_prefixes: usize,
    pub next_token: Option<String>,
    pub truncated: bool,
    /// Size of the XML answer.
    pub bytes: usize,
}

/// The text of every `<tag>…</tag>` in `xml`, in order (no nesting of the same tag).
fn tag_texts<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut texts = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        texts.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    texts
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Reads a ListObjectsV2 answer.
pub fn parse_list_page(xml: &str) -> anyhow::Result<ListPage> {
    if !xml.contains("<ListBucketResult") {
        bail!("the answer is not a ListBucketResult: {xml:.300}");
    }
    let truncated = match tag_texts(xml, "IsTruncated").first().copied() {
        Some("true") => true,
        Some("false") => false,
        other => bail!("IsTruncated is {other:?} in {xml:.300}"),
    };
    // <Key> also appears nowhere else in a ListBucketResult (prefixes are <Prefix>).
    let keys = tag_texts(xml, "Key")
        .into_iter()
        .map(xml_unescape)
        .collect();
    Ok(ListPage {
        keys,
        common_prefixes: tag_texts(xml, "CommonPrefixes").len(),
        next_token: tag_texts(xml, "NextContinuationToken")
            .first()
            .map(|token| xml_unescape(token)),
        truncated,
        bytes: xml.len(),
    })
}

/// How one large transfer went.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// From just before connecting to the last byte of the answer.
    pub total: Duration,
    /// PUT: from connecting to the last body byte handed to the kernel. GET: from
    /// connecting to the end of the answer's head (time to first byte).
    pub first_phase: Duration,
    pub bytes: u64,
}

/// An S3 client for one server.
pub struct S3Client {
    http: reqwest::blocking::Client,
    base: String,
    address: SocketAddr,
    token: String,
}

impl S3Client {
    pub fn new(server: &Server) -> anyhow::Result<S3Client> {
        Ok(S3Client {
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(64)
                .build()?,
            base: server.s3_url(),
            address: server.s3_address,
            token: server.admin_token()?,
        })
    }

    fn request(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
    ) -> reqwest::blocking::RequestBuilder {
        self.http
            .request(method, format!("{}{path_and_query}", self.base))
            .bearer_auth(&self.token)
    }

    fn send(
        &self,
        request: reqwest::blocking::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<String> {
        let response = request
            .send()
            .with_context(|| format!("{what}: the S3 request failed"))?;
        let status = response.status();
        let body = response
            .text()
            .with_context(|| format!("{what}: reading the S3 answer"))?;
        if !status.is_success() {
            bail!("{what}: the S3 listener answered {status}: {body}");
        }
        Ok(body)
    }

    /// Creates a bucket; one that exists already (a deploy creates the buckets its
    /// triggers name) is fine.
    pub fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let response = self
            .request(reqwest::Method::PUT, &format!("/{bucket}"))
            .send()
            .with_context(|| format!("create bucket {bucket}: the S3 request failed"))?;
        let status = response.status();
        if status.is_success() || status.as_u16() == 409 {
            return Ok(());
        }
        let body = response.text().unwrap_or_default();
        bail!("create bucket {bucket}: the S3 listener answered {status}: {body}")
    }

    /// PutObject with a body in memory; returns when the answer has arrived.
    pub fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> anyhow::Result<()> {
        let request = self
            .request(reqwest::Method::PUT, &object_path(bucket, key))
            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            .body(body);
        self.send(request, &format!("put s3://{bucket}/{key}"))?;
        Ok(())
    }

    /// GetObject of a small object, into memory.
    pub fn get_small(&self, bucket: &str, key: &str) -> anyhow::Result<String> {
        let request = self.request(reqwest::Method::GET, &object_path(bucket, key));
        self.send(request, &format!("get s3://{bucket}/{key}"))
    }

    pub fn delete(&self, bucket: &str, key: &str) -> anyhow::Result<()> {
        let request = self.request(reqwest::Method::DELETE, &object_path(bucket, key));
        self.send(request, &format!("delete s3://{bucket}/{key}"))?;
        Ok(())
    }

    /// One ListObjectsV2 request; returns the answer's text (parse it with
    /// [`parse_list_page`]) so a caller can time the request without the parsing.
    pub fn list_raw(&self, bucket: &str, query: &ListQuery) -> anyhow::Result<String> {
        let request = self.request(
            reqwest::Method::GET,
            &format!("/{bucket}?{}", query.query_string()),
        );
        self.send(request, &format!("list s3://{bucket}"))
    }

    fn connect(&self) -> anyhow::Result<TcpStream> {
        let stream = TcpStream::connect(self.address)
            .with_context(|| format!("cannot connect to the S3 listener {}", self.address))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(300)))?;
        stream.set_write_timeout(Some(Duration::from_secs(300)))?;
        Ok(stream)
    }

    fn request_head(&self, method: &str, path: &str, extra: &str) -> String {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             x-amz-content-sha256: UNSIGNED-PAYLOAD\r\n{extra}Connection: close\r\n\r\n",
            self.address, self.token
        )
    }

    /// One streaming PutObject of the file at `source`: the body goes from the file to
    /// the socket without being read into memory.
    pub fn put_file(&self, bucket: &str, key: &str, source: &Path) -> anyhow::Result<Transfer> {
        let mut file =
            File::open(source).with_context(|| format!("cannot open {}", source.display()))?;
        let length = file.metadata()?.len();
        let head = self.request_head(
            "PUT",
            &object_path(bucket, key),
            &format!("Content-Length: {length}\r\nContent-Type: application/octet-stream\r\n"),
        );
        let started = Instant::now();
        let mut stream = self.connect()?;
        stream.write_all(head.as_bytes())?;
        let sent = std::io::copy(&mut file, &mut stream);
        let body_sent = started.elapsed();
        let mut answer = Vec::new();
        let read = stream.read_to_end(&mut answer);
        let total = started.elapsed();
        let answer = String::from_utf8_lossy(&answer);
        let sent = sent.with_context(|| {
            format!("put s3://{bucket}/{key}: sending the body failed; the answer so far: {answer}")
        })?;
        read.with_context(|| format!("put s3://{bucket}/{key}: reading the answer"))?;
        if sent != length {
            bail!("put s3://{bucket}/{key}: sent {sent} of {length} bytes");
        }
        if !answer.starts_with("HTTP/1.1 200") {
            bail!("put s3://{bucket}/{key}: the S3 listener answered: {answer}");
        }
        Ok(Transfer {
            total,
            first_phase: body_sent,
            bytes: length,
        })
    }

    /// A multipart upload of the file at `source` the way `aws s3 cp` does one: parts of
    /// `part_size` bytes read into memory and sent by `concurrency` threads at once, then
    /// CompleteMultipartUpload. Returns when the completion's answer has arrived.
    pub fn put_file_multipart(
        &self,
        bucket: &str,
        key: &str,
        source: &Path,
        part_size: u64,
        concurrency: usize,
    ) -> anyhow::Result<Transfer> {
        let length = std::fs::metadata(source)
            .with_context(|| format!("cannot read {}", source.display()))?
            .len();
        let path = object_path(bucket, key);
        let what = format!("multipart upload to s3://{bucket}/{key}");
        let started = Instant::now();
        let created = self.send(
            self.request(reqwest::Method::POST, &format!("{path}?uploads")),
            &what,
        )?;
        let upload_id = tag_texts(&created, "UploadId")
            .first()
            .map(|text| xml_unescape(text))
            .with_context(|| format!("{what}: no UploadId in {created}"))?;
        let parts = length.div_ceil(part_size).max(1);
        let next = std::sync::atomic::AtomicU64::new(1);
        let etags = std::sync::Mutex::new(vec![String::new(); parts as usize]);
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let workers: Vec<_> = (0..concurrency)
                .map(|_| {
                    scope.spawn(|| -> anyhow::Result<()> {
                        let mut file = File::open(source)?;
                        loop {
                            let number = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if number > parts {
                                return Ok(());
                            }
                            let offset = (number - 1) * part_size;
                            let mut body = vec![0; part_size.min(length - offset) as usize];
                            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset))?;
                            file.read_exact(&mut body)?;
                            let response = self
                                .request(
                                    reqwest::Method::PUT,
                                    &format!(
                                        "{path}?partNumber={number}&uploadId={}",
                                        percent_encode(&upload_id, false)
                                    ),
                                )
                                .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
                                .body(body)
                                .send()
                                .with_context(|| format!("{what}: part {number} failed"))?;
                            if !response.status().is_success() {
                                bail!("{what}: part {number}: {}", response.status());
                            }
                            let etag = response
                                .headers()
                                .get("etag")
                                .and_then(|value| value.to_str().ok())
                                .with_context(|| format!("{what}: part {number} has no ETag"))?
                                .to_owned();
                            etags.lock().expect("no worker panics holding it")
                                [(number - 1) as usize] = etag;
                        }
                    })
                })
                .collect();
            for worker in workers {
                worker.join().expect("a part upload thread panicked")?;
            }
            Ok(())
        })?;
        let mut complete = String::from("<CompleteMultipartUpload>");
        for (index, etag) in etags
            .into_inner()
            .expect("no worker panicked")
            .iter()
            .enumerate()
        {
            complete.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{etag}</ETag></Part>",
                index + 1
            ));
        }
        complete.push_str("</CompleteMultipartUpload>");
        let answer = self.send(
            self.request(
                reqwest::Method::POST,
                &format!("{path}?uploadId={}", percent_encode(&upload_id, false)),
            )
            .body(complete),
            &what,
        )?;
        if !answer.contains("<ETag>") {
            bail!("{what}: CompleteMultipartUpload answered {answer}");
        }
        let total = started.elapsed();
        Ok(Transfer {
            total,
            first_phase: total,
            bytes: length,
        })
    }

    /// One streaming GetObject written to `target` (created; not fsynced).
    pub fn get_to_file(&self, bucket: &str, key: &str, target: &Path) -> anyhow::Result<Transfer> {
        let head = self.request_head("GET", &object_path(bucket, key), "");
        let started = Instant::now();
        let mut stream = self.connect()?;
        stream.write_all(head.as_bytes())?;
        let mut reader = BufReader::with_capacity(1 << 20, stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line)?;
        let mut content_length = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                bail!("get s3://{bucket}/{key}: the answer ended inside its head");
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                if name == "content-length" {
                    content_length = value.trim().parse::<u64>().ok();
                } else if name == "transfer-encoding" {
                    bail!("get s3://{bucket}/{key}: a chunked answer; the bench reads only Content-Length bodies");
                }
            }
        }
        let head_read = started.elapsed();
        if !status_line.starts_with("HTTP/1.1 200") {
            let mut body = String::new();
            let _ = reader.read_to_string(&mut body);
            bail!(
                "get s3://{bucket}/{key}: the S3 listener answered {}: {body}",
                status_line.trim()
            );
        }
        let length = content_length.with_context(|| {
            format!("get s3://{bucket}/{key}: the answer has no Content-Length")
        })?;
        let mut file =
            File::create(target).with_context(|| format!("cannot create {}", target.display()))?;
        let mut buffer = vec![0u8; 1 << 20];
        let mut received = 0u64;
        while received < length {
            let want = usize::try_from(length - received)
                .unwrap_or(usize::MAX)
                .min(buffer.len());
            let read = reader.read(&mut buffer[..want])?;
            if read == 0 {
                bail!(
                    "get s3://{bucket}/{key}: the answer ended after {received} of {length} bytes"
                );
            }
            file.write_all(&buffer[..read])?;
            received += read as u64;
        }
        let total = started.elapsed();
        Ok(Transfer {
            total,
            first_phase: head_read,
            bytes: received,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::s3::{parse_list_page, percent_encode};

    fn check_encode(text: &str, keep_slash: bool, expect: &str) {
        assert_eq!(percent_encode(text, keep_slash), expect, "{text:?}");
    }

    #[test]
    fn encoding() {
        check_encode("d042/f001.csv", true, "d042/f001.csv");
        check_encode("d042/", false, "d042%2F");
        check_encode("a b+c", true, "a%20b%2Bc");
        check_encode("k6430", false, "k6430");
    }

    fn check_page(xml: &str, expect: Option<(Vec<&str>, usize, Option<&str>, bool)>) {
        let got = parse_list_page(xml).ok().map(|page| {
            (
                page.keys,
                page.common_prefixes,
                page.next_token,
                page.truncated,
            )
        });
        let expect = expect.map(|(keys, prefixes, token, truncated)| {
            (
                keys.into_iter().map(str::to_owned).collect::<Vec<_>>(),
                prefixes,
                token.map(str::to_owned),
                truncated,
            )
        });
        assert_eq!(got, expect, "{xml}");
    }

    #[test]
    fn list_pages() {
        check_page(
            "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>a&amp;b</Key></Contents>\
             <Contents><Key>c</Key></Contents><NextContinuationToken>k63</NextContinuationToken></ListBucketResult>",
            Some((vec!["a&b", "c"], 0, Some("k63"), true)),
        );
        check_page(
            "<ListBucketResult><IsTruncated>false</IsTruncated><CommonPrefixes><Prefix>d1/</Prefix></CommonPrefixes>\
             <CommonPrefixes><Prefix>d2/</Prefix></CommonPrefixes></ListBucketResult>",
            Some((vec![], 2, None, false)),
        );
        check_page("<Error><Code>NoSuchBucket</Code></Error>", None);
        check_page("<ListBucketResult></ListBucketResult>", None);
    }
}
