//! Summaries of samples, result tables (printed and as Markdown), and the machine header of
//! `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// p50, p99 and mean of a set of samples (nearest-rank percentiles).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub count: usize,
}

/// Nearest-rank percentile `percent` (0 < percent <= 100) of sorted samples.
fn nearest_rank(sorted: &[f64], percent: f64) -> f64 {
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Summarises samples; `None` when there are none.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(Summary {
        p50: nearest_rank(&sorted, 50.0),
        p99: nearest_rank(&sorted, 99.0),
        mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        count: sorted.len(),
    })
}

/// One line of a result table.
#[derive(Debug, Clone)]
pub struct Row {
    pub metric: String,
    pub wharf: String,
    pub baseline: String,
    pub ratio: String,
    pub goal: String,
    pub met: String,
}

impl Row {
    pub fn new(metric: impl Into<String>, wharf: impl Into<String>) -> Row {
        Row {
            metric: metric.into(),
            wharf: wharf.into(),
            baseline: "—".into(),
            ratio: "—".into(),
            goal: "—".into(),
            met: "—".into(),
        }
    }

    pub fn baseline(mut self, baseline: impl Into<String>, ratio: f64) -> Row {
        self.baseline = baseline.into();
        self.ratio = format!("{ratio:.2}×");
        self
    }

    pub fn goal(mut self, goal: impl Into<String>, met: bool) -> Row {
        self.goal = goal.into();
        self.met = if met { "met" } else { "NOT met" }.into();
        self
    }
}

/// One measurement: a titled table with an explanation and the command that produced it.
#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    /// What is measured and how (Markdown paragraphs).
    pub method: String,
    pub rows: Vec<Row>,
    /// Extra observations printed under the table.
    pub notes: Vec<String>,
    /// The subcommand that reproduces this table alone.
    pub subcommand: &'static str,
}

const HEADERS: [&str; 6] = ["metric", "Wharf", "baseline/floor", "ratio", "goal", "met?"];

fn cells(row: &Row) -> [&str; 6] {
    [
        &row.metric,
        &row.wharf,
        &row.baseline,
        &row.ratio,
        &row.goal,
        &row.met,
    ]
}

/// The table as aligned plain text for the terminal.
pub fn text_table(section: &Section) -> String {
    let mut widths = HEADERS.map(|header| header.chars().count());
    for row in &section.rows {
        for (width, cell) in widths.iter_mut().zip(cells(row)) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |values: [&str; 6]| -> String {
        let padded: Vec<String> = values
            .iter()
            .zip(widths)
            .map(|(value, width)| format!("{value:<width$}"))
            .collect();
        padded.join(" | ").trim_end().to_owned()
    };
    let mut out = String::new();
    let _ = writeln!(out, "\n== {} ==", section.title);
    let _ = writeln!(out, "{}", line(HEADERS));
    let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
    let _ = writeln!(out, "{}", rule.join("-+-"));
    for row in &section.rows {
        let _ = writeln!(out, "{}", line(cells(row)));
    }
    for note in &section.notes {
        let _ = writeln!(out, "  * {note}");
    }
    out
}

fn markdown_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The section as Markdown: heading, method, table, notes and the producing command.
pub fn markdown_section(section: &Section, invocation: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## {}\n", section.title);
    let _ = writeln!(out, "{}\n", section.method.trim());
    let _ = writeln!(out, "| {} |", HEADERS.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(HEADERS.len()));
    for row in &section.rows {
        let values: Vec<String> = cells(row).iter().map(|cell| markdown_cell(cell)).collect();
        let _ = writeln!(out, "| {} |", values.join(" | "));
    }
    out.push('\n');
    for note in &section.notes {
        let _ = writeln!(out, "- {note}");
    }
    if !section.notes.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "Produced by `{invocation}` (this table alone, printed without rewriting this file: `target/release/wharf-bench {}`).\n",
        section.subcommand
    );
    out
}

/// Facts about the machine and the source the numbers belong to.
#[derive(Debug, Clone)]
pub struct MachineInfo {
    pub date: String,
    pub cores: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub commit: String,
    pub bubblewrap: String,
    /// `/proc/loadavg` when the bench started.
    pub load_at_start: String,
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

fn command_output(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

impl MachineInfo {
    pub fn collect(workspace_root: &Path) -> MachineInfo {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let commit = command_output("git", &["rev-parse", "--short", "HEAD"], workspace_root);
        let dirty = command_output("git", &["status", "--porcelain"], workspace_root).is_some();
        let commit = match commit {
            Some(commit) if dirty => format!("{commit} (with uncommitted changes)"),
            Some(commit) => commit,
            None => "none (the repository has no commit yet)".into(),
        };
        MachineInfo {
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            cores,
            cpu_model,
            kernel: command_output("uname", &["-r"], workspace_root)
                .unwrap_or_else(|| "unknown".into()),
            commit,
            bubblewrap: command_output("bwrap", &["--version"], workspace_root)
                .unwrap_or_else(|| "not installed".into()),
            load_at_start: load_average(),
        }
    }
}

/// The whole of `docs/benchmarks.md`.
pub fn markdown_document(
    machine: &MachineInfo,
    load_at_end: &str,
    sections: &[Section],
    invocation: &str,
) -> String {
    let mut out = String::new();
    out.push_str("# Benchmarks\n\n");
    out.push_str(
        "Generated by the `wharf-bench` program (`bench/`); do not edit by hand, rerun it:\n\n\
         ```sh\n\
         cargo build --release -p wharf -p wharf-bench\n\
         target/release/wharf-bench          # all measurements, rewrites this file\n\
         ```\n\n",
    );
    let _ = writeln!(out, "- Date: {}", machine.date);
    let _ = writeln!(
        out,
        "- Machine: {} cores (`nproc`), {}, Linux {}",
        machine.cores, machine.cpu_model, machine.kernel
    );
    let _ = writeln!(out, "- Commit: {}", machine.commit);
    let _ = writeln!(out, "- Sandbox: {}", machine.bubblewrap);
    let _ = writeln!(
        out,
        "- Load average (1, 5, 15 min) at the start: {}; at the end: {load_at_end}. The bench \
         client, the server, its supervisors and the workloads share these cores with whatever \
         else runs (this machine is shared with other builds), so single numbers can be noisy; \
         the dispatch floor is sampled between the Wharf runs so both see the same load.\n",
        machine.load_at_start
    );
    for section in sections {
        out.push_str(&markdown_section(section, invocation));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::report::summarize;

    fn check(samples: &[f64], expect: Option<(f64, f64, f64)>) {
        let got = summarize(samples).map(|s| (s.p50, s.p99, s.mean));
        assert_eq!(got, expect, "{samples:?}");
    }

    #[test]
    fn summaries() {
        check(&[], None);
        check(&[4.0], Some((4.0, 4.0, 4.0)));
        check(&[3.0, 1.0, 2.0], Some((2.0, 3.0, 2.0)));
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        check(&hundred, Some((50.0, 99.0, 50.5)));
        let two_hundred: Vec<f64> = (1..=200).map(f64::from).collect();
        check(&two_hundred, Some((100.0, 198.0, 100.5)));
    }
}
