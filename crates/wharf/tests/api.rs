//! The API surface: authentication, error shapes, versions and rollback, bundle safety,
//! manifest errors, and the CLI's messages.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);

#[test]
fn every_endpoint_but_health_needs_a_valid_token() {
    let server = Server::start();
    let http = server.http();
    for path in ["/healthz", "/readyz"] {
        let response = http
            .get(format!("{}{path}", server.url()))
            .send()
            .expect("get");
        assert_eq!(response.status().as_u16(), 200, "{path} is public");
    }
    for (method, path) in [
        ("GET", "/api/v1/apps"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/runs"),
        ("POST", "/api/v1/apps/x/runs"),
        ("POST", "/api/v1/apps/x/versions"),
        ("DELETE", "/api/v1/apps/x"),
    ] {
        let request = http.request(
            method.parse().expect("method"),
            format!("{}{path}", server.url()),
        );
        let anonymous = request.try_clone().expect("clone").send().expect("send");
        assert_eq!(
            anonymous.status().as_u16(),
            401,
            "{method} {path} without a token"
        );
        let body: Value = anonymous.json().expect("JSON error");
        assert_eq!(body["error"]["code"], "unauthorized");
        let wrong = request.bearer_auth("wharf_wrong").send().expect("send");
        assert_eq!(
            wrong.status().as_u16(),
            401,
            "{method} {path} with a wrong token"
        );
    }
    assert_eq!(server.get("/whoami")["user"], "admin");
}

#[test]
fn the_first_start_writes_a_private_token_once() {
    use std::os::unix::fs::PermissionsExt;
    let mut server = Server::start();
    let path = server.data_dir().join("admin-token");
    let mode = std::fs::metadata(&path)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        server.server_log().contains(&server.token),
        "printed once at first start"
    );
    server.restart();
    assert_eq!(
        server.server_log().matches(&server.token).count(),
        1,
        "not printed again"
    );
    assert_eq!(
        server.get("/whoami")["role"],
        "admin",
        "the token survives restarts"
    );
}

#[test]
fn errors_are_json_with_the_right_status() {
    let server = Server::start();
    let http = server.http();
    let get = |path: &str| {
        http.get(format!("{}/api/v1{path}", server.url()))
            .bearer_auth(&server.token)
            .send()
            .expect("get")
    };
    let missing = get("/apps/nope");
    assert_eq!(missing.status().as_u16(), 404);
    let body: Value = missing.json().expect("json");
    assert_eq!(body["error"]["code"], "not_found");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("\"nope\""));
    assert_eq!(get("/no/such/endpoint").status().as_u16(), 404);
    assert_eq!(get("/runs/01nosuchrun").status().as_u16(), 404);

    server.deploy(shell_job("tiny", "true", "").path());
    let bad_json = http
        .post(format!("{}/api/v1/apps/tiny/runs", server.url()))
        .bearer_auth(&server.token)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .expect("post");
    assert_eq!(bad_json.status().as_u16(), 400);
    let bad_params = server.post("/apps/tiny/runs", json!({"params": {"a b": "x"}}));
    assert_eq!(bad_params.status().as_u16(), 400);
    let huge = http
        .post(format!("{}/api/v1/apps/tiny/runs", server.url()))
        .bearer_auth(&server.token)
        .header("Content-Type", "application/json")
        .body(format!(
            "{{\"params\":{{\"a\":\"{}\"}}}}",
            "x".repeat(2 * 1024 * 1024)
        ))
        .send()
        .expect("post");
    assert_eq!(huge.status().as_u16(), 413, "JSON bodies are limited");
    let body: Value = huge.json().expect("413 is JSON too");
    assert_eq!(body["error"]["code"], "too_large");

    // Axum's own rejections answer in the same shape. (A fresh client: the server closed
    // the connection after answering 413 without reading the whole body.)
    let http = server.http();
    let bad_query = http
        .get(format!("{}/api/v1/runs?limit=many", server.url()))
        .bearer_auth(&server.token)
        .send()
        .expect("get");
    assert_eq!(bad_query.status().as_u16(), 400);
    let body: Value = bad_query.json().expect("JSON");
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("limit"),
        "{body}"
    );
    let wrong_method = http
        .put(format!("{}/api/v1/apps", server.url()))
        .bearer_auth(&server.token)
        .send()
        .expect("put");
    assert_eq!(wrong_method.status().as_u16(), 405);
    let body: Value = wrong_method.json().expect("JSON");
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let not_json = http
        .post(format!("{}/api/v1/apps/tiny/rollback", server.url()))
        .bearer_auth(&server.token)
        .header("Content-Type", "text/plain")
        .body("1")
        .send()
        .expect("post");
    assert_eq!(not_json.status().as_u16(), 400);
    assert_eq!(
        not_json.json::<Value>().expect("JSON")["error"]["code"],
        "bad_request"
    );

    // Found by fuzzing: offsets that are not the start of a line are the caller's error.
    let run = server.start_run("tiny", json!({}));
    server.wait_finished(&run, LONG);
    for offset in ["1", "9223372036854775808"] {
        let response = server
            .http()
            .get(format!(
                "{}/api/v1/runs/{run}/logs?offset={offset}",
                server.url()
            ))
            .bearer_auth(&server.token)
            .send()
            .expect("get");
        assert_eq!(response.status().as_u16(), 400, "offset {offset}");
    }
    // Idempotency keys belong to one app; an empty key is no key.
    server.deploy(shell_job("other", "true", "").path());
    let first: Value = server
        .post("/apps/tiny/runs", json!({"idempotency_key": "k1"}))
        .json()
        .expect("json");
    let again: Value = server
        .post("/apps/tiny/runs", json!({"idempotency_key": "k1"}))
        .json()
        .expect("json");
    let other: Value = server
        .post("/apps/other/runs", json!({"idempotency_key": "k1"}))
        .json()
        .expect("json");
    assert_eq!(first["id"], again["id"]);
    assert_ne!(first["id"], other["id"]);
    assert_eq!(other["app"], "other");
    let blank_a: Value = server
        .post("/apps/tiny/runs", json!({"idempotency_key": ""}))
        .json()
        .expect("json");
    let blank_b: Value = server
        .post("/apps/tiny/runs", json!({"idempotency_key": ""}))
        .json()
        .expect("json");
    assert_ne!(blank_a["id"], blank_b["id"]);
    let lower = server
        .http()
        .get(format!("{}/api/v1/whoami", server.url()))
        .header("Authorization", format!("bearer {}", server.token))
        .send()
        .expect("get");
    assert_eq!(
        lower.status().as_u16(),
        200,
        "the scheme is case-insensitive"
    );

    let doc = server.get("/openapi.json");
    assert_eq!(doc["info"]["title"], "Wharf API");
    for path in [
        "/api/v1/apps/{app}/versions",
        "/api/v1/apps/{app}/runs",
        "/api/v1/runs/{id}/logs",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
}

#[test]
fn versions_rollback_and_delete() {
    let server = Server::start();
    let v1 = shell_job("versioned", "echo one", "");
    let v2 = shell_job("versioned", "echo two", "");
    server.deploy(v1.path());
    server.deploy(v2.path());
    let versions = server.get("/apps/versioned/versions");
    assert_eq!(versions[0]["number"], 2);
    assert_eq!(versions[0]["active"], true);
    assert_eq!(versions[1]["active"], false);
    let run = server.start_run("versioned", json!({}));
    server.wait_finished(&run, LONG);
    assert_eq!(server.log_text(&run), "two");

    server.cli_ok(&["rollback", "versioned", "1"]);
    let run = server.start_run("versioned", json!({}));
    assert_eq!(server.wait_finished(&run, LONG)["version"], 1);
    assert_eq!(server.log_text(&run), "one");
    let listing = server.cli_ok(&["versions", "versioned"]);
    assert!(listing.contains("1 *"), "{listing}");

    let refused = server.cli(&["delete", "versioned"]);
    assert!(!refused.status.success(), "delete asks for confirmation");
    server.cli_ok(&["delete", "versioned", "--yes"]);
    assert_eq!(server.cli_ok(&["apps", "--json"]).trim(), "[]");
    assert!(!server.data_dir().join("apps/versioned").exists());
    assert!(!server.data_dir().join("runs").join(&run).exists());
}

/// A gzip tar with hand-made entries: (path, type, link target, contents).
fn raw_bundle(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, link, data) in entries {
        let mut header = tar::Header::new_old();
        let name = &mut header.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        if !link.is_empty() {
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        builder.append(&header, *data).expect("append");
    }
    let tar = builder.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip");
    gz.finish().expect("gzip")
}

fn upload(server: &Server, app: &str, bundle: Vec<u8>) -> (u16, Value) {
    let response = server
        .http()
        .post(format!("{}/api/v1/apps/{app}/versions", server.url()))
        .bearer_auth(&server.token)
        .header("Content-Type", "application/gzip")
        .body(bundle)
        .send()
        .expect("upload");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn malicious_bundles_are_rejected_and_leave_the_active_version_alone() {
    use tar::EntryType::{Regular, Symlink};
    let server = Server::start_with("kill_grace = \"1s\"\nmax_bundle_size = \"64KiB\"\n");
    server.deploy(
        shell_job(
            "target",
            "cat /app/wharf.toml >/dev/null && echo intact",
            "",
        )
        .path(),
    );
    let manifest: &[u8] = b"kind = \"job\"\ncommand = [\"true\"]\n";
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "tar-slip",
            raw_bundle(&[
                ("wharf.toml", Regular, "", manifest),
                ("../../evil", Regular, "", b"x"),
            ]),
            422,
            "..",
        ),
        (
            "absolute path",
            raw_bundle(&[
                ("wharf.toml", Regular, "", manifest),
                ("/tmp/wharf-evil", Regular, "", b"x"),
            ]),
            422,
            "/tmp/wharf-evil",
        ),
        (
            "symlink escape",
            raw_bundle(&[
                ("wharf.toml", Regular, "", manifest),
                ("etc", Symlink, "/etc", b""),
            ]),
            422,
            "/etc",
        ),
        (
            "write through symlink",
            raw_bundle(&[
                ("wharf.toml", Regular, "", manifest),
                ("up", Symlink, "..", b""),
                ("up/evil", Regular, "", b"x"),
            ]),
            422,
            "up",
        ),
        ("not a bundle", b"this is not gzip".to_vec(), 422, "bundle"),
        (
            "manifest is a folder",
            raw_bundle(&[("wharf.toml", tar::EntryType::Directory, "", b"")]),
            422,
            "not a regular file",
        ),
        ("oversize", vec![0u8; 100 * 1024], 413, "limit"),
    ];
    for (what, bundle, status, needle) in cases {
        let (got, body) = upload(&server, "target", bundle);
        assert_eq!(got, status, "{what}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{what}: message {message:?} should mention {needle:?}"
        );
        assert_eq!(
            server.get("/apps/target")["active_version"],
            1,
            "{what} left v1 active"
        );
    }
    assert!(!std::path::Path::new("/tmp/wharf-evil").exists());
    assert!(!server.data_dir().join("evil").exists() && !server.dir.path().join("evil").exists());
    let versions_dir = server.data_dir().join("apps/target/versions");
    let versions: Vec<_> = std::fs::read_dir(&versions_dir)
        .expect("versions")
        .flatten()
        .collect();
    assert_eq!(versions.len(), 1, "no partial version folders are left");
    let run = server.start_run("target", json!({}));
    assert_eq!(server.wait_finished(&run, LONG)["state"], "succeeded");
    assert_eq!(server.log_text(&run), "intact");
}

#[test]
fn malformed_manifests_get_messages_that_name_the_problem() {
    let server = Server::start();
    let cases = [
        (
            "unknown-key",
            "name = \"m\"\ncommand = [\"true\"]\ntimeout = \"1m\"\n",
        ),
        (
            "bad-duration",
            "command = [\"true\"]\n[job]\ntimeout = \"10 minutes\"\n",
        ),
        (
            "bad-cron",
            "command = [\"true\"]\n[[job.trigger]]\nschedule = \"61 * * * *\"\n",
        ),
        ("shell-string", "command = \"Rscript job.R\"\n"),
    ];
    let mut report = String::new();
    for (name, manifest) in cases {
        let dir = app_folder(&[("wharf.toml", manifest), ("a.R", ""), ("b.R", "")]);
        // The CLI checks locally first...
        let output = server.cli(&[
            "deploy",
            dir.path().to_str().expect("utf-8"),
            "--name",
            name,
        ]);
        assert!(!output.status.success(), "{name} must be rejected");
        // ...and the server gives the same message for a bundle sent another way.
        let mut bundle = Vec::new();
        wharf_bundle::pack(
            dir.path(),
            &mut bundle,
            &wharf_bundle::PackOptions::default(),
        )
        .expect("pack");
        let (status, body) = upload(&server, name, bundle);
        assert_eq!(status, 422, "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(
                message
                    .lines()
                    .next()
                    .unwrap_or("?")
                    .split_once(": ")
                    .map(|x| x.1)
                    .unwrap_or("?")
            ),
            "{stderr} vs {message}"
        );
        report.push_str(&format!("{name}:\n{message}\n\n"));
    }
    let missing = app_folder(&[("a.R", ""), ("b.R", "")]);
    let output = server.cli(&[
        "deploy",
        missing.path().to_str().expect("utf-8"),
        "--name",
        "ambiguous",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("command"), "{stderr}");
    insta::assert_snapshot!(report);
}

#[test]
fn the_cli_explains_connection_and_token_problems() {
    let server = Server::start();
    let unreachable = server
        .cli_cmd(&["apps"])
        .env("WHARF_URL", format!("http://127.0.0.1:{}", free_port()))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(!unreachable.status.success());
    assert!(stderr.contains("cannot reach the Wharf server"), "{stderr}");

    let wrong = server
        .cli_cmd(&["apps"])
        .env("WHARF_TOKEN", "wharf_nope")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("rejected the token") && stderr.contains("wharf login"),
        "{stderr}"
    );

    let not_logged_in = server
        .cli_cmd(&["apps"])
        .env_remove("WHARF_URL")
        .env_remove("WHARF_TOKEN")
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&not_logged_in.stderr).contains("wharf login"));

    // login stores 0600 credentials that later commands use.
    let token_file = server.data_dir().join("admin-token");
    let login = server
        .cli_cmd(&[
            "login",
            &server.url(),
            "--token-file",
            token_file.to_str().expect("utf-8"),
        ])
        .env_remove("WHARF_URL")
        .env_remove("WHARF_TOKEN")
        .output()
        .expect("login");
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let stored = server.dir.path().join(".config/wharf/credentials.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&stored)
            .expect("stored")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let apps = server
        .cli_cmd(&["apps"])
        .env_remove("WHARF_URL")
        .env_remove("WHARF_TOKEN")
        .output()
        .expect("apps");
    assert!(
        apps.status.success(),
        "{}",
        String::from_utf8_lossy(&apps.stderr)
    );
}

#[test]
fn sandbox_auto_warns_once_without_bubblewrap_and_required_refuses_to_start() {
    // A PATH without bwrap on it.
    let no_bwrap = [("PATH", "/nonexistent")];
    let mut server = Server::start_with_env("sandbox = \"auto\"\nkill_grace = \"1s\"\n", &no_bwrap);
    let ready: Value = reqwest::blocking::get(format!("{}/readyz", server.url()))
        .expect("readyz")
        .json()
        .expect("json");
    assert_eq!(ready["sandbox"], "off");
    server.deploy(shell_job("unsandboxed", "echo $WHARF_OUTPUT_DIR", "").path());
    let run = server.start_run("unsandboxed", json!({}));
    assert_eq!(server.wait_finished(&run, LONG)["state"], "succeeded");
    let output_dir = server
        .data_dir()
        .join("runs")
        .join(&run)
        .join("work/output");
    assert!(server
        .log_text(&run)
        .starts_with(&output_dir.display().to_string()));
    server.restart();
    assert_eq!(
        server
            .server_log()
            .matches("Bubblewrap is not installed")
            .count(),
        2,
        "once per start"
    );

    let config = server.dir.path().join("required.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\nsandbox = \"required\"\n",
            free_port(),
            server.data_dir().display()
        ),
    )
    .expect("config");
    server.kill9();
    let refused = std::process::Command::new(WHARF)
        .args(["server", "--config"])
        .arg(&config)
        .env("PATH", "/nonexistent")
        .output()
        .expect("run");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("bubblewrap") && stderr.contains("apt-get install bubblewrap"),
        "{stderr}"
    );
}

#[test]
fn server_configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let check = |config: &str, env: &[(&str, &str)], needle: &str| {
        let path = dir.path().join("server.toml");
        std::fs::write(&path, config).expect("config");
        let output = std::process::Command::new(WHARF)
            .args(["server", "--config"])
            .arg(&path)
            .envs(env.iter().copied())
            .env("WHARF_DATA_DIR", dir.path().join("data"))
            .output()
            .expect("run");
        assert!(!output.status.success(), "{config} must be refused");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{config}: {stderr}");
    };
    check("kill_grace = \"ten seconds\"\n", &[], "kill_grace");
    check("listne = \"127.0.0.1:1\"\n", &[], "listne");
    check("listen = \"nowhere\"\n", &[], "listen");
    check("", &[("WHARF_MAX_BUNDLE_SIZE", "lots")], "max_bundle_size");
    check("sandbox = \"maybe\"\n", &[], "sandbox");
    check(
        "[notify.channels.x]\nkind = \"slack\"\nurl_env = \"A\"\nurl_secret = \"b\"\n",
        &[],
        "notify.channels.x has url_env and url_secret; keep one",
    );
    check(
        "[notify.channels.x]\nkind = \"slack\"\nurl_secret = \"no spaces\"\n",
        &[],
        "notify.channels.x.url_secret: the secret name \"no spaces\" contains ' '",
    );
}
