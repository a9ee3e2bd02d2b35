//! `wharf-bench`: starts real Wharf servers, measures run dispatch overhead, trivial run
//! throughput, server memory, start-up time, upload → run latency, large object PUT/GET,
//! ListObjectsV2 over a large bucket and (in process) event pattern matching, prints a
//! table per measurement, and (when all measurements run) rewrites `docs/benchmarks.md`.
//!
//! It builds nothing. First build both binaries:
//!
//! ```sh
//! cargo build --release -p wharf -p wharf-bench
//! target/release/wharf-bench                # everything, rewrites docs/benchmarks.md
//! target/release/wharf-bench dispatch       # one measurement, printed only
//! ```
//!
//! The `wharf` binary is `$WHARF_BIN`, else the `wharf` next to this program, else
//! `target/release/wharf` under the workspace root.

mod cold_start;
mod dispatch;
mod floor;
mod grid;
mod lifecycle;
mod listing;
mod objects;
mod pattern;
mod pattern_rules;
mod proxy;
mod proxy_instructions;
mod report;
mod s3;
mod schedules;
mod server;
mod targets;
mod throughput;
mod upload_run;
mod websockets;
mod wharf_proxy;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::report::{MachineInfo, Section};

const USAGE: &str = "\
usage: wharf-bench [all|dispatch|throughput|rss|startup|upload-run|put-get|list|pattern|schedules|proxy|proxy-instructions|websockets|cold-start]... [--no-write]

  all          every measurement (the default); rewrites docs/benchmarks.md
  dispatch     run dispatch overhead against the bubblewrap and plain-spawn floors
  throughput   trivial runs per second, 500 runs, 64 at once
  rss          the server's resident memory, idle and after 200 runs
  startup      time from spawning the server to /readyz answering
  upload-run   PutObject answer to the exec of the run its event started
  put-get      PUT and GET of a 256 MiB object against cp
  list         ListObjectsV2 pages over a bucket of 100,000 objects
  pattern      events per second against 100 event patterns (in process)
  schedules    schedule lateness with 1,000 schedules; idle CPU with 10,000
  proxy        wrk through Wharf, nginx, configurable-http-proxy, express (8/64/256 conns)
  proxy-instructions
               instructions per proxied request, Wharf and nginx under callgrind
  websockets   proxy memory with 10,000 idle WebSockets (Wharf, nginx, direct)
  cold-start   first request to a scaled-to-zero Plumber app vs R's own start-up
  --no-write   print only; do not rewrite docs/benchmarks.md

Build first: cargo build --release -p wharf -p wharf-bench
The wharf binary: $WHARF_BIN, else next to this program, else target/release/wharf.";

/// What every measurement needs.
pub struct Bench {
    pub wharf_bin: PathBuf,
    pub cores: usize,
    scratch: tempfile::TempDir,
}

impl Bench {
    /// A new empty folder under the scratch folder.
    pub fn fresh_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.scratch.path().join(name);
        if dir.exists() {
            bail!(
                "internal error: scratch folder {} used twice",
                dir.display()
            );
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(dir)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measurement {
    Dispatch,
    Throughput,
    Rss,
    Startup,
    UploadRun,
    PutGet,
    List,
    Pattern,
    Schedules,
    Proxy,
    ProxyInstructions,
    WebSockets,
    ColdStart,
}

const ALL: [Measurement; 13] = [
    Measurement::Dispatch,
    Measurement::Throughput,
    Measurement::Rss,
    Measurement::Startup,
    Measurement::UploadRun,
    Measurement::PutGet,
    Measurement::List,
    Measurement::Pattern,
    Measurement::Schedules,
    Measurement::Proxy,
    Measurement::ProxyInstructions,
    Measurement::WebSockets,
    Measurement::ColdStart,
];

fn run_measurement(bench: &Bench, measurement: Measurement) -> anyhow::Result<Section> {
    match measurement {
        Measurement::Dispatch => dispatch::measure(bench),
        Measurement::Throughput => throughput::measure(bench),
        Measurement::Rss => lifecycle::measure_rss(bench),
        Measurement::Startup => lifecycle::measure_startup(bench),
        Measurement::UploadRun => upload_run::measure(bench),
        Measurement::PutGet => objects::measure(bench),
        Measurement::List => listing::measure(bench),
        Measurement::Pattern => pattern::measure(bench),
        Measurement::Schedules => schedules::measure(bench),
        Measurement::Proxy => proxy::measure(bench),
        Measurement::ProxyInstructions => proxy_instructions::measure(bench),
        Measurement::WebSockets => websockets::measure(bench),
        Measurement::ColdStart => cold_start::measure(bench),
    }
}

/// The workspace root: this crate's parent folder at build time.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

fn find_wharf_binary(root: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("WHARF_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "WHARF_BIN={} is not a file; point it at a built wharf binary",
                path.display()
            );
        }
        return Ok(path);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("wharf")));
    let candidates = beside
        .into_iter()
        .chain([root.join("target/release/wharf")]);
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no wharf binary found next to this program or at {}; build it with \
         `cargo build --release -p wharf -p wharf-bench`, or set WHARF_BIN",
        root.join("target/release/wharf").display()
    )
}

struct Arguments {
    measurements: Vec<Measurement>,
    all: bool,
    write: bool,
}

fn parse_arguments() -> anyhow::Result<Option<Arguments>> {
    let mut measurements = Vec::new();
    let mut write = true;
    let mut all = false;
    for argument in std::env::args().skip(1) {
        match argument.as_str() {
            "-h" | "--help" => return Ok(None),
            "--no-write" => write = false,
            "all" => all = true,
            "dispatch" => measurements.push(Measurement::Dispatch),
            "throughput" => measurements.push(Measurement::Throughput),
            "rss" => measurements.push(Measurement::Rss),
            "startup" => measurements.push(Measurement::Startup),
            "upload-run" => measurements.push(Measurement::UploadRun),
            "put-get" => measurements.push(Measurement::PutGet),
            "list" => measurements.push(Measurement::List),
            "pattern" => measurements.push(Measurement::Pattern),
            "schedules" => measurements.push(Measurement::Schedules),
            "proxy" => measurements.push(Measurement::Proxy),
            "proxy-instructions" => measurements.push(Measurement::ProxyInstructions),
            "websockets" => measurements.push(Measurement::WebSockets),
            "cold-start" => measurements.push(Measurement::ColdStart),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    if measurements.is_empty() {
        all = true;
    }
    if all {
        measurements = ALL.to_vec();
    }
    Ok(Some(Arguments {
        measurements,
        all,
        write,
    }))
}

fn main() -> anyhow::Result<()> {
    let Some(arguments) = parse_arguments()? else {
        println!("{USAGE}");
        return Ok(());
    };
    let root = workspace_root();
    let wharf_bin = find_wharf_binary(&root)?;
    let machine = MachineInfo::collect(&root);
    let bench = Bench {
        wharf_bin,
        cores: machine.cores,
        scratch: tempfile::Builder::new().prefix("wharf-bench-").tempdir()?,
    };
    println!(
        "wharf-bench: {} on {} cores ({}), commit {}, load average {}",
        bench.wharf_bin.display(),
        machine.cores,
        machine.cpu_model,
        machine.commit,
        machine.load_at_start
    );
    let started = Instant::now();
    let mut sections = Vec::new();
    for measurement in &arguments.measurements {
        let section_started = Instant::now();
        let section = run_measurement(&bench, *measurement)
            .with_context(|| format!("measuring {measurement:?}"))?;
        print!("{}", report::text_table(&section));
        println!(
            "  ({measurement:?} took {:.1} s)",
            section_started.elapsed().as_secs_f64()
        );
        sections.push(section);
    }
    println!(
        "\nAll measurements took {:.1} s; load average now {}.",
        started.elapsed().as_secs_f64(),
        report::load_average()
    );

    if arguments.all && arguments.write {
        let invocation = std::iter::once("target/release/wharf-bench".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" ");
        let document =
            report::markdown_document(&machine, &report::load_average(), &sections, &invocation);
        let path = root.join("docs/benchmarks.md");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&path, document)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("Wrote {}.", path.display());
    } else if arguments.write {
        println!("Not rewriting docs/benchmarks.md: it holds every measurement; run without arguments (or `all`) for that.");
    }
    Ok(())
}
