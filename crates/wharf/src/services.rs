//! `wharf ps` (an app's replicas) and the logs of service apps (`wharf logs APP` for a
//! service prints its replicas' lines, each prefixed with the replica).

use std::collections::HashSet;
use std::process::ExitCode;

use anyhow::Context;
use futures::StreamExt;
use reqwest::Method;
use wharf_api::dto::{AppInfo, LogLine, LogPage, ReplicaInfo};

use crate::client::Client;
use crate::commands::{print_json, print_table, short_time};

pub async fn ps(app: &str, all: bool, json: bool) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let mut replicas: Vec<ReplicaInfo> = client.get(&format!("/apps/{app}/replicas")).await?;
    if !all {
        replicas.retain(|replica| replica.state != "stopped");
    }
    if json {
        return print_json(&replicas);
    }
    if replicas.is_empty() {
        eprintln!("{app} has no replicas running (`wharf ps {app} --all` shows stopped ones).");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = replicas
        .iter()
        .map(|replica| {
            let counter = |value: Option<u32>| value.map(|v| v.to_string()).unwrap_or_default();
            vec![
                replica.id.clone(),
                replica.version.to_string(),
                replica.state.clone(),
                replica.port.to_string(),
                counter(replica.sessions),
                counter(replica.inflight),
                replica.requests.map(|v| v.to_string()).unwrap_or_default(),
                short_time(&replica.created_at),
                replica.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &[
            "REPLICA",
            "VERSION",
            "STATE",
            "PORT",
            "SESSIONS",
            "IN-FLIGHT",
            "REQUESTS",
            "STARTED",
            "NOTE",
        ],
        &rows,
    );
    Ok(())
}

/// The app, when `target` names a service app; None for jobs and non-apps.
pub async fn service_app(client: &Client, target: &str) -> anyhow::Result<Option<AppInfo>> {
    let response = client
        .send_raw(client.request(Method::GET, &format!("/apps/{target}")))
        .await?;
    if !response.status().is_success() {
        return Ok(None);
    }
    let app: AppInfo = crate::client::decode(response).await?;
    Ok((app.kind == "service").then_some(app))
}

/// Prints the logs of a service's live replicas (or of its newest replica when none is
/// live); with `follow`, keeps printing until interrupted, and follows every replica that
/// starts meanwhile too (scale-out, a new version, a start from zero).
pub async fn logs(
    client: &Client,
    app: &str,
    follow: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let replicas: Vec<ReplicaInfo> = client
        .get(&format!("/apps/{app}/replicas?limit=20"))
        .await?;
    let mut chosen: Vec<&ReplicaInfo> = replicas.iter().filter(|r| r.state != "stopped").collect();
    if chosen.is_empty() {
        chosen.extend(replicas.first());
    }
    if !follow {
        if chosen.is_empty() {
            anyhow::bail!("{app} has no replicas yet; its first request or deploy starts one");
        }
        let prefixed = chosen.len() > 1;
        for replica in chosen {
            let mut offset = 0;
            loop {
                let page: LogPage = client
                    .get(&format!("/replicas/{}/logs?offset={offset}", replica.id))
                    .await?;
                for line in &page.lines {
                    print_line(&replica.id, prefixed, line, json);
                }
                if page.lines.is_empty() || page.complete {
                    break;
                }
                offset = page.next_offset;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut followed: HashSet<String> = HashSet::new();
    let mut streams = futures::stream::SelectAll::new();
    for replica in chosen {
        streams.push(follow_replica(client, &replica.id).await?);
        followed.insert(replica.id.clone());
    }
    let mut look_for_new = tokio::time::interval(NEW_REPLICA_POLL);
    look_for_new.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some((id, message)) = streams.next(), if !streams.is_empty() => {
                let prefixed = followed.len() > 1;
                match message.event.as_str() {
                    "log" => {
                        if let Ok(line) = serde_json::from_str::<LogLine>(&message.data) {
                            print_line(&id, prefixed, &line, json);
                        }
                    }
                    "end" => eprintln!("[wharf] replica {id} stopped"),
                    "error" => eprintln!("[wharf] replica {id}: {}", message.data),
                    _ => {}
                }
            }
            _ = look_for_new.tick() => {
                let replicas: Vec<ReplicaInfo> = client
                    .get(&format!("/apps/{app}/replicas?limit=20"))
                    .await?;
                for replica in replicas.iter().rev() {
                    if replica.state == "stopped" || followed.contains(&replica.id) {
                        continue;
                    }
                    streams.push(follow_replica(client, &replica.id).await?);
                    followed.insert(replica.id.clone());
                    if !json {
                        eprintln!("[wharf] following replica {} ({})", replica.id, replica.state);
                    }
                }
            }
        }
    }
}

/// How often `wharf logs APP -f` looks for replicas started since.
const NEW_REPLICA_POLL: std::time::Duration = std::time::Duration::from_secs(1);

type ReplicaMessages =
    std::pin::Pin<Box<dyn futures::Stream<Item = (String, crate::sse::SseMessage)> + Send>>;

/// The server-sent events of one replica's log, each with the replica's id.
async fn follow_replica(client: &Client, replica: &str) -> anyhow::Result<ReplicaMessages> {
    let request = client
        .request(
            Method::GET,
            &format!("/replicas/{replica}/logs?follow=true"),
        )
        .header("Accept", "text/event-stream");
    let response = client.send(request).await?;
    let id = replica.to_owned();
    let mut parser = crate::sse::SseParser::default();
    let messages = response.bytes_stream().flat_map(move |chunk| {
        let messages = match chunk {
            Ok(chunk) => parser.push(&chunk),
            Err(_) => Vec::new(),
        };
        futures::stream::iter(messages.into_iter().map({
            let id = id.clone();
            move |message| (id.clone(), message)
        }))
    });
    Ok(Box::pin(messages))
}

fn print_line(replica: &str, prefixed: bool, line: &LogLine, json: bool) {
    if json {
        let value = serde_json::json!({"replica": replica, "t": line.t, "s": line.s, "l": line.l});
        println!("{value}");
        return;
    }
    let prefix = if prefixed {
        format!("[{}] ", &replica[replica.len().saturating_sub(6)..])
    } else {
        String::new()
    };
    match line.s.as_str() {
        "err" => eprintln!("{prefix}{}", line.l),
        "wharf" => eprintln!("{prefix}[wharf] {}", line.l),
        _ => println!("{prefix}{}", line.l),
    }
}

/// `wharf logs REPLICA_ID` (prints one replica's lines).
pub async fn replica_logs(client: &Client, replica: &str, json: bool) -> anyhow::Result<bool> {
    let response = client
        .send_raw(client.request(Method::GET, &format!("/replicas/{replica}/logs")))
        .await?;
    if !response.status().is_success() {
        return Ok(false);
    }
    let page: LogPage = crate::client::decode(response)
        .await
        .context("unexpected replica log page")?;
    for line in &page.lines {
        print_line(replica, false, line, json);
    }
    Ok(true)
}

/// After a deploy: waits until a replica of `version` is ready. A replica of it that
/// stops first fails the wait with the end of its log.
pub async fn wait_until_ready(client: &Client, app: &str, version: i64) -> anyhow::Result<()> {
    let spinner = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.set_message(format!(
            "Waiting for {app} version {version} to answer its health check"
        ));
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        spinner
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let result = loop {
        let replicas: Vec<ReplicaInfo> = client
            .get(&format!("/apps/{app}/replicas?limit=20"))
            .await?;
        let of_version: Vec<&ReplicaInfo> =
            replicas.iter().filter(|r| r.version == version).collect();
        if of_version.iter().any(|r| r.state == "ready") {
            break Ok(());
        }
        if let Some(failed) = of_version.iter().find(|r| {
            r.state == "stopped"
                && r.message
                    .as_deref()
                    .is_some_and(|m| !m.starts_with("stopped"))
        }) {
            let page: LogPage = client.get(&format!("/replicas/{}/logs", failed.id)).await?;
            let tail: Vec<String> = page
                .lines
                .iter()
                .rev()
                .take(20)
                .rev()
                .map(|line| format!("  {}", line.l))
                .collect();
            break Err(anyhow::anyhow!(
                "{app} version {version} did not start: replica {} {}. Its last lines:\n{}\n\
                 Wharf keeps restarting it with a growing pause; fix the app and deploy again, \
                 or roll back with `wharf rollback {app} VERSION`.",
                failed.id,
                failed.message.clone().unwrap_or_default(),
                tail.join("\n")
            ));
        }
        if std::time::Instant::now() > deadline {
            break Err(anyhow::anyhow!(
                "{app} version {version} is not ready after 3 minutes; `wharf ps {app}` and `wharf logs {app}` show what it is doing"
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    result
}
