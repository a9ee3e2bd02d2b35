//! Named secrets end to end: set with the CLI, injected into a sandboxed job and a
//! service replica as environment variables, never stored or logged in the clear.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};

const FIRST: &str = "pg-Pa55word-3f9c1e";
const SECOND: &str = "pg-Rotated-77ab02";

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A job that prints the SHA-256 of its DB_PASSWORD (never the value itself).
fn job(secret: &str) -> tempfile::TempDir {
    let manifest = format!(
        "name = \"report\"\nkind = \"job\"\n\
         command = [\"sh\", \"-c\", \"printf '%s' \\\"$DB_PASSWORD\\\" | sha256sum\"]\n\n\
         [env]\nDB_USER = \"analyst\"\nDB_PASSWORD = {{ secret = \"{secret}\" }}\n"
    );
    app_folder(&[("wharf.toml", &manifest)])
}

fn run_log(server: &Server) -> (serde_json::Value, String) {
    let id = server.start_run("report", serde_json::json!({}));
    let run = server.wait_finished(&id, Duration::from_secs(60));
    (run, server.log_text(&id))
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => stack.push(path),
                Ok(kind) if kind.is_file() => {
                    if let Ok(bytes) = std::fs::read(&path) {
                        if bytes
                            .windows(needle.len())
                            .any(|window| window == needle.as_bytes())
                        {
                            found.push(path.display().to_string());
                        }
                    }
                }
                _ => {}
            }
        }
    }
    found
}

#[test]
fn secrets_reach_jobs_sealed_and_are_never_kept_in_the_clear() {
    let server = Server::start();

    // Deploying an app that names a secret nobody set is refused, and says what to do.
    let refused = server
        .cli(&["deploy", job("db-password").path().to_str().unwrap()])
        .stderr;
    let refused = String::from_utf8_lossy(&refused);
    assert!(
        refused.contains("env.DB_PASSWORD refers to secret \"db-password\", which does not exist")
            && refused.contains("wharf secret set db-password"),
        "{refused}"
    );

    // A name no secret can have is refused at deploy with the rule.
    let bad_name = server
        .cli(&["deploy", job("db password").path().to_str().unwrap()])
        .stderr;
    let bad_name = String::from_utf8_lossy(&bad_name);
    assert!(
        bad_name.contains("env.DB_PASSWORD: the secret name \"db password\" contains ' '"),
        "{bad_name}"
    );

    assert!(server
        .set_secret("db-password", FIRST)
        .contains("Created secret db-password"));
    server.deploy(job("db-password").path());
    let (run, log) = run_log(&server);
    assert_eq!(run["state"], "succeeded", "{run}\n{log}");
    assert!(log.contains(&sha256_hex(FIRST)), "{log}");

    // A new value reaches the next run.
    assert!(server
        .set_secret("db-password", SECOND)
        .contains("Updated secret db-password"));
    let (run, log) = run_log(&server);
    assert_eq!(run["state"], "succeeded", "{run}\n{log}");
    assert!(log.contains(&sha256_hex(SECOND)), "{log}");

    // Listed by name, never by value.
    let listed = server.cli_ok(&["secret", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["name"], "db-password", "{listed}");
    assert_eq!(listed[0]["updated_by"], "admin", "{listed}");
    assert_eq!(
        listed[0]["used_by"],
        serde_json::json!(["report"]),
        "{listed}"
    );
    assert!(!listed.to_string().contains("pg-"), "{listed}");

    // No file of the server (database, WAL, run folders with their spec.json, logs) and
    // not the server's own log holds either value in the clear.
    for value in [FIRST, SECOND] {
        let found = files_containing(server.dir.path(), value);
        assert!(found.is_empty(), "{value} found in {found:?}");
    }

    // Bad names and values are refused with the reason.
    let bad = server
        .http()
        .put(format!("{}/api/v1/secrets/bad%20name", server.url()))
        .bearer_auth(&server.token)
        .json(&serde_json::json!({ "value": "x" }))
        .send()
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    assert!(bad.text().unwrap().contains("use letters, digits"));
    let too_big = server
        .http()
        .put(format!("{}/api/v1/secrets/big", server.url()))
        .bearer_auth(&server.token)
        .json(&serde_json::json!({ "value": "x".repeat(64 * 1024 + 1) }))
        .send()
        .unwrap();
    assert_eq!(too_big.status().as_u16(), 413);
    let anonymous = server
        .http()
        .get(format!("{}/api/v1/secrets", server.url()))
        .send()
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);

    // A secret in use is kept unless forced; deleted, the next run fails to start and
    // says why; deleting again is a 404.
    let kept = server.cli(&["secret", "delete", "db-password"]);
    assert!(!kept.status.success());
    let kept = String::from_utf8_lossy(&kept.stderr);
    assert!(
        kept.contains("secret \"db-password\" is used by report") && kept.contains("--force"),
        "{kept}"
    );
    let deleted = server.cli_ok(&["secret", "delete", "db-password", "--force"]);
    assert!(deleted.contains("Deleted secret db-password"), "{deleted}");
    let (run, _) = run_log(&server);
    assert_eq!(run["state"], "failed", "{run}");
    assert!(
        run.to_string()
            .contains("refers to secret \\\"db-password\\\", which does not exist"),
        "{run}"
    );
    let again = server.cli(&["secret", "delete", "db-password", "--force"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("there is no secret named"),
        "{again:?}"
    );
}

#[test]
fn a_service_gets_its_secret_and_rolls_over_to_a_new_value() {
    let server = Server::start();
    server.set_secret("api-key", FIRST);
    // A Python replica that answers with the SHA-256 of its API_KEY.
    let app = r#"
import hashlib, os
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = hashlib.sha256(os.environ["API_KEY"].encode()).hexdigest().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;
    let manifest = "name = \"keyed\"\nkind = \"service\"\ncommand = [\"python3\", \"app.py\"]\n\n\
                    [env]\nAPI_KEY = { secret = \"api-key\" }\n\n[service]\naccess = \"public\"\n";
    let folder = app_folder(&[("wharf.toml", manifest), ("app.py", app)]);
    server.deploy(folder.path());
    let url = format!("{}/apps/keyed/", server.url());
    let body = wait_for("the replica to answer", Duration::from_secs(60), || {
        let response = server.http().get(&url).send().ok()?;
        (response.status() == 200)
            .then(|| response.text().ok())
            .flatten()
    });
    assert_eq!(body, sha256_hex(FIRST));
    let first_replica = replica_ids(&server, "keyed");

    // A new value: a new replica starts with it, then the old one drains; requests keep
    // being answered throughout.
    server.set_secret("api-key", SECOND);
    let rotated = wait_for(
        "the new value to be served",
        Duration::from_secs(60),
        || {
            let response = server
                .http()
                .get(&url)
                .send()
                .expect("request during roll-over");
            assert_eq!(
                response.status(),
                200,
                "a request failed during the roll-over"
            );
            let body = response.text().expect("body");
            (body == sha256_hex(SECOND)).then_some(body)
        },
    );
    assert_eq!(rotated, sha256_hex(SECOND));
    wait_for("the old replica to stop", Duration::from_secs(60), || {
        let running = replica_ids(&server, "keyed");
        (!running.iter().any(|id| first_replica.contains(id))).then_some(())
    });
    let log = server.server_log();
    assert!(
        log.contains("Replicas roll over to take a secret's new value"),
        "{log}"
    );
    assert!(!log.contains(FIRST) && !log.contains(SECOND));
}

/// Ids of the app's replicas that are not stopped.
fn replica_ids(server: &Server, app: &str) -> Vec<String> {
    let replicas = server.get(&format!("/apps/{app}/replicas"));
    replicas
        .as_array()
        .expect("replica list")
        .iter()
        .filter(|replica| replica["state"] != "stopped")
        .filter_map(|replica| replica["id"].as_str().map(str::to_owned))
        .collect()
}
