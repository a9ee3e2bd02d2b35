//! Blobs in an S3 bucket (AWS S3, MinIO, Garage, another Wharf) through the
//! `object_store` crate: `PREFIX/blobs/XY/ID`, the same layout as [`crate::FsBlobStore`].
//! Object keys never reach the bucket: only the ids Wharf makes.
//!
//! A write goes up as one PUT when the body fits in one part, else as a multipart upload
//! of equal parts with at most [`PARTS_IN_FLIGHT`] parts on the wire and one filling, so a
//! write holds a few parts in memory whatever its size. It returns once the store has
//! acknowledged the PUT or the completed upload. A body over the limit, a body that fails
//! and a dropped write abort the multipart upload.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use tokio::task::JoinSet;

use crate::blob::{new_blob_id, BlobStore, ByteStream, WrittenBlob};
use crate::error::{ObjectError, ObjectResult};

/// S3's smallest part (all but the last part of an upload).
pub const MIN_S3_PART_SIZE: usize = 5 * 1024 * 1024;
/// S3's largest part.
pub const MAX_S3_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// S3's largest number of parts in one upload.
const MAX_S3_PARTS: u64 = 10_000;
/// Parts uploading at once during one write.
pub const PARTS_IN_FLIGHT: usize = 2;

/// Where the S3 blob store is and how to reach it.
#[derive(Clone)]
pub struct S3BlobConfig {
    /// `http://host:port` or `https://host` (no bucket in it: requests are path-style).
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// A folder inside the bucket (`team/wharf`); blobs go to `PREFIX/blobs/XY/ID`.
    pub prefix: String,
    /// Must be true for an `http://` endpoint.
    pub allow_http: bool,
    /// Size of each part of a multipart upload (bodies up to this size are one PUT).
    /// Raised for a write whose limit would need more than 10,000 parts.
    pub part_size: usize,
    /// Retries of a failed request (with backoff), and how long retrying may take.
    pub max_retries: usize,
    pub retry_timeout: Duration,
    /// Longest time for one request that is not a read (PUT, part, list, delete).
    pub request_timeout: Duration,
    /// A read fails when the store sends nothing for this long (a read as a whole may
    /// take as long as the reader needs).
    pub read_idle_timeout: Duration,
}

impl Default for S3BlobConfig {
    fn default() -> Self {
        S3BlobConfig {
            endpoint: String::new(),
            bucket: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            prefix: String::new(),
            allow_http: false,
            part_size: 8 * 1024 * 1024,
            max_retries: 5,
            retry_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(60),
            read_idle_timeout: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for S3BlobConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("S3BlobConfig")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"(hidden)")
            .field("prefix", &self.prefix)
            .field("allow_http", &self.allow_http)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

/// Blobs as objects of an S3 bucket.
pub struct S3BlobStore {
    /// Writes, lists and deletes: every request bounded by `request_timeout`.
    store: AmazonS3,
    /// Reads: no overall timeout (a large read takes as long as its reader), an idle one.
    reader: AmazonS3,
    config: S3BlobConfig,
    /// `PREFIX/blobs`
    blobs_root: Path,
    description: String,
}

fn invalid(message: String) -> ObjectError {
    ObjectError::InvalidArgument(format!("S3 blob store: {message}"))
}

/// Checks the configuration, saying which field is wrong and how to fix it.
fn validate(config: &S3BlobConfig) -> ObjectResult<(String, Path)> {
    let endpoint = config.endpoint.trim().trim_end_matches('/').to_owned();
    let is_http = endpoint.starts_with("http://");
    if !is_http && !endpoint.starts_with("https://") {
        return Err(invalid(format!(
            "endpoint {:?} is not a URL; write e.g. \"https://s3.eu-west-1.amazonaws.com\" or \"http://127.0.0.1:9000\"",
            config.endpoint
        )));
    }
    if is_http && !config.allow_http {
        return Err(invalid(format!(
            "endpoint {endpoint} is plain HTTP; allow it explicitly (allow_http) or use https://"
        )));
    }
    if config.bucket.trim().is_empty() || config.bucket.contains('/') {
        return Err(invalid(format!(
            "bucket {:?} is not a bucket name; give the name alone, without slashes",
            config.bucket
        )));
    }
    if config.region.trim().is_empty() {
        return Err(invalid(
            "region is empty; give the bucket's region (\"us-east-1\" for most S3-compatible servers)".into(),
        ));
    }
    if config.access_key_id.is_empty() || config.secret_access_key.is_empty() {
        return Err(invalid(
            "the access key id and the secret access key must both be set".into(),
        ));
    }
    if !(MIN_S3_PART_SIZE..=MAX_S3_PART_SIZE).contains(&config.part_size) {
        return Err(invalid(format!(
            "part size {} is outside S3's limits of 5 MiB to 5 GiB",
            config.part_size
        )));
    }
    let prefix = config.prefix.trim().trim_matches('/');
    let root = if prefix.is_empty() {
        Path::from("blobs")
    } else {
        Path::parse(prefix)
            .map_err(|error| {
                invalid(format!(
                    "prefix {:?} is not a folder path such as \"team/wharf\": {error}",
                    config.prefix
                ))
            })?
            .join("blobs")
    };
    Ok((endpoint, root))
}

fn build_store(
    config: &S3BlobConfig,
    endpoint: &str,
    client: ClientOptions,
    max_retries: usize,
    retry_timeout: Duration,
) -> ObjectResult<AmazonS3> {
    AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(config.bucket.trim())
        .with_region(config.region.trim())
        .with_access_key_id(&config.access_key_id)
        .with_secret_access_key(&config.secret_access_key)
        .with_virtual_hosted_style_request(false)
        .with_allow_http(config.allow_http)
        .with_client_options(client.with_allow_http(config.allow_http))
        .with_retry(RetryConfig {
            max_retries,
            retry_timeout,
            ..RetryConfig::default()
        })
        .build()
        .map_err(|error| invalid(format!("cannot set up the client: {error}")))
}

impl S3BlobStore {
    /// Checks the configuration and sets up the clients; nothing is sent yet (see
    /// [`S3BlobStore::check_bucket`]).
    pub fn new(config: S3BlobConfig) -> ObjectResult<S3BlobStore> {
        let (endpoint, blobs_root) = validate(&config)?;
        let store = build_store(
            &config,
            &endpoint,
            ClientOptions::new().with_timeout(config.request_timeout),
            config.max_retries,
            config.retry_timeout,
        )?;
        let reader = build_store(
            &config,
            &endpoint,
            ClientOptions::new().with_timeout_disabled(),
            config.max_retries,
            config.retry_timeout,
        )?;
        let prefix = config.prefix.trim().trim_matches('/');
        let description = if prefix.is_empty() {
            format!("s3 {endpoint}/{}", config.bucket.trim())
        } else {
            format!("s3 {endpoint}/{}/{prefix}", config.bucket.trim())
        };
        Ok(S3BlobStore {
            store,
            reader,
            config,
            blobs_root,
            description,
        })
    }

    /// Lists the blob folder once (no retries beyond two): fails when the endpoint is
    /// unreachable, the bucket missing or the credentials refused.
    pub async fn check_bucket(&self) -> ObjectResult<()> {
        let (endpoint, _) = validate(&self.config)?;
        let probe = build_store(
            &self.config,
            &endpoint,
            ClientOptions::new()
                .with_timeout(self.config.request_timeout.min(Duration::from_secs(20)))
                .with_connect_timeout(Duration::from_secs(5)),
            2,
            Duration::from_secs(15),
        )?;
        probe
            .list_with_delimiter(Some(&self.blobs_root))
            .await
            .map(|_| ())
            .map_err(|error| ObjectError::Io {
                path: self.description.clone(),
                source: std::io::Error::other(format!(
                    "cannot list the bucket (is the endpoint reachable, the bucket there and the key allowed to use it?): {error}"
                )),
            })
    }

    /// The key of a blob: `PREFIX/blobs/XY/ID`.
    pub fn blob_key(&self, id: &str) -> ObjectResult<String> {
        Ok(self.blob_location(id)?.to_string())
    }

    fn blob_location(&self, id: &str) -> ObjectResult<Path> {
        if !is_blob_id(id) {
            return Err(ObjectError::Internal(format!("invalid blob id {id:?}")));
        }
        Ok(self.blobs_root.clone().join(&id[id.len() - 2..]).join(id))
    }

    fn remote_error(&self, location: &Path, error: impl std::fmt::Display) -> ObjectError {
        ObjectError::Io {
            path: format!("{}: {location}", self.description),
            source: std::io::Error::other(error.to_string()),
        }
    }

    /// The part size for a write limited to `limit` bytes: the configured one, raised
    /// (to whole MiB) when 10,000 parts of it would not reach the limit.
    fn part_size_for(&self, limit: u64) -> usize {
        const MIB: u64 = 1024 * 1024;
        let needed = limit.div_ceil(MAX_S3_PARTS).div_ceil(MIB) * MIB;
        let needed = usize::try_from(needed).unwrap_or(MAX_S3_PART_SIZE);
        self.config.part_size.max(needed).min(MAX_S3_PART_SIZE)
    }

    async fn write_multipart(
        &self,
        location: &Path,
        mut body: ByteStream,
        mut buffer: PartBuffer,
        counter: &mut BodyCounter,
        part_size: usize,
    ) -> ObjectResult<()> {
        let upload = start_upload(self.store.clone(), location.clone())
            .await
            .map_err(|error| self.remote_error(location, error))?;
        let mut upload = RunningUpload::new(upload);
        let sent = async {
            loop {
                while let Some(part) = buffer.take_part(part_size) {
                    upload
                        .send_part(part)
                        .await
                        .map_err(|error| self.remote_error(location, error))?;
                }
                match body.next().await {
                    Some(chunk) => buffer.push(counter.count(chunk)?),
                    None => break,
                }
            }
            if buffer.len > 0 {
                upload
                    .send_part(buffer.take_rest())
                    .await
                    .map_err(|error| self.remote_error(location, error))?;
            }
            upload
                .complete()
                .await
                .map_err(|error| self.remote_error(location, error))
        }
        .await;
        if sent.is_err() {
            upload.abort().await;
        }
        sent
    }
}

fn is_blob_id(id: &str) -> bool {
    id.len() >= 2 && id.bytes().all(|byte| byte.is_ascii_alphanumeric())
}

/// Counts and hashes the body as it arrives, and enforces the limit.
struct BodyCounter {
    hasher: Md5,
    size: u64,
    limit: u64,
}

impl BodyCounter {
    fn count(&mut self, chunk: Result<Bytes, std::io::Error>) -> ObjectResult<Bytes> {
        let chunk = chunk.map_err(|error| ObjectError::BodyRead(error.to_string()))?;
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(ObjectError::TooLarge { limit: self.limit });
        }
        self.hasher.update(&chunk);
        Ok(chunk)
    }
}

/// Received bytes not yet sent, cut into parts of exactly the part size.
#[derive(Default)]
struct PartBuffer {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl PartBuffer {
    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        if !chunk.is_empty() {
            self.chunks.push_back(chunk);
        }
    }

    fn take_part(&mut self, part_size: usize) -> Option<PutPayload> {
        if self.len < part_size {
            return None;
        }
        let mut part = Vec::new();
        let mut wanted = part_size;
        while wanted > 0 {
            let mut chunk = self.chunks.pop_front()?;
            if chunk.len() > wanted {
                let rest = chunk.split_off(wanted);
                self.chunks.push_front(rest);
            }
            wanted -= chunk.len();
            part.push(chunk);
        }
        self.len -= part_size;
        Some(part.into_iter().collect())
    }

    fn take_rest(&mut self) -> PutPayload {
        self.len = 0;
        self.chunks.drain(..).collect()
    }
}

/// Starts a multipart upload in a task of its own, so that a write dropped while the
/// store has not answered yet (the upload exists there, but its id is not known here)
/// still aborts the upload once the answer comes, instead of leaving it behind.
async fn start_upload(
    store: AmazonS3,
    location: Path,
) -> object_store::Result<Box<dyn MultipartUpload>> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let started = store.put_multipart(&location).await;
        // The write is gone: nobody will complete or abort this upload but us.
        if let Err(Ok(mut upload)) = answer.send(started) {
            let _ = upload.abort().await;
        }
    });
    answered.await.map_err(|_| object_store::Error::Generic {
        store: "S3",
        source: "the task starting the multipart upload ended without an answer".into(),
    })?
}

/// A multipart upload in progress. Dropped before it completed (the write's future was
/// dropped), it aborts the upload in the background.
struct RunningUpload {
    upload: Option<Box<dyn MultipartUpload>>,
    parts: JoinSet<object_store::Result<()>>,
}

impl RunningUpload {
    fn new(upload: Box<dyn MultipartUpload>) -> RunningUpload {
        RunningUpload {
            upload: Some(upload),
            parts: JoinSet::new(),
        }
    }

    async fn join_one(&mut self) -> object_store::Result<()> {
        match self.parts.join_next().await {
            Some(Ok(sent)) => sent,
            Some(Err(error)) => Err(object_store::Error::JoinError { source: error }),
            None => Ok(()),
        }
    }

    async fn send_part(&mut self, part: PutPayload) -> object_store::Result<()> {
        while self.parts.len() >= PARTS_IN_FLIGHT {
            self.join_one().await?;
        }
        if let Some(upload) = self.upload.as_mut() {
            self.parts.spawn(upload.put_part(part));
        }
        Ok(())
    }

    async fn complete(&mut self) -> object_store::Result<()> {
        while !self.parts.is_empty() {
            self.join_one().await?;
        }
        if let Some(upload) = self.upload.as_mut() {
            upload.complete().await?;
        }
        self.upload = None;
        Ok(())
    }

    async fn abort(&mut self) {
        self.parts.abort_all();
        while self.parts.join_next().await.is_some() {}
        if let Some(mut upload) = self.upload.take() {
            if let Err(error) = upload.abort().await {
                tracing::warn!(%error, "Could not abort a multipart upload to the S3 blob store; a lifecycle rule for incomplete uploads cleans it up.");
            }
        }
    }
}

impl Drop for RunningUpload {
    fn drop(&mut self) {
        let Some(mut upload) = self.upload.take() else {
            return;
        };
        self.parts.abort_all();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}

/// Ends a read with an error when the store sends nothing for `idle`.
fn idle_limited(
    inner: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    idle: Duration,
    what: String,
) -> ByteStream {
    let stream = futures::stream::unfold(Some(inner), move |state| {
        let what = what.clone();
        async move {
            let mut inner = state?;
            match tokio::time::timeout(idle, inner.next()).await {
                Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(inner))),
                Ok(Some(Err(error))) => {
                    Some((Err(std::io::Error::other(format!("{what}: {error}"))), None))
                }
                Ok(None) => None,
                Err(_) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("{what}: the store sent nothing for {idle:?}"),
                    )),
                    None,
                )),
            }
        }
    });
    Box::pin(sync_wrapper::SyncStream::new(stream))
}

#[async_trait::async_trait]
impl BlobStore for S3BlobStore {
    async fn write(&self, mut body: ByteStream, limit: u64) -> ObjectResult<WrittenBlob> {
        let id = new_blob_id();
        let location = self.blob_location(&id)?;
        let part_size = self.part_size_for(limit);
        let mut counter = BodyCounter {
            hasher: Md5::new(),
            size: 0,
            limit,
        };
        let mut buffer = PartBuffer::default();
        while buffer.len < part_size {
            match body.next().await {
                Some(chunk) => buffer.push(counter.count(chunk)?),
                None => break,
            }
        }
        if buffer.len < part_size {
            self.store
                .put(&location, buffer.take_rest())
                .await
                .map_err(|error| self.remote_error(&location, error))?;
        } else {
            self.write_multipart(&location, body, buffer, &mut counter, part_size)
                .await?;
        }
        Ok(WrittenBlob {
            id,
            size: counter.size,
            md5: counter.hasher.finalize().into(),
        })
    }

    async fn read(&self, id: &str, offset: u64, length: u64) -> ObjectResult<ByteStream> {
        let location = self.blob_location(id)?;
        let missing = |error: object_store::Error| match error {
            object_store::Error::NotFound { .. } => ObjectError::BlobMissing(id.to_owned()),
            error => self.remote_error(&location, error),
        };
        let timed_out = |_| {
            self.remote_error(
                &location,
                format!("no answer within {:?}", self.config.request_timeout),
            )
        };
        if length == 0 {
            tokio::time::timeout(self.config.request_timeout, self.store.head(&location))
                .await
                .map_err(timed_out)?
                .map_err(missing)?;
            return Ok(Box::pin(futures::stream::empty()));
        }
        let end = offset.checked_add(length).ok_or_else(|| {
            ObjectError::InvalidArgument(format!("the range {offset}+{length} overflows"))
        })?;
        let options = GetOptions::new().with_range(Some(offset..end));
        let result = tokio::time::timeout(
            self.config.request_timeout,
            self.reader.get_opts(&location, options),
        )
        .await
        .map_err(timed_out)?
        .map_err(missing)?;
        Ok(idle_limited(
            result.into_stream(),
            self.config.read_idle_timeout,
            format!("{}: {location}", self.description),
        ))
    }

    async fn delete(&self, id: &str) -> ObjectResult<()> {
        let location = self.blob_location(id)?;
        match self.store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.remote_error(&location, error)),
        }
    }

    async fn ids_older_than(&self, age: Duration) -> ObjectResult<Vec<String>> {
        let cutoff = chrono::Duration::from_std(age)
            .ok()
            .and_then(|age| chrono::Utc::now().checked_sub_signed(age));
        // Older than anything can be: nothing is.
        let Some(cutoff) = cutoff else {
            return Ok(Vec::new());
        };
        let mut listing = self.store.list(Some(&self.blobs_root));
        let mut ids = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|error| self.remote_error(&self.blobs_root, error))?;
            let Some(id) = meta.location.filename() else {
                continue;
            };
            // Only `blobs/XY/ID` where XY ends the id: anything else is not ours.
            let ours = is_blob_id(id)
                && meta.location.parts().count() == self.blobs_root.parts().count() + 2
                && meta
                    .location
                    .parent()
                    .is_some_and(|shard| shard.filename() == Some(&id[id.len() - 2..]));
            if ours && meta.last_modified <= cutoff {
                ids.push(id.to_owned());
            }
        }
        Ok(ids)
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

#[cfg(test)]
mod tests {
    use crate::blob_s3::PartBuffer;

    fn check(chunks: &[usize], part_size: usize, expect_parts: &[usize], expect_rest: usize) {
        let mut buffer = PartBuffer::default();
        let mut parts = Vec::new();
        for (index, &len) in chunks.iter().enumerate() {
            buffer.push(bytes::Bytes::from(vec![index as u8; len]));
            while let Some(part) = buffer.take_part(part_size) {
                parts.push(part.content_length());
            }
        }
        assert_eq!(parts, expect_parts, "chunks {chunks:?}");
        assert_eq!(buffer.take_rest().content_length(), expect_rest);
        assert_eq!(buffer.len, 0);
    }

    #[test]
    fn parts_are_cut_to_the_part_size() {
        check(&[], 4, &[], 0);
        check(&[3], 4, &[], 3);
        check(&[4], 4, &[4], 0);
        check(&[5], 4, &[4], 1);
        check(&[1, 1, 1, 1, 1], 4, &[4], 1);
        check(&[10], 4, &[4, 4], 2);
        check(&[3, 3, 3, 3], 4, &[4, 4, 4], 0);
        check(&[0, 2, 0, 2], 4, &[4], 0);
        check(&[7, 9], 4, &[4, 4, 4, 4], 0);
    }

    #[test]
    fn part_bytes_keep_their_order() {
        let mut buffer = PartBuffer::default();
        buffer.push(bytes::Bytes::from_static(b"abc"));
        buffer.push(bytes::Bytes::from_static(b"defgh"));
        let part: Vec<u8> = buffer
            .take_part(4)
            .map(|part| part.into_iter().flatten().collect())
            .unwrap_or_default();
        assert_eq!(part, b"abcd");
        let rest: Vec<u8> = buffer.take_rest().into_iter().flatten().collect();
        assert_eq!(rest, b"efgh");
    }
}
