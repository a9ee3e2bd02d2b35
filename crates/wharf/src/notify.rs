//! `wharf notify`: the server's channels, a test message, a run's deliveries.

use reqwest::Method;
use wharf_api::dto::{ChannelInfo, ChannelTestResult, NotificationInfo};

use crate::cli::NotifyCommand;
use crate::client::{decode, Client};
use crate::commands::{print_json, print_table, short_time};

pub async fn notify(command: NotifyCommand) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    match command {
        NotifyCommand::Channels { json } => {
            let channels: Vec<ChannelInfo> = client.get("/notify/channels").await?;
            if json {
                return print_json(&channels);
            }
            if channels.is_empty() {
                eprintln!(
                    "The server has no notification channels; an admin adds them under [notify.channels.NAME] in its configuration (see docs/notifications.md)."
                );
                return Ok(());
            }
            let rows: Vec<Vec<String>> = channels
                .into_iter()
                .map(|channel| vec![channel.name, channel.kind, channel.target])
                .collect();
            print_table(&["CHANNEL", "KIND", "TARGET"], &rows);
        }
        NotifyCommand::Test { channel } => {
            let path = format!("/notify/channels/{}/test", path_segment(&channel));
            let response = client.send(client.request(Method::POST, &path)).await?;
            let result: ChannelTestResult = decode(response).await?;
            println!("Sent a test message to \"{}\".", result.channel);
        }
        NotifyCommand::Deliveries { run, json } => {
            let path = format!("/runs/{}/notifications", path_segment(&run));
            let notifications: Vec<NotificationInfo> = client.get(&path).await?;
            if json {
                return print_json(&notifications);
            }
            if notifications.is_empty() {
                eprintln!("Run {run} has no notifications (its app's [[notify]] rules did not ask for any).");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = notifications
                .into_iter()
                .map(|n| {
                    vec![
                        n.channel,
                        n.event,
                        n.state,
                        n.attempts.to_string(),
                        n.sent_at.as_deref().map(short_time).unwrap_or_default(),
                        n.last_error.unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "CHANNEL",
                    "EVENT",
                    "STATE",
                    "ATTEMPTS",
                    "SENT",
                    "LAST ERROR",
                ],
                &rows,
            );
        }
    }
    Ok(())
}

/// Percent-encodes what is not a plain path character.
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
