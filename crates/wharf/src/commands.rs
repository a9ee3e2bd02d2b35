//! The listing and one-shot commands of the CLI.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use reqwest::Method;
use wharf_api::dto::{AppInfo, OutputList, RollbackRequest, RunInfo, VersionInfo, WhoAmI};

use crate::cli::{OutputArgs, RunsArgs};
use crate::client::Client;

/// Prints rows as left-aligned columns under a header.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// "2026-11-23T09:00:00.123Z" → "2026-11-23 09:00:00".
pub fn short_time(rfc3339: &str) -> String {
    rfc3339.replace('T', " ").chars().take(19).collect()
}

pub fn format_millis(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        let seconds = ms / 1000;
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    }
}

pub async fn apps(json: bool) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let apps: Vec<AppInfo> = client.get("/apps").await?;
    if json {
        return print_json(&apps);
    }
    if apps.is_empty() {
        println!("No apps yet; deploy one with `wharf deploy DIR`.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.kind.clone(),
                a.active_version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                short_time(&a.updated_at),
            ]
        })
        .collect();
    print_table(&["NAME", "KIND", "VERSION", "UPDATED"], &rows);
    Ok(())
}

pub async fn versions(app: &str, json: bool) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let versions: Vec<VersionInfo> = client.get(&format!("/apps/{app}/versions")).await?;
    if json {
        return print_json(&versions);
    }
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            vec![
                format!("{}{}", v.number, if v.active { " *" } else { "" }),
                short_time(&v.created_at),
                v.created_by.clone(),
                v.file_count.to_string(),
                wharf_model::duration::format_size(v.bundle_size.max(0) as u64),
                v.bundle_sha256.chars().take(12).collect(),
            ]
        })
        .collect();
    print_table(
        &["VERSION", "CREATED", "BY", "FILES", "SIZE", "SHA256"],
        &rows,
    );
    println!("(* = active)");
    Ok(())
}

pub async fn rollback(app: &str, version: i64) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let info: AppInfo = client
        .post(
            &format!("/apps/{app}/rollback"),
            &RollbackRequest { version },
        )
        .await?;
    println!(
        "{} now runs version {}",
        info.name,
        info.active_version.unwrap_or(version)
    );
    Ok(())
}

pub async fn delete(app: &str, yes: bool) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    if !yes {
        anyhow::ensure!(
            std::io::stdin().is_terminal(),
            "deleting removes every version, run and log of \"{app}\"; add --yes to confirm"
        );
        eprint!(
            "Delete app \"{app}\" with all its versions, runs and logs? Type its name to confirm: "
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        anyhow::ensure!(answer.trim() == app, "not deleted");
    }
    client
        .send(client.request(Method::DELETE, &format!("/apps/{app}")))
        .await?;
    println!("Deleted {app}");
    Ok(())
}

pub fn run_row(run: &RunInfo) -> Vec<String> {
    vec![
        run.id.clone(),
        run.app.clone(),
        run.version.to_string(),
        run.state.clone(),
        run.exit_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into()),
        format!(
            "{}{}",
            run.trigger,
            if run.attempt > 1 {
                format!(" #{}", run.attempt)
            } else {
                String::new()
            }
        ),
        short_time(&run.queued_at),
        run.duration_ms
            .map(format_millis)
            .unwrap_or_else(|| "-".into()),
    ]
}

pub async fn runs(args: RunsArgs) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let path = match &args.app {
        Some(app) => format!("/apps/{app}/runs?limit={}", args.limit),
        None => format!("/runs?limit={}", args.limit),
    };
    let runs: Vec<RunInfo> = client.get(&path).await?;
    if args.json {
        return print_json(&runs);
    }
    let rows: Vec<Vec<String>> = runs.iter().map(run_row).collect();
    print_table(
        &[
            "RUN", "APP", "VERSION", "STATE", "EXIT", "TRIGGER", "QUEUED", "DURATION",
        ],
        &rows,
    );
    Ok(())
}

pub async fn status(run: &str, json: bool) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let info: RunInfo = client.get(&format!("/runs/{run}")).await?;
    if json {
        return print_json(&info);
    }
    println!("Run:       {}", info.id);
    println!("App:       {} (version {})", info.app, info.version);
    println!("State:     {}", info.state);
    if let Some(code) = info.exit_code {
        println!("Exit code: {code}");
    }
    if let Some(error) = &info.error {
        println!("Error:     {error}");
    }
    println!("Trigger:   {} (attempt {})", info.trigger, info.attempt);
    println!("Queued:    {}", short_time(&info.queued_at));
    if let Some(t) = &info.started_at {
        println!("Started:   {}", short_time(t));
    }
    if let Some(t) = &info.finished_at {
        println!("Finished:  {}", short_time(t));
    }
    if let Some(next) = &info.retried_by {
        println!("Retried:   as run {next}");
    }
    Ok(())
}

pub async fn cancel(run: &str) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let info: RunInfo = client.post(&format!("/runs/{run}/cancel"), &()).await?;
    println!(
        "Run {} is {}",
        info.id,
        if info.state == "cancelled" {
            "cancelled"
        } else {
            "being cancelled"
        }
    );
    Ok(())
}

pub async fn output(args: OutputArgs) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let run = crate::follow::resolve_run(&client, &args.run).await?;
    let list: OutputList = client.get(&format!("/runs/{}/outputs", run.id)).await?;
    if args.json && args.dest.is_none() {
        return print_json(&list);
    }
    let Some(dest) = args.dest else {
        println!(
            "Outputs of run {} (on the server in {}):",
            run.id, list.location
        );
        let rows: Vec<Vec<String>> = list
            .files
            .iter()
            .map(|f| vec![f.path.clone(), wharf_model::duration::format_size(f.size)])
            .collect();
        print_table(&["FILE", "SIZE"], &rows);
        return Ok(());
    };
    for file in &list.files {
        let target = dest.join(&file.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let encoded: Vec<String> = file.path.split('/').map(encode_segment).collect();
        let url = format!("/runs/{}/outputs/{}", run.id, encoded.join("/"));
        let response = client.send(client.request(Method::GET, &url)).await?;
        let bytes = response.bytes().await?;
        std::fs::write(&target, &bytes)
            .with_context(|| format!("cannot write {}", target.display()))?;
        println!("{}", target.display());
    }
    Ok(())
}

/// Percent-encodes one path segment.
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::new();
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

pub async fn whoami() -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let me: WhoAmI = client.get("/whoami").await?;
    println!("{} ({}) at {}", me.user, me.role, client.base);
    Ok(())
}
