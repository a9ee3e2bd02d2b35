//! Conversions between s3s's types and ours, and S3's error codes for our errors.

use std::collections::BTreeMap;

use futures::StreamExt;
use s3s::dto::{ETag, ETagCondition, Metadata, Object, StreamingBlob, Timestamp};
use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};
use wharf_store::ObjectRow;

use crate::blob::ByteStream;
use crate::error::ObjectError;

pub fn map_error(error: ObjectError) -> S3Error {
    let message = error.to_string();
    let code = match &error {
        ObjectError::NoSuchBucket(_) => S3ErrorCode::NoSuchBucket,
        ObjectError::NoSuchKey { .. } => S3ErrorCode::NoSuchKey,
        ObjectError::NoSuchUpload(_) => S3ErrorCode::NoSuchUpload,
        ObjectError::BucketExists(_) => S3ErrorCode::BucketAlreadyOwnedByYou,
        ObjectError::BucketNotEmpty(_) => S3ErrorCode::BucketNotEmpty,
        ObjectError::InvalidBucketName { .. } => S3ErrorCode::InvalidBucketName,
        ObjectError::InvalidArgument(_) => S3ErrorCode::InvalidArgument,
        ObjectError::InvalidPart(text) if text.contains("InvalidPartOrder") => {
            S3ErrorCode::InvalidPartOrder
        }
        ObjectError::InvalidPart(text) if text.contains("EntityTooSmall") => {
            S3ErrorCode::EntityTooSmall
        }
        ObjectError::InvalidPart(_) => S3ErrorCode::InvalidPart,
        ObjectError::TooLarge { .. } => S3ErrorCode::EntityTooLarge,
        ObjectError::BodyRead(_) => S3ErrorCode::IncompleteBody,
        ObjectError::BadDigest => S3ErrorCode::BadDigest,
        ObjectError::InvalidRange { .. } => S3ErrorCode::InvalidRange,
        ObjectError::PreconditionFailed => S3ErrorCode::PreconditionFailed,
        ObjectError::NotModified => S3ErrorCode::NotModified,
        ObjectError::AccessDenied(_) => S3ErrorCode::AccessDenied,
        ObjectError::BlobMissing(_)
        | ObjectError::Io { .. }
        | ObjectError::Store(_)
        | ObjectError::Internal(_) => {
            tracing::error!(%error, "An S3 request failed inside the server.");
            return s3_error!(
                InternalError,
                "We encountered an internal error. Please try again."
            );
        }
    };
    S3Error::with_message(code, message)
}

pub fn etag(hex: &str) -> ETag {
    ETag::Strong(hex.to_owned())
}

pub fn timestamp(millis: i64) -> Timestamp {
    let nanos = i128::from(millis) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .into()
}

fn millis_of(timestamp: &Timestamp) -> i64 {
    let time: time::OffsetDateTime = timestamp.clone().into();
    (time.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn metadata_from(metadata: Option<Metadata>) -> BTreeMap<String, String> {
    metadata
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key.to_ascii_lowercase(), value))
        .collect()
}

pub fn metadata_to(metadata: &BTreeMap<String, String>) -> Option<Metadata> {
    (!metadata.is_empty()).then(|| {
        metadata
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    })
}

/// The request body as a blob stream, ending once it passed `limit` bytes (the blob
/// writer then answers EntityTooLarge; see [`DrainOverflow`]).
pub fn to_blob_stream(body: Option<StreamingBlob>, limit: u64) -> ByteStream {
    match body {
        Some(body) => Box::pin(DrainOverflow {
            inner: Box::pin(body.map(|chunk| chunk.map_err(std::io::Error::other))),
            limit,
            seen: 0,
            overflow: None,
            drained: 0,
            done: false,
        }),
        None => crate::service::bytes_stream(bytes::Bytes::new()),
    }
}

/// How much of a body past the size limit is read and dropped before the answer.
const OVERFLOW_DRAIN_LIMIT: u64 = 16 << 20;

/// A body stream that, once it has passed its limit, reads and drops what the client is
/// still sending (up to [`OVERFLOW_DRAIN_LIMIT`]) before it yields the chunk that passed
/// the limit and ends. Without this the server answers EntityTooLarge and closes the
/// connection while the client is still writing, and the client sees a broken pipe
/// instead of the error.
struct DrainOverflow {
    inner: ByteStream,
    limit: u64,
    seen: u64,
    /// The chunk that passed the limit, held back while the rest is drained.
    overflow: Option<bytes::Bytes>,
    drained: u64,
    done: bool,
}

impl futures::Stream for DrainOverflow {
    type Item = Result<bytes::Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let polled = this.inner.poll_next_unpin(context);
            if this.overflow.is_some() {
                match polled {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(chunk)))
                        if this.drained + chunk.len() as u64 <= OVERFLOW_DRAIN_LIMIT =>
                    {
                        this.drained += chunk.len() as u64;
                    }
                    Poll::Ready(_) => {
                        this.done = true;
                        return Poll::Ready(this.overflow.take().map(Ok));
                    }
                }
                continue;
            }
            match polled {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.seen += chunk.len() as u64;
                    if this.seen <= this.limit {
                        return Poll::Ready(Some(Ok(chunk)));
                    }
                    this.overflow = Some(chunk);
                }
                other => return other,
            }
        }
    }
}

pub fn object_entry(row: &ObjectRow, url: bool) -> Object {
    Object {
        key: Some(encode_if(url, row.key.clone())),
        size: Some(row.size),
        e_tag: Some(etag(&row.etag)),
        last_modified: Some(timestamp(row.last_modified)),
        storage_class: Some(s3s::dto::ObjectStorageClass::from_static(
            s3s::dto::ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

fn condition_matches(condition: &ETagCondition, etag: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(tag) => tag.value() == etag,
    }
}

/// If-Match / If-None-Match / If-(Un)Modified-Since, in RFC 9110's order of precedence.
pub fn check_conditions(
    row: &ObjectRow,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let modified_seconds = row.last_modified / 1000;
    if let Some(condition) = if_match {
        if !condition_matches(condition, &row.etag) {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
    } else if let Some(since) = if_unmodified_since {
        if modified_seconds > millis_of(since) / 1000 {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
    }
    if let Some(condition) = if_none_match {
        if condition_matches(condition, &row.etag) {
            return Err(S3Error::new(S3ErrorCode::NotModified));
        }
    } else if let Some(since) = if_modified_since {
        if modified_seconds <= millis_of(since) / 1000 {
            return Err(S3Error::new(S3ErrorCode::NotModified));
        }
    }
    Ok(())
}

/// Percent-encodes a key for `encoding-type=url` listings (clients decode it).
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Applies the listing's `encoding-type` to a key or prefix.
pub fn encode_if(url: bool, text: String) -> String {
    if url {
        url_encode(&text)
    } else {
        text
    }
}

/// Whether a listing asked for `encoding-type=url`.
pub fn url_encoding(encoding: Option<&s3s::dto::EncodingType>) -> bool {
    encoding.is_some_and(|encoding| encoding.as_str() == s3s::dto::EncodingType::URL)
}

/// A listing's `Contents`, keys encoded as asked.
pub fn object_entries(rows: &[ObjectRow], url: bool) -> Vec<Object> {
    rows.iter().map(|row| object_entry(row, url)).collect()
}

/// A listing's `CommonPrefixes`, encoded as asked.
pub fn common_prefixes(prefixes: Vec<String>, url: bool) -> Vec<s3s::dto::CommonPrefix> {
    prefixes
        .into_iter()
        .map(|prefix| s3s::dto::CommonPrefix {
            prefix: Some(encode_if(url, prefix)),
        })
        .collect()
}
