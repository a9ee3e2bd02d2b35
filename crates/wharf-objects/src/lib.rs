//! Buckets and objects: blob backends ([`blob`]), object metadata and events through the
//! store ([`Objects`]), listing ([`list`]), multipart uploads, S3 access keys ([`keys`])
//! and the S3 protocol listener ([`s3`]).

pub mod blob;
pub mod blob_s3;
mod error;
pub mod events;
pub mod keys;
pub mod list;
mod multipart;
pub mod s3;
mod service;

pub use crate::blob::{BlobStore, ByteStream, FsBlobStore, WrittenBlob};
pub use crate::blob_s3::{S3BlobConfig, S3BlobStore};
pub use crate::error::{ObjectError, ObjectResult};
pub use crate::keys::{IssuedKey, KeyGrant};
pub use crate::list::{ListPage, ListRequest};
pub use crate::service::{
    bytes_stream, etag_hex, metadata_map, multipart_etag, validate_bucket_name, validate_key,
    Objects, ObjectsConfig, PutOptions,
};
