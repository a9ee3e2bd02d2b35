//! [`Objects`]: buckets and objects over a blob backend and the store. The S3 listener,
//! the executor (staging inputs, uploading outputs, archiving) and the API all go through
//! it, so every change writes its event the same way.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use tokio::sync::Notify;
use wharf_store::{Bucket, ObjectRow, Store, StoreError};

use crate::blob::{BlobStore, ByteStream};
use crate::error::{ObjectError, ObjectResult};
use crate::events::{self, Reason};

/// S3's limits, which clients expect.
pub const MAX_KEY_BYTES: usize = 1024;

#[derive(Debug, Clone)]
pub struct ObjectsConfig {
    /// Largest single PUT, part or copied object, in bytes.
    pub max_object_size: u64,
}

impl Default for ObjectsConfig {
    fn default() -> Self {
        ObjectsConfig {
            max_object_size: 5 * 1024 * 1024 * 1024,
        }
    }
}

/// What a PUT carries besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Base64 MD5 the client computed (`Content-MD5`); a mismatch is `BadDigest`.
    pub content_md5: Option<String>,
    /// Who wrote it (`detail.requester` of the event).
    pub requester: String,
}

/// Buckets and objects. Cheap to clone.
#[derive(Clone)]
pub struct Objects {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) config: ObjectsConfig,
    pub(crate) secrets: wharf_auth::SecretBox,
    pub(crate) events_written: Notify,
    pub(crate) garbage_pending: Notify,
}

pub fn etag_hex(md5: &[u8; 16]) -> String {
    hex::encode(md5)
}

/// S3's rule for a multipart object's ETag: the MD5 of the parts' binary MD5s, then `-N`.
pub fn multipart_etag(part_etags: &[String]) -> ObjectResult<String> {
    let mut hasher = Md5::new();
    for etag in part_etags {
        let bytes = hex::decode(etag)
            .map_err(|_| ObjectError::InvalidPart(format!("part ETag {etag:?} is not hex")))?;
        hasher.update(&bytes);
    }
    Ok(format!(
        "{}-{}",
        hex::encode(hasher.finalize()),
        part_etags.len()
    ))
}

/// Checks a bucket name against S3's rules, saying which one is broken.
pub fn validate_bucket_name(name: &str) -> ObjectResult<()> {
    wharf_model::name::validate_bucket_name(name).map_err(|reason| ObjectError::InvalidBucketName {
        name: name.to_owned(),
        reason,
    })
}

pub fn validate_key(key: &str) -> ObjectResult<()> {
    if key.is_empty() {
        return Err(ObjectError::InvalidArgument(
            "an object key must not be empty".into(),
        ));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ObjectError::InvalidArgument(format!(
            "an object key must be at most {MAX_KEY_BYTES} bytes of UTF-8 (this one has {})",
            key.len()
        )));
    }
    Ok(())
}

pub(crate) fn metadata_json(metadata: &BTreeMap<String, String>) -> String {
    serde_json::to_string(metadata).unwrap_or_else(|_| "{}".into())
}

pub fn metadata_map(stored: &str) -> BTreeMap<String, String> {
    serde_json::from_str(stored).unwrap_or_default()
}

fn check_md5(expected_base64: Option<&str>, md5: &[u8; 16]) -> ObjectResult<()> {
    let Some(expected) = expected_base64 else {
        return Ok(());
    };
    let decoded = base64_decode(expected.trim()).ok_or_else(|| {
        ObjectError::InvalidArgument("Content-MD5 is not valid base64 of 16 bytes".into())
    })?;
    if decoded.len() != 16 {
        return Err(ObjectError::InvalidArgument(
            "Content-MD5 is not valid base64 of 16 bytes".into(),
        ));
    }
    if decoded != md5 {
        return Err(ObjectError::BadDigest);
    }
    Ok(())
}

/// Standard base64 (with padding) decoding; None on any invalid input.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.trim_end_matches('=').as_bytes();
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for &byte in bytes {
        let value = ALPHABET.iter().position(|&c| c == byte)? as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

impl Objects {
    pub fn new(
        store: Store,
        blobs: Arc<dyn BlobStore>,
        secrets: wharf_auth::SecretBox,
        config: ObjectsConfig,
    ) -> Objects {
        Objects {
            inner: Arc::new(Inner {
                store,
                blobs,
                config,
                secrets,
                events_written: Notify::new(),
                garbage_pending: Notify::new(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The server's secret box (S3 secret keys, git credentials).
    pub fn secrets(&self) -> &wharf_auth::SecretBox {
        &self.inner.secrets
    }

    pub fn config(&self) -> &ObjectsConfig {
        &self.inner.config
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.inner.blobs
    }

    /// Wakes when an event has been written (the dispatcher waits on this).
    pub async fn event_written(&self) {
        self.inner.events_written.notified().await;
    }

    pub(crate) fn events_changed(&self) {
        self.inner.events_written.notify_one();
    }

    /// Tells the dispatcher about events written elsewhere (e.g. by the API).
    pub fn announce_events(&self) {
        self.events_changed();
    }

    pub(crate) fn garbage_changed(&self) {
        self.inner.garbage_pending.notify_one();
    }

    // ----- buckets -----

    pub async fn create_bucket(&self, name: &str, owner_id: &str) -> ObjectResult<Bucket> {
        validate_bucket_name(name)?;
        let bucket = Bucket {
            name: name.to_owned(),
            owner_id: owner_id.to_owned(),
            public_read: false,
            created_at: wharf_store::now_millis(),
        };
        match self.inner.store.create_bucket(&bucket).await {
            Ok(()) => {
                tracing::info!(bucket = name, "Created a bucket.");
                Ok(bucket)
            }
            Err(StoreError::Conflict(_)) => Err(ObjectError::BucketExists(name.to_owned())),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn bucket(&self, name: &str) -> ObjectResult<Bucket> {
        self.inner
            .store
            .find_bucket(name)
            .await?
            .ok_or_else(|| ObjectError::NoSuchBucket(name.to_owned()))
    }

    pub async fn list_buckets(&self) -> ObjectResult<Vec<Bucket>> {
        Ok(self.inner.store.list_buckets().await?)
    }

    pub async fn delete_bucket(&self, name: &str) -> ObjectResult<()> {
        match self.inner.store.delete_bucket(name).await {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound(_)) => Err(ObjectError::NoSuchBucket(name.to_owned())),
            Err(StoreError::Conflict(message)) => Err(ObjectError::BucketNotEmpty(message)),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn set_public_read(&self, name: &str, public_read: bool) -> ObjectResult<()> {
        match self
            .inner
            .store
            .set_bucket_public_read(name, public_read)
            .await
        {
            Err(StoreError::NotFound(_)) => Err(ObjectError::NoSuchBucket(name.to_owned())),
            other => Ok(other?),
        }
    }

    // ----- objects -----

    /// Stores an object: the bytes durably first, then its metadata and its event in one
    /// transaction. Answering after this returns means the upload is never lost.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        options: PutOptions,
    ) -> ObjectResult<ObjectRow> {
        self.put_object_with_reason(bucket, key, body, options, Reason::PutObject)
            .await
    }

    pub(crate) async fn put_object_with_reason(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        options: PutOptions,
        reason: Reason,
    ) -> ObjectResult<ObjectRow> {
        validate_key(key)?;
        self.bucket(bucket).await?;
        let written = self
            .inner
            .blobs
            .write(body, self.inner.config.max_object_size)
            .await?;
        if let Err(error) = check_md5(options.content_md5.as_deref(), &written.md5) {
            self.discard_blob(&written.id).await;
            return Err(error);
        }
        let now = wharf_store::now_millis();
        let row = ObjectRow {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            blob_id: written.id.clone(),
            size: written.size as i64,
            etag: etag_hex(&written.md5),
            content_type: options.content_type,
            metadata: metadata_json(&options.metadata),
            parts_count: None,
            last_modified: now,
        };
        let event = events::object_created(
            bucket,
            key,
            row.size,
            &row.etag,
            reason,
            &options.requester,
            now,
        );
        match self.inner.store.put_object(&row, &event).await {
            Ok(_) => {}
            Err(error) if error.is_foreign_key_violation() => {
                self.discard_blob(&written.id).await;
                return Err(ObjectError::NoSuchBucket(bucket.to_owned()));
            }
            Err(error) => {
                self.discard_blob(&written.id).await;
                return Err(error.into());
            }
        }
        self.events_changed();
        self.garbage_changed();
        Ok(row)
    }

    async fn discard_blob(&self, blob_id: &str) {
        if self.inner.blobs.delete(blob_id).await.is_err() {
            let _ = self.inner.store.add_blob_garbage(blob_id).await;
        }
    }

    pub async fn head_object(&self, bucket: &str, key: &str) -> ObjectResult<ObjectRow> {
        match self.inner.store.find_object(bucket, key).await? {
            Some(row) => Ok(row),
            None => {
                self.bucket(bucket).await?;
                Err(ObjectError::NoSuchKey {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                })
            }
        }
    }

    /// The bytes `offset..offset + length` of an object.
    pub async fn read_object(
        &self,
        row: &ObjectRow,
        offset: u64,
        length: u64,
    ) -> ObjectResult<ByteStream> {
        if !row.blob_id.starts_with('[') {
            return self.inner.blobs.read(&row.blob_id, offset, length).await;
        }
        let parts: Vec<(String, i64)> = serde_json::from_str(&row.blob_id).map_err(|error| {
            ObjectError::Internal(format!(
                "object {} has a damaged part list: {error}",
                row.key
            ))
        })?;
        let mut pieces = Vec::new();
        let mut part_start = 0u64;
        let end = offset + length;
        for (id, size) in parts {
            let size = size.max(0) as u64;
            let part_end = part_start + size;
            if part_end > offset && part_start < end {
                let from = offset.saturating_sub(part_start);
                let to = end.min(part_end) - part_start;
                pieces.push((id, from, to - from));
            }
            part_start = part_end;
        }
        let blobs = self.inner.blobs.clone();
        let stream = futures::stream::iter(pieces)
            .then(move |(id, from, len)| {
                let blobs = blobs.clone();
                async move {
                    blobs
                        .read(&id, from, len)
                        .await
                        .map_err(|error| std::io::Error::other(error.to_string()))
                }
            })
            .map(|opened| match opened {
                Ok(stream) => stream,
                Err(error) => Box::pin(futures::stream::once(async move { Err(error) })),
            })
            .flatten();
        Ok(Box::pin(sync_wrapper::SyncStream::new(stream)))
    }

    /// Deletes an object; deleting a missing key succeeds (as in S3) without an event.
    pub async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        requester: &str,
    ) -> ObjectResult<bool> {
        self.bucket(bucket).await?;
        let now = wharf_store::now_millis();
        let etag = self
            .inner
            .store
            .find_object(bucket, key)
            .await?
            .map(|row| row.etag)
            .unwrap_or_default();
        let event = events::object_deleted(bucket, key, &etag, requester, now);
        let deleted = self.inner.store.delete_object(bucket, key, &event).await?;
        if deleted.is_some() {
            self.events_changed();
            self.garbage_changed();
        }
        Ok(deleted.is_some())
    }

    /// Copies an object (its bytes into a new blob). `metadata` None keeps the source's
    /// content type and metadata (`COPY`), Some replaces them (`REPLACE`).
    pub async fn copy_object(
        &self,
        source_bucket: &str,
        source_key: &str,
        bucket: &str,
        key: &str,
        replace: Option<PutOptions>,
        requester: &str,
    ) -> ObjectResult<ObjectRow> {
        let source = self.head_object(source_bucket, source_key).await?;
        let body = self
            .read_object(&source, 0, source.size.max(0) as u64)
            .await?;
        let options = match replace {
            Some(mut options) => {
                options.requester = requester.to_owned();
                options.content_md5 = None;
                options
            }
            None => PutOptions {
                content_type: source.content_type.clone(),
                metadata: metadata_map(&source.metadata),
                content_md5: None,
                requester: requester.to_owned(),
            },
        };
        self.put_object_with_reason(bucket, key, body, options, Reason::CopyObject)
            .await
    }

    /// Downloads an object into a file (staging a run's input). The file is written
    /// whole or not at all.
    pub async fn download_to_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
    ) -> ObjectResult<ObjectRow> {
        use tokio::io::AsyncWriteExt;
        let row = self.head_object(bucket, key).await?;
        let mut stream = self.read_object(&row, 0, row.size.max(0) as u64).await?;
        let temp = path.with_extension("wharf-partial");
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(|source| ObjectError::io(&temp, source))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| ObjectError::io(path, source))?;
            file.write_all(&chunk)
                .await
                .map_err(|source| ObjectError::io(&temp, source))?;
        }
        file.flush()
            .await
            .map_err(|source| ObjectError::io(&temp, source))?;
        drop(file);
        tokio::fs::rename(&temp, path)
            .await
            .map_err(|source| ObjectError::io(path, source))?;
        Ok(row)
    }

    /// Uploads a file as an object.
    pub async fn upload_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        options: PutOptions,
    ) -> ObjectResult<ObjectRow> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| ObjectError::io(path, source))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
        self.put_object(bucket, key, Box::pin(stream), options)
            .await
    }

    /// Deletes blobs that lost their last reference. Runs until the server stops.
    pub async fn garbage_loop(self) {
        self.sweep_orphans().await;
        loop {
            match self.collect_garbage().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "Could not delete unreferenced blobs."),
            }
            let _ = tokio::time::timeout(
                Duration::from_secs(60),
                self.inner.garbage_pending.notified(),
            )
            .await;
        }
    }

    /// Deletes one batch of garbage; true when there may be more.
    pub async fn collect_garbage(&self) -> ObjectResult<bool> {
        let batch = self.inner.store.blob_garbage(256).await?;
        for id in &batch {
            self.inner.blobs.delete(id).await?;
            self.inner.store.forget_blob_garbage(id).await?;
        }
        Ok(batch.len() == 256)
    }

    /// Blobs written but never referenced (the server died between writing the bytes and
    /// committing the metadata) are deleted once they are an hour old.
    pub async fn sweep_orphans(&self) {
        let candidates = match self
            .inner
            .blobs
            .ids_older_than(Duration::from_secs(3600))
            .await
        {
            Ok(ids) if !ids.is_empty() => ids,
            _ => return,
        };
        let Ok(referenced) = self.inner.store.referenced_blob_ids().await else {
            return;
        };
        let mut removed = 0;
        for id in candidates.iter().filter(|id| !referenced.contains(*id)) {
            if self.inner.blobs.delete(id).await.is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                "Deleted blobs no object refers to (left by a crash)."
            );
        }
    }
}

/// A stream of one in-memory buffer (tests, small uploads).
pub fn bytes_stream(bytes: impl Into<Bytes>) -> ByteStream {
    let bytes = bytes.into();
    Box::pin(futures::stream::once(async move { Ok(bytes) }))
}
