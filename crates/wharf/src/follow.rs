//! `wharf run` and `wharf logs`: print a run's lines live (Server-Sent Events) and end with
//! its outcome, following retries.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use futures::StreamExt;
use reqwest::Method;
use wharf_api::dto::{LogLine, LogPage, RunCreateRequest, RunInfo};

use crate::cli::{LogsArgs, RunArgs};
use crate::client::Client;
use crate::commands::{format_millis, print_json};

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let client = Client::from_env()?;
    let mut params = std::collections::BTreeMap::new();
    for param in &args.params {
        let (key, value) = param
            .split_once('=')
            .with_context(|| format!("--param {param:?} must be KEY=VALUE"))?;
        params.insert(key.to_owned(), value.to_owned());
    }
    let request = RunCreateRequest {
        params,
        idempotency_key: None,
    };
    let mut info: RunInfo = client
        .post(&format!("/apps/{}/runs", args.app), &request)
        .await?;
    if args.detach {
        if args.json {
            print_json(&info)?;
        } else {
            println!("{}", info.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "Run {} of {} (version {}) queued.",
        info.id, info.app, info.version
    );
    loop {
        info = follow_run(&client, &info.id, args.json).await?;
        report_end(&client, &info);
        match &info.retried_by {
            Some(next) if info.state != "succeeded" => {
                eprintln!("Retrying as run {next}.");
                info = client.get(&format!("/runs/{next}")).await?;
            }
            _ => break,
        }
    }
    Ok(exit_code_for(&info))
}

pub async fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::from_env()?;
    if crate::services::service_app(&client, &args.target)
        .await?
        .is_some()
    {
        return crate::services::logs(&client, &args.target, args.follow, args.json).await;
    }
    let run = match resolve_run(&client, &args.target).await {
        Ok(run) => run,
        Err(error) => {
            if crate::services::replica_logs(&client, &args.target, args.json).await? {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(error);
        }
    };
    if args.follow {
        let info = follow_run(&client, &run.id, args.json).await?;
        report_end(&client, &info);
        return Ok(ExitCode::SUCCESS);
    }
    let mut offset = 0;
    loop {
        let page: LogPage = client
            .get(&format!("/runs/{}/logs?offset={offset}", run.id))
            .await?;
        for line in &page.lines {
            print_line(line, args.json);
        }
        if page.lines.is_empty() || page.complete {
            break;
        }
        offset = page.next_offset;
    }
    Ok(ExitCode::SUCCESS)
}

/// A run id, or an app name meaning its latest run.
pub(crate) async fn resolve_run(client: &Client, target: &str) -> anyhow::Result<RunInfo> {
    let response = client
        .request(Method::GET, &format!("/runs/{target}"))
        .send()
        .await
        .map_err(|error| client.transport_error(error))?;
    if response.status().is_success() {
        return crate::client::decode(response).await;
    }
    let runs: Vec<RunInfo> = client
        .get(&format!("/apps/{target}/runs?limit=1"))
        .await
        .map_err(|_| anyhow::anyhow!("\"{target}\" is neither a run id nor an app name"))?;
    runs.into_iter().next().with_context(|| {
        format!("app \"{target}\" has no runs yet; start one with `wharf run {target}`")
    })
}

fn print_line(line: &LogLine, json: bool) {
    if json {
        if let Ok(text) = serde_json::to_string(line) {
            println!("{text}");
        }
        return;
    }
    match line.s.as_str() {
        "err" => eprintln!("{}", line.l),
        "wharf" => eprintln!("[wharf] {}", line.l),
        _ => println!("{}", line.l),
    }
}

/// Streams the run's lines until its `end` event; returns the final run.
async fn follow_run(client: &Client, run_id: &str, json: bool) -> anyhow::Result<RunInfo> {
    let spinner = waiting_spinner(run_id);
    let request = client
        .request(Method::GET, &format!("/runs/{run_id}/logs?follow=true"))
        .header("Accept", "text/event-stream");
    let response = client.send(request).await?;
    let mut body = response.bytes_stream();
    let mut parser = crate::sse::SseParser::default();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the log stream was interrupted")?;
        for message in parser.push(&chunk) {
            match message.event.as_str() {
                "log" => {
                    if let Some(spinner) = &spinner {
                        spinner.finish_and_clear();
                    }
                    if let Ok(log_line) = serde_json::from_str::<LogLine>(&message.data) {
                        print_line(&log_line, json);
                    }
                }
                "end" => {
                    if let Some(spinner) = &spinner {
                        spinner.finish_and_clear();
                    }
                    return serde_json::from_str(&message.data).context("unexpected end event");
                }
                "error" => anyhow::bail!("the server could not read the log: {}", message.data),
                _ => {}
            }
        }
    }
    if let Some(spinner) = &spinner {
        spinner.finish_and_clear();
    }
    // The stream closed without an end (server restart): report the current state.
    client.get(&format!("/runs/{run_id}")).await
}

fn waiting_spinner(run_id: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("Waiting for run {run_id}…"));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(spinner)
}

fn report_end(client: &Client, info: &RunInfo) {
    let duration = info.duration_ms.map(format_millis).unwrap_or_default();
    let mut message = format!("Run {} {}", info.id, info.state.replace('_', " "));
    if !duration.is_empty() {
        message.push_str(&format!(" after {duration}"));
    }
    if let Some(code) = info.exit_code.filter(|c| *c != 0) {
        message.push_str(&format!(" (exit code {code})"));
    }
    if let Some(error) = &info.error {
        message.push_str(&format!(": {error}"));
    }
    eprintln!("{message}.");
    if info.state == "succeeded" || info.state == "failed" {
        eprintln!(
            "Outputs: wharf output {} (or GET {}/api/v1/runs/{}/outputs)",
            info.id, client.base, info.id
        );
    }
    let _ = std::io::stderr().flush();
}

/// 0 on success; the job's own exit code on failure; 124 on timeout (like timeout(1)),
/// 130 when cancelled, 1 otherwise.
fn exit_code_for(info: &RunInfo) -> ExitCode {
    match info.state.as_str() {
        "succeeded" => ExitCode::SUCCESS,
        "timed_out" => ExitCode::from(124),
        "cancelled" => ExitCode::from(130),
        _ => match info.exit_code {
            Some(code) if (1..=255).contains(&code) => ExitCode::from(code as u8),
            _ => ExitCode::from(1),
        },
    }
}
