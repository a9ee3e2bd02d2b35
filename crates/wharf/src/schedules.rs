//! `wharf schedules [pause|resume]` and `wharf trigger-url`.

use wharf_api::dto::{ScheduleInfo, TriggerUrlCreated, TriggerUrlRequest};

use crate::cli::{SchedulesArgs, SchedulesCommand, TriggerUrlArgs};
use crate::client::Client;
use crate::commands::{encode_segment, print_json, print_table};

/// "2026-03-29T03:00:00+02:00" and "CEST" → "2026-03-29 03:00:00 CEST".
fn local_time(local: &str, zone: &str) -> String {
    let time: String = local.replace('T', " ").chars().take(19).collect();
    format!("{time} {zone}")
}

/// "2026-03-29T01:00:00Z" → "2026-03-29 01:00:00 UTC".
fn utc_time(utc: &str) -> String {
    let time: String = utc.replace('T', " ").chars().take(19).collect();
    format!("{time} UTC")
}

fn print_schedules(schedules: &[ScheduleInfo]) {
    if schedules.is_empty() {
        println!(
            "No schedule triggers. Add one to a job's wharf.toml:\n\n  [[job.trigger]]\n  schedule = \"0 6 * * *\"\n  timezone = \"Europe/Vienna\"\n\nand deploy it."
        );
        return;
    }
    let mut rows = Vec::new();
    for schedule in schedules {
        let state = if schedule.paused {
            match &schedule.paused_by {
                Some(by) => format!("paused by {by}"),
                None => "paused".to_owned(),
            }
        } else {
            "active".to_owned()
        };
        let mut first = vec![
            schedule.app.clone(),
            schedule.trigger.to_string(),
            schedule.schedule.clone(),
            schedule.timezone.clone(),
            schedule.catch_up.clone(),
            state,
        ];
        if schedule.next.is_empty() {
            first.extend(["never".to_owned(), String::new()]);
            rows.push(first);
            continue;
        }
        for (position, fire) in schedule.next.iter().enumerate() {
            let times = [local_time(&fire.local, &fire.zone), utc_time(&fire.utc)];
            if position == 0 {
                first.extend(times);
                rows.push(std::mem::take(&mut first));
            } else {
                let mut row = vec![String::new(); 6];
                row.extend(times);
                rows.push(row);
            }
        }
    }
    print_table(
        &[
            "APP",
            "TRIGGER",
            "SCHEDULE",
            "TIME ZONE",
            "CATCH UP",
            "STATE",
            "NEXT (LOCAL)",
            "NEXT (UTC)",
        ],
        &rows,
    );
}

pub async fn schedules(args: SchedulesArgs) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let (app, trigger, paused, json) = match args.command {
        None => {
            let path = match &args.app {
                Some(app) => format!("/schedules?app={}", encode_segment(app)),
                None => "/schedules".to_owned(),
            };
            let schedules: Vec<ScheduleInfo> = client.get(&path).await?;
            if args.json {
                return print_json(&schedules);
            }
            print_schedules(&schedules);
            return Ok(());
        }
        Some(SchedulesCommand::Pause(target)) => (target.app, target.trigger, true, target.json),
        Some(SchedulesCommand::Resume(target)) => (target.app, target.trigger, false, target.json),
    };
    let action = if paused { "pause" } else { "resume" };
    let path = match trigger {
        Some(index) => format!("/apps/{}/schedules/{index}/{action}", encode_segment(&app)),
        None => format!("/apps/{}/schedules/{action}", encode_segment(&app)),
    };
    let schedules: Vec<ScheduleInfo> = client.post(&path, &serde_json::json!({})).await?;
    if json {
        return print_json(&schedules);
    }
    let which = match trigger {
        Some(index) => format!("Schedule trigger {index} of {app}"),
        None => format!("The schedule triggers of {app}"),
    };
    if paused {
        println!("{which}: paused. `wharf schedules resume {app}` starts them again.");
    } else {
        println!("{which}: resumed. Fire times that passed while paused are not run.");
    }
    print_schedules(&schedules);
    Ok(())
}

pub async fn trigger_url(args: TriggerUrlArgs) -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let created: TriggerUrlCreated = client
        .post(
            &format!("/apps/{}/trigger-url", encode_segment(&args.app)),
            &TriggerUrlRequest {
                rotate: args.rotate,
            },
        )
        .await?;
    let url = format!("{}{}", client.base, created.path);
    if args.json {
        return print_json(&serde_json::json!({
            "app": created.app,
            "url": url,
            "token": created.token,
        }));
    }
    println!("{url}");
    eprintln!(
        "\nThis URL starts a run of {} without an API token; it is shown only now.\n\
         Start a run with parameters:\n\n  curl -X POST '{url}' -H 'Content-Type: application/json' -d '{{\"params\": {{\"day\": \"2026-01-31\"}}}}'\n\n\
         `wharf trigger-url {} --rotate` replaces it (the old URL stops working).",
        created.app, created.app
    );
    Ok(())
}
