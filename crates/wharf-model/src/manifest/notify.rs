//! Reading `[[notify]]`: which server channels hear about this job's runs, and when.

use toml_edit::{Item, TableLike, Value};

use crate::manifest::checker::{describe_item, describe_value, join_words, Checker, NOTIFY_KEYS};
use crate::notify::{NotifyEvent, NotifyRule};

/// `on` when a rule leaves it out: tell of failures and of the first success after one.
pub const DEFAULT_NOTIFY_ON: [NotifyEvent; 2] = [NotifyEvent::Failure, NotifyEvent::Fixed];

const RULE_EXAMPLE: &str =
    "[[notify]] with channel = \"team-slack\" and on = [\"failure\", \"fixed\"]";

/// A channel name: what the server's `[notify.channels.NAME]` may be called.
pub fn is_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

pub(crate) fn read_notify(
    checker: &mut Checker<'_>,
    item: &Item,
    line: Option<usize>,
) -> Vec<NotifyRule> {
    let mut tables: Vec<(usize, &dyn TableLike, Option<usize>)> = Vec::new();
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
                        &format!("notify[{index}]"),
                        format!(
                            "expected a table such as {{ channel = \"team-slack\", on = [\"failure\"] }}, found {}",
                            describe_value(value)
                        ),
                    ),
                }
            }
        }
        Item::Table(_) => checker.field_error(
            line,
            "notify",
            format!("must be a list of rules: write {RULE_EXAMPLE} (with double brackets)"),
        ),
        other => checker.field_error(
            line,
            "notify",
            format!(
                "expected a list of rules, found {}; write {RULE_EXAMPLE}",
                describe_item(other)
            ),
        ),
    }
    checker.read_each(tables, "notify", read_rule)
}

fn read_rule(
    checker: &mut Checker<'_>,
    table: &dyn TableLike,
    path: &str,
    line: Option<usize>,
) -> Option<NotifyRule> {
    checker.check_keys(table, path, "[[notify]]", &NOTIFY_KEYS);
    let channel = match checker.read_string(table, path, "channel", "\"team-slack\"") {
        Some(channel) if is_channel_name(&channel.value) => Some(channel.value),
        Some(channel) => {
            checker.field_error(
                channel.line,
                &format!("{path}.channel"),
                format!(
                    "\"{}\" is not a channel name; use the name of a channel in the server's [notify.channels] (letters, digits, '-', '_' and '.')",
                    channel.value
                ),
            );
            None
        }
        None => {
            if !table.contains_key("channel") {
                checker.field_error(
                    line,
                    path,
                    "a rule needs a channel: add channel = \"NAME\" with a channel the server has (`wharf notify channels` lists them)",
                );
            }
            None
        }
    };
    let on = match table.get_key_value("on") {
        None => Some(DEFAULT_NOTIFY_ON.to_vec()),
        Some((key, item)) => read_on(checker, item, checker.item_line(key, item), path),
    };
    Some(NotifyRule {
        channel: channel?,
        on: on?,
    })
}

fn allowed_values(conjunction: &str) -> String {
    let quoted: Vec<String> = NotifyEvent::RULE_VALUES
        .iter()
        .map(|event| format!("\"{event}\""))
        .collect();
    join_words(&quoted, conjunction)
}

fn read_on(
    checker: &mut Checker<'_>,
    item: &Item,
    line: Option<usize>,
    path: &str,
) -> Option<Vec<NotifyEvent>> {
    let field = format!("{path}.on");
    let values = match item.as_array() {
        Some(array) => array,
        None => {
            let hint = match item.as_str() {
                Some(text) => format!("write on = [\"{text}\"]"),
                None => "write for example on = [\"failure\", \"fixed\"]".to_string(),
            };
            checker.field_error(
                line,
                &field,
                format!(
                    "expected a list of events, found {}; {hint}",
                    describe_item(item)
                ),
            );
            return None;
        }
    };
    if values.is_empty() {
        checker.field_error(
            line,
            &field,
            format!(
                "is empty, so this rule would never send anything; list some of {}, or remove the rule",
                allowed_values("and")
            ),
        );
        return None;
    }
    let mut events = Vec::new();
    let mut valid = true;
    for (index, value) in values.iter().enumerate() {
        let value_line = checker.line_of(value.span()).or(line);
        let parsed = value
            .as_str()
            .and_then(|text| text.parse::<NotifyEvent>().ok())
            .filter(|event| NotifyEvent::RULE_VALUES.contains(event));
        match parsed {
            Some(event) => {
                if !events.contains(&event) {
                    events.push(event);
                }
            }
            None => {
                let found = match value.as_str() {
                    Some(text) => {
                        let near = match text {
                            "failed" | "fail" | "error" | "lost" => " (did you mean \"failure\"?)",
                            "succeeded" | "ok" => " (did you mean \"success\"?)",
                            "timed_out" | "timedout" => " (did you mean \"timeout\"?)",
                            "recovered" | "back_to_normal" => " (did you mean \"fixed\"?)",
                            _ => "",
                        };
                        format!("\"{text}\"{near}")
                    }
                    None => describe_value(value),
                };
                checker.field_error(
                    value_line,
                    &format!("{field}[{index}]"),
                    format!("{found} is not an event; use {}", allowed_values("or")),
                );
                valid = false;
            }
        }
    }
    valid.then_some(events)
}
