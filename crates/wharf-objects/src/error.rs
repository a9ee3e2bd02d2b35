use std::path::Path;

use wharf_store::StoreError;

/// Errors of the object layer. The S3 front end maps them to S3 error codes, the API to
/// HTTP statuses.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("bucket \"{0}\" does not exist")]
    NoSuchBucket(String),
    #[error("object \"{key}\" does not exist in bucket \"{bucket}\"")]
    NoSuchKey { bucket: String, key: String },
    #[error("multipart upload {0} does not exist (completed, aborted or never created)")]
    NoSuchUpload(String),
    #[error("bucket \"{0}\" already exists")]
    BucketExists(String),
    #[error("{0}")]
    BucketNotEmpty(String),
    #[error("invalid bucket name \"{name}\": {reason}")]
    InvalidBucketName { name: String, reason: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    InvalidPart(String),
    #[error("the object is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the request body ended early or could not be read: {0}")]
    BodyRead(String),
    #[error("the Content-MD5 sent does not match the body received")]
    BadDigest,
    #[error("the range does not overlap the object (size {size})")]
    InvalidRange { size: u64 },
    #[error("a precondition (If-Match, If-None-Match, ...) did not hold")]
    PreconditionFailed,
    #[error("not modified")]
    NotModified,
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("the bytes of blob {0} are missing from the blob store")]
    BlobMissing(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ObjectError {
    pub fn io(path: &Path, source: std::io::Error) -> ObjectError {
        ObjectError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

pub type ObjectResult<T> = Result<T, ObjectError>;
