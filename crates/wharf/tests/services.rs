//! Services through the proxy, with real R: Plumber (JSON, PNG, HTML, crash and restart,
//! rolling redeploy under load, max_inflight, scale to zero, restart of the server) and
//! Shiny (a WebSocket session that receives rendered outputs, sticky tabs, scaling on
//! sessions).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{app_folder, wait_for, Server};
use serde_json::Value;

/// A Plumber API that shows what it was sent.
const ECHO_API: &str = r#"
#* @get /headers
#* @serializer unboxedJSON
function(req) {
  h <- function(name) { v <- req[[name]]; if (is.null(v)) "" else v }
  list(
    user = h("HTTP_X_WHARF_USER"),
    forwarded_for = h("HTTP_X_FORWARDED_FOR"),
    forwarded_proto = h("HTTP_X_FORWARDED_PROTO"),
    forwarded_host = h("HTTP_X_FORWARDED_HOST"),
    forwarded_prefix = h("HTTP_X_FORWARDED_PREFIX"),
    authorization = h("HTTP_AUTHORIZATION"),
    cookie = h("HTTP_COOKIE"),
    path = req$PATH_INFO,
    query = req$QUERY_STRING,
    base_path = Sys.getenv("WHARF_BASE_PATH")
  )
}

#* @get /whoami
#* @serializer unboxedJSON
function() {
  list(replica = Sys.getenv("WHARF_REPLICA_ID"), version = Sys.getenv("WHARF_APP_VERSION"))
}

#* @post /echo
#* @serializer text
function(req) {
  paste0("got ", nchar(req$postBody, type = "bytes"), " bytes")
}

#* @get /slow
#* @serializer unboxedJSON
function() {
  Sys.sleep(1.5)
  list(ok = TRUE)
}

#* @post /crash
function() {
  quit(status = 3, save = "no")
}
"#;

fn echo_api(name: &str, service: &str) -> tempfile::TempDir {
    let manifest = format!("name = \"{name}\"\n\n[service]\n{service}\n");
    app_folder(&[("wharf.toml", &manifest), ("plumber.R", ECHO_API)])
}

/// A Shiny app with a text output computed from an input.
const SHINY_APP: &str = r#"
library(shiny)
ui <- fluidPage(numericInput("n", "n", 3), textOutput("result"))
server <- function(input, output, session) {
  output$result <- renderText(sprintf("square=%d replica=%s", input$n^2, Sys.getenv("WHARF_REPLICA_ID")))
}
shinyApp(ui, server)
"#;

fn shiny_app(name: &str, service: &str) -> tempfile::TempDir {
    let manifest = format!("name = \"{name}\"\n\n[service]\n{service}\n");
    app_folder(&[("wharf.toml", &manifest), ("app.R", SHINY_APP)])
}

fn app_url(server: &Server, app: &str, path: &str) -> String {
    format!("{}/apps/{app}{path}", server.url())
}

/// Waits until GET of the app path answers 200 and returns the body.
fn wait_ready(server: &Server, app: &str, path: &str) -> String {
    let client = server.http();
    let url = app_url(server, app, path);
    wait_for(&format!("{url} to answer"), Duration::from_secs(60), || {
        let response = client.get(&url).bearer_auth(&server.token).send().ok()?;
        (response.status() == 200)
            .then(|| response.text().ok())
            .flatten()
    })
}

fn replicas(server: &Server, app: &str) -> Vec<Value> {
    server
        .get(&format!("/apps/{app}/replicas"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn count_state(server: &Server, app: &str, state: &str) -> usize {
    replicas(server, app)
        .iter()
        .filter(|replica| replica["state"] == state)
        .count()
}

fn json(response: reqwest::blocking::Response) -> Value {
    response.json().expect("JSON body")
}

#[test]
fn plumber_api_serves_json_png_and_html_through_the_proxy() {
    let server = Server::start();
    let example = common::repo_root().join("examples/btc-api");
    server.deploy(&example);
    let price: Value = serde_json::from_str(&wait_ready(&server, "btc-api", "/price")).unwrap();
    assert_eq!(price["symbol"], "BTC");
    let client = server.http();

    let chart = client
        .get(app_url(&server, "btc-api", "/chart.png"))
        .send()
        .unwrap();
    assert_eq!(chart.status(), 200);
    assert_eq!(chart.headers()["content-type"], "image/png");
    let bytes = chart.bytes().unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");

    let report = client
        .get(app_url(&server, "btc-api", "/report"))
        .send()
        .unwrap();
    assert!(report.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(report.text().unwrap().contains("<h1>BTC</h1>"));

    let history: Value = json(
        client
            .get(app_url(&server, "btc-api", "/history?days=5"))
            .send()
            .unwrap(),
    );
    assert_eq!(history.as_array().unwrap().len(), 5);

    // Without the slash: a redirect that keeps the query.
    let no_redirects = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = no_redirects
        .get(format!("{}/apps/btc-api?x=1", server.url()))
        .send()
        .unwrap();
    assert_eq!(redirect.status(), 301);
    assert_eq!(redirect.headers()["location"], "/apps/btc-api/?x=1");

    // Unknown apps and jobs are told apart.
    let missing = client
        .get(format!("{}/apps/nope/", server.url()))
        .send()
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().unwrap().contains("no app named nope"));

    let metrics = client
        .get(format!("{}/metrics", server.url()))
        .bearer_auth(&server.token)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("wharf_proxy_requests_total{app=\"btc-api\",code=\"2xx\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("wharf_service_replicas_ready{app=\"btc-api\"} 1"));
}

#[test]
fn headers_are_rewritten_and_wharf_credentials_never_reach_the_app() {
    let server = Server::start();
    let folder = echo_api("echo", "access = \"logged-in\"\nhealth = \"/whoami\"");
    server.deploy(folder.path());
    wait_ready(&server, "echo", "/whoami");
    let client = server.http();
    let url = app_url(&server, "echo", "/headers?a=1&b=%2F");

    // Anonymous: an API client gets 401, a browser the login page.
    let anonymous = client.get(&url).send().unwrap();
    assert_eq!(anonymous.status(), 401);
    let no_redirects = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let browser = no_redirects
        .get(&url)
        .header("Accept", "text/html,application/xhtml+xml")
        .send()
        .unwrap();
    assert_eq!(browser.status(), 303);
    assert_eq!(
        browser.headers()["location"],
        "/login?next=/apps/echo/headers%3Fa%3D1%26b%3D%252F"
    );

    // With a token: the app learns the user, not the token; spoofed headers are dropped.
    let seen: Value = json(
        client
            .get(&url)
            .bearer_auth(&server.token)
            .header("X-Wharf-User", "mallory")
            .header("X-Wharf-Role", "admin")
            .header("X-Forwarded-For", "10.1.2.3")
            .header("Cookie", "theme=dark; wharf_session=stolen")
            .send()
            .unwrap(),
    );
    assert_eq!(seen["user"], "admin", "{seen}");
    assert_eq!(seen["authorization"], "");
    assert_eq!(seen["cookie"], "theme=dark");
    assert_eq!(seen["forwarded_for"], "10.1.2.3, 127.0.0.1");
    assert_eq!(seen["forwarded_proto"], "http");
    assert_eq!(seen["forwarded_prefix"], "/apps/echo");
    assert_eq!(seen["forwarded_host"], format!("127.0.0.1:{}", server.port));
    assert_eq!(seen["path"], "/headers");
    assert_eq!(seen["query"], "?a=1&b=%2F");
    assert_eq!(seen["base_path"], "/apps/echo/");

    // A request body streams through.
    let body = vec![b'x'; 3 * 1024 * 1024];
    let echoed = client
        .post(app_url(&server, "echo", "/echo"))
        .bearer_auth(&server.token)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(echoed.text().unwrap().trim(), "got 3145728 bytes");
}

#[test]
fn a_crashed_replica_is_replaced_and_its_logs_are_kept() {
    let server = Server::start();
    let folder = echo_api("crashy", "access = \"public\"\nhealth = \"/whoami\"");
    server.deploy(folder.path());
    let first: Value = serde_json::from_str(&wait_ready(&server, "crashy", "/whoami")).unwrap();
    let crash = server
        .http()
        .post(app_url(&server, "crashy", "/crash"))
        .send()
        .unwrap();
    assert_eq!(crash.status(), 502, "the replica died mid-request");
    let second: Value = wait_for("a new replica", Duration::from_secs(60), || {
        let body = wait_ready(&server, "crashy", "/whoami");
        let seen: Value = serde_json::from_str(&body).ok()?;
        (seen["replica"] != first["replica"]).then_some(seen)
    });
    let old = replicas(&server, "crashy")
        .into_iter()
        .find(|replica| replica["id"] == first["replica"])
        .expect("the crashed replica is listed");
    assert_eq!(old["state"], "stopped");
    assert_eq!(old["message"], "crashed: exited with code 3");
    assert_eq!(second["version"], "1");

    // Its log is still there (Plumber prints its banner at start).
    let id = first["replica"].as_str().unwrap();
    let page = server.get(&format!("/replicas/{id}/logs"));
    assert!(page["complete"].as_bool().unwrap());
    assert!(!page["lines"].as_array().unwrap().is_empty());
}

#[test]
fn a_redeploy_rolls_replicas_over_without_failing_a_request() {
    let server = Server::start();
    let folder = echo_api(
        "rolling",
        "access = \"public\"\nhealth = \"/whoami\"\nmin_replicas = 2\ndrain_timeout = \"5s\"",
    );
    server.deploy(folder.path());
    wait_for("two ready replicas", Duration::from_secs(60), || {
        (count_state(&server, "rolling", "ready") == 2).then_some(())
    });

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let saw_version_2 = Arc::new(AtomicBool::new(false));
    let url = app_url(&server, "rolling", "/whoami");
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, saw, url) = (
                stop.clone(),
                ok.clone(),
                failed.clone(),
                saw_version_2.clone(),
                url.clone(),
            );
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let mut errors = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&url).send() {
                        Ok(response) if response.status() == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if response
                                .text()
                                .unwrap_or_default()
                                .contains("\"version\":\"2\"")
                            {
                                saw.store(true, Ordering::Relaxed);
                            }
                        }
                        Ok(response) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            errors.push(format!(
                                "{}: {}",
                                response.status(),
                                response.text().unwrap_or_default()
                            ));
                        }
                        Err(error) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            errors.push(error.to_string());
                        }
                    }
                }
                errors
            })
        })
        .collect();
    wait_for("some requests", Duration::from_secs(30), || {
        (ok.load(Ordering::Relaxed) > 20).then_some(())
    });
    server.deploy(folder.path());
    wait_for("version 2 to answer", Duration::from_secs(60), || {
        saw_version_2.load(Ordering::Relaxed).then_some(())
    });
    wait_for("the old replicas to stop", Duration::from_secs(60), || {
        let live: Vec<Value> = replicas(&server, "rolling")
            .into_iter()
            .filter(|replica| replica["state"] != "stopped")
            .collect();
        (live.len() == 2 && live.iter().all(|replica| replica["version"] == 2)).then_some(())
    });
    let before = ok.load(Ordering::Relaxed);
    wait_for("requests after the switch", Duration::from_secs(30), || {
        (ok.load(Ordering::Relaxed) > before + 20).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let errors: Vec<String> = workers
        .into_iter()
        .flat_map(|worker| worker.join().unwrap())
        .collect();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests: {errors:?}"
    );
    let stopped: Vec<Value> = replicas(&server, "rolling")
        .into_iter()
        .filter(|replica| replica["state"] == "stopped")
        .collect();
    assert_eq!(stopped.len(), 2);
    assert!(stopped
        .iter()
        .all(|replica| replica["message"].as_str().unwrap().starts_with("stopped")));
}

#[test]
fn max_inflight_queues_then_answers_429_with_retry_after() {
    let server = Server::start();
    let folder = echo_api(
        "narrow",
        "access = \"public\"\nhealth = \"/whoami\"\nmax_inflight = 1\nmax_replicas = 1\nqueue_timeout = \"300ms\"",
    );
    server.deploy(folder.path());
    wait_ready(&server, "narrow", "/whoami");
    let slow = {
        let url = app_url(&server, "narrow", "/slow");
        std::thread::spawn(move || reqwest::blocking::get(url).unwrap().status())
    };
    // Once the slow request holds the only slot, the next one waits, then gets a 429.
    wait_for(
        "the slow request to hold the slot",
        Duration::from_secs(30),
        || {
            replicas(&server, "narrow")
                .iter()
                .any(|replica| replica["inflight"] == 1)
                .then_some(())
        },
    );
    let refused = reqwest::blocking::get(app_url(&server, "narrow", "/whoami")).unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(refused.text().unwrap().contains("max_inflight"));
    assert_eq!(slow.join().unwrap(), 200);
}

#[test]
fn scale_to_zero_holds_the_first_request_and_returns_to_zero_when_idle() {
    let server = Server::start();
    let folder = echo_api(
        "lazy",
        "access = \"public\"\nhealth = \"/whoami\"\nmin_replicas = 0\nidle_timeout = \"3s\"",
    );
    server.deploy(folder.path());
    assert_eq!(
        replicas(&server, "lazy").len(),
        0,
        "nothing starts before a request"
    );
    // The first request is held while a replica starts, then answered.
    let response = server
        .http()
        .get(app_url(&server, "lazy", "/whoami"))
        .timeout(Duration::from_secs(60))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    wait_for(
        "the replica to stop when idle",
        Duration::from_secs(60),
        || {
            let all = replicas(&server, "lazy");
            (all.len() == 1 && all[0]["state"] == "stopped").then_some(())
        },
    );
    // And again from zero.
    let again = server
        .http()
        .get(app_url(&server, "lazy", "/whoami"))
        .timeout(Duration::from_secs(60))
        .send()
        .unwrap();
    assert_eq!(again.status(), 200);
    let metrics = server
        .http()
        .get(format!("{}/metrics", server.url()))
        .bearer_auth(&server.token)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("wharf_service_cold_starts_total{app=\"lazy\"} 2"),
        "{metrics}"
    );
}

#[test]
fn replicas_keep_running_through_a_server_restart() {
    let mut server = Server::start();
    let folder = echo_api("steady", "access = \"public\"\nhealth = \"/whoami\"");
    server.deploy(folder.path());
    let before: Value = serde_json::from_str(&wait_ready(&server, "steady", "/whoami")).unwrap();
    server.restart();
    let after: Value = serde_json::from_str(&wait_ready(&server, "steady", "/whoami")).unwrap();
    assert_eq!(
        before["replica"], after["replica"],
        "the same replica serves"
    );
    assert_eq!(count_state(&server, "steady", "ready"), 1);
}

// --- Shiny over WebSockets -------------------------------------------------------------

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// Opens Shiny's WebSocket through the proxy, with the given cookie.
fn shiny_socket(server: &Server, app: &str, cookie: Option<&str>) -> Socket {
    use tungstenite::client::IntoClientRequest;
    let url = format!("ws://127.0.0.1:{}/apps/{app}/websocket/", server.port);
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", server.token).parse().unwrap(),
    );
    if let Some(cookie) = cookie {
        request
            .headers_mut()
            .insert("Cookie", cookie.parse().unwrap());
    }
    let (socket, response) = tungstenite::connect(request).expect("WebSocket through the proxy");
    assert_eq!(response.status(), 101);
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
    }
    socket
}

/// Sends Shiny's `init` with `n` and returns the rendered `result` output.
fn shiny_result(socket: &mut Socket, n: i64) -> String {
    let init = serde_json::json!({"method": "init", "data": {"n": n, ".clientdata_output_result_hidden": false}});
    socket
        .send(tungstenite::Message::Text(init.to_string().into()))
        .unwrap();
    loop {
        let message = socket.read().expect("a Shiny message");
        let tungstenite::Message::Text(text) = message else {
            continue;
        };
        // Shiny may prefix messages with a sequence marker ("a#0|m|{...}"); take the JSON.
        let json_start = text.find('{').unwrap_or(0);
        let Ok(value) = serde_json::from_str::<Value>(&text[json_start..]) else {
            continue;
        };
        if let Some(result) = value["values"]["result"].as_str() {
            return result.to_owned();
        }
    }
}

#[test]
fn shiny_sessions_render_over_websockets_and_stick_to_their_replica() {
    let server = Server::start();
    let folder = shiny_app("squares", "min_replicas = 2\nhealth = \"/\"");
    server.deploy(folder.path());
    wait_for("two ready replicas", Duration::from_secs(60), || {
        (count_state(&server, "squares", "ready") == 2).then_some(())
    });

    // The first page load sets the sticky cookie.
    let page = server
        .http()
        .get(app_url(&server, "squares", "/"))
        .bearer_auth(&server.token)
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    let set_cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("Path=/apps/squares/"), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"));
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let replica = cookie
        .trim_start_matches("wharf_sticky=")
        .split('~')
        .next()
        .unwrap()
        .to_owned();

    // Two tabs of that browser land on the same replica, and Shiny renders for each.
    let mut tab_one = shiny_socket(&server, "squares", Some(&cookie));
    let mut tab_two = shiny_socket(&server, "squares", Some(&cookie));
    assert_eq!(
        shiny_result(&mut tab_one, 7),
        format!("square=49 replica={replica}")
    );
    assert_eq!(
        shiny_result(&mut tab_two, 9),
        format!("square=81 replica={replica}")
    );
    // The proxy counts them as one session with two WebSockets.
    let listed = replicas(&server, "squares");
    let sticky = listed.iter().find(|r| r["id"] == replica.as_str()).unwrap();
    assert_eq!(sticky["websockets"], 2);
    assert_eq!(sticky["sessions"], 1);
}

#[test]
fn sessions_scale_a_shiny_app_out_and_back_in() {
    let server = Server::start();
    let folder = shiny_app(
        "busy",
        "health = \"/\"\nmin_replicas = 1\nmax_replicas = 3\nscale_out_above = 2\nscale_in_below = 1\nscale_in_cooldown = \"2s\"\ndrain_timeout = \"1s\"",
    );
    server.deploy(folder.path());
    wait_ready(&server, "busy", "/");
    // Five sessions: more than 2 per replica needs 3 replicas.
    let mut sockets: Vec<Socket> = (0..5)
        .map(|_| shiny_socket(&server, "busy", None))
        .collect();
    for (n, socket) in sockets.iter_mut().enumerate() {
        assert!(shiny_result(socket, n as i64).starts_with(&format!("square={}", n * n)));
    }
    wait_for("three ready replicas", Duration::from_secs(90), || {
        (count_state(&server, "busy", "ready") == 3).then_some(())
    });
    // New sessions go to the least loaded replicas.
    let mut more: Vec<Socket> = (0..3)
        .map(|_| shiny_socket(&server, "busy", None))
        .collect();
    let mut replicas_seen = std::collections::BTreeSet::new();
    for socket in &mut more {
        let result = shiny_result(socket, 2);
        replicas_seen.insert(result.split("replica=").nth(1).unwrap().to_owned());
    }
    assert!(
        replicas_seen.len() >= 2,
        "new sessions spread: {replicas_seen:?}"
    );
    for mut socket in sockets.into_iter().chain(more) {
        let _ = socket.close(None);
        let _ = socket.flush();
    }
    wait_for("back to one replica", Duration::from_secs(90), || {
        (count_state(&server, "busy", "ready") == 1
            && count_state(&server, "busy", "draining") == 0
            && count_state(&server, "busy", "starting") == 0)
            .then_some(())
    });
}

#[test]
fn deploying_a_service_waits_for_it_and_reports_a_broken_one_with_its_log() {
    let server = Server::start();
    let folder = echo_api("waited", "access = \"public\"\nhealth = \"/whoami\"");
    let output = server.deploy(folder.path());
    assert!(output.contains("Ready at http://127.0.0.1:"), "{output}");
    // Ready means ready: the first request after the deploy is answered.
    let response = server
        .http()
        .get(app_url(&server, "waited", "/whoami"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let ps = server.cli_ok(&["ps", "waited"]);
    assert!(ps.contains("ready"), "{ps}");
    let logs = server.cli(&["logs", "waited"]);
    assert!(logs.status.success());

    let broken = app_folder(&[
        ("wharf.toml", "name = \"broken\"\n"),
        ("plumber.R", "stop(\"the model file is missing\")\n"),
    ]);
    let output = server.cli(&["deploy", broken.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("did not start"), "{stderr}");
    assert!(stderr.contains("the model file is missing"), "{stderr}");
}

#[test]
fn following_an_apps_logs_picks_up_replicas_that_start_later() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let server = Server::start();
    let folder = echo_api(
        "later",
        "access = \"public\"\nhealth = \"/whoami\"\nmin_replicas = 0",
    );
    server.deploy(folder.path());
    // Nothing runs yet: the follower waits for the first replica.
    let mut follower = server
        .cli_cmd(&["logs", "later", "-f"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        let stderr = follower.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut seen = seen.lock().unwrap();
                seen.push_str(&line);
                seen.push('\n');
            }
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let response = server
        .http()
        .get(app_url(&server, "later", "/whoami"))
        .timeout(Duration::from_secs(60))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = replicas(&server, "later")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let outcome = poll_for_30s(|| {
        let seen = seen.lock().unwrap();
        (seen.contains(&format!("following replica {id}")) && seen.contains("Running plumber API"))
            .then_some(())
    });
    let _ = follower.kill();
    let _ = follower.wait();
    let _ = reader.join();
    assert!(
        outcome.is_some(),
        "the follower printed: {}",
        seen.lock().unwrap()
    );
}

/// Python's http.server answers in HTTP/1.0 and closes; the client still gets HTTP/1.1 and
/// keeps its connection (the proxy, not the replica, speaks to the client).
#[test]
fn an_http_1_0_replica_is_answered_in_http_1_1_on_a_kept_connection() {
    use std::io::{BufRead, BufReader, Read, Write};

    let server = Server::start();
    let app = app_folder(&[
        (
            "wharf.toml",
            "name = \"py10\"\nkind = \"service\"\ncommand = [\"sh\", \"-c\", \"exec python3 -m http.server $PORT --bind 127.0.0.1\"]\n\n[service]\naccess = \"public\"\nhealth = \"/hello.txt\"\n",
        ),
        ("hello.txt", "hello from python\n"),
    ]);
    server.deploy(app.path());
    wait_ready(&server, "py10", "/hello.txt");

    let address = server.url().trim_start_matches("http://").to_owned();
    let stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for _ in 0..2 {
        write!(
            writer,
            "GET /apps/py10/hello.txt HTTP/1.1\r\nHost: {address}\r\n\r\n"
        )
        .unwrap();
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status:?}");
        let mut length = None;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            assert_ne!(line, "connection: close");
            if let Some(value) = line.strip_prefix("content-length:") {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let mut body = vec![0; length.expect("a content-length")];
        reader.read_exact(&mut body).unwrap();
        assert_eq!(body, b"hello from python\n");
    }
}

/// Like `wait_for`, but gives up after 30 s with `None` instead of panicking (so the caller
/// can stop its child processes first).
fn poll_for_30s<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Some(value) = check() {
            return Some(value);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}
