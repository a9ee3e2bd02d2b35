//! Flexible checksums: the `x-amz-checksum-{crc32,crc32c,crc64nvme,sha1,sha256}` values a
//! client sends in headers or in an aws-chunked trailer (boto3, aws-cli and the AWS SDKs
//! send CRC32 by default) are checked against the bytes received, before the object or
//! part is stored. A mismatch is S3's `BadDigest`.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use s3s::checksum::ChecksumHasher;
use s3s::{s3_error, S3Error, TrailingHeaders};

use crate::blob::ByteStream;

const ALGORITHMS: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

/// The checksums a request announces for its body.
pub struct ChecksumCheck {
    /// (algorithm, base64 value) sent as headers.
    headers: Vec<(&'static str, String)>,
    /// Algorithms whose value comes in the trailer (`x-amz-trailer`).
    trailer: Vec<&'static str>,
    trailers: Option<TrailingHeaders>,
    failure: Arc<Mutex<Option<String>>>,
}

fn algorithm_of(header: &str) -> Option<&'static str> {
    let name = header.trim().to_ascii_lowercase();
    let name = name.strip_prefix("x-amz-checksum-")?;
    ALGORITHMS.into_iter().find(|algorithm| *algorithm == name)
}

impl ChecksumCheck {
    pub fn new(headers: &http::HeaderMap, trailers: Option<TrailingHeaders>) -> ChecksumCheck {
        let from_headers = ALGORITHMS
            .into_iter()
            .filter_map(|algorithm| {
                let value = headers.get(format!("x-amz-checksum-{algorithm}"))?;
                Some((algorithm, value.to_str().ok()?.trim().to_owned()))
            })
            .collect();
        let trailer = headers
            .get_all("x-amz-trailer")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(algorithm_of)
            .collect();
        ChecksumCheck {
            headers: from_headers,
            trailer,
            trailers,
            failure: Arc::default(),
        }
    }

    /// The body, hashed as it streams; at its end a mismatch becomes a read error (so the
    /// blob is discarded) and [`ChecksumCheck::bad_digest`] says which checksum differed.
    pub fn wrap(&self, body: ByteStream) -> ByteStream {
        if self.headers.is_empty() && self.trailer.is_empty() {
            return body;
        }
        let mut hasher = ChecksumHasher::default();
        for algorithm in self
            .headers
            .iter()
            .map(|(a, _)| *a)
            .chain(self.trailer.clone())
        {
            match algorithm {
                "crc32" => hasher.crc32 = Some(Default::default()),
                "crc32c" => hasher.crc32c = Some(Default::default()),
                "crc64nvme" => hasher.crc64nvme = Some(Default::default()),
                "sha1" => hasher.sha1 = Some(Default::default()),
                _ => hasher.sha256 = Some(Default::default()),
            }
        }
        let expected_headers = self.headers.clone();
        let trailer = self.trailer.clone();
        let trailers = self.trailers.clone();
        let failure = self.failure.clone();
        let stream = futures::stream::unfold((body, Some(hasher)), move |(mut body, hasher)| {
            let (expected_headers, trailer, trailers, failure) = (
                expected_headers.clone(),
                trailer.clone(),
                trailers.clone(),
                failure.clone(),
            );
            async move {
                let mut hasher = hasher?;
                match body.next().await {
                    Some(Ok(chunk)) => {
                        hasher.update(&chunk);
                        Some((Ok(chunk), (body, Some(hasher))))
                    }
                    Some(Err(error)) => Some((Err(error), (body, None))),
                    None => {
                        let computed = hasher.finalize();
                        let mut expected = expected_headers;
                        for algorithm in trailer {
                            let name = format!("x-amz-checksum-{algorithm}");
                            let value = trailers.as_ref().and_then(|trailers| {
                                trailers.read(|map| {
                                    map.get(&name)
                                        .and_then(|v| v.to_str().ok())
                                        .map(|v| v.trim().to_owned())
                                })
                            });
                            if let Some(Some(value)) = value {
                                expected.push((algorithm, value));
                            }
                        }
                        let mismatch = expected.iter().find_map(|(algorithm, sent)| {
                                let got = match *algorithm {
                                    "crc32" => computed.checksum_crc32.as_deref(),
                                    "crc32c" => computed.checksum_crc32c.as_deref(),
                                    "crc64nvme" => computed.checksum_crc64nvme.as_deref(),
                                    "sha1" => computed.checksum_sha1.as_deref(),
                                    _ => computed.checksum_sha256.as_deref(),
                                };
                                (got != Some(sent.as_str())).then(|| {
                                    format!(
                                        "The {} you specified ({sent}) did not match the checksum of the bytes received ({})",
                                        algorithm.to_ascii_uppercase(),
                                        got.unwrap_or("none")
                                    )
                                })
                            });
                        // All matched: the stream ends.
                        let mismatch = mismatch?;
                        if let Ok(mut slot) = failure.lock() {
                            *slot = Some(mismatch.clone());
                        }
                        Some((Err(std::io::Error::other(mismatch)), (body, None)))
                    }
                }
            }
        });
        Box::pin(sync_wrapper::SyncStream::new(stream))
    }

    /// `BadDigest` when the body did not match a checksum the client sent.
    pub fn bad_digest(&self) -> Option<S3Error> {
        let message = self.failure.lock().ok()?.clone()?;
        Some(s3_error!(BadDigest, "{message}"))
    }
}
