//! The proxy benchmarks' targets: the tiny backend (`tiny-backend`) alone, and behind nginx,
//! configurable-http-proxy, express + http-proxy-middleware and Wharf. Each target forwards
//! the prefix `/apps/tiny/` to the backend; every process is stopped when its target drops.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::Bench;

/// The path every target serves the backend under (Wharf mounts service apps there).
pub const PREFIX: &str = "/apps/tiny/";
/// How long a baseline proxy may take to answer its first request.
const BASELINE_READY_LIMIT: Duration = Duration::from_secs(20);
/// Where scripts/install-deps.sh installs the npm baselines, unless `$WHARF_BENCH_NODE`.
const DEFAULT_NODE_DIR: &str = "/opt/wharf-bench-node";

/// The targets, in the order the tables list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Direct,
    Wharf,
    Nginx,
    ConfigurableHttpProxy,
    Express,
}

impl TargetKind {
    pub fn label(self) -> &'static str {
        match self {
            TargetKind::Direct => "direct (no proxy)",
            TargetKind::Wharf => "Wharf",
            TargetKind::Nginx => "nginx",
            TargetKind::ConfigurableHttpProxy => "configurable-http-proxy",
            TargetKind::Express => "express + http-proxy-middleware",
        }
    }
}

/// A child process with its output in a log file; SIGTERM (then SIGKILL) on drop.
pub struct Process {
    child: Child,
    name: String,
    log_path: PathBuf,
}

impl Process {
    pub fn spawn(mut command: Command, name: &str, log_path: &Path) -> anyhow::Result<Process> {
        let log = File::create(log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name} ({command:?})"))?;
        Ok(Process {
            child,
            name: name.to_owned(),
            log_path: log_path.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if the process has exited, with the end of its log.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); the end of its log {}:\n{}",
                self.name,
                self.log_path.display(),
                log_tail(&self.log_path)
            );
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill on the pid of our own unreaped child, which cannot have been reused.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A reason on one line for a table cell or note: lines joined with " / ", at most 400
/// characters (the full text is in the target's log).
pub fn one_line(reason: &str) -> String {
    let joined = reason
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    match joined.char_indices().nth(400) {
        Some((cut, _)) => format!("{} …", &joined[..cut]),
        None => joined,
    }
}

/// A free loopback port (bound and released; the target binds it moments later).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// The status code of one `GET path` over a fresh connection, if any answer came.
pub fn http_status(address: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    let mut filled = 0;
    while filled < head.len() {
        match stream.read(&mut head[filled..]) {
            Ok(0) | Err(_) => return None,
            Ok(read) => filled += read,
        }
    }
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The resident set (VmRSS, KiB) of a process, plus that of its descendants when asked.
pub fn rss_kib(pid: u32, with_descendants: bool) -> anyhow::Result<u64> {
    let own = |pid: u32| -> anyhow::Result<u64> {
        let path = format!("/proc/{pid}/status");
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no VmRSS line in {path}"))
    };
    let mut total = own(pid)?;
    if with_descendants {
        let mut parents = vec![pid];
        while let Some(parent) = parents.pop() {
            for child in children_of(parent) {
                total += own(child).unwrap_or(0);
                parents.push(child);
            }
        }
    }
    Ok(total)
}

fn children_of(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .collect()
}

/// A target ready to take requests at `http://{address}{PREFIX}`.
pub struct Target {
    pub address: SocketAddr,
    /// The process whose memory counts as the proxy's (the backend's, for `Direct`).
    pub proxy_pid: u32,
    /// Count the proxy's child processes too (nginx's workers).
    pub rss_with_descendants: bool,
    /// Processes and servers to stop when the target is dropped.
    pub keep: Vec<Box<dyn std::any::Any>>,
}

impl Target {
    pub fn url(&self) -> String {
        format!("http://{}{PREFIX}", self.address)
    }

    pub fn proxy_rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.proxy_pid, self.rss_with_descendants)
    }
}

/// The `tiny-backend` binary: `$TINY_BACKEND_BIN`, else next to this program.
pub fn tiny_backend_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("TINY_BACKEND_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("TINY_BACKEND_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("tiny-backend")));
    match beside {
        Some(path) if path.is_file() => Ok(path),
        _ => bail!(
            "no tiny-backend binary next to this program; build it with \
             `cargo build --release -p wharf-bench` (it builds both), or set TINY_BACKEND_BIN"
        ),
    }
}

/// Waits until `GET {PREFIX}` on `address` answers 200, or the process dies, or time is up.
pub fn wait_for_200(
    address: SocketAddr,
    process: &mut Process,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if http_status(address, PREFIX) == Some(200) {
            return Ok(());
        }
        process.check_running()?;
        if Instant::now() > deadline {
            bail!(
                "{} did not answer GET {PREFIX} with 200 within {limit:?}; its log {}:\n{}",
                process.name,
                process.log_path.display(),
                log_tail(&process.log_path)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts a `tiny-backend` on a free port and waits for it.
pub fn start_backend(bench: &Bench, scratch: &Path) -> anyhow::Result<(Process, u16)> {
    let binary = tiny_backend_binary()?;
    let port = free_port()?;
    let mut command = Command::new(&binary);
    command.env("PORT", port.to_string());
    let mut process = Process::spawn(command, "tiny-backend", &scratch.join("backend.log"))?;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_200(address, &mut process, BASELINE_READY_LIMIT)?;
    let _ = bench;
    Ok((process, port))
}

fn node_dir() -> PathBuf {
    std::env::var_os("WHARF_BENCH_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_NODE_DIR))
}

/// Debian's nginx binary.
pub fn nginx_binary() -> anyhow::Result<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .context("nginx is not installed; run scripts/install-deps.sh (nginx-light)")
}

pub fn nginx_config(dir: &Path, workers: usize, listen_port: u16, backend_port: u16) -> String {
    let dir = dir.display();
    format!(
        "worker_processes {workers};\n\
         worker_rlimit_nofile 65536;\n\
         daemon off;\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/error.log warn;\n\
         events {{ worker_connections 32768; }}\n\
         http {{\n\
         \x20 access_log off;\n\
         \x20 client_body_temp_path {dir}/client_body;\n\
         \x20 proxy_temp_path {dir}/proxy;\n\
         \x20 upstream tiny {{ server 127.0.0.1:{backend_port}; keepalive 256; }}\n\
         \x20 map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}\n\
         \x20 server {{\n\
         \x20   listen 127.0.0.1:{listen_port} backlog=4096;\n\
         \x20   location {PREFIX} {{\n\
         \x20     proxy_pass http://tiny;\n\
         \x20     proxy_http_version 1.1;\n\
         \x20     proxy_set_header Upgrade $http_upgrade;\n\
         \x20     proxy_set_header Connection $connection_upgrade;\n\
         \x20     proxy_read_timeout 1h;\n\
         \x20   }}\n\
         \x20 }}\n\
         }}\n"
    )
}

const EXPRESS_SCRIPT: &str = r#"// express + http-proxy-middleware forwarding the prefix to the tiny backend (generated).
const express = require("express");
const { createProxyMiddleware } = require("http-proxy-middleware");
const [port, backendPort, prefix] = process.argv.slice(2);
const proxy = createProxyMiddleware({
  target: `http://127.0.0.1:${backendPort}`,
  pathFilter: prefix,
  ws: true,
  logger: undefined,
});
const app = express();
app.use(proxy);
const server = app.listen(Number(port), "127.0.0.1");
server.on("upgrade", proxy.upgrade);
"#;

/// Starts one baseline proxy (not Wharf) in front of the backend on `backend_port`.
pub fn start_baseline(
    bench: &Bench,
    kind: TargetKind,
    scratch: &Path,
    backend_port: u16,
) -> anyhow::Result<Target> {
    let port = free_port()?;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let (command, name, with_descendants) = match kind {
        TargetKind::Direct | TargetKind::Wharf => {
            bail!("internal error: {} is not a baseline proxy", kind.label())
        }
        TargetKind::Nginx => {
            let nginx = nginx_binary()?;
            let config_path = scratch.join("nginx.conf");
            let config = nginx_config(scratch, bench.cores, port, backend_port);
            std::fs::write(&config_path, config)
                .with_context(|| format!("cannot write {}", config_path.display()))?;
            let mut command = Command::new(nginx);
            command
                .arg("-p")
                .arg(scratch)
                .arg("-e")
                .arg(scratch.join("error.log"))
                .arg("-c")
                .arg(&config_path);
            (command, "nginx", true)
        }
        TargetKind::ConfigurableHttpProxy => {
            let program = node_dir().join("node_modules/.bin/configurable-http-proxy");
            if !program.exists() {
                bail!(
                    "configurable-http-proxy is not installed at {}; run scripts/install-deps.sh \
                     (or point WHARF_BENCH_NODE at the folder holding node_modules)",
                    program.display()
                );
            }
            let mut command = Command::new(program);
            command
                .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
                .args([
                    "--api-ip",
                    "127.0.0.1",
                    "--api-port",
                    &free_port()?.to_string(),
                ])
                .args([
                    "--default-target",
                    &format!("http://127.0.0.1:{backend_port}"),
                ])
                .args(["--log-level", "warn"])
                .env("CONFIGPROXY_AUTH_TOKEN", "wharf-bench-local-only");
            (command, "configurable-http-proxy", false)
        }
        TargetKind::Express => {
            let modules = node_dir().join("node_modules");
            if !modules.join("http-proxy-middleware").is_dir() || !modules.join("express").is_dir()
            {
                bail!(
                    "express and http-proxy-middleware are not installed in {}; run \
                     scripts/install-deps.sh (or set WHARF_BENCH_NODE)",
                    modules.display()
                );
            }
            let script = scratch.join("express-proxy.js");
            std::fs::write(&script, EXPRESS_SCRIPT)
                .with_context(|| format!("cannot write {}", script.display()))?;
            let mut command = Command::new("node");
            command
                .arg(&script)
                .args([
                    port.to_string(),
                    backend_port.to_string(),
                    PREFIX.to_owned(),
                ])
                .env("NODE_PATH", &modules)
                .env("NODE_ENV", "production");
            (command, "express + http-proxy-middleware", false)
        }
    };
    let mut process = Process::spawn(command, name, &scratch.join(format!("{name}.log")))?;
    wait_for_200(address, &mut process, BASELINE_READY_LIMIT)?;
    Ok(Target {
        address,
        proxy_pid: process.pid(),
        rss_with_descendants: with_descendants,
        keep: vec![Box::new(process)],
    })
}

/// The backend alone as a target (its own memory counts as the "proxy"'s).
pub fn direct_target(bench: &Bench, scratch: &Path) -> anyhow::Result<(Target, u16)> {
    let (process, port) = start_backend(bench, scratch)?;
    let target = Target {
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        proxy_pid: process.pid(),
        rss_with_descendants: false,
        keep: vec![Box::new(process)],
    };
    Ok((target, port))
}

/// Raises this process's open-file limit (inherited by every target it starts): to 262,144
/// when allowed (root), else the soft limit to the hard one. Returns the new soft limit.
pub fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit write/read the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        let wanted = libc::rlimit {
            rlim_cur: 262_144,
            rlim_max: 262_144.max(limit.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
            return wanted.rlim_cur;
        }
        let soft_to_hard = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &soft_to_hard) == 0 {
            return soft_to_hard.rlim_cur;
        }
        limit.rlim_cur
    }
}
