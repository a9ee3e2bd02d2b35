//! `wharf events`: the stored events, one readable line each, or live with `--follow`.

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;
use wharf_api::dto::EventItem;

use crate::cli::EventsArgs;
use crate::client::Client;
use crate::commands::short_time;

/// Time, detail type, bucket/key and size of an object event; time, type and source of
/// any other. Events from other S3 servers carry their source at the end.
pub fn event_line(item: &EventItem) -> String {
    let event = &item.event;
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let source = text(&event["source"]);
    let mut line = format!(
        "{:<19}  {:<14}",
        short_time(&text(&event["time"])),
        text(&event["detail-type"])
    );
    let detail = &event["detail"];
    match (
        detail["bucket"]["name"].as_str(),
        detail["object"]["key"].as_str(),
    ) {
        (Some(bucket), Some(key)) => {
            line.push_str(&format!("  s3://{bucket}/{key}"));
            if let Some(size) = detail["object"]["size"].as_u64() {
                line.push_str(&format!("  {}", wharf_model::duration::format_size(size)));
            }
            if source != "wharf.s3" {
                line.push_str(&format!("  [{source}]"));
            }
        }
        _ => line.push_str(&format!("  {source}")),
    }
    line.trim_end().to_owned()
}

fn print_item(item: &EventItem, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(item)?);
    } else {
        println!("{}", event_line(item));
    }
    Ok(())
}

pub async fn events(args: EventsArgs) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    anyhow::ensure!(
        (1..=1000).contains(&args.limit),
        "--limit {} is out of range; use 1 to 1000",
        args.limit
    );
    if !args.follow {
        let items: Vec<EventItem> = client.get(&format!("/events?limit={}", args.limit)).await?;
        if items.is_empty() && !args.json {
            eprintln!("No events yet; they are written when objects change.");
        }
        for item in &items {
            print_item(item, args.json)?;
        }
        return Ok(());
    }
    let mut after: Option<i64> = None;
    loop {
        let path = match after {
            Some(seq) => format!("/events?follow=true&after={seq}&limit=1000"),
            None => format!("/events?follow=true&limit={}", args.limit),
        };
        let request = client
            .request(Method::GET, &path)
            .header("Accept", "text/event-stream");
        let response = client.send(request).await?;
        follow_stream(response, args.json, &mut after).await?;
        // The stream ended without an error (the server restarted): resume after the
        // last event shown.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Prints the events of one SSE connection; `after` tracks the last one printed.
async fn follow_stream(
    response: reqwest::Response,
    json: bool,
    after: &mut Option<i64>,
) -> anyhow::Result<()> {
    let mut body = response.bytes_stream();
    let mut parser = crate::sse::SseParser::default();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            return Ok(());
        };
        for message in parser.push(&chunk) {
            match message.event.as_str() {
                "event" => {
                    let item: EventItem = serde_json::from_str(&message.data)
                        .context("the server sent an event this CLI cannot read")?;
                    *after = Some(item.seq);
                    print_item(&item, json)?;
                }
                "error" => anyhow::bail!("{}", message.data),
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(event: Value, expect: &str) {
        let item = EventItem {
            seq: 1,
            event,
            dispatched: false,
        };
        assert_eq!(event_line(&item), expect);
    }

    #[test]
    fn lines() {
        check(
            json!({"time": "2024-05-01T12:30:45Z", "detail-type": "Object Created", "source": "wharf.s3",
                "detail": {"bucket": {"name": "in"}, "object": {"key": "a b.csv", "size": 2048}}}),
            "2024-05-01 12:30:45  Object Created  s3://in/a b.csv  2KiB",
        );
        check(
            json!({"time": "2024-05-01T12:30:45Z", "detail-type": "Object Deleted", "source": "aws.s3",
                "detail": {"bucket": {"name": "in"}, "object": {"key": "a"}}}),
            "2024-05-01 12:30:45  Object Deleted  s3://in/a  [aws.s3]",
        );
        check(
            json!({"time": "2024-05-01T12:30:45Z", "detail-type": "Ping", "source": "x", "detail": {}}),
            "2024-05-01 12:30:45  Ping            x",
        );
        check(json!(null), "");
    }
}
