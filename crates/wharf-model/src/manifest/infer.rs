//! Guessing an app's kind and command from the files of its bundle, so a folder with a
//! single R script or a Shiny app deploys without a `wharf.toml`.
//!
//! Only top-level files count, and names are case-sensitive. Rules, in order:
//! 1. `plumber.R` → a Plumber API service;
//! 2. `app.R`, or `server.R` with `ui.R` → a Shiny service (sticky sessions);
//! 3. `main.py` → a Python job;
//! 4. exactly one `*.R` → an R job running it.

use std::collections::BTreeSet;

use crate::manifest::AppKind;

/// Runs `plumber.R` on `$PORT`, bound to the loopback interface behind the proxy.
pub const PLUMBER_EXPRESSION: &str = "plumber::pr_run(plumber::pr('plumber.R'), host = '127.0.0.1', port = as.integer(Sys.getenv('PORT')))";

/// Runs the Shiny app in the bundle folder on `$PORT`.
pub const SHINY_EXPRESSION: &str = "shiny::runApp('.', host = '127.0.0.1', port = as.integer(Sys.getenv('PORT')), launch.browser = FALSE)";

/// What the files say an app is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inference {
    pub kind: AppKind,
    pub command: Vec<String>,
    /// True for Shiny apps, which need sticky sessions.
    pub sticky: bool,
}

fn command(arguments: &[&str]) -> Vec<String> {
    arguments
        .iter()
        .map(|argument| argument.to_string())
        .collect()
}

/// The names of the top-level files among bundle paths ('/'-separated, maybe "./"-prefixed).
fn top_level_files(files: &[String]) -> BTreeSet<&str> {
    files
        .iter()
        .map(|path| path.trim_start_matches("./"))
        .filter(|path| !path.is_empty() && !path.contains('/'))
        .collect()
}

fn r_scripts<'a>(top: &BTreeSet<&'a str>) -> Vec<&'a str> {
    top.iter()
        .copied()
        .filter(|name| name.len() > 2 && name.ends_with(".R"))
        .collect()
}

fn python_files<'a>(top: &BTreeSet<&'a str>) -> Vec<&'a str> {
    top.iter()
        .copied()
        .filter(|name| name.len() > 3 && name.ends_with(".py"))
        .collect()
}

fn infer_service(top: &BTreeSet<&str>) -> Option<Inference> {
    if top.contains("plumber.R") {
        return Some(Inference {
            kind: AppKind::Service,
            command: command(&["Rscript", "-e", PLUMBER_EXPRESSION]),
            sticky: false,
        });
    }
    if top.contains("app.R") || (top.contains("server.R") && top.contains("ui.R")) {
        return Some(Inference {
            kind: AppKind::Service,
            command: command(&["Rscript", "-e", SHINY_EXPRESSION]),
            sticky: true,
        });
    }
    None
}

fn infer_job(top: &BTreeSet<&str>) -> Option<Inference> {
    if top.contains("main.py") {
        return Some(Inference {
            kind: AppKind::Job,
            command: command(&["python3", "main.py"]),
            sticky: false,
        });
    }
    match r_scripts(top).as_slice() {
        [only] => Some(Inference {
            kind: AppKind::Job,
            command: command(&["Rscript", only]),
            sticky: false,
        }),
        _ => None,
    }
}

/// Infers kind and command from the bundle's files. With `kind` given, only the rules
/// for that kind apply. `None` when no rule matches.
pub fn infer_app(kind: Option<AppKind>, files: &[String]) -> Option<Inference> {
    let top = top_level_files(files);
    match kind {
        Some(AppKind::Service) => infer_service(&top),
        Some(AppKind::Job) => infer_job(&top),
        None => infer_service(&top).or_else(|| infer_job(&top)),
    }
}

fn list_names(names: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut listed = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        listed.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    listed
}

fn count_of(count: usize, singular: &str, plural: &str, names: &[&str]) -> String {
    let noun = if count == 1 { singular } else { plural };
    format!("{count} {noun} ({})", list_names(names))
}

/// Why inference failed, for the "command is missing" error: what was found (e.g.
/// "found 3 R scripts (a.R, b.R, c.R) but no plumber.R, app.R or main.py") and a command
/// the user probably wants.
pub fn explain_no_inference(kind: Option<AppKind>, files: &[String]) -> (String, Vec<String>) {
    let top = top_level_files(files);
    let r_scripts = r_scripts(&top);
    let python_files = python_files(&top);
    let mut found = Vec::new();
    if !r_scripts.is_empty() {
        found.push(count_of(
            r_scripts.len(),
            "R script",
            "R scripts",
            &r_scripts,
        ));
    }
    if !python_files.is_empty() {
        found.push(count_of(
            python_files.len(),
            "Python file",
            "Python files",
            &python_files,
        ));
    }
    let wanted = match kind {
        None => "plumber.R, app.R or main.py",
        Some(AppKind::Job) => "main.py",
        Some(AppKind::Service) => "plumber.R, app.R, or server.R with ui.R",
    };
    let explanation = if found.is_empty() {
        format!("found no R or Python script (and no {wanted}) at the top of the bundle")
    } else {
        format!(
            "found {} but no {wanted} at the top of the bundle",
            found.join(" and ")
        )
    };
    let suggestion = if let Some(script) = r_scripts.first() {
        command(&["Rscript", script])
    } else if let Some(script) = python_files.first() {
        command(&["python3", script])
    } else {
        command(&["Rscript", "main.R"])
    };
    (explanation, suggestion)
}

#[cfg(test)]
mod tests {
    use crate::manifest::infer::{explain_no_inference, infer_app, Inference};
    use crate::manifest::AppKind;

    fn files(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    fn check(kind: Option<AppKind>, names: &[&str], expected: Option<(AppKind, &[&str], bool)>) {
        let expected = expected.map(|(kind, command, sticky)| Inference {
            kind,
            command: command
                .iter()
                .map(|argument| argument.to_string())
                .collect(),
            sticky,
        });
        assert_eq!(
            infer_app(kind, &files(names)),
            expected,
            "{kind:?} {names:?}"
        );
    }

    #[test]
    fn inference_rules() {
        use AppKind::{Job, Service};
        let plumber: &[&str] = &["Rscript", "-e", crate::manifest::infer::PLUMBER_EXPRESSION];
        let shiny: &[&str] = &["Rscript", "-e", crate::manifest::infer::SHINY_EXPRESSION];
        check(None, &["plumber.R"], Some((Service, plumber, false)));
        check(
            None,
            &["plumber.R", "app.R", "main.py"],
            Some((Service, plumber, false)),
        );
        check(None, &["app.R", "helpers.R"], Some((Service, shiny, true)));
        check(None, &["server.R", "ui.R"], Some((Service, shiny, true)));
        check(
            None,
            &["./server.R", "./ui.R"],
            Some((Service, shiny, true)),
        );
        check(
            None,
            &["main.py", "util.py"],
            Some((Job, &["python3", "main.py"], false)),
        );
        check(
            None,
            &["report.R", "data/x.csv"],
            Some((Job, &["Rscript", "report.R"], false)),
        );
        check(
            None,
            &["report.R", "R/helpers.R"],
            Some((Job, &["Rscript", "report.R"], false)),
        );
        check(
            None,
            &["server.R"],
            Some((Job, &["Rscript", "server.R"], false)),
        );
        check(None, &["a.R", "b.R"], None);
        check(None, &["report.r"], None);
        check(None, &["Plumber.R", "x.R"], None);
        check(None, &["sub/plumber.R", "sub/app.R", "sub/main.py"], None);
        check(None, &[], None);
        check(None, &[".R"], None);
        check(
            Some(Job),
            &["plumber.R"],
            Some((Job, &["Rscript", "plumber.R"], false)),
        );
        check(
            Some(Job),
            &["app.R", "main.py"],
            Some((Job, &["python3", "main.py"], false)),
        );
        check(Some(Service), &["main.py"], None);
        check(
            Some(Service),
            &["app.R", "main.py"],
            Some((Service, shiny, true)),
        );
        check(Some(Service), &["report.R"], None);
    }

    #[test]
    fn explanations() {
        let check = |kind, names: &[&str], expected: &str, suggestion: &[&str]| {
            let (explanation, command) = explain_no_inference(kind, &files(names));
            assert_eq!(explanation, expected);
            assert_eq!(command, suggestion);
        };
        check(
            None,
            &["a.R", "b.R", "c.R"],
            "found 3 R scripts (a.R, b.R, c.R) but no plumber.R, app.R or main.py at the top of the bundle",
            &["Rscript", "a.R"],
        );
        check(
            None,
            &["data.csv"],
            "found no R or Python script (and no plumber.R, app.R or main.py) at the top of the bundle",
            &["Rscript", "main.R"],
        );
        check(
            Some(AppKind::Service),
            &["api.R", "run.py"],
            "found 1 R script (api.R) and 1 Python file (run.py) but no plumber.R, app.R, or server.R with ui.R at the top of the bundle",
            &["Rscript", "api.R"],
        );
        check(
            Some(AppKind::Job),
            &["a.py", "b.py", "1.R", "2.R", "3.R", "4.R", "5.R", "6.R", "7.R"],
            "found 7 R scripts (1.R, 2.R, 3.R, 4.R, 5.R and 2 more) and 2 Python files (a.py, b.py) but no main.py at the top of the bundle",
            &["Rscript", "1.R"],
        );
        check(
            None,
            &["x.py", "y.py"],
            "found 2 Python files (x.py, y.py) but no plumber.R, app.R or main.py at the top of the bundle",
            &["python3", "x.py"],
        );
    }
}
