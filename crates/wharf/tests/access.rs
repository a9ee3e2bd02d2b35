//! Local users and browser logins through the real server: users added with the CLI log
//! in on the HTML page, the session cookie identifies them (and only to whoami and apps,
//! never to the rest of the API), logout and password changes end sessions, `next` never
//! leaves the server, and repeated failures are throttled.

mod common;

use common::*;
use reqwest::blocking::Response;
use serde_json::Value;

fn browser() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn login(server: &Server, user: &str, password: &str, next: &str) -> Response {
    login_with(server, user, password, next, &[])
}

fn login_with(
    server: &Server,
    user: &str,
    password: &str,
    next: &str,
    headers: &[(&str, &str)],
) -> Response {
    let mut request = browser().post(format!("{}/login", server.url())).form(&[
        ("user", user),
        ("password", password),
        ("next", next),
    ]);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().expect("POST /login")
}

fn set_cookie(response: &Response) -> Option<String> {
    response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().expect("ASCII cookie").to_owned())
}

/// The `wharf_session=VALUE` pair of a Set-Cookie header.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().expect("a pair").to_owned()
}

fn whoami_with_cookie(server: &Server, cookie: &str) -> (u16, Value) {
    let response = browser()
        .get(format!("{}/api/v1/whoami", server.url()))
        .header("cookie", cookie)
        .send()
        .expect("whoami");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn users_log_in_with_a_cookie_and_log_out() {
    let server = Server::start();

    // A generated password is printed once.
    let added = server.cli_ok(&["user", "add", "ana", "--role", "viewer"]);
    assert!(added.contains("Added ana (viewer)"), "{added}");
    let generated = added
        .lines()
        .map(str::trim)
        .find(|line| line.len() == 24 && line.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or_else(|| panic!("no generated password in {added}"))
        .to_owned();
    server.cli_ok_with_stdin(
        &[
            "user",
            "add",
            "bob",
            "--role",
            "publisher",
            "--password-stdin",
        ],
        "bob's long passphrase",
    );

    let listed: Value =
        serde_json::from_str(&server.cli_ok(&["user", "list", "--json"])).expect("JSON");
    let names: Vec<&str> = listed
        .as_array()
        .expect("list")
        .iter()
        .map(|u| u["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["admin", "ana", "bob"]);
    assert_eq!(
        listed[0]["has_password"], false,
        "the first admin has a token only"
    );
    assert_eq!(listed[2]["role"], "publisher");
    assert!(!server.cli_ok(&["user", "list"]).contains(&generated));

    let doc = server.get("/openapi.json");
    for path in [
        "/api/v1/users",
        "/api/v1/users/{name}",
        "/api/v1/users/{name}/password",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }

    // The login page.
    let page = browser()
        .get(format!("{}/login?next=/apps/dash/", server.url()))
        .send()
        .expect("GET /login");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().expect("html");
    assert!(
        html.contains(r#"name="next" value="/apps/dash/""#),
        "{html}"
    );

    // A wrong password: 401, the page again with a message, and no cookie.
    for (user, password) in [("ana", "not the password"), ("nobody", &generated[..])] {
        let refused = login(&server, user, password, "/apps/dash/");
        assert_eq!(refused.status().as_u16(), 401, "{user}");
        assert!(set_cookie(&refused).is_none());
        let html = refused.text().expect("html");
        assert!(html.contains("not right"), "{html}");
        assert!(!html.contains(password), "the password is never echoed");
    }

    // The right password: 303 to `next` with the session cookie.
    let accepted = login(&server, "ana", &generated, "/apps/dash/?tab=1");
    assert_eq!(accepted.status().as_u16(), 303);
    assert_eq!(accepted.headers()["location"], "/apps/dash/?tab=1");
    let cookie = set_cookie(&accepted).expect("a session cookie");
    let attributes: Vec<&str> = cookie.split("; ").collect();
    assert!(attributes[0].starts_with("wharf_session=") && attributes[0].len() > 40);
    for expected in ["Path=/", "HttpOnly", "SameSite=Lax", "Max-Age=604"] {
        assert!(
            attributes.iter().any(|a| a.starts_with(expected)),
            "{expected} in {cookie}"
        );
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let session = cookie_pair(&cookie);

    // The cookie identifies ana to whoami ...
    let (status, me) = whoami_with_cookie(&server, &session);
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"], "ana");
    assert_eq!(me["role"], "viewer");
    assert_eq!(me["authenticated_by"], "session");
    assert_eq!(server.get("/whoami")["authenticated_by"], "token");
    // ... but the rest of the API takes API tokens only.
    let apps = browser()
        .get(format!("{}/api/v1/apps", server.url()))
        .header("cookie", &session)
        .send()
        .expect("apps");
    assert_eq!(apps.status().as_u16(), 401);

    // Behind a TLS proxy the cookie is Secure.
    let secure = login_with(
        &server,
        "ana",
        &generated,
        "/",
        &[("x-forwarded-proto", "https")],
    );
    assert_eq!(secure.status().as_u16(), 303);
    let secure_cookie = set_cookie(&secure).expect("cookie");
    assert!(secure_cookie.ends_with("; Secure"), "{secure_cookie}");

    // Logout ends the session and clears the cookie.
    let logout = browser()
        .post(format!("{}/logout", server.url()))
        .header("cookie", &session)
        .send()
        .expect("logout");
    assert_eq!(logout.status().as_u16(), 303);
    assert_eq!(logout.headers()["location"], "/login");
    let cleared = set_cookie(&logout).expect("a clearing cookie");
    assert!(cleared.starts_with("wharf_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(whoami_with_cookie(&server, &session).0, 401);
    // The other session (the Secure one) is still alive; GET /logout ends it too.
    let other = cookie_pair(&secure_cookie);
    assert_eq!(whoami_with_cookie(&server, &other).0, 200);
    let logout = browser()
        .get(format!("{}/logout", server.url()))
        .header("cookie", &other)
        .send()
        .expect("logout");
    assert_eq!(logout.status().as_u16(), 303);
    assert_eq!(whoami_with_cookie(&server, &other).0, 401);
    // A forged cookie identifies nobody.
    assert_eq!(whoami_with_cookie(&server, "wharf_session=forged").0, 401);
}

#[test]
fn next_never_leaves_the_server() {
    let server = Server::start();
    server.cli_ok_with_stdin(&["user", "add", "ana", "--password-stdin"], "correct horse");
    for next in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "",
    ] {
        let response = login(&server, "ana", "correct horse", next);
        assert_eq!(response.status().as_u16(), 303, "{next:?}");
        assert_eq!(response.headers()["location"], "/", "{next:?}");
    }
    let response = login(&server, "ana", "correct horse", "/apps/x/");
    assert_eq!(response.headers()["location"], "/apps/x/");
}

#[test]
fn a_password_change_ends_sessions_and_failures_are_throttled() {
    let server = Server::start_with("kill_grace = \"1s\"\nlogin_max_failures = 3\n");
    server.cli_ok_with_stdin(&["user", "add", "ana", "--password-stdin"], "correct horse");
    let first =
        cookie_pair(&set_cookie(&login(&server, "ana", "correct horse", "/")).expect("cookie"));
    let second =
        cookie_pair(&set_cookie(&login(&server, "ana", "correct horse", "/")).expect("cookie"));
    assert_eq!(whoami_with_cookie(&server, &first).0, 200);

    let changed = server.cli_ok_with_stdin(
        &["user", "passwd", "ana", "--password-stdin"],
        "battery staple",
    );
    assert!(changed.contains("ended 2 browser sessions"), "{changed}");
    assert_eq!(whoami_with_cookie(&server, &first).0, 401);
    assert_eq!(whoami_with_cookie(&server, &second).0, 401);
    assert_eq!(
        login(&server, "ana", "correct horse", "/")
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        login(&server, "ana", "battery staple", "/")
            .status()
            .as_u16(),
        303
    );

    // A success clears the name's failures; three failures reach the limit of 3 ...
    for _ in 0..3 {
        assert_eq!(login(&server, "ana", "guess", "/").status().as_u16(), 401);
    }
    // ... and then even the right password is refused for a while.
    let throttled = login(&server, "ana", "battery staple", "/");
    assert_eq!(throttled.status().as_u16(), 429);
    assert!(set_cookie(&throttled).is_none());
    let retry_after: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(throttled.text().unwrap().contains("Too many failed logins"));
    // Another user name is not affected.
    server.cli_ok_with_stdin(&["user", "add", "bob", "--password-stdin"], "bob's secret");
    assert_eq!(
        login(&server, "bob", "bob's secret", "/").status().as_u16(),
        303
    );

    // Admin endpoints: bad input is explained, the last admin stays.
    let too_short = server.post(
        "/users",
        serde_json::json!({"name": "carol", "password": "short"}),
    );
    assert_eq!(too_short.status().as_u16(), 400);
    let response = server
        .http()
        .delete(format!("{}/api/v1/users/admin", server.url()))
        .bearer_auth(&server.token)
        .send()
        .expect("delete");
    assert_eq!(response.status().as_u16(), 409);
    server.cli_ok(&["user", "delete", "bob", "--yes"]);
    assert_eq!(
        login(&server, "bob", "bob's secret", "/").status().as_u16(),
        401
    );
    let missing = server.cli(&["user", "delete", "bob", "--yes"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no user \"bob\""));
}

/// A Plumber API that shows who Wharf said the user is, and the cookies it got.
const WHO_API: &str = r#"
#* @get /who
#* @serializer unboxedJSON
function(req) {
  h <- function(name) { v <- req[[name]]; if (is.null(v)) "" else v }
  list(user = h("HTTP_X_WHARF_USER"), role = h("HTTP_X_WHARF_ROLE"), cookie = h("HTTP_COOKIE"))
}
"#;

#[test]
fn a_logged_in_app_through_the_proxy_knows_its_user_until_logout() {
    let server = Server::start();
    server.cli_ok_with_stdin(
        &["user", "add", "ana", "--role", "viewer", "--password-stdin"],
        "correct horse battery",
    );
    let app = common::app_folder(&[
        (
            "wharf.toml",
            "name = \"who\"\n\n[service]\nhealth = \"/who\"\n",
        ),
        ("plumber.R", WHO_API),
    ]);
    server.deploy(app.path());
    let url = format!("{}/apps/who/who", server.url());

    // Anonymous: the browser is sent to the login page, which brings it back.
    let anonymous = browser()
        .get(&url)
        .header("accept", "text/html")
        .send()
        .expect("anonymous");
    assert_eq!(anonymous.status().as_u16(), 303);
    assert_eq!(anonymous.headers()["location"], "/login?next=/apps/who/who");

    let logged_in = login(&server, "ana", "correct horse battery", "/apps/who/who");
    assert_eq!(logged_in.status().as_u16(), 303);
    assert_eq!(logged_in.headers()["location"], "/apps/who/who");
    let session = cookie_pair(&set_cookie(&logged_in).expect("session cookie"));

    // With the session: the app learns the user; spoofed headers and the session cookie
    // never reach it.
    let seen: Value = browser()
        .get(&url)
        .header("cookie", format!("{session}; theme=dark"))
        .header("x-wharf-user", "admin")
        .header("x-wharf-role", "admin")
        .send()
        .expect("with session")
        .json()
        .expect("JSON");
    assert_eq!(seen["user"], "ana", "{seen}");
    assert_eq!(seen["role"], "viewer");
    assert_eq!(seen["cookie"], "theme=dark");

    // After logout the same cookie no longer opens the app.
    let logout = browser()
        .post(format!("{}/logout", server.url()))
        .header("cookie", &session)
        .send()
        .expect("logout");
    assert_eq!(logout.status().as_u16(), 303);
    let after = browser()
        .get(&url)
        .header("cookie", &session)
        .send()
        .expect("after logout");
    assert_eq!(after.status().as_u16(), 401);
}
