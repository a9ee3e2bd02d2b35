//! Blob backends: where object bytes live. Blobs are immutable and named by ids Wharf
//! makes (ULIDs); object keys never become paths.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};

use crate::error::{ObjectError, ObjectResult};

/// A stream of bytes in or out of a backend.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync>>;

/// A blob that has been written durably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenBlob {
    pub id: String,
    pub size: u64,
    pub md5: [u8; 16],
}

/// Where object bytes are kept.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Writes `body` as a new blob, at most `limit` bytes (more is `EntityTooLarge`), and
    /// returns once the bytes are durable.
    async fn write(&self, body: ByteStream, limit: u64) -> ObjectResult<WrittenBlob>;

    /// Reads `length` bytes of a blob from `offset`.
    async fn read(&self, id: &str, offset: u64, length: u64) -> ObjectResult<ByteStream>;

    /// Deletes a blob; deleting a missing blob is not an error.
    async fn delete(&self, id: &str) -> ObjectResult<()>;

    /// Ids of blobs written more than `age` ago (the orphan sweep compares them with the
    /// store's references). Backends that cannot list return an empty list.
    async fn ids_older_than(&self, age: Duration) -> ObjectResult<Vec<String>>;

    /// A short name for logs ("filesystem /data/objects", "s3 http://...").
    fn describe(&self) -> String;
}

pub fn new_blob_id() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

/// Blobs as files: `ROOT/blobs/XY/ID` where XY are the id's last two characters (ULIDs
/// end in random characters, so folders fill evenly). A write streams into `ROOT/tmp/`,
/// fsyncs, renames into place and fsyncs the folder.
pub struct FsBlobStore {
    root: PathBuf,
}

/// Chunks in flight between the request and each of the writer and the hasher.
const WRITE_QUEUE: usize = 64;
/// How many bytes written since the last background sync ask for the next.
const SYNC_WINDOW: u64 = 16 << 20;

impl FsBlobStore {
    pub fn open(root: &Path) -> ObjectResult<FsBlobStore> {
        for dir in [root.join("blobs"), root.join("tmp")] {
            std::fs::create_dir_all(&dir).map_err(|source| ObjectError::io(&dir, source))?;
        }
        // Leftovers of writes interrupted by a crash.
        if let Ok(entries) = std::fs::read_dir(root.join("tmp")) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(FsBlobStore {
            root: root.to_owned(),
        })
    }

    fn blob_path(&self, id: &str) -> ObjectResult<PathBuf> {
        let valid = id.len() >= 2 && id.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid {
            return Err(ObjectError::Internal(format!("invalid blob id {id:?}")));
        }
        let shard = &id[id.len() - 2..];
        Ok(self.root.join("blobs").join(shard).join(id))
    }
}

/// Writes chunks to a file on a blocking thread. Past each [`SYNC_WINDOW`] a thread of its
/// own makes what is written so far durable (`fdatasync`) while the writes go on: on a
/// disk whose cache flush costs in proportion to what is unflushed (a virtual disk), the
/// fsync at the end then only waits for the last window instead of the whole body.
fn write_blob_file(
    path: &Path,
    mut chunks: tokio::sync::mpsc::Receiver<Bytes>,
) -> std::io::Result<u64> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    let mut size = 0u64;
    let mut synced = 0u64;
    let mut syncer: Option<BackgroundSync> = None;
    while let Some(chunk) = chunks.blocking_recv() {
        file.write_all(&chunk)?;
        size += chunk.len() as u64;
        if size - synced >= SYNC_WINDOW {
            if syncer.is_none() {
                syncer = Some(BackgroundSync::start(&file)?);
            }
            if let Some(syncer) = &syncer {
                syncer.request();
            }
            synced = size;
        }
    }
    if let Some(syncer) = syncer {
        syncer.finish()?;
    }
    file.sync_all()?;
    Ok(size)
}

/// A thread that runs `fdatasync` on a file whenever asked (requests made while one runs
/// are merged into the next).
struct BackgroundSync {
    requests: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

impl BackgroundSync {
    fn start(file: &std::fs::File) -> std::io::Result<BackgroundSync> {
        let file = file.try_clone()?;
        let (requests, received) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("wharf-blob-sync".into())
            .spawn(move || {
                while received.recv().is_ok() {
                    // The descriptor is shared with the writer's, and so is the kernel's
                    // record of write-back errors: an error seen here is reported by
                    // `finish`, or the final fsync could miss it.
                    file.sync_data()?;
                }
                Ok(())
            })?;
        Ok(BackgroundSync { requests, thread })
    }

    fn request(&self) {
        // Full means a sync is already asked for; it will cover these bytes too.
        let _ = self.requests.try_send(());
    }

    /// Waits for the thread and returns the first error its syncs met.
    fn finish(self) -> std::io::Result<()> {
        drop(self.requests);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the blob sync thread panicked")))
    }
}

/// Hashes chunks on a blocking thread of its own, so the MD5 (the most CPU a PUT costs)
/// runs beside the file writes instead of before each of them.
fn hash_chunks(mut chunks: tokio::sync::mpsc::Receiver<Bytes>) -> [u8; 16] {
    let mut hasher = Md5::new();
    while let Some(chunk) = chunks.blocking_recv() {
        hasher.update(&chunk);
    }
    hasher.finalize().into()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait::async_trait]
impl BlobStore for FsBlobStore {
    async fn write(&self, mut body: ByteStream, limit: u64) -> ObjectResult<WrittenBlob> {
        let id = new_blob_id();
        let temp = self.root.join("tmp").join(&id);
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(WRITE_QUEUE);
        let (hash_sender, hash_receiver) = tokio::sync::mpsc::channel::<Bytes>(WRITE_QUEUE);
        let writer_path = temp.clone();
        let writer = tokio::task::spawn_blocking(move || write_blob_file(&writer_path, receiver));
        let hasher = tokio::task::spawn_blocking(move || hash_chunks(hash_receiver));
        let mut received = 0u64;
        let mut failure = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    received += chunk.len() as u64;
                    if received > limit {
                        failure = Some(ObjectError::TooLarge { limit });
                        break;
                    }
                    // A clone of `Bytes` shares the buffer.
                    if hash_sender.send(chunk.clone()).await.is_err()
                        || sender.send(chunk).await.is_err()
                    {
                        break;
                    }
                }
                Err(error) => {
                    failure = Some(ObjectError::BodyRead(error.to_string()));
                    break;
                }
            }
        }
        drop(sender);
        drop(hash_sender);
        let written = writer
            .await
            .map_err(|error| ObjectError::Internal(error.to_string()));
        let md5 = hasher
            .await
            .map_err(|error| ObjectError::Internal(error.to_string()));
        let outcome = match (failure, written, md5) {
            (Some(failure), _, _) => Err(failure),
            (None, Err(error), _) | (None, _, Err(error)) => Err(error),
            (None, Ok(Err(source)), _) => Err(ObjectError::io(&temp, source)),
            (None, Ok(Ok(size)), Ok(md5)) => Ok((size, md5)),
        };
        let (size, md5) = match outcome {
            Ok(done) => done,
            Err(error) => {
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(error);
            }
        };
        let path = self.blob_path(&id)?;
        let finished = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let dir = path.parent().unwrap_or(Path::new("."));
            let created = !dir.exists();
            std::fs::create_dir_all(dir)?;
            std::fs::rename(&temp, &path)?;
            sync_dir(dir)?;
            if created {
                sync_dir(dir.parent().unwrap_or(Path::new(".")))?;
            }
            Ok(())
        })
        .await
        .map_err(|error| ObjectError::Internal(error.to_string()))?;
        finished.map_err(|source| ObjectError::io(&self.root, source))?;
        Ok(WrittenBlob { id, size, md5 })
    }

    async fn read(&self, id: &str, offset: u64, length: u64) -> ObjectResult<ByteStream> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let path = self.blob_path(id)?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(ObjectError::BlobMissing(id.to_owned()))
            }
            Err(source) => return Err(ObjectError::io(&path, source)),
        };
        if offset > 0 {
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|source| ObjectError::io(&path, source))?;
        }
        let reader = file.take(length);
        Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
            reader,
            1024 * 1024,
        )))
    }

    async fn delete(&self, id: &str) -> ObjectResult<()> {
        let path = self.blob_path(id)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ObjectError::io(&path, source)),
        }
    }

    async fn ids_older_than(&self, age: Duration) -> ObjectResult<Vec<String>> {
        let root = self.root.join("blobs");
        tokio::task::spawn_blocking(move || {
            let cutoff = SystemTime::now() - age;
            let mut ids = Vec::new();
            for shard in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                for entry in std::fs::read_dir(shard.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let old = entry
                        .metadata()
                        .and_then(|meta| meta.modified())
                        .is_ok_and(|modified| modified < cutoff);
                    if old {
                        ids.push(entry.file_name().to_string_lossy().into_owned());
                    }
                }
            }
            ids
        })
        .await
        .map_err(|error| ObjectError::Internal(error.to_string()))
    }

    fn describe(&self) -> String {
        format!("filesystem {}", self.root.display())
    }
}
