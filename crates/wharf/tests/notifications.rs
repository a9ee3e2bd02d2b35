//! Notifications through the real server: Slack and signed webhooks against a local HTTP
//! receiver, e-mail against a real SMTP server (aiosmtpd; with TLS and a login in
//! `smtp_tls`), retries, `wharf notify`.

mod common;
#[path = "notifications/smtp_tls.rs"]
mod smtp_tls;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use common::{free_port, shell_job, wait_for, Server};

const HOOK_SECRET: &str = "s3cr3t-hmac-key";

/// A request the receiver got: path, headers (lower-case names), body.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// A small HTTP server: records every request and answers with the next status of
/// `statuses` (then 200).
struct Receiver {
    port: u16,
    requests: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(statuses: Vec<u16>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        std::thread::spawn(move || {
            let mut statuses = statuses.into_iter();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let mut headers = HashMap::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
                    }
                }
                let length: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                recorded.lock().unwrap().push(Received {
                    path,
                    headers,
                    body,
                });
                let status = statuses.next().unwrap_or(200);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            }
        });
        Receiver { port, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests_to(&self, path: &str) -> Vec<Received> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    fn wait_requests(&self, path: &str, count: usize) -> Vec<Received> {
        wait_for(
            &format!("{count} request(s) to {path}"),
            Duration::from_secs(30),
            || {
                let found = self.requests_to(path);
                (found.len() >= count).then_some(found)
            },
        )
    }
}

/// Checks the webhook's signature the way docs/notifications.md tells receivers to.
fn assert_signed(request: &Received) {
    let timestamp = &request.headers["x-wharf-timestamp"];
    let signature = &request.headers["x-wharf-signature"];
    let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&request.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(signature, &expected, "signature of {:?}", request.headers);
    let age = chrono::Utc::now().timestamp() - timestamp.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "timestamp {timestamp}");
}

/// A job that fails with "boom" when its params say fail, and succeeds otherwise.
fn flaky_job(name: &str, rules: &str) -> tempfile::TempDir {
    let dir = shell_job(
        name,
        "for i in $(seq 1 40); do echo \"line $i\"; done; case \"$WHARF_PARAMS\" in *fail*) echo boom; exit 3;; esac; echo all good",
        "",
    );
    let manifest = dir.path().join("wharf.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(rules);
    std::fs::write(&manifest, text).unwrap();
    dir
}

fn run_and_wait(server: &Server, app: &str, mode: &str) -> Value {
    let id = server.start_run(app, json!({ "mode": mode }));
    server.wait_finished(&id, Duration::from_secs(30))
}

fn wait_delivered(server: &Server, run_id: &str, count: usize) -> Vec<Value> {
    wait_for(
        &format!("{count} notification(s) of {run_id} to be sent"),
        Duration::from_secs(30),
        || {
            let list = server.get(&format!("/runs/{run_id}/notifications"));
            let list = list.as_array().cloned().unwrap_or_default();
            (list.len() == count && list.iter().all(|n| n["state"] == "sent")).then_some(list)
        },
    )
}

#[test]
fn slack_and_signed_webhook_on_failure_then_fixed() {
    let receiver = Receiver::start(Vec::new());
    let config = format!(
        "kill_grace = \"1s\"\n\n[notify]\npublic_url = \"https://wharf.example.com/\"\n\n\
         [notify.channels.team-slack]\nkind = \"slack\"\nurl_env = \"TEST_SLACK_URL\"\n\n\
         [notify.channels.ops]\nkind = \"webhook\"\nurl = \"{}\"\nsecret_env = \"TEST_HOOK_SECRET\"\n",
        receiver.url("/hook")
    );
    let slack_url = receiver.url("/slack");
    let server = Server::start_with_env(
        &config,
        &[
            ("TEST_SLACK_URL", &slack_url),
            ("TEST_HOOK_SECRET", HOOK_SECRET),
        ],
    );
    let app = flaky_job(
        "nightly",
        "\n[[notify]]\nchannel = \"team-slack\"\non = [\"failure\", \"fixed\"]\n\n\
         [[notify]]\nchannel = \"ops\"\non = [\"failure\", \"fixed\", \"success\"]\n",
    );
    server.deploy(app.path());

    let failed = run_and_wait(&server, "nightly", "fail");
    assert_eq!(failed["state"], "failed");
    let failed_id = failed["id"].as_str().unwrap();
    let deliveries = wait_delivered(&server, failed_id, 2);
    assert!(deliveries
        .iter()
        .all(|d| d["event"] == "failure" && d["attempts"] == 1));

    let slack = receiver.wait_requests("/slack", 1);
    let text = slack[0].json()["text"].as_str().unwrap().to_owned();
    assert!(
        text.starts_with(&format!("*nightly failed (run {failed_id})*")),
        "{text}"
    );
    assert!(
        text.contains("Status: failed") && text.contains("Trigger: manual"),
        "{text}"
    );
    // The last 30 log lines: line 13 .. line 40, boom and Wharf's own last line.
    assert!(
        text.contains("line 13\n") && text.contains("\nboom\n"),
        "{text}"
    );
    assert!(!text.contains("line 12\n"), "{text}");
    assert!(
        text.contains(&format!(
            "<https://wharf.example.com/api/v1/runs/{failed_id}|"
        )),
        "{text}"
    );

    let hooks = receiver.wait_requests("/hook", 1);
    assert_signed(&hooks[0]);
    assert_eq!(hooks[0].headers["x-wharf-event"], "failure");
    let body = hooks[0].json();
    assert_eq!(body["app"], "nightly");
    assert_eq!(body["run_id"], failed_id);
    assert_eq!(body["status"], "failed");
    assert_eq!(body["exit_code"], 3);
    assert_eq!(body["log_tail"].as_array().unwrap().len(), 30);
    assert_eq!(body["log_tail"][28], "boom");
    assert_eq!(body["log_tail"][29], "Exited with code 3.");
    assert!(body["duration_ms"].as_u64().is_some());

    // The first success after the failure is "fixed"; the next one only "success".
    let fixed = run_and_wait(&server, "nightly", "pass");
    assert_eq!(fixed["state"], "succeeded");
    let fixed_id = fixed["id"].as_str().unwrap();
    let deliveries = wait_delivered(&server, fixed_id, 2);
    assert!(
        deliveries.iter().all(|d| d["event"] == "fixed"),
        "{deliveries:?}"
    );
    let slack = receiver.wait_requests("/slack", 2);
    let text = slack[1].json()["text"].as_str().unwrap().to_owned();
    assert!(
        text.contains(&format!("nightly is fixed: run {fixed_id} succeeded")),
        "{text}"
    );
    let hooks = receiver.wait_requests("/hook", 2);
    assert_signed(&hooks[1]);
    assert_eq!(hooks[1].json()["event"], "fixed");

    let again = run_and_wait(&server, "nightly", "pass");
    let again_id = again["id"].as_str().unwrap();
    let deliveries = wait_delivered(&server, again_id, 1);
    assert_eq!(deliveries[0]["channel"], "ops");
    assert_eq!(deliveries[0]["event"], "success");
    assert_eq!(receiver.requests_to("/slack").len(), 2);

    // The CLI shows the deliveries.
    let listed = server.cli_ok(&["notify", "deliveries", failed_id]);
    assert!(
        listed.contains("team-slack") && listed.contains("sent"),
        "{listed}"
    );
}

#[test]
fn failed_deliveries_are_retried_and_recorded() {
    // The receiver fails twice, then accepts.
    let receiver = Receiver::start(vec![500, 503]);
    let config = format!(
        "kill_grace = \"1s\"\n\n[notify]\nretry_backoff = \"200ms\"\nmax_attempts = 5\n\n\
         [notify.channels.ops]\nkind = \"webhook\"\nurl = \"{}\"\n",
        receiver.url("/hook")
    );
    let server = Server::start_with(&config);
    let app = flaky_job("retried", "\n[[notify]]\nchannel = \"ops\"\n");
    server.deploy(app.path());
    let run = run_and_wait(&server, "retried", "fail");
    let run_id = run["id"].as_str().unwrap();
    let deliveries = wait_delivered(&server, run_id, 1);
    assert_eq!(deliveries[0]["attempts"], 3);
    let error = deliveries[0]["last_error"].as_str().unwrap();
    assert!(error.contains("HTTP 503"), "{error}");
    let hooks = receiver.requests_to("/hook");
    assert_eq!(hooks.len(), 3);
    // The same delivery id on every attempt, no signature without a secret.
    assert!(hooks
        .iter()
        .all(|h| h.headers["x-wharf-delivery"] == deliveries[0]["id"].as_str().unwrap()));
    assert!(!hooks[0].headers.contains_key("x-wharf-signature"));
}

#[test]
fn a_receiver_that_never_answers_ends_failed() {
    let dead_port = free_port();
    let config = format!(
        "kill_grace = \"1s\"\n\n[notify]\nretry_backoff = \"100ms\"\nmax_attempts = 2\n\n\
         [notify.channels.ops]\nkind = \"slack\"\nurl = \"http://127.0.0.1:{dead_port}/x\"\n"
    );
    let server = Server::start_with(&config);
    let app = flaky_job("dead", "\n[[notify]]\nchannel = \"ops\"\n");
    server.deploy(app.path());
    let run = run_and_wait(&server, "dead", "fail");
    let run_id = run["id"].as_str().unwrap().to_owned();
    let delivery = wait_for("the delivery to fail", Duration::from_secs(30), || {
        let list = server.get(&format!("/runs/{run_id}/notifications"));
        let first = list[0].clone();
        (first["state"] == "failed").then_some(first)
    });
    assert_eq!(delivery["attempts"], 2);
    assert!(
        delivery["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot reach"),
        "{delivery}"
    );
    // `wharf notify test` reports the same failure and exits non-zero.
    let output = server.cli(&["notify", "test", "ops"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("was not delivered") && stderr.contains("cannot reach"),
        "{stderr}"
    );
}

#[test]
fn channel_credentials_can_be_stored_secrets_opened_at_each_delivery() {
    let receiver = Receiver::start(Vec::new());
    let config = format!(
        "kill_grace = \"1s\"\n\n[notify.channels.team-slack]\nkind = \"slack\"\n\
         url_secret = \"slack-hook\"\n\n[notify.channels.ops]\nkind = \"webhook\"\n\
         url = \"{}\"\nsigning_secret = \"hook-key\"\n",
        receiver.url("/hook")
    );
    // The server starts before the secrets exist (they are set through it).
    let server = Server::start_with(&config);
    let channels = server.cli_ok(&["notify", "channels"]);
    assert!(
        channels.contains("the URL in secret \"slack-hook\""),
        "{channels}"
    );
    let missing = server.cli(&["notify", "test", "team-slack"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("the secret \"slack-hook\" does not exist; create it with `wharf secret set slack-hook`"),
        "{missing:?}"
    );

    server.set_secret(
        "slack-hook",
        &receiver.url("/slack?token=xoxb-stored-token"),
    );
    server.set_secret("hook-key", HOOK_SECRET);
    server.cli_ok(&["notify", "test", "team-slack"]);
    let slack = receiver.wait_requests("/slack?token=xoxb-stored-token", 1);
    assert!(slack[0].json()["text"]
        .as_str()
        .unwrap()
        .contains("Test message from Wharf"));
    server.cli_ok(&["notify", "test", "ops"]);
    assert_signed(&receiver.wait_requests("/hook", 1)[0]);

    // A new value applies from the next delivery; a stored URL is checked when opened.
    server.set_secret("slack-hook", "not a url");
    let bad = server.cli(&["notify", "test", "team-slack"]);
    assert!(!bad.status.success());
    let bad = String::from_utf8_lossy(&bad.stderr);
    assert!(
        bad.contains("is not an http:// or https:// URL") && !bad.contains("not a url"),
        "{bad}"
    );
    let log = server.server_log();
    assert!(!log.contains("xoxb-stored-token") && !log.contains(HOOK_SECRET));
}

#[test]
fn channels_test_messages_and_deploy_checks() {
    let receiver = Receiver::start(Vec::new());
    let config = format!(
        "kill_grace = \"1s\"\n\n[notify.channels.ops]\nkind = \"webhook\"\nurl = \"{}\"\nsecret_env = \"TEST_HOOK_SECRET\"\n\n\
         [notify.channels.team-slack]\nkind = \"slack\"\nurl_env = \"TEST_SLACK_URL\"\n",
        receiver.url("/hook")
    );
    let secret_url = receiver.url("/slack?token=xoxb-very-secret");
    let server = Server::start_with_env(
        &config,
        &[
            ("TEST_SLACK_URL", &secret_url),
            ("TEST_HOOK_SECRET", HOOK_SECRET),
        ],
    );
    let channels = server.cli_ok(&["notify", "channels"]);
    assert!(
        channels.contains("ops") && channels.contains("webhook"),
        "{channels}"
    );
    assert!(
        channels.contains("team-slack") && channels.contains("slack"),
        "{channels}"
    );
    assert!(
        !channels.contains("xoxb") && !channels.contains(HOOK_SECRET),
        "{channels}"
    );
    assert!(!server.server_log().contains("xoxb-very-secret"));

    let sent = server.cli_ok(&["notify", "test", "ops"]);
    assert!(sent.contains("Sent a test message to \"ops\""), "{sent}");
    let hooks = receiver.wait_requests("/hook", 1);
    assert_signed(&hooks[0]);
    assert_eq!(hooks[0].json()["event"], "test");
    server.cli_ok(&["notify", "test", "team-slack"]);
    let slack = receiver.wait_requests("/slack?token=xoxb-very-secret", 1);
    assert!(slack[0].json()["text"]
        .as_str()
        .unwrap()
        .contains("Test message from Wharf"));

    let output = server.cli(&["notify", "test", "nope"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no notification channel \"nope\"") && stderr.contains("\"ops\""),
        "{stderr}"
    );

    // A deploy naming a channel the server lacks is refused, saying which.
    let app = flaky_job("typo", "\n[[notify]]\nchannel = \"team-slak\"\n");
    let output = server.cli(&["deploy", app.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("notify[0].channel: the server has no notification channel \"team-slak\"")
            && stderr.contains("\"team-slack\""),
        "{stderr}"
    );
}

/// aiosmtpd writing received mail into a Maildir.
struct SmtpServer {
    child: Child,
    port: u16,
    maildir: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    fn check_aiosmtpd() {
        let probe = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .output();
        assert!(
            probe.map(|o| o.status.success()).unwrap_or(false),
            "the SMTP test needs Python's aiosmtpd; run scripts/install-deps.sh (or: python3 -m pip install aiosmtpd)"
        );
    }

    fn start() -> SmtpServer {
        SmtpServer::check_aiosmtpd();
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("maildir");
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        wait_for("aiosmtpd to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        SmtpServer {
            child,
            port,
            maildir,
            _dir: dir,
        }
    }

    fn messages(&self) -> Vec<String> {
        let mut found = Vec::new();
        for folder in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.maildir.join(folder)) {
                for entry in entries.flatten() {
                    found.push(std::fs::read_to_string(entry.path()).unwrap_or_default());
                }
            }
        }
        found
    }

    fn wait_messages(&self, count: usize) -> Vec<String> {
        wait_for("mail to arrive", Duration::from_secs(30), || {
            let found = self.messages();
            (found.len() >= count).then_some(found)
        })
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header<'m>(message: &'m str, name: &str) -> &'m str {
    message
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
        .unwrap_or_default()
}

#[test]
fn email_through_a_real_smtp_server() {
    let smtp = SmtpServer::start();
    let config = format!(
        "kill_grace = \"1s\"\n\n[notify.channels.mail]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\n\
         security = \"none\"\nfrom = \"Wharf <wharf@example.com>\"\nto = [\"team@example.com\", \"oncall@example.com\"]\n",
        smtp.port
    );
    let server = Server::start_with(&config);
    server.cli_ok(&["notify", "test", "mail"]);
    let messages = smtp.wait_messages(1);
    assert_eq!(
        header(&messages[0], "Subject"),
        "[wharf] Test message from Wharf"
    );

    let app = flaky_job(
        "mailed",
        "\n[[notify]]\nchannel = \"mail\"\non = [\"failure\"]\n",
    );
    server.deploy(app.path());
    let run = run_and_wait(&server, "mailed", "fail");
    let run_id = run["id"].as_str().unwrap();
    wait_delivered(&server, run_id, 1);
    let messages = smtp.wait_messages(2);
    let mail = messages
        .iter()
        .find(|m| header(m, "Subject").contains("mailed"))
        .expect("the run's mail");
    assert_eq!(
        header(mail, "Subject"),
        format!("[wharf] mailed failed (run {run_id})")
    );
    assert_eq!(header(mail, "From"), "Wharf <wharf@example.com>");
    let to = header(mail, "To");
    assert!(
        to.contains("team@example.com") && to.contains("oncall@example.com"),
        "{to}"
    );
    // aiosmtpd adds the envelope recipients; the body has the facts and the log's tail.
    let body = &mail[mail.find("\n\n").expect("body")..];
    assert!(body.contains("Status: failed"), "{body}");
    assert!(body.contains("Exit code: 3"), "{body}");
    assert!(body.contains("Last 30 log lines:"), "{body}");
    assert!(body.contains("line 40\nboom"), "{body}");
    assert!(body.contains(&format!("/api/v1/runs/{run_id}")), "{body}");
}
