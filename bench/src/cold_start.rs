//! Cold start: how much longer the first request to a scaled-to-zero Plumber app takes
//! through Wharf than R itself takes to start Plumber and answer.
//!
//! Baseline: `Rscript -e plumber::pr_run(...)` started directly (no sandbox, no Wharf),
//! timed from the spawn to the first HTTP answer, polling every millisecond. Wharf: the
//! same app deployed with `min_replicas = 0`, timed from sending the first request through
//! the proxy to its answer (the proxy holds it while the replica starts); the app then
//! goes back to zero (`idle_timeout`) before the next sample. The three kinds of sample
//! (direct, Wharf sandboxed, Wharf with the sandbox off) take turns, so that a change in
//! the machine's speed during the run (R's start time varies by ±20% here) affects them
//! alike.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::report::{summarize, Row, Section};
use crate::server::{ApiClient, Server, ServerOptions};
use crate::targets::http_status;
use crate::Bench;

const SAMPLES: usize = 11;
const GOAL_MS: f64 = 50.0;
const PLUMBER: &str = "#* @get /hello\nfunction() list(ok = TRUE)\n";
const EXPRESSION: &str = "plumber::pr_run(plumber::pr('plumber.R'), host = '127.0.0.1', port = as.integer(Sys.getenv('PORT')))";

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Time from spawning Plumber directly to its first answer.
fn direct_sample(app_dir: &Path) -> anyhow::Result<f64> {
    let port = free_port()?;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let started = Instant::now();
    // The environment a replica gets (only PATH, HOME, TMPDIR and the app's variables), so
    // that both start R alike.

    let home = std::env::temp_dir();
    let mut child = Command::new("Rscript")
        .args(["-e", EXPRESSION])
        .current_dir(app_dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &home)
        .env("TMPDIR", &home)
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start Rscript")?;
    let result = loop {
        if http_status(address, "/hello") == Some(200) {
            break Ok(started.elapsed().as_secs_f64() * 1000.0);
        }
        if started.elapsed() > Duration::from_secs(60) {
            break Err(anyhow::anyhow!("Plumber did not answer within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

pub fn measure(bench: &Bench) -> anyhow::Result<Section> {
    if Command::new("Rscript")
        .args([
            "-e",
            "quit(status = !requireNamespace('plumber', quietly = TRUE))",
        ])
        .status()
        .map(|status| !status.success())
        .unwrap_or(true)
    {
        bail!("R with plumber is not installed (scripts/install-deps.sh installs it)");
    }
    let scratch = bench.fresh_dir("cold-start")?;
    let app_dir = scratch.join("lazy");
    std::fs::create_dir_all(&app_dir)?;
    std::fs::write(app_dir.join("plumber.R"), PLUMBER)?;
    std::fs::write(
        app_dir.join("wharf.toml"),
        "name = \"lazy\"\n\n[service]\naccess = \"public\"\nhealth = \"/hello\"\nmin_replicas = 0\nidle_timeout = \"1s\"\ndrain_timeout = \"0s\"\n",
    )?;

    let mut sandboxed_app = LazyApp::start(bench, &scratch, &app_dir, "required")?;
    let mut unsandboxed_app = LazyApp::start(bench, &scratch, &app_dir, "off")?;
    let (mut direct, mut sandboxed, mut unsandboxed) = (Vec::new(), Vec::new(), Vec::new());
    for sample in 0..SAMPLES {
        direct.push(direct_sample(&app_dir)?);
        sandboxed.push(sandboxed_app.sample(sample)?);
        unsandboxed.push(unsandboxed_app.sample(sample)?);
    }
    sandboxed_app.stop()?;
    unsandboxed_app.stop()?;

    let direct_summary = summarize(&direct).context("no direct samples")?;
    let wharf_summary = summarize(&sandboxed).context("no Wharf samples")?;
    let unsandboxed_summary = summarize(&unsandboxed).context("no Wharf samples")?;
    let overhead = wharf_summary.p50 - direct_summary.p50;
    let overhead_unsandboxed = unsandboxed_summary.p50 - direct_summary.p50;
    let rows = vec![
        Row::new("first answer, p50", format!("{:.0} ms", wharf_summary.p50)).baseline(
            format!("{:.0} ms (Plumber started directly)", direct_summary.p50),
            wharf_summary.p50 / direct_summary.p50,
        ),
        Row::new(
            "cold-start overhead (p50 − p50)",
            format!("{overhead:.1} ms"),
        )
        .goal(format!("≤ {GOAL_MS:.0} ms"), overhead <= GOAL_MS),
        Row::new(
            "cold-start overhead, sandbox off",
            format!("{overhead_unsandboxed:.1} ms"),
        ),
        Row::new(
            "first answer, min / max",
            format!("{:.0} / {:.0} ms", wharf_summary.min, wharf_summary.max),
        )
        .baseline(
            format!("{:.0} / {:.0} ms", direct_summary.min, direct_summary.max),
            wharf_summary.min / direct_summary.min,
        ),
    ];
    Ok(Section {
        title: "Cold start of a Plumber app (scale from zero)".into(),
        method: format!(
            "A Plumber app with one endpoint, deployed with `min_replicas = 0`. Wharf: the time from \
             sending `GET /apps/lazy/hello` to its answer, while the proxy holds the request and a \
             replica starts in its bubblewrap sandbox (a replica started for a waiting request is \
             ready once it accepts connections, tried every millisecond, so the held request is \
             the app's first; once more with `sandbox = \"off\"`); then the app returns to zero \
             (`idle_timeout = \"1s\"`) before the next sample. Baseline: R's own readiness time, \
             `Rscript -e plumber::pr_run(...)` started directly, with the environment a replica gets \
             (`PATH`, `HOME`, `TMPDIR`, `PORT` only), and polled with `GET /hello` every \
             millisecond until it answers. {SAMPLES} samples each, the three kinds taking turns; \
             the overhead is the difference of the medians."
        ),
        rows,
        notes: Vec::new(),
        subcommand: "cold-start",
    })
}

/// The app deployed on a Wharf server of its own with one sandbox setting.
struct LazyApp {
    server: Server,
    client: ApiClient,
}

impl LazyApp {
    fn start(
        bench: &Bench,
        scratch: &Path,
        app_dir: &Path,
        sandbox: &'static str,
    ) -> anyhow::Result<LazyApp> {
        let options = ServerOptions {
            sandbox,
            ..ServerOptions::default()
        };
        let data = scratch.join(format!("data-{sandbox}"));
        let mut server = Server::spawn(&bench.wharf_bin, &data, scratch, &options)?;
        server.wait_ready(Duration::from_millis(5), Duration::from_secs(30))?;
        let client = ApiClient::new(&server)?;
        client.deploy("lazy", app_dir)?;
        Ok(LazyApp { server, client })
    }

    /// Waits for the app to be at zero, then times its first request.
    fn sample(&mut self, sample: usize) -> anyhow::Result<f64> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let replicas = self.client.get_json("/apps/lazy/replicas")?;
            let live = replicas
                .as_array()
                .map(|all| all.iter().filter(|r| r["state"] != "stopped").count())
                .unwrap_or(0);
            if live == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("sample {sample}: the app did not go back to zero within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let started = Instant::now();
        let status = http_status(self.server.address, "/apps/lazy/hello");
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        if status != Some(200) {
            bail!("sample {sample}: the first request answered {status:?}, not 200");
        }
        Ok(elapsed)
    }

    fn stop(mut self) -> anyhow::Result<()> {
        self.server.stop()?;
        self.server.stop_replicas();
        Ok(())
    }
}
