//! `S3BlobStore` against a real S3 server: a second Wharf's S3 listener, in-process on a
//! free port, over filesystem blobs in a temporary folder and an in-memory store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use wharf_objects::s3::access::TokenCheck;
use wharf_objects::s3::serve::{build_service, serve, S3ListenerConfig};
use wharf_objects::{
    BlobStore, ByteStream, FsBlobStore, ObjectError, Objects, ObjectsConfig, PutOptions,
    S3BlobConfig, S3BlobStore,
};
use wharf_store::Store;

const MIB: usize = 1024 * 1024;
const REMOTE_BUCKET: &str = "blobs";

/// Accepts no bearer token: the blob store signs with an access key.
struct NoTokens;

#[async_trait::async_trait]
impl TokenCheck for NoTokens {
    async fn user_for_token(&self, _token: &str) -> Option<String> {
        None
    }
}

/// The S3 server the blob store talks to.
struct Remote {
    objects: Objects,
    endpoint: String,
    access_key: String,
    secret_key: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Remote {
    async fn start() -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in_memory().await.unwrap();
        store.create_user("u1", "admin", "admin").await.unwrap();
        let blobs = FsBlobStore::open(&dir.path().join("objects")).unwrap();
        let objects = Objects::new(
            store,
            Arc::new(blobs),
            wharf_auth::SecretBox::from_key([7; 32]),
            ObjectsConfig::default(),
        );
        objects.create_bucket(REMOTE_BUCKET, "u1").await.unwrap();
        let key = objects.create_user_key("u1", "test").await.unwrap();
        let service = build_service(objects.clone(), &S3ListenerConfig::default()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, service, Arc::new(NoTokens), async move {
            let _ = stopped.await;
        }));
        Remote {
            objects,
            endpoint: format!("http://{address}"),
            access_key: key.access_key,
            secret_key: key.secret_key,
            _dir: dir,
            _stop: stop,
        }
    }

    fn config(&self, prefix: &str) -> S3BlobConfig {
        S3BlobConfig {
            endpoint: self.endpoint.clone(),
            bucket: REMOTE_BUCKET.into(),
            access_key_id: self.access_key.clone(),
            secret_access_key: self.secret_key.clone(),
            prefix: prefix.into(),
            allow_http: true,
            max_retries: 0,
            ..S3BlobConfig::default()
        }
    }

    fn blob_store(&self, prefix: &str) -> S3BlobStore {
        S3BlobStore::new(self.config(prefix)).unwrap()
    }

    /// Keys in the remote bucket.
    async fn keys(&self) -> Vec<String> {
        let rows = self
            .objects
            .store()
            .list_objects_from(REMOTE_BUCKET, "", "", true, 1000)
            .await
            .unwrap();
        rows.into_iter().map(|row| row.key).collect()
    }

    /// Unfinished multipart uploads in the remote bucket.
    async fn uploads(&self) -> usize {
        self.objects
            .store()
            .list_multipart_uploads(REMOTE_BUCKET, "", "", "", 1000)
            .await
            .unwrap()
            .len()
    }
}

/// Deterministic bytes that differ at every offset of interest.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// `data` as a body in chunks of uneven sizes (none lines up with a part).
fn chunked(data: &[u8]) -> ByteStream {
    let sizes = [65_521usize, 1, 300_007, 4_093, 131_101];
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut index = 0;
    while start < data.len() {
        let end = (start + sizes[index % sizes.len()]).min(data.len());
        chunks.push(Ok(Bytes::copy_from_slice(&data[start..end])));
        start = end;
        index += 1;
    }
    Box::pin(futures::stream::iter(chunks))
}

async fn collect(stream: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = stream;
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

async fn read_all(store: &dyn BlobStore, id: &str, offset: u64, length: u64) -> Vec<u8> {
    collect(store.read(id, offset, length).await.unwrap()).await
}

fn md5_of(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// Polls `condition` until it holds or 10 seconds have passed.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ----- configuration -----

fn check_config(change: fn(&mut S3BlobConfig), expect: &str) {
    let mut config = S3BlobConfig {
        endpoint: "http://127.0.0.1:9".into(),
        bucket: "wharf".into(),
        access_key_id: "AK".into(),
        secret_access_key: "SECRET-VALUE".into(),
        allow_http: true,
        ..S3BlobConfig::default()
    };
    change(&mut config);
    match S3BlobStore::new(config) {
        Ok(store) => assert_eq!(store.describe(), expect),
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains(expect), "{message:?} lacks {expect:?}");
            assert!(!message.contains("SECRET-VALUE"), "{message}");
        }
    }
}

#[test]
fn configuration_is_checked() {
    check_config(|_| {}, "s3 http://127.0.0.1:9/wharf");
    check_config(
        |c| c.prefix = "/team/wharf/".into(),
        "s3 http://127.0.0.1:9/wharf/team/wharf",
    );
    check_config(
        |c| c.endpoint = "https://s3.example.com/".into(),
        "s3 https://s3.example.com/wharf",
    );
    check_config(|c| c.endpoint = "".into(), "is not a URL");
    check_config(|c| c.endpoint = "127.0.0.1:9000".into(), "is not a URL");
    check_config(|c| c.allow_http = false, "plain HTTP");
    check_config(|c| c.bucket = "".into(), "is not a bucket name");
    check_config(|c| c.bucket = "a/b".into(), "is not a bucket name");
    check_config(|c| c.region = " ".into(), "region is empty");
    check_config(|c| c.access_key_id = "".into(), "access key id");
    check_config(|c| c.secret_access_key = "".into(), "secret access key");
    check_config(|c| c.part_size = 1024, "part size 1024");
    check_config(|c| c.prefix = "a//b".into(), "prefix \"a//b\"");
    check_config(|c| c.prefix = "a/../b".into(), "prefix \"a/../b\"");
}

#[test]
fn debug_output_hides_the_secret() {
    let config = S3BlobConfig {
        secret_access_key: "SECRET-VALUE".into(),
        ..S3BlobConfig::default()
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("SECRET-VALUE"), "{shown}");
    assert!(shown.contains("hidden"), "{shown}");
}

// ----- the blob store alone -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_blobs_round_trip() {
    let remote = Remote::start().await;
    let store = remote.blob_store("team/wharf");
    store.check_bucket().await.unwrap();
    for data in [Vec::new(), b"x".to_vec(), pattern(100_000, 3)] {
        let written = store.write(chunked(&data), 10 * MIB as u64).await.unwrap();
        assert_eq!(written.size, data.len() as u64);
        assert_eq!(written.md5, md5_of(&data));
        let key = store.blob_key(&written.id).unwrap();
        let shard = &written.id[written.id.len() - 2..];
        assert_eq!(key, format!("team/wharf/blobs/{shard}/{}", written.id));
        let row = remote
            .objects
            .head_object(REMOTE_BUCKET, &key)
            .await
            .unwrap();
        assert_eq!(row.size, data.len() as i64);
        assert_eq!(row.parts_count, None, "a small body is one PUT");
        assert_eq!(
            read_all(&store, &written.id, 0, data.len() as u64).await,
            data
        );
        if data.len() > 10 {
            assert_eq!(read_all(&store, &written.id, 3, 5).await, data[3..8]);
        }
    }
    assert_eq!(remote.uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_blob_goes_up_in_parts_and_reads_back_in_ranges() {
    let remote = Remote::start().await;
    let store = remote.blob_store("");
    let data = pattern(20 * MIB, 11);
    let written = store.write(chunked(&data), 5 << 30).await.unwrap();
    assert_eq!(written.size, data.len() as u64);
    assert_eq!(written.md5, md5_of(&data));
    let key = store.blob_key(&written.id).unwrap();
    assert!(key.starts_with("blobs/"), "{key}");
    let row = remote
        .objects
        .head_object(REMOTE_BUCKET, &key)
        .await
        .unwrap();
    // 8 MiB parts: 8 + 8 + 4.
    assert_eq!(row.parts_count, Some(3));
    assert_eq!(row.size, data.len() as i64);
    assert_eq!(remote.uploads().await, 0);

    assert_eq!(
        read_all(&store, &written.id, 0, data.len() as u64).await,
        data
    );
    let part = 8 * MIB as u64;
    let cases = [
        (0, 1),
        (part - 1, 1),
        (part - 1, 2),
        (part, 1),
        (part - 10, 20),
        (2 * part - 1, 2),
        (2 * part, 4 * MIB as u64),
        (part - 5, part + 10),
        (data.len() as u64 - 1, 1),
    ];
    for (offset, length) in cases {
        let got = read_all(&store, &written.id, offset, length).await;
        let range = offset as usize..(offset + length) as usize;
        assert!(got == data[range.clone()], "range {range:?} differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_leaves_nothing_behind() {
    let remote = Remote::start().await;
    let store = S3BlobStore::new(S3BlobConfig {
        part_size: 5 * MIB,
        ..remote.config("p")
    })
    .unwrap();
    // Over the limit before the first part is full: nothing was sent.
    let error = store.write(chunked(&pattern(2000, 1)), 1000).await;
    assert!(
        matches!(error, Err(ObjectError::TooLarge { limit: 1000 })),
        "{error:?}"
    );
    // Over the limit after parts went up: the upload is aborted.
    let limit = 12 * MIB as u64;
    let error = store.write(chunked(&pattern(20 * MIB, 2)), limit).await;
    assert!(
        matches!(error, Err(ObjectError::TooLarge { limit: l }) if l == limit),
        "{error:?}"
    );
    assert_eq!(remote.uploads().await, 0);
    assert_eq!(remote.keys().await, Vec::<String>::new());
    // Exactly at the limit is fine, in one PUT and in parts.
    for size in [1000usize, 12 * MIB] {
        let data = pattern(size, 5);
        let written = store.write(chunked(&data), size as u64).await.unwrap();
        assert_eq!(written.size, size as u64);
    }
    assert_eq!(remote.keys().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_body_aborts_the_upload() {
    let remote = Remote::start().await;
    let store = S3BlobStore::new(S3BlobConfig {
        part_size: 5 * MIB,
        ..remote.config("p")
    })
    .unwrap();
    for good_bytes in [100usize, 11 * MIB] {
        let body: ByteStream = Box::pin(
            futures::stream::iter(vec![Ok(Bytes::from(pattern(good_bytes, 9)))]).chain(
                futures::stream::iter(vec![Err(std::io::Error::other("client went away"))]),
            ),
        );
        let error = store.write(body, 5 << 30).await;
        assert!(
            matches!(&error, Err(ObjectError::BodyRead(message)) if message.contains("client went away")),
            "{error:?}"
        );
    }
    assert_eq!(remote.uploads().await, 0);
    assert_eq!(remote.keys().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_write_aborts_its_upload() {
    let remote = Remote::start().await;
    let store = Arc::new(
        S3BlobStore::new(S3BlobConfig {
            part_size: 5 * MIB,
            ..remote.config("p")
        })
        .unwrap(),
    );
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let body: ByteStream = Box::pin(tokio_stream_from(receiver));
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { store.write(body, 5 << 30).await })
    };
    sender
        .send(Ok(Bytes::from(pattern(6 * MIB, 4))))
        .await
        .unwrap();
    eventually("the multipart upload to start", || async {
        remote.uploads().await == 1
    })
    .await;
    writer.abort();
    eventually("the multipart upload to be aborted", || async {
        remote.uploads().await == 0
    })
    .await;
    assert_eq!(remote.keys().await, Vec::<String>::new());
}

/// A receiver as a stream (without tokio-stream).
fn tokio_stream_from(
    receiver: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_blobs_and_deletes() {
    let remote = Remote::start().await;
    let store = remote.blob_store("p");
    let never = "01jzzzzzzzzzzzzzzzzzzzzzzz";
    for (offset, length) in [(0, 10), (0, 0), (5, 1)] {
        let error = store.read(never, offset, length).await.err();
        assert!(
            matches!(&error, Some(ObjectError::BlobMissing(id)) if id == never),
            "{error:?}"
        );
    }
    store.delete(never).await.unwrap();
    let written = store.write(chunked(b"to be deleted"), 1000).await.unwrap();
    assert_eq!(read_all(&store, &written.id, 0, 0).await, b"");
    store.delete(&written.id).await.unwrap();
    store.delete(&written.id).await.unwrap();
    let error = store.read(&written.id, 0, 4).await.err();
    assert!(
        matches!(error, Some(ObjectError::BlobMissing(_))),
        "{error:?}"
    );
    assert_eq!(remote.keys().await, Vec::<String>::new());
    // Ids that are not Wharf's are refused before anything is sent.
    for bad in ["", "a", "../x", "ab/cd"] {
        assert!(store.read(bad, 0, 1).await.is_err(), "{bad:?}");
        assert!(store.delete(bad).await.is_err(), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_older_than_lists_only_blobs_under_the_prefix() {
    let remote = Remote::start().await;
    let store = remote.blob_store("team/wharf");
    let first = store.write(chunked(b"one"), 100).await.unwrap();
    let second = store.write(chunked(b"two"), 100).await.unwrap();
    // Things that are not blobs of this store.
    let other = remote.blob_store("team/other");
    let foreign = other.write(chunked(b"elsewhere"), 100).await.unwrap();
    for key in [
        "team/wharf/blobs/readme.txt",
        "team/wharf/blobs/zz/01hxxxxxxxxxxxxxxxxxxxxxab",
        "team/wharf/tmp/x",
        "team/wharfish/blobs/ab/01hxxxxxxxxxxxxxxxxxxxxxab",
    ] {
        remote
            .objects
            .put_object(REMOTE_BUCKET, key, chunked(b"x"), PutOptions::default())
            .await
            .unwrap();
    }
    let mut old = store.ids_older_than(Duration::ZERO).await.unwrap();
    old.sort();
    let mut expected = vec![first.id.clone(), second.id.clone()];
    expected.sort();
    assert_eq!(old, expected);
    assert_eq!(
        store
            .ids_older_than(Duration::from_secs(3600))
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        other.ids_older_than(Duration::ZERO).await.unwrap(),
        vec![foreign.id]
    );
    assert_eq!(
        store.ids_older_than(Duration::MAX).await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_bucket_says_what_is_wrong() {
    let remote = Remote::start().await;
    remote.blob_store("p").check_bucket().await.unwrap();

    let wrong_secret = S3BlobStore::new(S3BlobConfig {
        secret_access_key: "not-the-secret".into(),
        ..remote.config("p")
    })
    .unwrap();
    let no_bucket = S3BlobStore::new(S3BlobConfig {
        bucket: "no-such-bucket".into(),
        ..remote.config("p")
    })
    .unwrap();
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = S3BlobStore::new(S3BlobConfig {
        endpoint: closed_endpoint.clone(),
        ..remote.config("p")
    })
    .unwrap();
    for (store, expect) in [
        (&wrong_secret, "403"),
        (&no_bucket, "404"),
        (&unreachable, "cannot list the bucket"),
    ] {
        let message = store.check_bucket().await.unwrap_err().to_string();
        assert!(message.contains(&store.describe()), "{message}");
        assert!(message.contains(expect), "{message:?} lacks {expect:?}");
        assert!(!message.contains(&remote.secret_key), "{message}");
    }
}

// ----- Objects over the S3 blob store -----

async fn objects_over(remote: &Remote) -> Objects {
    let store = Store::open_in_memory().await.unwrap();
    store.create_user("u1", "admin", "admin").await.unwrap();
    let objects = Objects::new(
        store,
        Arc::new(remote.blob_store("wharf")),
        wharf_auth::SecretBox::from_key([9; 32]),
        ObjectsConfig::default(),
    );
    objects.create_bucket("data", "u1").await.unwrap();
    objects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_keep_their_bytes_in_s3() {
    let remote = Remote::start().await;
    let objects = objects_over(&remote).await;
    assert!(objects
        .blobs()
        .describe()
        .starts_with("s3 http://127.0.0.1:"));

    // A single PUT.
    let data = pattern(300_000, 21);
    let row = objects
        .put_object(
            "data",
            "reports/a.csv",
            chunked(&data),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(row.etag, hex::encode(md5_of(&data)));
    let head = objects.head_object("data", "reports/a.csv").await.unwrap();
    assert_eq!(
        collect(objects.read_object(&head, 0, 300_000).await.unwrap()).await,
        data
    );
    assert_eq!(
        collect(objects.read_object(&head, 1000, 10).await.unwrap()).await,
        data[1000..1010]
    );
    let copy = objects
        .copy_object("data", "reports/a.csv", "data", "copy.csv", None, "u1")
        .await
        .unwrap();
    assert_ne!(copy.blob_id, row.blob_id);
    assert_eq!(
        collect(objects.read_object(&copy, 0, 300_000).await.unwrap()).await,
        data
    );

    // A multipart upload: parts are blobs of their own in S3.
    let first = pattern(5 * MIB, 22);
    let second = pattern(MIB + 7, 23);
    let upload = objects
        .create_multipart_upload("data", "big.bin", PutOptions::default())
        .await
        .unwrap();
    let mut etags = Vec::new();
    for (number, part) in [(1, &first), (2, &second)] {
        let stored = objects
            .upload_part("data", "big.bin", &upload.id, number, chunked(part), None)
            .await
            .unwrap();
        etags.push((number, stored.etag));
    }
    let big = objects
        .complete_multipart_upload("data", "big.bin", &upload.id, &etags, "u1")
        .await
        .unwrap();
    let whole: Vec<u8> = first.iter().chain(second.iter()).copied().collect();
    assert_eq!(big.size, whole.len() as i64);
    assert_eq!(
        collect(
            objects
                .read_object(&big, 0, whole.len() as u64)
                .await
                .unwrap()
        )
        .await,
        whole
    );
    let across = (5 * MIB - 3) as u64;
    assert_eq!(
        collect(objects.read_object(&big, across, 10).await.unwrap()).await,
        whole[5 * MIB - 3..5 * MIB + 7]
    );
    let blob_count = remote.keys().await.len();
    assert_eq!(blob_count, 4, "two objects and two parts");

    // Deleting objects frees their blobs in S3.
    for key in ["reports/a.csv", "copy.csv", "big.bin"] {
        assert!(objects.delete_object("data", key, "u1").await.unwrap());
    }
    while objects.collect_garbage().await.unwrap() {}
    assert_eq!(remote.keys().await, Vec::<String>::new());
    assert_eq!(
        objects
            .blobs()
            .ids_older_than(Duration::ZERO)
            .await
            .unwrap(),
        Vec::<String>::new()
    );
}
