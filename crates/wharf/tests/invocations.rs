//! Asynchronous invocations ("functions") of a real Plumber API deployed with
//! `min_replicas = 0`: queued with a 202, run through the proxy (cold start included),
//! stored and listed for audit, called back (signed), kept through a `kill -9`, refused
//! clearly when too large or not a service.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use common::{app_folder, wait_for, Server};
use serde_json::Value;

/// A model: reads a JSON body, answers a computed JSON.
const MODEL_API: &str = r#"
#* @get /whoami
#* @serializer unboxedJSON
function() {
  list(replica = Sys.getenv("WHARF_REPLICA_ID"))
}

#* @post /predict
#* @serializer unboxedJSON
function(req) {
  input <- jsonlite::fromJSON(req$postBody)
  user <- req$HTTP_X_WHARF_USER
  invocation <- req$HTTP_IDEMPOTENCY_KEY
  list(
    sum = sum(input$x),
    n = length(input$x),
    user = if (is.null(user)) "" else user,
    invocation = if (is.null(invocation)) "" else invocation
  )
}

#* @post /broken
#* @serializer unboxedJSON
function(res) {
  res$status <- 400
  list(error = "x must be numeric")
}

#* @post /gated
#* @serializer unboxedJSON
function() {
  gate <- Sys.getenv("GATE")
  while (!file.exists(gate)) Sys.sleep(0.05)
  list(opened = TRUE)
}
"#;

fn model_app(name: &str, env: &str) -> tempfile::TempDir {
    let manifest = format!(
        "name = \"{name}\"\n\n[env]\n{env}\n\n[service]\nhealth = \"/whoami\"\nmin_replicas = 0\nidle_timeout = \"10m\"\n"
    );
    app_folder(&[("wharf.toml", &manifest), ("plumber.R", MODEL_API)])
}

/// POSTs an invocation; returns the response.
fn invoke(
    server: &Server,
    app: &str,
    query: &[(&str, &str)],
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::blocking::Response {
    server
        .http()
        .post(format!("{}/api/v1/apps/{app}/invocations", server.url()))
        .query(query)
        .bearer_auth(&server.token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .expect("POST invocation")
}

fn accepted_id(response: reqwest::blocking::Response) -> String {
    assert_eq!(response.status(), 202, "{:?}", response.text());
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = response.json().unwrap();
    assert_eq!(accepted["status"], "queued");
    assert_eq!(accepted["status_url"], location);
    accepted["id"].as_str().unwrap().to_owned()
}

fn wait_ended(server: &Server, id: &str) -> Value {
    wait_for(
        &format!("invocation {id} to end"),
        Duration::from_secs(120),
        || {
            let info = server.get(&format!("/invocations/{id}"));
            matches!(info["state"].as_str(), Some("succeeded" | "failed")).then_some(info)
        },
    )
}

fn error_of(response: reqwest::blocking::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().expect("JSON error");
    (
        status,
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// A one-shot HTTP receiver: the first request's head and body.
fn callback_receiver() -> (String, mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook?token=abc", listener.local_addr().unwrap());
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        let length = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())
                    .flatten()
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .unwrap();
        sender.send((head, body)).unwrap();
    });
    (url, receiver)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[test]
fn an_invocation_is_queued_answered_audited_and_called_back_signed() {
    let server = Server::start_with_env(
        "kill_grace = \"1s\"\n[invocations]\ncallback_secret_env = \"TEST_CALLBACK_SECRET\"\n",
        &[("TEST_CALLBACK_SECRET", "s3cret")],
    );
    let folder = model_app("model", "");
    server.deploy(folder.path());
    let (callback_url, callback) = callback_receiver();

    // Queued while no replica runs: the worker's call starts one and is held until ready.
    let id = accepted_id(invoke(
        &server,
        "model",
        &[("path", "/predict"), ("callback", &callback_url)],
        "application/json",
        br#"{"x": [1, 2, 3.5]}"#.to_vec(),
    ));
    let info = wait_ended(&server, &id);
    assert_eq!(info["state"], "succeeded", "{info:#}");
    assert_eq!(info["attempts"], 1);
    assert_eq!(info["invoked_by"], "admin");
    assert_eq!(info["request"]["body"], r#"{"x": [1, 2, 3.5]}"#);
    assert_eq!(info["request"]["content_type"], "application/json");
    let response = &info["response"];
    assert_eq!(response["status"], 200);
    assert!(response["headers"]["content-type"]
        .as_str()
        .unwrap()
        .starts_with("application/json"));
    let answer: Value = serde_json::from_str(response["body"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(answer["sum"], 6.5);
    assert_eq!(answer["n"], 3);
    assert_eq!(answer["user"], "admin", "the app is told who invoked it");
    assert_eq!(answer["invocation"], id.as_str());
    assert_eq!(info["history"][0]["kind"], "call");
    assert_eq!(info["history"][0]["status"], 200);

    // The callback arrives, signed like webhook notifications.
    let (head, body) = callback
        .recv_timeout(Duration::from_secs(60))
        .expect("the callback to arrive");
    assert!(head.starts_with("POST /hook?token=abc "), "{head}");
    let document: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(document["id"], id.as_str());
    assert_eq!(document["app"], "model");
    assert_eq!(document["status"], "succeeded");
    assert_eq!(document["response"]["status"], 200);
    let called_back: Value =
        serde_json::from_str(document["response"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(called_back["sum"], 6.5);
    assert!(document["finished_at"].as_str().is_some());
    let timestamp = header(&head, "x-wharf-timestamp").expect("timestamp header");
    let signature = header(&head, "x-wharf-signature").expect("signature header");
    {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(&body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(signature, expected);
    }
    let delivered = wait_for(
        "the callback to be recorded",
        Duration::from_secs(20),
        || {
            let info = server.get(&format!("/invocations/{id}"));
            (info["callback"]["state"] == "sent").then_some(info)
        },
    );
    assert_eq!(
        delivered["callback"]["url"],
        callback_url.split('?').next().unwrap(),
        "the query (a token) is not shown"
    );
    assert_eq!(delivered["history"][1]["kind"], "callback");

    // An answer of 400 is final: stored, not retried.
    let broken = accepted_id(invoke(
        &server,
        "model",
        &[("path", "/broken")],
        "application/json",
        b"{}".to_vec(),
    ));
    let info = wait_ended(&server, &broken);
    assert_eq!(info["state"], "failed");
    assert_eq!(info["attempts"], 1);
    assert_eq!(info["response"]["status"], 400);
    assert!(info["response"]["body"]["body"]
        .as_str()
        .unwrap()
        .contains("x must be numeric"));

    // The audit list: newest first, with what was sent and answered.
    let list = server.get("/apps/model/invocations");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], broken.as_str());
    assert_eq!(list[1]["id"], id.as_str());
    assert_eq!(list[1]["request"]["preview"], r#"{"x": [1, 2, 3.5]}"#);
    assert!(list[1]["response"]["body"]["preview"]
        .as_str()
        .unwrap()
        .contains("\"sum\":6.5"));

    // The CLI: a synchronous call through the proxy, an asynchronous one, the list.
    let sync = server.cli_ok(&["invoke", "model", "/predict", "--data", r#"{"x": [2, 2]}"#]);
    let sync: Value = serde_json::from_str(sync.trim()).unwrap();
    assert_eq!(sync["sum"], 4);
    assert_eq!(sync["invocation"], "", "a direct call is not an invocation");
    let queued = server.cli_ok(&[
        "invoke",
        "model",
        "predict",
        "--async",
        "--data",
        r#"{"x": [10]}"#,
    ]);
    let queued: Value = serde_json::from_str(queued.trim()).unwrap();
    assert_eq!(queued["sum"], 10);
    let table = server.cli_ok(&["invocations", "model"]);
    assert!(table.contains(&id), "{table}");
    assert!(table.contains("POST /predict"), "{table}");
    let failed = server.cli(&["invoke", "model", "/broken", "--async", "--data", "{}"]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("HTTP 400"));
}

#[test]
fn invocations_that_cannot_be_taken_are_refused_clearly() {
    let server =
        Server::start_with("kill_grace = \"1s\"\n[invocations]\nmax_request_size = \"1KiB\"\n");
    server.deploy(model_app("model", "").path());
    server.deploy(common::shell_job("nightly", "true", "").path());

    let (status, message) = error_of(invoke(
        &server,
        "model",
        &[("path", "/predict")],
        "application/json",
        vec![b'7'; 2048],
    ));
    assert_eq!(status, 413);
    assert!(message.contains("larger than 1KiB"), "{message}");
    assert!(message.contains("max_request_size"), "{message}");

    let (status, message) = error_of(invoke(&server, "nightly", &[], "text/plain", b"x".to_vec()));
    assert_eq!(status, 400);
    assert!(message.contains("nightly is a job"), "{message}");
    assert!(message.contains("wharf run nightly"), "{message}");

    let (status, message) = error_of(invoke(&server, "nope", &[], "text/plain", b"x".to_vec()));
    assert_eq!(status, 404);
    assert!(message.contains("no app named nope"), "{message}");

    let (status, message) = error_of(invoke(
        &server,
        "model",
        &[("callback", "ftp://example.com/x")],
        "text/plain",
        b"x".to_vec(),
    ));
    assert_eq!(status, 400);
    assert!(message.contains("http or https"), "{message}");

    let (status, message) = error_of(invoke(
        &server,
        "model",
        &[("method", "TRACE")],
        "text/plain",
        b"x".to_vec(),
    ));
    assert_eq!(status, 400);
    assert!(message.contains("use one of"), "{message}");

    // Nothing refused was stored.
    assert_eq!(server.get("/apps/model/invocations"), serde_json::json!([]));
    let unauthenticated = server
        .http()
        .post(format!("{}/api/v1/apps/model/invocations", server.url()))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let document = server.get("/openapi.json");
    assert!(document["paths"]["/api/v1/apps/{app}/invocations"]["post"].is_object());
    assert!(document["paths"]["/api/v1/invocations/{id}"]["get"].is_object());
}

#[test]
fn an_accepted_invocation_survives_kill_9_of_the_server() {
    let gate_dir = tempfile::tempdir().unwrap();
    let gate = gate_dir.path().join("open");
    let mut server = Server::start_with(&format!(
        "kill_grace = \"1s\"\nsandbox_ro_binds = [\"{}\"]\n",
        gate_dir.path().display()
    ));
    let folder = model_app("gated", &format!("GATE = \"{}\"", gate.display()));
    server.deploy(folder.path());
    let id = accepted_id(invoke(
        &server,
        "gated",
        &[("path", "/gated")],
        "application/json",
        b"{}".to_vec(),
    ));
    // It is being worked on (a replica starting, or the app waiting for the gate) and
    // cannot end before the gate opens.
    wait_for("the invocation to run", Duration::from_secs(30), || {
        (server.get(&format!("/invocations/{id}"))["state"] == "running").then_some(())
    });
    server.restart();
    std::fs::write(&gate, "").unwrap();
    let info = wait_ended(&server, &id);
    assert_eq!(info["state"], "succeeded", "{info:#}");
    assert_eq!(info["attempts"], 2, "run again after the restart: {info:#}");
    let answer: Value =
        serde_json::from_str(info["response"]["body"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(answer["opened"], true);
}
