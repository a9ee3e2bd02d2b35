//! Free-form tables (any columns) for measurements that compare several targets at once,
//! as aligned text for the terminal and as Markdown for `docs/benchmarks.md`.

use std::fmt::Write as _;

/// The table as aligned plain text, one line per row.
pub fn text(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |values: Vec<&str>| -> String {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(value, width)| format!("{value:<width$}"))
            .collect();
        padded.join(" | ").trim_end().to_owned()
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", line(headers.to_vec()));
    let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
    let _ = writeln!(out, "{}", rule.join("-+-"));
    for row in rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The table as Markdown.
pub fn markdown(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", headers.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(headers.len()));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|cell| cell.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::grid::{markdown, text};

    #[test]
    fn tables() {
        let rows = vec![vec!["nginx".to_owned(), "1|2".to_owned()]];
        assert_eq!(
            markdown(&["target", "req/s"], &rows),
            "| target | req/s |\n|---|---|\n| nginx | 1\\|2 |\n"
        );
        assert_eq!(
            text(&["target", "req/s"], &rows),
            "target | req/s\n-------+------\nnginx  | 1|2\n"
        );
    }
}
