//! A Wharf server started for a measurement (stopped on drop), and a small API client.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

/// How a server is configured.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `auto`, `required` or `off`.
    pub sandbox: &'static str,
    pub max_concurrent_runs: u32,
    /// A program (and its arguments) that runs the server: `valgrind --tool=callgrind`.
    pub launcher: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            sandbox: "auto",
            max_concurrent_runs: 16,
            launcher: Vec::new(),
        }
    }
}

/// A spawned `wharf server`. Dropping it stops it (SIGTERM, then SIGKILL) and reaps it.
pub struct Server {
    child: Option<Child>,
    pub address: SocketAddr,
    /// The S3 listener (`s3_listen`).
    pub s3_address: SocketAddr,
    pub data_dir: PathBuf,
    log_path: PathBuf,
    /// Just before the spawn.
    pub spawned_at: Instant,
}

/// A free loopback port (bound and released; the server binds it moments later).
fn free_loopback_address() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?)
}

impl Server {
    /// Spawns `wharf server --config SCRATCH/server.toml` on a free loopback port. Does not
    /// wait for it to be ready.
    pub fn spawn(
        wharf_bin: &Path,
        data_dir: &Path,
        scratch_dir: &Path,
        options: &ServerOptions,
    ) -> anyhow::Result<Server> {
        let address = free_loopback_address()?;
        let s3_address = free_loopback_address()?;
        let config_path = scratch_dir.join("server.toml");
        let config = format!(
            "listen = \"{address}\"\ns3_listen = \"{s3_address}\"\ndata_dir = {data_dir:?}\nsandbox = \"{}\"\nmax_concurrent_runs = {}\nlog_level = \"info\"\n",
            options.sandbox,
            options.max_concurrent_runs,
            data_dir = data_dir.display().to_string(),
        );
        std::fs::write(&config_path, config)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let log_path = scratch_dir.join("server.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let log_for_stdout = log.try_clone()?;
        let mut command = match options.launcher.split_first() {
            Some((program, arguments)) => {
                let mut command = Command::new(program);
                command.args(arguments).arg(wharf_bin);
                command
            }
            None => Command::new(wharf_bin),
        };
        command
            .arg("server")
            .arg("--config")
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log_for_stdout)
            .stderr(log);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("WHARF_") {
                command.env_remove(name);
            }
        }
        let spawned_at = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", wharf_bin.display()))?;
        Ok(Server {
            child: Some(child),
            address,
            s3_address,
            data_dir: data_dir.to_path_buf(),
            log_path,
            spawned_at,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The S3 listener's URL (path-style: `URL/BUCKET/KEY`).
    pub fn s3_url(&self) -> String {
        format!("http://{}", self.s3_address)
    }

    /// Polls `/readyz` every `interval` until it answers 200; returns the time from the spawn.
    pub fn wait_ready(&mut self, interval: Duration, limit: Duration) -> anyhow::Result<Duration> {
        let deadline = self.spawned_at + limit;
        loop {
            if probe_ready(self.address) {
                return Ok(self.spawned_at.elapsed());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "the server exited ({status}) before /readyz answered; its log:\n{}",
                        self.log_tail()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not answer /readyz within {limit:?}; its log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(interval);
        }
    }

    /// The last lines of the server's stdout and stderr.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The admin token written at first start.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        let path = self.data_dir.join("admin-token");
        let token = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the admin token {}", path.display()))?;
        Ok(token.trim().to_owned())
    }

    /// The server process's resident set (VmRSS) in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        self.status_kib("VmRSS")
    }

    /// A `kB` line of `/proc/PID/status` (`VmRSS`, `RssAnon`, `RssFile`).
    pub fn status_kib(&self, field: &str) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} line in {path}"))
    }

    /// Stops the server: SIGTERM, up to 10 s for a graceful exit, then SIGKILL; reaps it.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
        // SAFETY: kill on the pid of our own unreaped child, which cannot have been reused.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill()?;
        child.wait()?;
        bail!("the server did not stop within 10 s of SIGTERM and was killed")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("warning: stopping the server: {error:#}");
        }
        self.stop_replicas();
    }
}

impl Server {
    /// Asks the supervisors of service replicas (which outlive the server by design) to
    /// stop, so no replica outlives its benchmark.
    pub fn stop_replicas(&self) {
        let Ok(entries) = std::fs::read_dir(self.data_dir.join("replicas")) else {
            return;
        };
        for entry in entries.flatten() {
            let pid = std::fs::read_to_string(entry.path().join("shim.pid"))
                .ok()
                .and_then(|text| text.trim().parse::<libc::pid_t>().ok());
            if let Some(pid) = pid {
                if wharf_runtime::is_alive(&entry.path()).unwrap_or(false) {
                    // SAFETY: the shim holds its lock while alive, so the pid is its own.
                    unsafe {
                        libc::kill(pid, libc::SIGTERM);
                    }
                }
            }
        }
    }
}

/// One `GET /readyz` over a fresh connection: true on a 200 answer.
pub fn probe_ready(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_nodelay(true);
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    let mut filled = 0;
    while filled < head.len() {
        match stream.read(&mut head[filled..]) {
            Ok(0) | Err(_) => return false,
            Ok(read) => filled += read,
        }
    }
    head.starts_with(b"HTTP/1.1 200")
}

/// The API calls the benchmarks make.
pub struct ApiClient {
    http: reqwest::blocking::Client,
    base: String,
    token: String,
}

const TERMINAL_STATES: [&str; 5] = ["succeeded", "failed", "timed_out", "cancelled", "lost"];

pub fn is_terminal(state: &str) -> bool {
    TERMINAL_STATES.contains(&state)
}

impl ApiClient {
    pub fn new(server: &Server) -> anyhow::Result<ApiClient> {
        Ok(ApiClient {
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(16)
                .build()?,
            base: format!("{}/api/v1", server.base_url()),
            token: server.admin_token()?,
        })
    }

    fn send(
        &self,
        request: reqwest::blocking::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .with_context(|| format!("{what}: request failed"))?;
        let status = response.status();
        let body = response
            .text()
            .with_context(|| format!("{what}: reading the answer"))?;
        if !status.is_success() {
            bail!("{what}: the server answered {status}: {body}");
        }
        serde_json::from_str(&body)
            .with_context(|| format!("{what}: the answer is not JSON: {body}"))
    }

    /// Packs `app_dir` and deploys it as the next version of `app`.
    pub fn deploy(&self, app: &str, app_dir: &Path) -> anyhow::Result<()> {
        let mut bundle = Vec::new();
        wharf_bundle::pack(app_dir, &mut bundle, &wharf_bundle::PackOptions::default())
            .with_context(|| format!("cannot pack {}", app_dir.display()))?;
        let request = self
            .http
            .post(format!("{}/apps/{app}/versions", self.base))
            .header("Content-Type", "application/gzip")
            .body(bundle);
        self.send(request, &format!("deploy {app}"))?;
        Ok(())
    }

    /// Queues a run of `app`; returns its id.
    pub fn create_run(&self, app: &str) -> anyhow::Result<String> {
        let request = self
            .http
            .post(format!("{}/apps/{app}/runs", self.base))
            .json(&serde_json::json!({"params": {}}));
        let run = self.send(request, &format!("start a run of {app}"))?;
        run["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the new run has no id: {run}"))
    }

    pub fn run(&self, id: &str) -> anyhow::Result<Value> {
        self.send(
            self.http.get(format!("{}/runs/{id}", self.base)),
            &format!("get run {id}"),
        )
    }

    /// Polls the run every `interval` until it has ended; returns it.
    pub fn wait_for_end(
        &self,
        id: &str,
        interval: Duration,
        limit: Duration,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let run = self.run(id)?;
            if is_terminal(run["state"].as_str().unwrap_or("")) {
                return Ok(run);
            }
            if Instant::now() > deadline {
                bail!("run {id} did not end within {limit:?}: {run}");
            }
            std::thread::sleep(interval);
        }
    }

    /// The run's captured lines as (stream, text).
    pub fn log_lines(&self, id: &str) -> anyhow::Result<Vec<(String, String)>> {
        let page = self.send(
            self.http.get(format!("{}/runs/{id}/logs", self.base)),
            &format!("logs of run {id}"),
        )?;
        let lines = page["lines"].as_array().cloned().unwrap_or_default();
        Ok(lines
            .iter()
            .map(|line| {
                (
                    line["s"].as_str().unwrap_or("").to_owned(),
                    line["l"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect())
    }

    /// GET `/api/v1{path}` as JSON.
    pub fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        self.send(
            self.http.get(format!("{}{path}", self.base)),
            &format!("GET {path}"),
        )
    }

    /// The newest `limit` runs of `app`.
    pub fn list_runs(&self, app: &str, limit: usize) -> anyhow::Result<Vec<Value>> {
        let runs = self.send(
            self.http
                .get(format!("{}/runs?app={app}&limit={limit}", self.base)),
            &format!("list runs of {app}"),
        )?;
        runs.as_array()
            .cloned()
            .context("the run list is not an array")
    }
}

/// Writes an app folder with a `wharf.toml` for a job running `command`.
pub fn write_job_app(
    dir: &Path,
    name: &str,
    command: &[&str],
    concurrency: u32,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let quoted: Vec<String> = command.iter().map(|part| format!("{part:?}")).collect();
    let manifest = format!(
        "name = \"{name}\"\nkind = \"job\"\ncommand = [{}]\n\n[job]\nconcurrency = {concurrency}\n",
        quoted.join(", ")
    );
    let path = dir.join("wharf.toml");
    std::fs::write(&path, manifest).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
