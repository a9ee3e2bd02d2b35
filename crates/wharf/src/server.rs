//! `wharf server`: configuration (defaults < TOML file < `WHARF_*` env < flags), the
//! first-start bootstrap, and the HTTP listener with graceful shutdown.

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use wharf_control::{Control, ControlConfig, SandboxPolicy};
use wharf_model::duration::{parse_duration, parse_size};

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// A TOML configuration file (also WHARF_CONFIG).
    #[arg(long, env = "WHARF_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long)]
    pub listen: Option<String>,
    /// Folder for the database, bundles, runs and logs.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// auto | required | off
    #[arg(long)]
    pub sandbox: Option<String>,
}

/// The server's configuration file format. Every key is optional.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    /// Threads that serve HTTP connections and proxy requests to apps; 0: one per core, plus one.
    pub http_threads: u32,
    pub data_dir: PathBuf,
    pub sandbox: SandboxPolicy,
    pub sandbox_ro_binds: Vec<PathBuf>,
    pub kill_grace: String,
    pub max_bundle_size: String,
    pub max_unpacked_size: String,
    pub log_retention: String,
    pub max_concurrent_runs: u32,
    pub log_level: String,
    /// The S3 listener's address; "off" disables it.
    pub s3_listen: String,
    /// The URL workloads use for S3 (AWS_ENDPOINT_URL); default: from s3_listen.
    pub s3_url: String,
    /// Virtual-host style addressing: BUCKET.s3_base_domain.
    pub s3_base_domain: String,
    pub max_object_size: String,
    pub event_retention: String,
    /// Where object bytes live: "filesystem" (DATA/objects) or "s3" (the blob_s3_* keys).
    pub blob_store: String,
    /// The S3 blob store: `https://host` or `http://host:port`, path-style requests.
    pub blob_s3_endpoint: String,
    pub blob_s3_bucket: String,
    pub blob_s3_region: String,
    /// A folder inside the bucket; blobs go to `PREFIX/blobs/XY/ID`.
    pub blob_s3_prefix: String,
    /// Default: the AWS_ACCESS_KEY_ID environment variable.
    pub blob_s3_access_key_id: String,
    /// Default: the AWS_SECRET_ACCESS_KEY environment variable. Never logged.
    pub blob_s3_secret_access_key: HiddenSecret,
    /// Whether git-backed apps may come from local paths and file:// URLs (off: a user
    /// who may deploy could otherwise read any repository the server's user can).
    pub git_allow_local: bool,
    /// Longest a git fetch (at deploy and at each run start) may take.
    pub git_timeout: String,
    /// `[notify]`: notification channels and delivery settings.
    pub notify: crate::notify_config::NotifySettings,
    /// How long a browser session lasts after logging in (absolute; log in again after).
    pub session_lifetime: String,
    /// Failed logins allowed per user name within `login_failure_window` (then 429).
    pub login_max_failures: u32,
    pub login_failure_window: String,
    /// `[invocations]`: asynchronous invocations of service apps.
    pub invocations: crate::invocations_config::InvocationSettings,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            http_threads: 0,
            data_dir: default_data_dir(),
            sandbox: SandboxPolicy::Auto,
            sandbox_ro_binds: Vec::new(),
            kill_grace: "10s".into(),
            max_bundle_size: "512MiB".into(),
            max_unpacked_size: "2GiB".into(),
            log_retention: "30d".into(),
            max_concurrent_runs: 16,
            log_level: "info".into(),
            s3_listen: "127.0.0.1:9000".into(),
            s3_url: String::new(),
            s3_base_domain: String::new(),
            max_object_size: "5GiB".into(),
            event_retention: "7d".into(),
            blob_store: "filesystem".into(),
            blob_s3_endpoint: String::new(),
            blob_s3_bucket: String::new(),
            blob_s3_region: "us-east-1".into(),
            blob_s3_prefix: String::new(),
            blob_s3_access_key_id: String::new(),
            blob_s3_secret_access_key: HiddenSecret::default(),
            git_allow_local: false,
            git_timeout: "5m".into(),
            notify: Default::default(),
            session_lifetime: "7d".into(),
            login_max_failures: 10,
            login_failure_window: "1m".into(),
            invocations: Default::default(),
        }
    }
}

/// `$XDG_DATA_HOME/wharf`, else `~/.local/share/wharf`, else `./wharf-data`.
fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("wharf");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/wharf"),
        None => PathBuf::from("wharf-data"),
    }
}

/// Keys that may come from `WHARF_*` variables (other WHARF_ variables, such as the
/// client's WHARF_URL and WHARF_TOKEN, are not server settings).
const ENV_KEYS: &[&str] = &[
    "listen",
    "http_threads",
    "data_dir",
    "sandbox",
    "kill_grace",
    "max_bundle_size",
    "max_unpacked_size",
    "log_retention",
    "max_concurrent_runs",
    "log_level",
    "s3_listen",
    "s3_url",
    "s3_base_domain",
    "max_object_size",
    "event_retention",
    "blob_store",
    "blob_s3_endpoint",
    "blob_s3_bucket",
    "blob_s3_region",
    "blob_s3_prefix",
    "blob_s3_access_key_id",
    "blob_s3_secret_access_key",
    "git_allow_local",
    "git_timeout",
    "session_lifetime",
    "login_max_failures",
    "login_failure_window",
];

fn load_config(args: &ServerArgs) -> anyhow::Result<ServerConfig> {
    let mut figment = Figment::from(Serialized::defaults(ServerConfig::default()));
    if let Some(path) = &args.config {
        anyhow::ensure!(
            path.is_file(),
            "the configuration file {} does not exist",
            path.display()
        );
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(Env::prefixed("WHARF_").only(ENV_KEYS));
    if let Some(listen) = &args.listen {
        figment = figment.merge(("listen", listen));
    }
    if let Some(dir) = &args.data_dir {
        figment = figment.merge(("data_dir", dir));
    }
    if let Some(sandbox) = &args.sandbox {
        figment = figment.merge(("sandbox", sandbox));
    }
    figment
        .extract::<ServerConfig>()
        .map_err(describe_config_error)
}

/// One line per problem: where it came from (file or variable), the key, what is wrong.
fn describe_config_error(error: figment::Error) -> anyhow::Error {
    let lines: Vec<String> = error
        .into_iter()
        .map(|error| {
            let key = error.path.join(".");
            let source = match error.metadata.as_ref() {
                Some(meta) => match &meta.source {
                    Some(source) => format!("{source}: "),
                    None => format!("{}: ", meta.name.replace('`', "")),
                },
                None => String::new(),
            };
            let problem = error.kind.to_string().replace('`', "");
            if key.is_empty() {
                format!("{source}{problem}")
            } else {
                format!("{source}{key}: {problem}")
            }
        })
        .collect();
    anyhow::anyhow!("invalid server configuration: {}", lines.join("; "))
}

fn setting<T>(key: &str, value: &str, parse: fn(&str) -> Result<T, String>) -> anyhow::Result<T> {
    parse(value).map_err(|error| anyhow::anyhow!("invalid server configuration: {key}: {error}"))
}

fn control_config(config: &ServerConfig) -> anyhow::Result<ControlConfig> {
    let data_dir = if config.data_dir.is_absolute() {
        config.data_dir.clone()
    } else {
        std::env::current_dir()?.join(&config.data_dir)
    };
    let mut control = ControlConfig::with_data_dir(data_dir);
    control.sandbox = config.sandbox;
    control.sandbox_ro_binds = config.sandbox_ro_binds.clone();
    control.kill_grace = setting("kill_grace", &config.kill_grace, parse_duration)?;
    control.max_bundle_size = setting("max_bundle_size", &config.max_bundle_size, parse_size)?;
    control.max_unpacked_size =
        setting("max_unpacked_size", &config.max_unpacked_size, parse_size)?;
    control.log_retention = setting("log_retention", &config.log_retention, parse_duration)?;
    anyhow::ensure!(
        config.max_concurrent_runs > 0,
        "invalid server configuration: max_concurrent_runs must be at least 1"
    );
    control.max_concurrent_runs = config.max_concurrent_runs;
    control.event_retention = setting("event_retention", &config.event_retention, parse_duration)?;
    control.git_allow_local = config.git_allow_local;
    control.git_timeout = setting("git_timeout", &config.git_timeout, parse_duration)?;
    control.session_lifetime =
        setting("session_lifetime", &config.session_lifetime, parse_duration)?;
    anyhow::ensure!(
        control.session_lifetime >= std::time::Duration::from_secs(60),
        "invalid server configuration: session_lifetime must be at least 1m"
    );
    anyhow::ensure!(
        config.login_max_failures > 0,
        "invalid server configuration: login_max_failures must be at least 1"
    );
    control.login_max_failures = config.login_max_failures;
    control.login_failure_window = setting(
        "login_failure_window",
        &config.login_failure_window,
        parse_duration,
    )?;
    control.s3_endpoint = s3_address(config)?.map(|address| {
        if config.s3_url.is_empty() {
            let host = if address.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                address.ip().to_string()
            };
            format!("http://{host}:{}", address.port())
        } else {
            config.s3_url.trim_end_matches('/').to_owned()
        }
    });
    let api_host = match config.listen.parse::<SocketAddr>() {
        Ok(address) if address.ip().is_unspecified() => format!("127.0.0.1:{}", address.port()),
        _ => config.listen.clone(),
    };
    control.notify =
        crate::notify_config::notify_config(&config.notify, &format!("http://{api_host}"))?;
    control.invocations = crate::invocations_config::invocation_config(&config.invocations)?;
    Ok(control)
}

/// The S3 listener's address, None when it is off.
fn s3_address(config: &ServerConfig) -> anyhow::Result<Option<SocketAddr>> {
    if config.s3_listen.eq_ignore_ascii_case("off") || config.s3_listen.is_empty() {
        return Ok(None);
    }
    config.s3_listen.parse().map(Some).map_err(|_| {
        anyhow::anyhow!(
            "invalid server configuration: s3_listen = \"{}\" is not an address; write e.g. \"127.0.0.1:9000\", or \"off\"",
            config.s3_listen
        )
    })
}

/// Lets `wharf cp` and other clients use an API token on the S3 listener.
struct ApiTokens(Control);

#[async_trait::async_trait]
impl wharf_objects::s3::access::TokenCheck for ApiTokens {
    async fn user_for_token(&self, token: &str) -> Option<String> {
        self.0
            .authenticate(token)
            .await
            .ok()
            .flatten()
            .map(|user| user.name)
    }
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    // s3s logs every client error (a 404, a denied request) at ERROR; Wharf logs the
    // failures that are its own, so s3s is quiet unless asked for by name.
    let directives = match std::env::var("RUST_LOG") {
        Ok(value) if !value.is_empty() => value,
        _ => config.log_level.clone(),
    };
    let directives = if directives.contains("s3s") {
        directives
    } else {
        format!("{directives},s3s=off")
    };
    let filter =
        tracing_subscriber::EnvFilter::try_new(&directives).context("invalid log_level")?;
    tracing_subscriber::fmt().with_env_filter(filter).init();
    raise_open_file_limit();

    let listen: SocketAddr = config.listen.parse().map_err(|_| {
        anyhow::anyhow!(
            "invalid server configuration: listen = \"{}\" is not an address; write e.g. \"127.0.0.1:8080\"",
            config.listen
        )
    })?;
    let control_config = control_config(&config)?;
    let data_dir = control_config.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data folder {}", data_dir.display()))?;
    let store = wharf_store::Store::open_sqlite(&data_dir.join("wharf.db"))
        .await
        .with_context(|| format!("cannot open the database in {}", data_dir.display()))?;
    let secrets = wharf_auth::SecretBox::load_or_create(&data_dir.join("secret.key"))?;
    let blobs = open_blob_store(&config, &data_dir).await?;
    let objects = wharf_objects::Objects::new(
        store.clone(),
        blobs,
        secrets,
        wharf_objects::ObjectsConfig {
            max_object_size: setting("max_object_size", &config.max_object_size, parse_size)?,
        },
    );
    let s3_service = wharf_objects::s3::serve::build_service(
        objects.clone(),
        &wharf_objects::s3::serve::S3ListenerConfig {
            base_domain: (!config.s3_base_domain.is_empty()).then(|| config.s3_base_domain.clone()),
        },
    )
    .map_err(|problem| anyhow::anyhow!("invalid server configuration: {problem}"))?;
    let s3_address = s3_address(&config)?;
    let control = Control::new(store, objects, control_config)?;
    if let Some(token) = control.bootstrap_admin().await? {
        let path = data_dir.join("admin-token");
        write_secret_file(&path, &token)?;
        println!(
            "Created the admin user. Its API token (shown once, also saved to {}):",
            path.display()
        );
        println!();
        println!("    {token}");
        println!();
        println!(
            "Log in with: wharf login http://{listen} --token-file {}",
            path.display()
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let s3_listener =
        match s3_address {
            Some(address) => Some(tokio::net::TcpListener::bind(address).await.with_context(
                || format!("cannot listen for S3 on {address} (s3_listen; \"off\" disables it)"),
            )?),
            None => None,
        };
    control.start().await?;
    let (s3_stop, s3_stopped) = tokio::sync::oneshot::channel::<()>();
    let s3_task = s3_listener.map(|listener| {
        let tokens = std::sync::Arc::new(ApiTokens(control.clone()));
        tokio::spawn(wharf_objects::s3::serve::serve(
            listener,
            s3_service,
            tokens,
            async move {
                let _ = s3_stopped.await;
            },
        ))
    });
    let state = wharf_api::ApiState {
        control: control.clone(),
    };
    tracing::info!(%listen, s3 = ?s3_address, data_dir = %data_dir.display(), sandbox = ?control.sandbox(), "Wharf is ready.");
    wharf_api::front::serve(
        listener,
        state,
        config.http_threads as usize,
        shutdown_signal(),
    )
    .await
    .context("the HTTP server failed")?;
    let _ = s3_stop.send(());
    if let Some(task) = s3_task {
        let _ = task.await;
    }
    tracing::info!(
        "Shutting down; running jobs keep running and are re-adopted at the next start."
    );
    control.store().close().await;
    Ok(())
}

/// Each proxied connection holds two descriptors (client and replica) and a WebSocket
/// stays open for hours, so the soft limit on open files (often 1024) is raised to the
/// hard limit, as web servers do.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            let before = limit.rlim_cur;
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                tracing::debug!(
                    before,
                    after = limit.rlim_max,
                    "Raised the open-file limit."
                );
            }
        }
        if limit.rlim_cur < 8192 {
            tracing::warn!(
                limit = limit.rlim_cur,
                "The open-file limit is low; the proxy holds two per connection (raise it with `ulimit -n` or LimitNOFILE=)."
            );
        }
    }
}

async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::future::pending().await,
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// A configured secret: read like a string, shown as `(hidden)` by `{:?}`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HiddenSecret(pub String);

impl std::fmt::Debug for HiddenSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("(hidden)")
    }
}

/// The configured blob store (`blob_store`). An S3 one is checked to be reachable.
async fn open_blob_store(
    config: &ServerConfig,
    data_dir: &Path,
) -> anyhow::Result<std::sync::Arc<dyn wharf_objects::BlobStore>> {
    match config.blob_store.trim() {
        "filesystem" | "" => Ok(std::sync::Arc::new(wharf_objects::FsBlobStore::open(
            &data_dir.join("objects"),
        )?)),
        "s3" => {
            let store = wharf_objects::S3BlobStore::new(s3_blob_config(config)?)
                .map_err(|error| anyhow::anyhow!("invalid server configuration: {error}"))?;
            store.check_bucket().await.map_err(|error| {
                anyhow::anyhow!(
                    "the S3 blob store is not usable; check blob_s3_endpoint, blob_s3_bucket and the key: {error}"
                )
            })?;
            let described = wharf_objects::BlobStore::describe(&store);
            tracing::info!(blobs = %described, "Object bytes are kept in S3.");
            Ok(std::sync::Arc::new(store))
        }
        other => anyhow::bail!(
            "invalid server configuration: blob_store = \"{other}\"; write \"filesystem\" or \"s3\""
        ),
    }
}

/// The `blob_s3_*` keys, with the keys from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
/// when unset.
fn s3_blob_config(config: &ServerConfig) -> anyhow::Result<wharf_objects::S3BlobConfig> {
    fn required(key: &str, value: &str, env: Option<&str>) -> anyhow::Result<String> {
        let from_env = env.and_then(|name| std::env::var(name).ok());
        match (value.trim(), from_env) {
            ("", Some(found)) if !found.trim().is_empty() => Ok(found.trim().to_owned()),
            ("", _) => {
                let or_env = env
                    .map(|name| format!(" (or the {name} environment variable)"))
                    .unwrap_or_default();
                anyhow::bail!(
                    "invalid server configuration: blob_store = \"s3\" needs {key}{or_env}"
                )
            }
            (set, _) => Ok(set.to_owned()),
        }
    }
    let endpoint = required("blob_s3_endpoint", &config.blob_s3_endpoint, None)?;
    Ok(wharf_objects::S3BlobConfig {
        allow_http: endpoint.starts_with("http://"),
        endpoint,
        bucket: required("blob_s3_bucket", &config.blob_s3_bucket, None)?,
        region: required("blob_s3_region", &config.blob_s3_region, None)?,
        prefix: config.blob_s3_prefix.trim().to_owned(),
        access_key_id: required(
            "blob_s3_access_key_id",
            &config.blob_s3_access_key_id,
            Some("AWS_ACCESS_KEY_ID"),
        )?,
        secret_access_key: required(
            "blob_s3_secret_access_key",
            &config.blob_s3_secret_access_key.0,
            Some("AWS_SECRET_ACCESS_KEY"),
        )?,
        ..wharf_objects::S3BlobConfig::default()
    })
}

/// Writes a file only its owner can read.
pub fn write_secret_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}
