//! Malformed manifests: the exact text users see, as insta snapshots
//! (tests/snapshots/). Review changes with `cargo insta review` or
//! `INSTA_UPDATE=always cargo test -p wharf-model` and read the diff.

use wharf_model::manifest::{load_manifest, ManifestError};

const COMMAND: &str = "command = [\"Rscript\", \"job.R\"]\n";

fn load_errors(label: &str, text: Option<&str>, files: &[&str]) -> Vec<ManifestError> {
    let files: Vec<String> = files.iter().map(|name| name.to_string()).collect();
    match load_manifest(label, text, &files) {
        Ok(manifest) => panic!("expected errors for {text:?}, got {manifest:?}"),
        Err(errors) => {
            assert!(!errors.0.is_empty());
            errors.0
        }
    }
}

/// The displayed errors for `text` as wharf.toml of a bundle with `files`.
fn errors_with_files(text: &str, files: &[&str]) -> String {
    let errors = load_errors("wharf.toml", Some(text), files);
    wharf_model::manifest::ManifestErrors(errors).to_string()
}

fn errors(text: &str) -> String {
    errors_with_files(text, &[])
}

#[test]
fn unknown_top_level_key_with_suggestion() {
    insta::assert_snapshot!(errors(&format!("nmae = \"report\"\n{COMMAND}")));
}

#[test]
fn unknown_top_level_key_without_suggestion() {
    insta::assert_snapshot!(errors(&format!("{COMMAND}color = \"blue\"\n")));
}

#[test]
fn key_in_the_wrong_section() {
    insta::assert_snapshot!(errors(&format!(
        "{COMMAND}timeout = \"10m\"\n\n[job]\nsticky = true\n"
    )));
}

#[test]
fn unknown_key_in_job() {
    insta::assert_snapshot!(errors(&format!("{COMMAND}\n[job]\ntimout = \"10m\"\n")));
}

#[test]
fn unknown_key_in_trigger() {
    insta::assert_snapshot!(errors(&format!(
        "{COMMAND}\n[[job.trigger]]\nschedule = \"0 * * * *\"\ntime_zone = \"UTC\"\n"
    )));
}

#[test]
fn bad_name() {
    insta::assert_snapshot!(errors(&format!("name = \"My App\"\n{COMMAND}")));
}

#[test]
fn bad_kind_and_runtime() {
    insta::assert_snapshot!(errors(&format!(
        "kind = \"task\"\n{COMMAND}runtime = \"docker\"\n"
    )));
}

#[test]
fn bad_duration() {
    insta::assert_snapshot!(errors(&format!(
        "{COMMAND}\n[job]\ntimeout = \"10 minutes\"\nretry_backoff = \"1.5m\"\n"
    )));
}

#[test]
fn duration_as_number() {
    insta::assert_snapshot!(errors(&format!("{COMMAND}\n[job]\ntimeout = 600\n")));
}

#[test]
fn bad_cron() {
    insta::assert_snapshot!(errors(&format!(
        "{COMMAND}\n[[job.trigger]]\nschedule = \"61 * * * *\"\n\n[[job.trigger]]\nschedule = \"every hour\"\n"
    )));
}

#[test]
fn bad_timezone() {
    insta::assert_snapshot!(errors(&format!(
        "{COMMAND}\n[[job.trigger]]\nschedule = \"0 9 * * *\"\ntimezone = \"Europe/Viena\"\ncatch_up = \"first\"\n"
    )));
}

#[test]
fn missing_command_not_inferable() {
    insta::assert_snapshot!(errors_with_files(
        "name = \"report\"\n",
        &["a.R", "b.R", "c.R", "data/input.csv"]
    ));
}

#[test]
fn missing_command_for_a_service() {
    insta::assert_snapshot!(errors_with_files(
        "kind = \"service\"\n",
        &["api.R", "helpers.R"]
    ));
}

#[test]
fn missing_command_without_manifest() {
    let errors = load_errors("my-app/wharf.toml", None, &["README.md", "data.csv"]);
    insta::assert_snapshot!(wharf_model::manifest::ManifestErrors(errors).to_string());
}

#[test]
fn command_as_string() {
    insta::assert_snapshot!(errors("command = \"Rscript report.R --verbose\"\n"));
}

#[test]
fn command_with_bad_elements() {
    insta::assert_snapshot!(errors(
        "command = [\n  \"\",\n  \"job.R\",\n  3,\n]\n\n[env]\nA = \"1\"\n"
    ));
}

#[test]
fn command_empty_list() {
    insta::assert_snapshot!(errors("command = []\n"));
}

#[test]
fn env_key_reserved() {
    insta::assert_snapshot!(errors(&format!(
        "{COMMAND}\n[env]\nWHARF_TOKEN = \"x\"\nwharf_app = \"y\"\n"
    )));
}

#[test]
fn env_bad_names_and_values() {
    insta::assert_snapshot!(errors(&format!(
        "{COMMAND}\n[env]\n1ST = \"a\"\n\"MY VAR\" = \"b\"\nPORT_OFFSET = 3\nTOKEN = {{ secret = \"\" }}\nKEY = {{ name = \"k\" }}\nLIST = [\"a\"]\n"
    )));
}

#[test]
fn toml_syntax_error() {
    insta::assert_snapshot!(errors(&format!("{COMMAND}\n[job\ntimeout = \"10m\"\n")));
}

#[test]
fn toml_unterminated_string() {
    insta::assert_snapshot!(errors("name = \"report\n"));
}

#[test]
fn toml_duplicate_key() {
    insta::assert_snapshot!(errors(&format!("{COMMAND}name = \"a\"\nname = \"b\"\n")));
}

#[test]
fn wrong_type() {
    insta::assert_snapshot!(errors(&format!(
        "{COMMAND}\n[job]\nretries = \"two\"\nconcurrency = 1.5\n\n[service]\nmax_replicas = \"4\"\ncommand = [\"x\"]\n\n[job.io]\nstage_input = \"yes\"\n"
    )));
}

#[test]
fn numbers_out_of_range() {
    insta::assert_snapshot!(errors(&format!(
        "{COMMAND}\n[job]\nretries = 101\nconcurrency = 0\n\n[service]\nmax_replicas = -1\n"
    )));
}

#[test]
fn two_keys_in_one_trigger() {
    insta::assert_snapshot!(errors(&format!(
        "{COMMAND}\n[[job.trigger]]\nschedule = \"0 * * * *\"\npattern = '{{\"source\": [\"wharf.s3\"]}}'\n"
    )));
}

#[test]
fn empty_trigger_and_single_bracket_trigger() {
    insta::assert_snapshot!(errors(&format!(
        "{COMMAND}\n[[job.trigger]]\ntimezone = \"UTC\"\n"
    )));
    insta::assert_snapshot!(errors(&format!(
        "{COMMAND}\n[job.trigger]\nschedule = \"0 * * * *\"\n"
    )));
}

#[test]
fn bad_object_created_and_pattern() {
    insta::assert_snapshot!(errors(&format!(
        "{COMMAND}\n[[job.trigger]]\nobject_created = {{ sufix = \".csv\" }}\ntimezone = \"UTC\"\n\n[[job.trigger]]\npattern = '{{\"source\": '\n\n[[job.trigger]]\npattern = '[1, 2]'\n\n[[job.trigger]]\nobject_created = \"input\"\n"
    )));
}

#[test]
fn pattern_with_unknown_operator() {
    insta::assert_snapshot!(errors(&format!(
        "{COMMAND}\n[[job.trigger]]\npattern = '{{\"source\": [\"wharf.s3\"], \"detail\": {{\"object\": {{\"key\": [{{\"prefx\": \"data/\"}}]}}}}}}'\n"
    )));
}

#[test]
fn patterns_that_eventbridge_rejects() {
    insta::assert_snapshot!(errors(&format!(
        r#"{COMMAND}
[[job.trigger]]
pattern = '{{"source": "wharf.s3"}}'

[[job.trigger]]
pattern = '{{}}'

[[job.trigger]]
pattern = '{{"detail": {{"object": {{"size": [{{"numeric": ["<", 5, ">", 0]}}]}}}}}}'

[[job.trigger]]
pattern = '{{"$or": [{{"source": ["wharf.s3"]}}]}}'

[[job.trigger]]
pattern = """
{{"detail": {{"object": {{"key": [{{"wildcard": "data/**.csv"}}]}}}}}}
"""

[[job.trigger]]
pattern = '{{"source": ["wharf.s3"], "detail": {{"reason": [{{"anything-but": {{"prefix": ["Put", ""]}}}}]}}}}'
"#
    )));
}

#[test]
fn bad_service_settings() {
    insta::assert_snapshot!(errors(&format!(
        "kind = \"service\"\n{COMMAND}\n[service]\nhealth = \"healthz\"\nmin_replicas = 6\nmax_replicas = 2\nscale_out_above = 3\nscale_in_below = 3\naccess = \"everyone\"\nidle_timeout = \"soon\"\n"
    )));
}

#[test]
fn section_of_the_wrong_type() {
    insta::assert_snapshot!(errors(&format!("{COMMAND}job = \"daily\"\nenv = 3\n")));
}

#[test]
fn several_errors_at_once() {
    insta::assert_snapshot!(errors(
        r#"name = "BTC Report"
kind = "job"
command = ["Rscript", "report.R"]
runtime = "local"

[env]
WHARF_APP = "x"

[job]
timeout = "10 minutes"
retries = "two"
concurency = 2

[[job.trigger]]
schedule = "0 * * * *"
timezone = "Europe/Viena"

[[job.trigger]]
object_created = { bucket = "input", suffix = ".rds" }
pattern = '{"source": ["wharf.s3"]}'

[service]
min_replicas = 3
max_replicas = 2
"#
    ));
}

#[test]
fn every_error_has_a_line_when_it_has_a_place() {
    let text = format!("{COMMAND}\n[job]\ntimeout = \"x\"\n");
    let errors = load_errors("wharf.toml", Some(&text), &[]);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, Some(4));
    assert_eq!(errors[0].field.as_deref(), Some("job.timeout"));
    assert_eq!(errors[0].file, "wharf.toml");
}

#[test]
fn errors_serialize_for_the_api() {
    let errors = load_errors("wharf.toml", Some("name = \"A\"\ncommand = [\"x\"]\n"), &[]);
    let json = serde_json::to_value(wharf_model::manifest::ManifestErrors(errors)).unwrap();
    assert_eq!(json[0]["line"], 1);
    assert_eq!(json[0]["field"], "name");
}

/// No input makes the loader panic, however broken.
#[test]
fn garbage_never_panics() {
    let inputs = [
        "",
        "\u{feff}name = \"x\"",
        "[[job]]\n",
        "[[service]]\n",
        "job = []\n",
        "job.trigger = 3\n",
        "job.trigger = [1, \"a\", {}]\n",
        "[job.io]\nstage_input = 1979-05-27\n",
        "env.\"\" = \"x\"\n",
        "env.WHARF_ = \"x\"\n",
        "command = [[\"a\"]]\n",
        "[[job.trigger]]\nobject_created = { bucket = 1, prefix = [], suffix = {} }\n",
        "[[job.trigger]]\nschedule = 5\ntimezone = 6\ncatch_up = 7\n",
        "[[job.trigger]]\npattern = { a = 1 }\n",
        "[service]\nmin_replicas = 99999999999999999\n",
        "\n\n\n\n[job\n",
        "a = \"\u{1F600}\"\nb = 'é'\n",
    ];
    for input in inputs {
        let files = vec!["a.R".to_string()];
        if let Err(errors) = load_manifest("wharf.toml", Some(input), &files) {
            for error in errors.0 {
                assert!(!error.message.is_empty(), "{input:?}");
                assert!(!error.to_string().contains('\n'), "{input:?}: {error}");
            }
        }
    }
}

#[test]
fn trigger_indices_count_every_element() {
    insta::assert_snapshot!(errors(&format!(
        "{COMMAND}job.trigger = [1, {{ schedule = \"0 * * * *\" }}, {{}}]\nb = 2\n"
    )));
}

#[test]
fn lines_for_dotted_keys_and_inline_tables() {
    let text = "command = [\"x\"]\njob.timeout = \"soon\"\njob.trigger = [\n  { schedule = \"0 * * * *\" },\n  { schedule = \"bad\" },\n]\nenv = { A = 1 }\n";
    let errors = load_errors("wharf.toml", Some(text), &[]);
    let places: Vec<(Option<usize>, Option<&str>)> = errors
        .iter()
        .map(|error| (error.line, error.field.as_deref()))
        .collect();
    assert_eq!(
        places,
        [
            (Some(2), Some("job.timeout")),
            (Some(5), Some("job.trigger[1].schedule")),
            (Some(7), Some("env.A")),
        ]
    );
}

#[test]
fn bad_bucket_names_and_archive_templates() {
    insta::assert_snapshot!(errors(&format!(
        "{COMMAND}\n[[job.trigger]]\nobject_created = {{ bucket = \"My_Input\" }}\n\n\
         [job.io]\noutput_bucket = \"ab\"\narchive_input = \"{{key}}-{{when}}\"\n"
    )));
    insta::assert_snapshot!(errors(&format!(
        "{COMMAND}\n[job.io]\narchive_input = \"processed\"\n"
    )));
}

#[test]
fn notify_rule_problems() {
    insta::assert_snapshot!(errors(&format!("{COMMAND}\n[notify]\nchannel = \"a\"\n")));
    insta::assert_snapshot!("notify_rule_values", errors(&format!(
        "{COMMAND}\n[[notify]]\nchanel = \"a\"\non = \"failure\"\n\n[[notify]]\nchannel = \"bad name\"\non = [\"failed\", 3, \"fixed\"]\n\n[[notify]]\nchannel = \"b\"\non = []\n"
    )));
}
