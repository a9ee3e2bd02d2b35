//! boto3 with its default settings: tests/clients/boto3_suite.py runs the checks and
//! prints a JSON report; these tests start the server, run it and say which check failed.

use std::process::Stdio;

use serde_json::Value;

use crate::common::{repo_root, Server};
use crate::support::{clean_command, require_tool, s3_target, stderr, stdout, S3Target};

/// Every check of the suite that a default server runs; a check missing from the report
/// fails the test, so none is dropped unnoticed.
const DEFAULT_CHECKS: [&str; 22] = [
    "buckets",
    "invalid_bucket_names",
    "put_get_metadata",
    "default_checksum_header",
    "aws_chunked_trailer",
    "bad_digest",
    "ranges",
    "conditional_get",
    "delete_objects",
    "copy_object",
    "list_objects_v2",
    "list_continuation_2500",
    "multipart",
    "multipart_errors",
    "transfer_manager",
    "presigned_urls",
    "presigned_expired",
    "concurrent_puts",
    "bad_credentials",
    "odd_keys",
    "lying_content_length",
    "empty_put_then_slow_put",
];

fn require_boto3() {
    require_tool(
        "python3",
        &["-c", "import boto3"],
        "Python 3 with boto3 (python3 -m pip install boto3)",
    );
}

/// Runs the suite (all default checks when `checks` is empty) and returns its report.
fn run_suite(target: &S3Target, checks: &[&str]) -> Vec<Value> {
    let home = tempfile::tempdir().expect("tempdir");
    let script = repo_root().join("tests/clients/boto3_suite.py");
    let output = clean_command("python3", home.path())
        .arg(&script)
        .args(checks)
        .env("WHARF_S3_ENDPOINT", &target.endpoint)
        .env("WHARF_S3_ACCESS_KEY", &target.access_key)
        .env("WHARF_S3_SECRET_KEY", &target.secret_key)
        .env("WHARF_DATABASE", &target.database)
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "{} failed ({}):\n{}\n{}",
        script.display(),
        output.status,
        stdout(&output),
        stderr(&output)
    );
    let report: Value = serde_json::from_str(stdout(&output).trim()).unwrap_or_else(|error| {
        panic!(
            "the boto3 suite printed no JSON report ({error}):\n{}\n{}",
            stdout(&output),
            stderr(&output)
        )
    });
    report["checks"].as_array().cloned().unwrap_or_default()
}

/// Asserts that exactly `expected` ran and all passed, listing every failure at once.
fn assert_all_passed(report: &[Value], expected: &[&str], server: &Server) {
    let ran: Vec<&str> = report.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(
        ran, expected,
        "the boto3 suite ran other checks than expected"
    );
    let failures: Vec<String> = report
        .iter()
        .filter(|check| check["ok"] != true)
        .map(|check| {
            format!(
                "--- {} ---\n{}",
                check["name"].as_str().unwrap_or("?"),
                check["detail"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} boto3 check(s) failed:\n{}\n--- server log (errors) ---\n{}",
        failures.len(),
        failures.join("\n"),
        server
            .server_log()
            .lines()
            .filter(|line| line.contains("ERROR") || line.contains("WARN"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn boto3_every_operation_with_default_settings() {
    require_boto3();
    let server = Server::start();
    let target = s3_target(&server);
    let report = run_suite(&target, &[]);
    assert_all_passed(&report, &DEFAULT_CHECKS, &server);
    crate::support::assert_keys_never_became_paths(
        &server,
        &[
            "escape",
            "passwd",
            "données",
            "日本語",
            "emoji",
            "double",
            "kkkkkkkk",
        ],
    );
}

#[test]
fn boto3_oversize_bodies_are_entity_too_large() {
    require_boto3();
    let server = Server::start_with("max_object_size = \"1MiB\"\n");
    let target = s3_target(&server);
    let report = run_suite(&target, &["oversize"]);
    assert_all_passed(&report, &["oversize"], &server);
}
