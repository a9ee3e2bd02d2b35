//! `archive_input` templates: the key a processed input is renamed to, e.g.
//! `"{key}-used_{timestamp}"` or `"processed/{date}/{basename}"`.
//!
//! Placeholders: `{key}` (the whole key), `{basename}` (after the last `/`), `{dirname}`
//! (before the last `/`, empty at top level), `{timestamp}` (UTC, `20261123T101500Z`),
//! `{date}` (UTC, `2026-11-23`), `{run_id}`. `{{` and `}}` are literal braces.

use chrono::{DateTime, Utc};

pub const PLACEHOLDERS: [&str; 6] = ["key", "basename", "dirname", "timestamp", "date", "run_id"];

/// Checks a template; the error says which placeholder is unknown or where a brace is
/// unbalanced.
pub fn validate_archive_template(template: &str) -> Result<(), String> {
    render(template, &|_| Some(String::new())).map(|_| ())?;
    if !template.contains('{') || template.replace("{{", "").replace("}}", "").is_empty() {
        return Err(
            "the template has no placeholder such as {key}, so every input would be renamed to the same key".into(),
        );
    }
    Ok(())
}

/// The archive key for `key`.
pub fn render_archive_key(
    template: &str,
    key: &str,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<String, String> {
    let (dirname, basename) = match key.rsplit_once('/') {
        Some((dir, base)) => (dir, base),
        None => ("", key),
    };
    let rendered = render(template, &|name| {
        Some(match name {
            "key" => key.to_owned(),
            "basename" => basename.to_owned(),
            "dirname" => dirname.to_owned(),
            "timestamp" => now.format("%Y%m%dT%H%M%SZ").to_string(),
            "date" => now.format("%Y-%m-%d").to_string(),
            "run_id" => run_id.to_owned(),
            _ => return None,
        })
    })?;
    if rendered.is_empty() {
        return Err(format!("the template {template:?} gives an empty key"));
    }
    if rendered == key {
        return Err(format!(
            "the template {template:?} gives the input's own key; add e.g. -used_{{timestamp}}"
        ));
    }
    Ok(rendered)
}

fn render(template: &str, value: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => {
                            return Err(format!(
                                "the placeholder {{{name} is not closed; write {{{name}}}"
                            ))
                        }
                    }
                }
                match value(&name) {
                    Some(text) if PLACEHOLDERS.contains(&name.as_str()) => out.push_str(&text),
                    _ => {
                        return Err(format!(
                            "unknown placeholder {{{name}}}; use one of {}",
                            PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                        ))
                    }
                }
            }
            '}' => return Err("a lone '}' in the template; write }} for a literal brace".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(template: &str, key: &str, expect: Result<&str, &str>) {
        let now = DateTime::parse_from_rfc3339("2026-11-23T10:15:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let got = render_archive_key(template, key, "01run", now);
        match expect {
            Ok(want) => assert_eq!(got.as_deref(), Ok(want), "{template} {key}"),
            Err(fragment) => {
                let error = got.expect_err(template);
                assert!(error.contains(fragment), "{template}: {error}");
            }
        }
    }

    #[test]
    fn templates_render_and_bad_ones_say_why() {
        check(
            "{key}-used_{timestamp}",
            "data.rds",
            Ok("data.rds-used_20261123T101500Z"),
        );
        check(
            "done/{date}/{basename}",
            "in/a/b.csv",
            Ok("done/2026-11-23/b.csv"),
        );
        check("{dirname}/old/{basename}", "in/b.csv", Ok("in/old/b.csv"));
        check("{key}.{run_id}", "x", Ok("x.01run"));
        check("{{literal}}-{key}", "x", Ok("{literal}-x"));
        check("{key", "x", Err("not closed"));
        check("{kee}", "x", Err("unknown placeholder {kee}"));
        check("a}b{key}", "x", Err("lone '}'"));
        check("{key}", "x", Err("own key"));
        assert!(validate_archive_template("archived").is_err());
        assert!(validate_archive_template("{key}-used_{timestamp}").is_ok());
        assert!(validate_archive_template("{nope}").is_err());
    }
}
