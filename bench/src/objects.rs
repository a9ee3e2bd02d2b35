//! PUT and GET of a 256 MiB object, against `cp` of the same file on the same disk.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::report::{summarize, Row, Section};
use crate::s3::{S3Client, Transfer};
use crate::server::{Server, ServerOptions};
use crate::Bench;

pub const OBJECT_SIZE: u64 = 256 * 1024 * 1024;
pub const ROUNDS: usize = 3;
const BUCKET: &str = "big";
/// `aws s3 cp`'s defaults: 8 MiB parts, 10 requests at once.
const MULTIPART_PART_SIZE: u64 = 8 << 20;
const MULTIPART_CONCURRENCY: usize = 10;
const GOAL_RATIO: f64 = 0.8;

/// Writes `size` bytes of xorshift noise (not compressible, not zeros) and fsyncs them.
fn write_noise_file(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut file =
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    while written < size {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let take = usize::try_from(size - written)
            .unwrap_or(usize::MAX)
            .min(chunk.len());
        file.write_all(&chunk[..take])?;
        written += take as u64;
    }
    file.sync_all()?;
    Ok(())
}

/// Flushes every dirty page of the machine, so that no measurement pays for the
/// write-back of the one before it.
fn sync_everything() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn fsync_file_and_folder(path: &Path) -> anyhow::Result<()> {
    File::open(path)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("cannot fsync {}", path.display()))?;
    let folder = path.parent().unwrap_or(Path::new("."));
    File::open(folder)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot fsync {}", folder.display()))
}

/// `cp SOURCE TARGET`, optionally followed by an fsync of the copy and its folder (what
/// Wharf does before it answers a PUT); returns the wall time.
fn timed_cp(source: &Path, target: &Path, fsync: bool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = Command::new("cp")
        .arg(source)
        .arg(target)
        .status()
        .context("cannot run cp")?;
    if !status.success() {
        bail!(
            "cp {} {} failed: {status}",
            source.display(),
            target.display()
        );
    }
    if fsync {
        fsync_file_and_folder(target)?;
    }
    Ok(started.elapsed())
}

/// CPU seconds a process has used (all threads).
#[derive(Debug, Clone, Copy, Default)]
struct CpuTime {
    user: f64,
    system: f64,
}

impl CpuTime {
    fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }
}

/// A process's CPU time from `/proc/PID/stat`.
fn process_cpu(pid: u32) -> Option<CpuTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ")" (0-based 11, 12).
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| CpuTime {
        user: user / ticks as f64,
        system: system / ticks as f64,
    })
}

/// This process's CPU time (the bench client, all threads).
fn own_cpu() -> CpuTime {
    // SAFETY: getrusage fills the struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    CpuTime {
        user: seconds(usage.ru_utime),
        system: seconds(usage.ru_stime),
    }
}

/// Runs `work`, returning its result with the server's and the client's CPU time.
fn with_cpu<T>(
    server_pid: u32,
    work: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, Option<CpuTime>, CpuTime)> {
    let server_before = process_cpu(server_pid);
    let client_before = own_cpu();
    let result = work()?;
    let client = own_cpu().since(client_before);
    let server = process_cpu(server_pid)
        .zip(server_before)
        .map(|(after, before)| after.since(before));
    Ok((result, server, client))
}

/// CPU seconds (this thread) to MD5 the file with the `md-5` crate, as the server does
/// for every PUT (the ETag); reading the file is not counted.
fn md5_cpu_seconds(path: &Path) -> anyhow::Result<f64> {
    use md5::{Digest, Md5};
    use std::io::Read;
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut chunk = vec![0u8; 1 << 20];
    let mut hasher = Md5::new();
    let mut seconds = 0.0;
    loop {
        let read = file.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        let started = crate::pattern::thread_cpu_seconds();
        hasher.update(&chunk[..read]);
        seconds += crate::pattern::thread_cpu_seconds() - started;
    }
    std::hint::black_box(hasher.finalize());
    Ok(seconds)
}

fn files_equal(left: &Path, right: &Path) -> anyhow::Result<bool> {
    use std::io::Read;
    let mut left = File::open(left)?;
    let mut right = File::open(right)?;
    let mut a = vec![0u8; 1 << 20];
    let mut b = vec![0u8; 1 << 20];
    loop {
        let read = left.read(&mut a)?;
        if read == 0 {
            return Ok(right.read(&mut b)? == 0);
        }
        right.read_exact(&mut b[..read])?;
        if a[..read] != b[..read] {
            return Ok(false);
        }
    }
}

/// One round's times.
#[derive(Debug, Clone, Copy)]
struct Round {
    cp: Duration,
    cp_fsync: Duration,
    put: Transfer,
    put_multipart: Transfer,
    get: Transfer,
    put_server_cpu: Option<CpuTime>,
    get_server_cpu: Option<CpuTime>,
    put_client_cpu: CpuTime,
    get_client_cpu: CpuTime,
}

fn megabytes_per_second(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6
}

struct Samples {
    rounds: Vec<Round>,
    /// CPU seconds to MD5 the whole file once, median of the rounds.
    md5_seconds: f64,
}

fn collect(bench: &Bench) -> anyhow::Result<Samples> {
    let scratch = bench.fresh_dir("put-get")?;
    let source = scratch.join("source.bin");
    write_noise_file(&source, OBJECT_SIZE)?;
    let mut server = Server::spawn(
        &bench.wharf_bin,
        &scratch.join("data"),
        &scratch,
        &ServerOptions::default(),
    )?;
    server.wait_ready(Duration::from_millis(5), Duration::from_secs(30))?;
    let s3 = S3Client::new(&server)?;
    s3.create_bucket(BUCKET)?;
    let pid = server.pid();
    let mut rounds = Vec::with_capacity(ROUNDS);
    let mut md5_seconds = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        md5_seconds.push(md5_cpu_seconds(&source)?);
        let copy = scratch.join(format!("copy-{round}.bin"));
        sync_everything();
        let cp = timed_cp(&source, &copy, false)?;
        std::fs::remove_file(&copy)?;
        sync_everything();
        let cp_fsync = timed_cp(&source, &copy, true)?;
        std::fs::remove_file(&copy)?;
        sync_everything();

        let key = format!("upload-{round}.bin");
        let (put, put_server_cpu, put_client_cpu) =
            with_cpu(pid, || s3.put_file(BUCKET, &key, &source))?;
        sync_everything();

        let multipart_key = format!("multipart-{round}.bin");
        let put_multipart = s3.put_file_multipart(
            BUCKET,
            &multipart_key,
            &source,
            MULTIPART_PART_SIZE,
            MULTIPART_CONCURRENCY,
        )?;
        s3.delete(BUCKET, &multipart_key)?;
        sync_everything();

        let downloaded = scratch.join(format!("download-{round}.bin"));
        let (get, get_server_cpu, get_client_cpu) =
            with_cpu(pid, || s3.get_to_file(BUCKET, &key, &downloaded))?;
        if get.bytes != OBJECT_SIZE {
            bail!("GET returned {} bytes, expected {OBJECT_SIZE}", get.bytes);
        }
        if round == 0 && !files_equal(&source, &downloaded)? {
            bail!("the downloaded object differs from the uploaded file");
        }
        std::fs::remove_file(&downloaded)?;
        s3.delete(BUCKET, &key)?;
        rounds.push(Round {
            cp,
            cp_fsync,
            put,
            put_multipart,
            get,
            put_server_cpu,
            get_server_cpu,
            put_client_cpu,
            get_client_cpu,
        });
    }
    server.stop()?;
    Ok(Samples {
        rounds,
        md5_seconds: median(&md5_seconds)?,
    })
}

/// The median of a few throughputs (nearest rank: the middle one of three).
fn median(values: &[f64]) -> anyhow::Result<f64> {
    Ok(summarize(values).context("no rounds")?.p50)
}

fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|value| format!("{value:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the MD5 alone rules the goal out against each baseline.
fn md5_verdict(md5_seconds: f64, cp_seconds: f64, cp_fsync_seconds: f64) -> String {
    let budget = |baseline: f64| baseline / GOAL_RATIO;
    let against = |name: &str, baseline: f64| {
        if md5_seconds > budget(baseline) {
            format!(
                "Against {name} the goal cannot be met while the server hashes every byte on one \
                 core: the MD5 alone ({md5_seconds:.2} s) needs more than the {:.2} s that \
                 {GOAL_RATIO}× of {name} ({baseline:.2} s) allows.",
                budget(baseline)
            )
        } else {
            format!(
                "Against {name} the MD5 ({md5_seconds:.2} s) fits within the {:.2} s that \
                 {GOAL_RATIO}× of {name} allows; hashing, writing and write-back overlap, so \
                 what stands between is the CPU the socket, the page cache and the client also \
                 take from the same two cores.",
                budget(baseline)
            )
        }
    };
    format!(
        "{} {}",
        against("`cp`", cp_seconds),
        against("`cp` + fsync", cp_fsync_seconds)
    )
}

pub fn measure(bench: &Bench) -> anyhow::Result<Section> {
    let load = crate::report::load_average();
    let Samples {
        rounds,
        md5_seconds,
    } = collect(bench)?;
    let rate = |pick: fn(&Round) -> Duration| -> Vec<f64> {
        rounds
            .iter()
            .map(|round| megabytes_per_second(OBJECT_SIZE, pick(round)))
            .collect()
    };
    let put = rate(|round| round.put.total);
    let multipart = rate(|round| round.put_multipart.total);
    let get = rate(|round| round.get.total);
    let cp = rate(|round| round.cp);
    let cp_fsync = rate(|round| round.cp_fsync);
    let (put_m, multipart_m, get_m, cp_m, cp_fsync_m) = (
        median(&put)?,
        median(&multipart)?,
        median(&get)?,
        median(&cp)?,
        median(&cp_fsync)?,
    );
    let seconds = |megabytes_per_second: f64| OBJECT_SIZE as f64 / 1e6 / megabytes_per_second;

    let row = |metric: &str, wharf: f64, baseline: f64, baseline_label: &str| {
        let ratio = wharf / baseline;
        Row::new(metric, format!("{wharf:.0} MB/s ({:.2} s)", seconds(wharf)))
            .baseline(
                format!(
                    "{baseline:.0} MB/s ({:.2} s, {baseline_label})",
                    seconds(baseline)
                ),
                ratio,
            )
            .goal(format!("≥ {GOAL_RATIO}× baseline"), ratio >= GOAL_RATIO)
    };
    let rows = vec![
        row("PUT 256 MiB, median of 3", put_m, cp_m, "`cp`"),
        row(
            "PUT 256 MiB, median of 3",
            put_m,
            cp_fsync_m,
            "`cp` + fsync",
        ),
        row(
            "PUT 256 MiB as `aws s3 cp` sends it (multipart), median of 3",
            multipart_m,
            cp_fsync_m,
            "`cp` + fsync",
        ),
        row("GET 256 MiB to a file, median of 3", get_m, cp_m, "`cp`"),
    ];

    let mean_secs = |pick: fn(&Round) -> Duration| {
        rounds
            .iter()
            .map(|round| pick(round).as_secs_f64())
            .sum::<f64>()
            / rounds.len() as f64
    };
    let put_body = mean_secs(|round| round.put.first_phase);
    let put_total = mean_secs(|round| round.put.total);
    let get_head = mean_secs(|round| round.get.first_phase);
    let cpu = |pick: fn(&Round) -> Option<CpuTime>| -> String {
        let values: Vec<CpuTime> = rounds.iter().filter_map(pick).collect();
        if values.is_empty() {
            return "unknown".into();
        }
        let count = values.len() as f64;
        let user = values.iter().map(|cpu| cpu.user).sum::<f64>() / count;
        let system = values.iter().map(|cpu| cpu.system).sum::<f64>() / count;
        format!("{user:.2} s user + {system:.2} s system")
    };
    let verdict = |ratio: f64| {
        if ratio >= GOAL_RATIO {
            "met"
        } else {
            "NOT met"
        }
    };
    let notes = vec![
        format!(
            "The issue's goal, \"PUT and GET of a 256 MiB object ≥ {GOAL_RATIO}× of cp\": PUT \
             against plain `cp` {} ({:.2}×), against `cp` + fsync, which makes the copy as \
             durable as Wharf's answer does, {} ({:.2}×); as a multipart upload, against `cp` + \
             fsync, {} ({:.2}×); GET against `cp` {} ({:.2}×).",
            verdict(put_m / cp_m),
            put_m / cp_m,
            verdict(put_m / cp_fsync_m),
            put_m / cp_fsync_m,
            verdict(multipart_m / cp_fsync_m),
            multipart_m / cp_fsync_m,
            verdict(get_m / cp_m),
            get_m / cp_m
        ),
        format!(
            "Every round (MB/s): PUT {}; multipart PUT {}; GET {}; `cp` {}; `cp` + fsync {}. Best: PUT {:.0}, GET {:.0}, \
             `cp` {:.0}, `cp` + fsync {:.0}.",
            list(&put),
            list(&multipart),
            list(&get),
            list(&cp),
            list(&cp_fsync),
            put.iter().copied().fold(0.0, f64::max),
            get.iter().copied().fold(0.0, f64::max),
            cp.iter().copied().fold(0.0, f64::max),
            cp_fsync.iter().copied().fold(0.0, f64::max),
        ),
        format!(
            "Where the PUT's time goes (means of 3): the client handed the last body byte to the \
             kernel after {put_body:.2} s; the answer came {:.2} s later (the server draining the \
             socket, writing the rest, fsyncing the blob, renaming it, fsyncing the folder and \
             committing the metadata and the event). `cp` alone takes {:.2} s and the fsync after \
             it {:.2} s. CPU per transfer (means): the server {} for a PUT and {} for a GET; the \
             bench client {} for a PUT and {} for a GET.",
            put_total - put_body,
            mean_secs(|round| round.cp),
            mean_secs(|round| round.cp_fsync) - mean_secs(|round| round.cp),
            cpu(|round| round.put_server_cpu),
            cpu(|round| round.get_server_cpu),
            cpu(|round| Some(round.put_client_cpu)),
            cpu(|round| Some(round.get_client_cpu)),
        ),
        format!(
            "The ETag is the body's MD5, computed on the server as the bytes arrive: hashing \
             256 MiB with the `md-5` crate (0.10 with its `asm` feature, as the server is built) \
             takes {md5_seconds:.2} s of CPU on one core here, i.e. {:.0} MB/s at most, whatever \
             the disk does; MD5 is a chain, so one body hashes on one core. The server hashes on \
             a thread of its own beside the file writes, and a background `fdatasync` every \
             16 MiB keeps the fsync after the last byte to the last window, so a PUT costs about \
             the MD5 plus what the two cores also spend on the socket and the page cache. {} A \
             multipart upload hashes its parts on both cores at once, which is how `aws s3 cp`, \
             boto3 and rclone send a file this large (8 MiB parts by default).",
            OBJECT_SIZE as f64 / 1e6 / md5_seconds,
            md5_verdict(md5_seconds, seconds(cp_m), seconds(cp_fsync_m)),
        ),
        format!(
            "GET: the answer's head arrived after {:.1} ms (mean); the rest is the body. `cp` \
             copies inside the kernel (`copy_file_range`, one copy, no user space); a GET moves \
             every byte through user space: the server reads the blob (1 MiB reads on tokio's \
             blocking pool) and writes the socket, the client reads the socket and writes the \
             file — four copies, two processes and the loopback TCP stack, on a machine whose \
             two cores are shared (load average {load} when this measurement started).",
            get_head * 1e3
        ),
    ];
    Ok(Section {
        title: "PUT and GET of a 256 MiB object".into(),
        method: format!(
            "A 256 MiB file of pseudo-random bytes is written (and fsynced) in the scratch folder, on the \
             same disk as the server's data folder. Each of {ROUNDS} rounds runs, in this order, with \
             `sync` before each step so no step pays for the write-back of the one before: `cp FILE COPY`; \
             `cp FILE COPY` followed by an fsync of the copy and of its folder (Wharf fsyncs the blob and \
             its folder before it answers a PUT); one PutObject of the file to the S3 listener \
             (`Authorization: Bearer`, `x-amz-content-sha256: UNSIGNED-PAYLOAD`, `Content-Length`; the \
             body goes from the file to the socket with `sendfile`, never held in memory); the same \
             file as a multipart upload with `aws s3 cp`'s defaults ({} MiB parts read into memory, {} \
             sent at once on kept-alive connections, then CompleteMultipartUpload); one GetObject \
             of it streamed into a new file on the same disk through a 1 MiB buffer (not fsynced, like \
             `cp`). The first download is compared byte for byte with the file. The times run from just \
             before connecting (or spawning `cp`) to the last byte of the answer (or `cp`'s exit). \
             Each figure is the median of the {ROUNDS} rounds; MB = 10⁶ bytes. Ratio = Wharf ÷ baseline \
             (higher is better).",
            MULTIPART_PART_SIZE >> 20,
            MULTIPART_CONCURRENCY
        ),
        rows,
        notes,
        subcommand: "put-get",
    })
}

#[cfg(test)]
mod tests {
    use crate::objects::{md5_verdict, median, megabytes_per_second};
    use std::time::Duration;

    #[test]
    fn rates_and_medians() {
        assert_eq!(megabytes_per_second(2_000_000, Duration::from_secs(2)), 1.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]).unwrap(), 2.0);
        assert!(median(&[]).is_err());
    }

    #[test]
    fn md5_verdicts() {
        let check = |md5: f64, cp: f64, cp_fsync: f64, expect: [bool; 2]| {
            let text = md5_verdict(md5, cp, cp_fsync);
            let ruled_out = text.matches("cannot be met").count();
            assert_eq!(
                ruled_out,
                expect.iter().filter(|out| **out).count(),
                "{text}"
            );
        };
        check(0.7, 0.3, 1.0, [true, false]);
        check(0.7, 0.3, 0.5, [true, true]);
        check(0.1, 0.3, 1.0, [false, false]);
    }
}
