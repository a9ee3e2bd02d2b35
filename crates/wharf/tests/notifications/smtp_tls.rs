//! E-mail over STARTTLS and implicit TLS with a login, against a real aiosmtpd using a
//! certificate made for the test by its own CA (the channel's `ca_file`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{free_port, wait_for, Server, WHARF};
use crate::{flaky_job, header, run_and_wait, SmtpServer};

const SMTP_USER: &str = "wharf-mailer";
const SMTP_PASSWORD: &str = "correct-horse-battery-staple-42";
const WRONG_PASSWORD: &str = "not-the-password-17";

/// aiosmtpd with TLS (`starttls`: STARTTLS required before AUTH; `tls`: TLS from the
/// first byte), accepting AUTH of one user only, and refusing mail without it.
const SMTP_TLS_SERVER: &str = r#"
import os
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

mode, port, cert, key, maildir = sys.argv[1:6]
user = os.environ["TEST_SMTP_USER"].encode()
password = os.environ["TEST_SMTP_PASSWORD"].encode()

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)


def authenticator(server, session, envelope, mechanism, auth_data):
    accepted = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == user
        and auth_data.password == password
    )
    return AuthResult(success=accepted, handled=False)


common = dict(
    hostname="127.0.0.1",
    port=int(port),
    authenticator=authenticator,
    auth_required=True,
    # aiosmtpd counts only STARTTLS as TLS for AUTH; with implicit TLS everything is.
    auth_require_tls=(mode == "starttls"),
)
if mode == "starttls":
    controller = Controller(
        Mailbox(maildir), tls_context=context, require_starttls=True, **common
    )
else:
    controller = Controller(Mailbox(maildir), ssl_context=context, **common)
controller.start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// A CA, a server certificate it signed (for `localhost` and 127.0.0.1), and a second
/// CA that signed nothing the server uses.
struct TestCertificates {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the TLS tests need the openssl command");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl TestCertificates {
    fn generate() -> TestCertificates {
        let dir = tempfile::tempdir().unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        for (name, subject) in [("ca", "/CN=Wharf test CA"), ("other-ca", "/CN=Other CA")] {
            let key = format!("{name}.key");
            let pem = format!("{name}.pem");
            let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", subject];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &pem]);
            openssl(dir.path(), &args);
        }
        let mut args = vec!["req", "-nodes", "-subj", "/CN=localhost"];
        args.extend(ec);
        args.extend(["-keyout", "server.key", "-out", "server.csr"]);
        openssl(dir.path(), &args);
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        TestCertificates { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl SmtpServer {
    /// aiosmtpd in `mode` ("starttls" or "tls") with the server certificate of `certificates`.
    fn start_tls(mode: &str, certificates: &TestCertificates) -> SmtpServer {
        SmtpServer::check_aiosmtpd();
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("smtp_tls_server.py");
        std::fs::write(&script, SMTP_TLS_SERVER).unwrap();
        let maildir = dir.path().join("maildir");
        let log = dir.path().join("smtp.log");
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(&script)
            .args([mode, &port.to_string()])
            .arg(certificates.path("server.pem"))
            .arg(certificates.path("server.key"))
            .arg(&maildir)
            .env("TEST_SMTP_USER", SMTP_USER)
            .env("TEST_SMTP_PASSWORD", SMTP_PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start aiosmtpd");
        wait_for(
            "aiosmtpd with TLS to listen",
            Duration::from_secs(20),
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "aiosmtpd exited with {status}:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                std::net::TcpStream::connect(("127.0.0.1", port)).ok()
            },
        );
        SmtpServer {
            child,
            port,
            maildir,
            _dir: dir,
        }
    }
}

/// A `[notify.channels.NAME]` for the test SMTP server.
fn smtp_channel(name: &str, host: &str, port: u16, security: &str, extra: &str) -> String {
    format!(
        "\n[notify.channels.{name}]\nkind = \"smtp\"\nhost = \"{host}\"\nport = {port}\n\
         security = \"{security}\"\nfrom = \"Wharf <wharf@example.com>\"\nto = [\"team@example.com\"]\n{extra}"
    )
}

fn login(password_env: &str, ca_file: &Path) -> String {
    format!(
        "username = \"{SMTP_USER}\"\npassword_env = \"{password_env}\"\nca_file = \"{}\"\n",
        ca_file.display()
    )
}

const DELIVERY_SETTINGS: &str =
    "kill_grace = \"1s\"\n\n[notify]\nretry_backoff = \"100ms\"\nmax_attempts = 2\n";

fn start_wharf(channels: &str) -> Server {
    Server::start_with_env(
        &format!("{DELIVERY_SETTINGS}{channels}"),
        &[
            ("TEST_SMTP_PASSWORD", SMTP_PASSWORD),
            ("TEST_SMTP_WRONG_PASSWORD", WRONG_PASSWORD),
        ],
    )
}

/// The deliveries of `run_id` once none is pending, by channel.
fn settled_deliveries(server: &Server, run_id: &str, count: usize) -> Vec<Value> {
    let mut deliveries = wait_for(
        &format!("{count} deliveries of {run_id} to be sent or failed"),
        Duration::from_secs(30),
        || {
            let list = server.get(&format!("/runs/{run_id}/notifications"));
            let list = list.as_array().cloned().unwrap_or_default();
            (list.len() == count && list.iter().all(|d| d["state"] != "pending")).then_some(list)
        },
    );
    deliveries.sort_by_key(|d| d["channel"].as_str().unwrap_or_default().to_owned());
    deliveries
}

fn assert_no_password(text: &str) {
    assert!(
        !text.contains(SMTP_PASSWORD) && !text.contains(WRONG_PASSWORD),
        "a password leaked: {text}"
    );
}

fn stderr_of(output: &Output) -> String {
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn email_with_starttls_and_login_through_a_real_smtp_server() {
    let certificates = TestCertificates::generate();
    let smtp = SmtpServer::start_tls("starttls", &certificates);
    let ca = certificates.path("ca.pem");
    let channels = smtp_channel(
        "mail",
        "localhost",
        smtp.port,
        "starttls",
        &login("TEST_SMTP_PASSWORD", &ca),
    ) + &smtp_channel(
        "mail-wrong-password",
        "localhost",
        smtp.port,
        "starttls",
        &login("TEST_SMTP_WRONG_PASSWORD", &ca),
    ) + &smtp_channel(
        "mail-stored-password",
        "localhost",
        smtp.port,
        "starttls",
        &login("TEST_SMTP_PASSWORD", &ca).replace(
            "password_env = \"TEST_SMTP_PASSWORD\"",
            "password_secret = \"smtp-password\"",
        ),
    );
    let server = start_wharf(&channels);
    let app = flaky_job(
        "secure-mail",
        "\n[[notify]]\nchannel = \"mail\"\n\n[[notify]]\nchannel = \"mail-wrong-password\"\n",
    );
    server.deploy(app.path());
    let run = run_and_wait(&server, "secure-mail", "fail");
    let run_id = run["id"].as_str().unwrap();
    let deliveries = settled_deliveries(&server, run_id, 2);

    assert_eq!(deliveries[0]["channel"], "mail");
    assert_eq!(deliveries[0]["state"], "sent", "{deliveries:?}");
    let messages = smtp.wait_messages(1);
    assert_eq!(
        header(&messages[0], "Subject"),
        format!("[wharf] secure-mail failed (run {run_id})")
    );
    let body = &messages[0][messages[0].find("\n\n").expect("body")..];
    assert!(body.contains("Status: failed"), "{body}");
    assert!(body.contains("line 40\nboom"), "{body}");

    // The wrong password: every attempt is refused and recorded, without the password.
    assert_eq!(deliveries[1]["channel"], "mail-wrong-password");
    assert_eq!(deliveries[1]["state"], "failed", "{deliveries:?}");
    assert_eq!(deliveries[1]["attempts"], 2);
    let error = deliveries[1]["last_error"].as_str().unwrap();
    assert!(error.contains("authentication failed"), "{error}");
    assert!(error.contains(SMTP_USER), "{error}");
    assert_no_password(error);
    assert_eq!(
        smtp.messages().len(),
        1,
        "the wrong password delivered mail"
    );

    let stderr = stderr_of(&server.cli(&["notify", "test", "mail-wrong-password"]));
    assert!(stderr.contains("authentication failed"), "{stderr}");
    assert_no_password(&stderr);
    server.cli_ok(&["notify", "test", "mail"]);
    smtp.wait_messages(2);
    // The password as a stored secret (`password_secret`), opened at delivery.
    server.set_secret("smtp-password", SMTP_PASSWORD);
    server.cli_ok(&["notify", "test", "mail-stored-password"]);
    smtp.wait_messages(3);
    let channels = server.cli_ok(&["notify", "channels"]);
    assert_no_password(&channels);
    assert_no_password(&server.server_log());
}

#[test]
fn email_over_implicit_tls_through_a_real_smtp_server() {
    let certificates = TestCertificates::generate();
    let smtp = SmtpServer::start_tls("tls", &certificates);
    // By IP address: the certificate names 127.0.0.1 too.
    let server = start_wharf(&smtp_channel(
        "smtps",
        "127.0.0.1",
        smtp.port,
        "tls",
        &login("TEST_SMTP_PASSWORD", &certificates.path("ca.pem")),
    ));
    server.cli_ok(&["notify", "test", "smtps"]);
    let messages = smtp.wait_messages(1);
    assert_eq!(
        header(&messages[0], "Subject"),
        "[wharf] Test message from Wharf"
    );
    assert_eq!(header(&messages[0], "To"), "team@example.com");
}

#[test]
fn a_server_certificate_not_signed_by_the_ca_file_is_refused() {
    let certificates = TestCertificates::generate();
    let smtp = SmtpServer::start_tls("starttls", &certificates);
    let server = start_wharf(&smtp_channel(
        "mail",
        "localhost",
        smtp.port,
        "starttls",
        &login("TEST_SMTP_PASSWORD", &certificates.path("other-ca.pem")),
    ));
    let app = flaky_job("untrusted", "\n[[notify]]\nchannel = \"mail\"\n");
    server.deploy(app.path());
    let run = run_and_wait(&server, "untrusted", "fail");
    let deliveries = settled_deliveries(&server, run["id"].as_str().unwrap(), 1);
    assert_eq!(deliveries[0]["state"], "failed", "{deliveries:?}");
    assert_eq!(deliveries[0]["attempts"], 2);
    let error = deliveries[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("TLS") && error.contains("certificate"),
        "{error}"
    );
    assert_no_password(error);

    let stderr = stderr_of(&server.cli(&["notify", "test", "mail"]));
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(
        smtp.messages().is_empty(),
        "mail went to an untrusted server"
    );
}

/// Starts `wharf server` with `channel` and returns what it printed when it stopped.
fn start_up_error(channel: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\ns3_listen = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\n\n{channel}",
            free_port(),
            free_port(),
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(WHARF)
        .args(["server", "--config"])
        .arg(&config)
        .env("TEST_SMTP_PASSWORD", SMTP_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for("the server to stop", Duration::from_secs(20), || {
        child.try_wait().ok().flatten()
    });
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    stderr
}

#[test]
fn a_missing_or_unparsable_ca_file_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let stderr = start_up_error(&smtp_channel(
        "mail",
        "localhost",
        587,
        "starttls",
        &login("TEST_SMTP_PASSWORD", &missing),
    ));
    assert!(
        stderr.contains("notify.channels.mail.ca_file")
            && stderr.contains(&missing.display().to_string())
            && stderr.contains("cannot read it"),
        "{stderr}"
    );

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let stderr = start_up_error(&smtp_channel(
        "mail",
        "localhost",
        465,
        "tls",
        &login("TEST_SMTP_PASSWORD", &garbage),
    ));
    assert!(
        stderr.contains("notify.channels.mail.ca_file")
            && stderr.contains(&garbage.display().to_string())
            && stderr.contains("no certificate"),
        "{stderr}"
    );

    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let stderr = start_up_error(&smtp_channel(
        "mail",
        "localhost",
        465,
        "tls",
        &login("TEST_SMTP_PASSWORD", &broken),
    ));
    assert!(
        stderr.contains("notify.channels.mail.ca_file") && stderr.contains("cannot be used"),
        "{stderr}"
    );
    assert_no_password(&stderr);
}
