//! Reading `[job]`, `[[job.trigger]]` and `[job.io]`.

use std::time::Duration;

use toml_edit::{Item, TableLike, Value};

use crate::manifest::checker::{
    describe_item, describe_value, join_path, join_words, Checker, IO_KEYS, JOB_KEYS,
    OBJECT_CREATED_KEYS, TRIGGER_KEYS,
};
use crate::manifest::{JobIo, JobSettings, Overlap, Trigger};
use crate::pattern::EventPattern;
use crate::schedule::{parse_timezone, validate_cron, CATCH_UP_VALUES};

/// The keys that make a trigger what it is; a trigger has exactly one of them.
const TRIGGER_SOURCES: [&str; 3] = ["schedule", "object_created", "pattern"];

pub(crate) fn read_job(checker: &mut Checker<'_>, table: &dyn TableLike) -> JobSettings {
    let path = "job";
    checker.check_keys(table, path, "[job]", &JOB_KEYS);
    let mut job = JobSettings::default();
    if let Some(timeout) = checker.read_duration(table, path, "timeout") {
        if timeout.value == Duration::ZERO {
            checker.field_error(
                timeout.line,
                "job.timeout",
                "a timeout of 0s would stop every run at once; remove timeout for no limit, or write for example \"10m\"",
            );
        } else {
            job.timeout = Some(timeout.value);
        }
    }
    if let Some(retries) = checker.read_count(table, path, "retries", 0, 100) {
        job.retries = retries.value;
    }
    if let Some(backoff) = checker.read_duration(table, path, "retry_backoff") {
        job.retry_backoff = backoff.value;
    }
    if let Some(concurrency) = checker.read_count(table, path, "concurrency", 1, 1000) {
        job.concurrency = concurrency.value;
    }
    if let Some(overlap) = checker.read_choice(table, path, "overlap", &["queue", "skip"]) {
        job.overlap = if overlap.value == "skip" {
            Overlap::Skip
        } else {
            Overlap::Queue
        };
    }
    if let Some((key, item)) = table.get_key_value("trigger") {
        let line = checker.item_line(key, item);
        job.triggers = read_triggers(checker, item, line);
    }
    if let Some((io, _)) = checker.read_table(table, path, "io", "a [job.io] section") {
        job.io = read_io(checker, io);
    }
    job
}

/// A trigger table with its position in the list and its line.
type TriggerTable<'t> = (usize, &'t dyn TableLike, Option<usize>);

/// The tables of `[[job.trigger]]` or `trigger = [{ ... }]`.
fn trigger_tables<'t>(
    checker: &mut Checker<'_>,
    item: &'t Item,
    line: Option<usize>,
) -> Vec<TriggerTable<'t>> {
    let mut tables: Vec<TriggerTable<'t>> = Vec::new();
    match item {
        Item::ArrayOfTables(array) => {
            for (index, table) in array.iter().enumerate() {
                tables.push((index, table, checker.line_of(table.span()).or(line)));
            }
        }
        Item::Value(Value::Array(array)) => {
            for (index, value) in array.iter().enumerate() {
                let value_line = checker.line_of(value.span()).or(line);
                match value.as_inline_table() {
                    Some(table) => tables.push((index, table, value_line)),
                    None => checker.field_error(
                        value_line,
                        &format!("job.trigger[{index}]"),
                        format!(
                            "expected a table such as {{ schedule = \"0 * * * *\" }}, found {}",
                            describe_value(value)
                        ),
                    ),
                }
            }
        }
        Item::Table(_) => checker.field_error(
            line,
            "job.trigger",
            "must be a list of triggers: write [[job.trigger]] (with double brackets) above each trigger",
        ),
        other => checker.field_error(
            line,
            "job.trigger",
            format!(
                "expected a list of triggers, found {}; write [[job.trigger]] above each trigger",
                describe_item(other)
            ),
        ),
    }
    tables
}

fn read_triggers(checker: &mut Checker<'_>, item: &Item, line: Option<usize>) -> Vec<Trigger> {
    let tables = trigger_tables(checker, item, line);
    checker.read_each(tables, "job.trigger", read_trigger)
}

fn read_trigger(
    checker: &mut Checker<'_>,
    table: &dyn TableLike,
    path: &str,
    line: Option<usize>,
) -> Option<Trigger> {
    checker.check_keys(table, path, "[[job.trigger]]", &TRIGGER_KEYS);
    let sources: Vec<&str> = TRIGGER_SOURCES
        .into_iter()
        .filter(|source| table.contains_key(source))
        .collect();
    let quoted: Vec<String> = TRIGGER_SOURCES.iter().map(|s| s.to_string()).collect();
    let choices = join_words(&quoted, "or");
    let source = match sources.as_slice() {
        [only] => *only,
        [] => {
            checker.field_error(
                line,
                path,
                format!(
                    "a trigger needs one of {choices}; add for example schedule = \"0 * * * *\""
                ),
            );
            return None;
        }
        several => {
            let given: Vec<String> = several.iter().map(|s| s.to_string()).collect();
            checker.field_error(
                line,
                path,
                format!(
                    "this trigger has both {}; a trigger has exactly one of {choices}, so write a separate [[job.trigger]] for each",
                    join_words(&given, "and")
                ),
            );
            return None;
        }
    };
    if source != "schedule" {
        for key in ["timezone", "catch_up"] {
            if let Some(key_ref) = table.key(key) {
                let key_line = checker.line_of(key_ref.span());
                checker.field_error(
                    key_line,
                    &join_path(path, key),
                    "only applies to schedule triggers; remove it",
                );
            }
        }
    }
    match source {
        "schedule" => read_schedule(checker, table, path),
        "object_created" => read_object_created(checker, table, path),
        _ => read_pattern(checker, table, path),
    }
}

fn read_schedule(checker: &mut Checker<'_>, table: &dyn TableLike, path: &str) -> Option<Trigger> {
    let schedule = checker.read_string(table, path, "schedule", "\"0 * * * *\"");
    if let Some(schedule) = &schedule {
        if let Err(message) = validate_cron(&schedule.value) {
            checker.field_error(schedule.line, &join_path(path, "schedule"), message);
        }
    }
    let timezone = checker.read_string(table, path, "timezone", "\"Europe/Vienna\"");
    if let Some(timezone) = &timezone {
        if let Err(message) = parse_timezone(&timezone.value) {
            checker.field_error(timezone.line, &join_path(path, "timezone"), message);
        }
    }
    let catch_up = checker.read_choice(table, path, "catch_up", &CATCH_UP_VALUES);
    Some(Trigger::Schedule {
        schedule: schedule?.value,
        timezone: timezone.map(|located| located.value),
        catch_up: catch_up.map(|located| located.value),
    })
}

fn read_object_created(
    checker: &mut Checker<'_>,
    table: &dyn TableLike,
    path: &str,
) -> Option<Trigger> {
    let example = "object_created = { bucket = \"input\", suffix = \".csv\" }";
    let (inner, line) = checker.read_table(table, path, "object_created", example)?;
    let path = join_path(path, "object_created");
    checker.check_keys(inner, &path, "object_created", &OBJECT_CREATED_KEYS);
    let bucket = checker.read_string(inner, &path, "bucket", "\"input\"");
    let prefix = checker.read_string(inner, &path, "prefix", "\"incoming/\"");
    let suffix = checker.read_string(inner, &path, "suffix", "\".csv\"");
    let bucket = match bucket {
        Some(bucket) if bucket.value.trim().is_empty() => {
            checker.field_error(
                bucket.line,
                &join_path(&path, "bucket"),
                "the bucket name is empty; write for example bucket = \"input\"",
            );
            return None;
        }
        Some(bucket) => {
            if let Err(problem) = crate::name::validate_bucket_name(&bucket.value) {
                checker.field_error(
                    bucket.line,
                    &join_path(&path, "bucket"),
                    format!(
                        "\"{}\": {problem}; write for example bucket = \"input\"",
                        bucket.value
                    ),
                );
                return None;
            }
            bucket.value
        }
        None => {
            if !inner.contains_key("bucket") {
                checker.field_error(
                    line,
                    &join_path(&path, "bucket"),
                    format!("is missing; write for example {example}"),
                );
            }
            return None;
        }
    };
    let trigger = Trigger::ObjectCreated {
        bucket,
        prefix: prefix.map(|located| located.value),
        suffix: suffix.map(|located| located.value),
    };
    // The sugar always makes a valid pattern; checked so that a mistake in it shows up
    // here rather than when the first event arrives.
    if let Err(error) = trigger.event_pattern() {
        checker.field_error(line, &path, error.to_string());
        return None;
    }
    Some(trigger)
}

fn read_pattern(checker: &mut Checker<'_>, table: &dyn TableLike, path: &str) -> Option<Trigger> {
    let example = "'{\"source\": [\"wharf.s3\"]}'";
    let pattern = checker.read_string(table, path, "pattern", example)?;
    let field = join_path(path, "pattern");
    match serde_json::from_str::<serde_json::Value>(&pattern.value) {
        Ok(value @ serde_json::Value::Object(_)) => match EventPattern::from_value(&value) {
            Ok(_) => Some(Trigger::Pattern {
                pattern: pattern.value,
            }),
            Err(error) => {
                checker.field_error(pattern.line, &field, error.to_string());
                None
            }
        },
        Ok(_) => {
            checker.field_error(
                pattern.line,
                &field,
                format!("an event pattern must be a JSON object, such as pattern = {example}"),
            );
            None
        }
        Err(error) => {
            checker.field_error(
                pattern.line,
                &field,
                format!(
                    "is not valid JSON ({error}); write a JSON object in single quotes, such as pattern = {example}"
                ),
            );
            None
        }
    }
}

fn read_io(checker: &mut Checker<'_>, table: &dyn TableLike) -> JobIo {
    let path = "job.io";
    checker.check_keys(table, path, "[job.io]", &IO_KEYS);
    let mut io = JobIo::default();
    if let Some(stage_input) = checker.read_bool(table, path, "stage_input") {
        io.stage_input = stage_input.value;
    }
    for (key, target, example) in [
        ("output_bucket", &mut io.output_bucket, "\"output\""),
        (
            "archive_input",
            &mut io.archive_input,
            "\"{key}-used_{timestamp}\"",
        ),
    ] {
        if let Some(value) = checker.read_string(table, path, key, example) {
            if value.value.trim().is_empty() {
                checker.field_error(
                    value.line,
                    &join_path(path, key),
                    format!("is empty; remove it or write for example {key} = {example}"),
                );
            } else {
                let problem = match key {
                    "output_bucket" => crate::name::validate_bucket_name(&value.value)
                        .err()
                        .map(|problem| format!("\"{}\": {problem}", value.value)),
                    _ => crate::archive::validate_archive_template(&value.value).err(),
                };
                match problem {
                    Some(problem) => checker.field_error(
                        value.line,
                        &join_path(path, key),
                        format!("{problem}; write for example {key} = {example}"),
                    ),
                    None => *target = Some(value.value),
                }
            }
        }
    }
    io
}
