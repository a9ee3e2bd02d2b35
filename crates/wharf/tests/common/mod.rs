//! Test harness: the real `wharf` binary started on a free port with a temporary data
//! folder, driven through its CLI and HTTP API.

#![allow(dead_code)]

mod s3;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

/// Polls `probe` until it returns Some or the deadline passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The S3 listener's port.
    pub s3_port: u16,
    pub token: String,
    child: Option<Child>,
    extra_config: String,
    extra_env: Vec<(String, String)>,
}

impl Server {
    /// Starts a server with extra lines for its TOML configuration.
    pub fn start_with(extra_config: &str) -> Server {
        Server::start_with_env(extra_config, &[])
    }

    /// Starts a server with extra configuration lines and environment variables.
    pub fn start_with_env(extra_config: &str, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = Server {
            dir,
            port: free_port(),
            s3_port: free_port(),
            token: String::new(),
            child: None,
            extra_config: extra_config.to_owned(),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        server.boot();
        server.token = std::fs::read_to_string(server.data_dir().join("admin-token"))
            .expect("admin-token written on first start")
            .trim()
            .to_owned();
        server
    }

    pub fn start() -> Server {
        Server::start_with("kill_grace = \"1s\"\n")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn s3_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    fn boot(&mut self) {
        let config = self.dir.path().join("server.toml");
        let mut text = format!(
            "listen = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\n",
            self.port,
            self.data_dir().display()
        );
        if !self.extra_config.contains("s3_listen") {
            text.push_str(&format!("s3_listen = \"127.0.0.1:{}\"\n", self.s3_port));
        }
        if !self.extra_config.contains("sandbox =") {
            text.push_str("sandbox = \"required\"\n");
        }
        text.push_str(&self.extra_config);
        std::fs::write(&config, text).expect("write config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("server log");
        let child = Command::new(WHARF)
            .args(["server", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start wharf server");
        self.child = Some(child);
        let url = format!("{}/readyz", self.url());
        wait_for("the server to be ready", Duration::from_secs(20), || {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("the server exited with {status}:\n{}", self.server_log());
                }
            }
            reqwest::blocking::get(&url)
                .ok()
                .filter(|r| r.status().is_success())
        });
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs the CLI with `line` (and a newline) on its standard input; it must succeed.
    /// Its standard output.
    pub fn cli_ok_with_stdin(&self, args: &[&str], line: &str) -> String {
        let mut child = self
            .cli_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run wharf");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{line}\n").as_bytes())
            .expect("write standard input");
        let output = child.wait_with_output().expect("wait");
        assert!(
            output.status.success(),
            "wharf {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `wharf secret set NAME` with `value` piped in; its output.
    pub fn set_secret(&self, name: &str, value: &str) -> String {
        self.cli_ok_with_stdin(&["secret", "set", name], value)
    }

    /// kill -9 of the server process only (its run supervisors live on).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.boot();
    }

    /// Runs the CLI against this server; HOME is private so no credentials leak in.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_cmd(args).output().expect("run wharf")
    }

    pub fn cli_cmd(&self, args: &[&str]) -> Command {
        let mut command = Command::new(WHARF);
        command
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("XDG_CONFIG_HOME")
            .env("WHARF_URL", self.url())
            .env("WHARF_TOKEN", &self.token)
            .stdin(Stdio::null());
        command
    }

    /// Runs the CLI and asserts success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "wharf {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn http(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::new()
    }

    pub fn get(&self, path: &str) -> Value {
        let response = self
            .http()
            .get(format!("{}/api/v1{path}", self.url()))
            .bearer_auth(&self.token)
            .send()
            .expect("GET");
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().expect("JSON")
    }

    pub fn post(&self, path: &str, body: Value) -> reqwest::blocking::Response {
        self.http()
            .post(format!("{}/api/v1{path}", self.url()))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .expect("POST")
    }

    /// Deploys a folder with the CLI.
    pub fn deploy(&self, dir: &Path) -> String {
        self.cli_ok(&["deploy", dir.to_str().expect("utf-8 path")])
    }

    /// Starts a run through the API and returns its id.
    pub fn start_run(&self, app: &str, params: Value) -> String {
        let response = self.post(
            &format!("/apps/{app}/runs"),
            serde_json::json!({ "params": params }),
        );
        assert_eq!(response.status().as_u16(), 201, "start run of {app}");
        let run: Value = response.json().expect("run JSON");
        run["id"].as_str().expect("run id").to_owned()
    }

    pub fn run(&self, id: &str) -> Value {
        self.get(&format!("/runs/{id}"))
    }

    /// Waits until the run reaches a terminal state and returns it.
    pub fn wait_finished(&self, id: &str, timeout: Duration) -> Value {
        wait_for(&format!("run {id} to finish"), timeout, || {
            let run = self.run(id);
            let state = run["state"].as_str().unwrap_or_default().to_owned();
            matches!(
                state.as_str(),
                "succeeded" | "failed" | "timed_out" | "cancelled" | "lost"
            )
            .then_some(run)
        })
    }

    pub fn wait_state(&self, id: &str, state: &str, timeout: Duration) -> Value {
        wait_for(&format!("run {id} to be {state}"), timeout, || {
            let run = self.run(id);
            (run["state"] == state).then_some(run)
        })
    }

    pub fn log_text(&self, id: &str) -> String {
        let page = self.get(&format!("/runs/{id}/logs"));
        page["lines"]
            .as_array()
            .map(|lines| {
                lines
                    .iter()
                    .map(|l| l["l"].as_str().unwrap_or_default().to_owned())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        // Stop supervisors a test left running, so no workload outlives its test.
        let runs = std::fs::read_dir(self.data_dir().join("runs"))
            .into_iter()
            .flatten();
        let replicas = std::fs::read_dir(self.data_dir().join("replicas"))
            .into_iter()
            .flatten();
        {
            for entry in runs.chain(replicas).flatten() {
                if let Ok(pid) = std::fs::read_to_string(entry.path().join("shim.pid")) {
                    if let Ok(pid) = pid.trim().parse::<i32>() {
                        if wharf_runtime::is_alive(&entry.path()).unwrap_or(false) {
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                    }
                }
            }
        }
    }
}

/// Writes an app folder from (path, contents) pairs.
pub fn app_folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, contents) in files {
        let full = dir.path().join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        let mut file = std::fs::File::create(&full).expect("create");
        file.write_all(contents.as_bytes()).expect("write");
    }
    dir
}

/// A job app whose command is `sh -c SCRIPT`.
pub fn shell_job(name: &str, script: &str, job_settings: &str) -> tempfile::TempDir {
    let manifest = format!(
        "name = \"{name}\"\nkind = \"job\"\ncommand = [\"sh\", \"-c\", {script:?}]\n\n[job]\n{job_settings}\n"
    );
    app_folder(&[("wharf.toml", &manifest)])
}

/// Pids of processes whose command line contains `needle`.
pub fn processes_matching(needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if text.contains(needle) {
                    found.push(pid);
                }
            }
        }
    }
    found
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
