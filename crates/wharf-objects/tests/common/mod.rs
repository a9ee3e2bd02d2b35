//! The S3 listener in-process on a free port (SQLite in a temporary folder, filesystem
//! blobs), and aws-sdk-s3 clients for it (plain HTTP, path style, no retries).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use wharf_objects::s3::access::TokenCheck;
use wharf_objects::s3::serve::{build_service, serve, S3ListenerConfig};
use wharf_objects::{FsBlobStore, Objects, ObjectsConfig};
use wharf_store::Store;

pub const MIB: usize = 1024 * 1024;

/// Accepts no bearer token: these tests sign with access keys.
struct NoTokens;

#[async_trait::async_trait]
impl TokenCheck for NoTokens {
    async fn user_for_token(&self, _token: &str) -> Option<String> {
        None
    }
}

pub struct Listener {
    pub objects: Objects,
    pub endpoint: String,
    pub address: std::net::SocketAddr,
    pub access_key: String,
    pub secret_key: String,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Listener {
    pub async fn start() -> Listener {
        Listener::start_with(ObjectsConfig::default()).await
    }

    pub async fn start_with(config: ObjectsConfig) -> Listener {
        // In memory when the machine has /dev/shm: these tests are about the protocol, and
        // thousands of fsyncs on a shared CI disk take minutes.
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        };
        Listener::start_in(dir.expect("tempdir"), config).await
    }

    /// On the disk (fsyncs take real time), as the server runs.
    pub async fn start_on_disk() -> Listener {
        let dir = tempfile::tempdir().expect("tempdir");
        Listener::start_in(dir, ObjectsConfig::default()).await
    }

    async fn start_in(dir: tempfile::TempDir, config: ObjectsConfig) -> Listener {
        let store = Store::open_sqlite(&dir.path().join("wharf.db"))
            .await
            .expect("open the store");
        store
            .create_user("user-1", "ada", "admin")
            .await
            .expect("create a user");
        let blobs = FsBlobStore::open(&dir.path().join("objects")).expect("blob store");
        let objects = Objects::new(
            store,
            Arc::new(blobs),
            wharf_auth::SecretBox::from_key([7; 32]),
            config,
        );
        let key = objects
            .create_user_key("user-1", "tests")
            .await
            .expect("create a key");
        let service =
            build_service(objects.clone(), &S3ListenerConfig::default()).expect("service");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, service, Arc::new(NoTokens), async move {
            let _ = stopped.await;
        }));
        Listener {
            objects,
            endpoint: format!("http://{address}"),
            address,
            access_key: key.access_key,
            secret_key: key.secret_key,
            dir,
            stop: Some(stop),
        }
    }

    pub fn client(&self) -> Client {
        self.client_as(&self.access_key, &self.secret_key)
    }

    pub fn client_as(&self, access_key: &str, secret_key: &str) -> Client {
        Client::from_conf(self.config_as(access_key, secret_key).build())
    }

    /// A client that records the headers of every request it sends.
    pub fn recording_client(&self) -> (Client, SentHeaders) {
        let sent = SentHeaders::default();
        let config = self
            .config_as(&self.access_key, &self.secret_key)
            .interceptor(sent.clone())
            .build();
        (Client::from_conf(config), sent)
    }

    fn config_as(&self, access_key: &str, secret_key: &str) -> aws_sdk_s3::config::Builder {
        let credentials = Credentials::new(access_key, secret_key, None, None, "tests");
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(credentials)
            .force_path_style(true)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
    }

    pub fn objects_dir(&self) -> PathBuf {
        self.dir.path().join("objects")
    }

    /// Makes a bucket through the listener.
    pub async fn bucket(&self, name: &str) -> String {
        self.client()
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .unwrap_or_else(|error| panic!("create bucket {name}: {error:?}"));
        name.to_owned()
    }

    pub async fn put(&self, bucket: &str, key: &str, bytes: impl Into<Vec<u8>>) -> String {
        let answer = self
            .client()
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(bytes.into()))
            .send()
            .await
            .unwrap_or_else(|error| panic!("put {bucket}/{key}: {error:?}"));
        answer.e_tag().unwrap_or_default().to_owned()
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let answer = self
            .client()
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|error| panic!("get {bucket}/{key}: {error:?}"));
        answer.body.collect().await.expect("body").to_vec()
    }
}

/// The headers of the requests a client sent (lower-case names), last request last.
#[derive(Debug, Clone, Default)]
pub struct SentHeaders(Arc<std::sync::Mutex<Vec<RequestHeaders>>>);

/// (lower-case name, value) of one request.
type RequestHeaders = Vec<(String, String)>;

impl SentHeaders {
    /// The value of `name` in the last request sent.
    pub fn last(&self, name: &str) -> Option<String> {
        let requests = self.0.lock().expect("lock");
        let last = requests.last()?;
        last.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }
}

impl aws_sdk_s3::config::Intercept for SentHeaders {
    fn name(&self) -> &'static str {
        "SentHeaders"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _bag: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let headers = context
            .request()
            .headers()
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
            .collect();
        self.0.lock().expect("lock").push(headers);
        Ok(())
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The S3 error code and HTTP status of a request that must fail.
pub fn failure<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    result: Result<T, SdkError<E, HttpResponse>>,
) -> (String, u16) {
    let error = match result {
        Ok(value) => panic!("the request succeeded ({value:?}) but should have failed"),
        Err(error) => error,
    };
    let status = error.raw_response().map_or(0, |raw| raw.status().as_u16());
    let code = error.code().unwrap_or_default().to_owned();
    (code, status)
}

/// Asserts a request fails with `code` and `status`.
pub fn assert_failure<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    what: &str,
    result: Result<T, SdkError<E, HttpResponse>>,
    code: &str,
    status: u16,
) {
    let got = failure(result);
    assert_eq!(got, (code.to_owned(), status), "{what}");
}

pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(bytes))
}

/// S3's multipart ETag of these parts: MD5 of their binary MD5s, then `-N`.
pub fn multipart_etag(parts: &[&[u8]]) -> String {
    use md5::Digest;
    let mut joined = Vec::new();
    for part in parts {
        joined.extend_from_slice(&md5::Md5::digest(part));
    }
    format!("\"{}-{}\"", md5_hex(&joined), parts.len())
}

/// `size` bytes that differ between seeds.
pub fn test_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(size + 8);
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Polls `probe` until it returns Some or the deadline passes.
pub async fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends raw bytes on a new connection and returns everything the server answers until
/// it closes (or `timeout`).
pub async fn raw_exchange(
    address: std::net::SocketAddr,
    request: &[u8],
    close_write: bool,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(request).await.expect("send");
    if close_write {
        let _ = stream.shutdown().await;
    }
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply)).await;
    String::from_utf8_lossy(&reply).into_owned()
}

/// Decodes `%XX` escapes (and `+` as a space) of an `encoding-type=url` listing.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).expect("UTF-8 key")
}
