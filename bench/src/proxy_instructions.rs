//! Instructions per proxied request: Wharf and nginx each run under valgrind's callgrind
//! while wrk sends them requests, and the instructions the proxy executed (user space, all
//! threads) are divided by the requests answered. Unlike req/s on a shared machine, the
//! count repeats to within a percent from run to run, so it shows what a change to the
//! proxy path costs or saves.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::report::{Row, Section};
use crate::server::ServerOptions;
use crate::targets::{self, http_status, Process, Target, PREFIX};
use crate::Bench;

/// Requests before counting starts (connections, pools and caches warm).
const WARM_UP_REQUESTS: usize = 300;
/// How long wrk sends requests while the instructions are counted.
const DURATION: Duration = Duration::from_secs(8);
const CONNECTIONS: usize = 8;
/// Start-up limits are this many times longer under valgrind.
const SLOWDOWN: u32 = 6;

/// One proxy's count.
struct Counted {
    requests: u64,
    instructions: u64,
}

impl Counted {
    fn per_request(&self) -> f64 {
        self.instructions as f64 / self.requests as f64
    }
}

pub fn measure(bench: &Bench) -> anyhow::Result<Section> {
    for (program, argument) in [
        ("valgrind", "--version"),
        ("callgrind_control", "--version"),
    ] {
        let found = Command::new(program)
            .arg(argument)
            .output()
            .is_ok_and(|output| output.status.success());
        if !found {
            bail!("{program} is not installed; run scripts/install-deps.sh (valgrind)");
        }
    }
    let scratch = bench.fresh_dir("proxy-instructions")?;
    let (backend, backend_port) = targets::start_backend(bench, &scratch)?;

    println!("  starting nginx under callgrind ...");
    let nginx_out = scratch.join("nginx.callgrind");
    let nginx = start_nginx(&scratch, backend_port, &nginx_out)?;
    let nginx_count = count(&nginx, &nginx_out)?;
    drop(nginx);

    println!("  starting Wharf under callgrind ...");
    let wharf_out = scratch.join("wharf.callgrind");
    let options = ServerOptions {
        launcher: callgrind_launcher(&wharf_out),
        ..ServerOptions::default()
    };
    let wharf = crate::wharf_proxy::wharf_proxy_target_with(
        bench,
        "proxy-instructions-wharf",
        &options,
        SLOWDOWN,
    )
    .map_err(anyhow::Error::msg)?;
    let wharf_count = count(&wharf, &wharf_out)?;
    drop(wharf);
    drop(backend);

    let ratio = wharf_count.per_request() / nginx_count.per_request();
    let rows = vec![Row::new(
        "instructions per proxied request",
        format!("{:.0}", wharf_count.per_request()),
    )
    .baseline(format!("{:.0} (nginx)", nginx_count.per_request()), ratio)];
    Ok(Section {
        title: "Reverse proxy: instructions per request".into(),
        method: format!(
            "The same `tiny-backend` and `GET {PREFIX}` as the throughput table, but counted \
             rather than timed: the proxy runs under `valgrind --tool=callgrind`; after \
             {WARM_UP_REQUESTS} warm-up requests its counters are zeroed (`callgrind_control \
             -z`), `wrk -t1 -c{CONNECTIONS} -d{}s` sends requests, and the counters are dumped \
             (`callgrind_control -d`). The figure is the instructions executed in the proxy's \
             process (user space, every thread; the kernel's share is not counted) over the \
             requests wrk completed. nginx runs one worker with `master_process off`; Wharf runs \
             with default settings and the backend deployed as the service app `tiny`, so its \
             count includes everything the server did meanwhile (timers, supervisors), a few \
             instructions per request. Counts repeat within about 1% from run to run, so a \
             change to the proxy path shows here when req/s is lost in the machine's drift.",
            DURATION.as_secs()
        ),
        rows,
        notes: vec![format!(
            "Requests counted: Wharf {}, nginx {} (valgrind runs each some 20 to 50 times \
             slower than natively).",
            wharf_count.requests, nginx_count.requests
        )],
        subcommand: "proxy-instructions",
    })
}

fn callgrind_launcher(out_file: &Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}", out_file.display()),
    ]
}

/// nginx with one worker in its own process (`master_process off`), under callgrind.
fn start_nginx(scratch: &Path, backend_port: u16, out_file: &Path) -> anyhow::Result<Target> {
    let nginx = targets::nginx_binary()?;
    let dir = scratch.join("nginx");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let port = targets::free_port()?;
    let config = format!(
        "master_process off;\n{}",
        targets::nginx_config(&dir, 1, port, backend_port)
    );
    let config_path = dir.join("nginx.conf");
    std::fs::write(&config_path, config)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let launcher = callgrind_launcher(out_file);
    let mut command = Command::new(&launcher[0]);
    command
        .args(&launcher[1..])
        .arg(nginx)
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&config_path);
    let mut process = Process::spawn(command, "nginx under callgrind", &dir.join("out.log"))?;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    targets::wait_for_200(address, &mut process, Duration::from_secs(20) * SLOWDOWN)?;
    Ok(Target {
        address,
        proxy_pid: process.pid(),
        rss_with_descendants: false,
        keep: vec![Box::new(process)],
    })
}

/// Warms `target` up, then counts the instructions of its process over a wrk run.
fn count(target: &Target, out_file: &Path) -> anyhow::Result<Counted> {
    for _ in 0..WARM_UP_REQUESTS {
        if http_status(target.address, PREFIX) != Some(200) {
            bail!("GET {} did not answer 200 during the warm-up", target.url());
        }
    }
    let pid = target.proxy_pid.to_string();
    callgrind_control(&["-z", &pid])?;
    let output = Command::new("wrk")
        .arg("-t1")
        .arg(format!("-c{CONNECTIONS}"))
        .arg(format!("-d{}s", DURATION.as_secs()))
        .arg(target.url())
        .output()
        .context("cannot run wrk; run scripts/install-deps.sh")?;
    callgrind_control(&["-d", &pid])?;
    let text = String::from_utf8_lossy(&output.stdout);
    let requests = wrk_requests(&text)
        .with_context(|| format!("no request count in wrk's output:\n{text}"))?;
    let instructions = read_dump_total(out_file)?;
    Ok(Counted {
        requests,
        instructions,
    })
}

fn callgrind_control(arguments: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("callgrind_control")
        .args(arguments)
        .output()
        .context("cannot run callgrind_control")?;
    if !output.status.success() {
        bail!(
            "callgrind_control {} failed: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `N requests in 8.00s, ...` → N.
fn wrk_requests(output: &str) -> Option<u64> {
    output
        .lines()
        .find(|line| line.contains(" requests in "))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .filter(|&count| count > 0)
}

/// The instruction total of the newest dump (`OUT.1`, `OUT.2`, ... as callgrind names them).
fn read_dump_total(out_file: &Path) -> anyhow::Result<u64> {
    let name = out_file
        .file_name()
        .and_then(|name| name.to_str())
        .context("internal error: the callgrind output file has no name")?;
    let dir = out_file
        .parent()
        .context("internal error: the callgrind output file has no folder")?;
    // The dump may take a moment to be written after callgrind_control returns.
    for _ in 0..100 {
        let newest = std::fs::read_dir(dir)?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let file = entry.file_name().to_str()?.to_owned();
                let part: u32 = file.strip_prefix(name)?.strip_prefix('.')?.parse().ok()?;
                Some((part, entry.path()))
            })
            .max();
        if let Some((_, path)) = newest {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if let Some(total) = dump_total(&text) {
                return Ok(total);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "callgrind wrote no complete dump next to {}",
        out_file.display()
    )
}

/// The `summary:` (or `totals:`) line of a callgrind dump.
fn dump_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| {
            line.strip_prefix("summary:")
                .or_else(|| line.strip_prefix("totals:"))
        })
        .and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::{dump_total, wrk_requests};

    #[test]
    fn parses_wrk_and_callgrind_output() {
        let wrk = "Running 8s test\n  1 threads and 8 connections\n  19921 requests in 8.00s, \
                   3.86MB read\nRequests/sec:   2490.1\n";
        assert_eq!(wrk_requests(wrk), Some(19921));
        assert_eq!(wrk_requests("  0 requests in 8.00s"), None);
        assert_eq!(wrk_requests("nothing"), None);
        let dump = "version: 1\nevents: Ir\nsummary: 729411734\n\nfn=(1) main\n";
        assert_eq!(dump_total(dump), Some(729411734));
        assert_eq!(dump_total("events: Ir\ntotals: 42\n"), Some(42));
        assert_eq!(dump_total("events: Ir\n"), None);
    }
}
