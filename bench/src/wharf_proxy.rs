//! Wharf as a proxy target: a real `wharf server` with the tiny backend deployed as a public
//! service app `tiny`, reached through the proxy at `/apps/tiny/` on the API listener.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::server::{ApiClient, Server, ServerOptions};
use crate::targets::{http_status, tiny_backend_binary, Target, PREFIX};
use crate::Bench;

/// How long the service may take from the deploy to its first 200 through the proxy.
const SERVICE_READY_LIMIT: Duration = Duration::from_secs(30);

const MANIFEST: &str = "name = \"tiny\"\n\
kind = \"service\"\n\
command = [\"./tiny-backend\"]\n\
\n\
[service]\n\
access = \"public\"\n\
min_replicas = 1\n\
max_replicas = 1\n";

/// The bundle folder: the manifest and a copy of the tiny-backend binary (the sandbox sees
/// `/usr`, `/etc` and the app folder, so the binary must be inside; its shared libraries are
/// in `/usr/lib`).
fn write_bundle(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let binary = tiny_backend_binary()?;
    let copy = dir.join("tiny-backend");
    std::fs::copy(&binary, &copy)
        .with_context(|| format!("cannot copy {} to {}", binary.display(), copy.display()))?;
    let manifest = dir.join("wharf.toml");
    std::fs::write(&manifest, MANIFEST)
        .with_context(|| format!("cannot write {}", manifest.display()))?;
    Ok(())
}

/// Starts a Wharf server, deploys the tiny backend as the service app `tiny` and waits for
/// `GET /apps/tiny/` through the proxy to answer 200. `Err` holds why Wharf is not measured
/// (the tables print it instead of numbers); the rest of the benchmark goes on.
pub fn wharf_proxy_target(bench: &Bench, scratch_name: &str) -> Result<Target, String> {
    wharf_proxy_target_with(bench, scratch_name, &ServerOptions::default(), 1)
}

/// [`wharf_proxy_target`] with server options; the time limits are multiplied by `slowdown`
/// (a server under valgrind starts some 20 times slower).
pub fn wharf_proxy_target_with(
    bench: &Bench,
    scratch_name: &str,
    options: &ServerOptions,
    slowdown: u32,
) -> Result<Target, String> {
    let scratch = bench
        .fresh_dir(scratch_name)
        .map_err(|error| format!("{error:#}"))?;
    let mut server = Server::spawn(&bench.wharf_bin, &scratch.join("data"), &scratch, options)
        .map_err(|error| format!("cannot start the server: {error:#}"))?;
    server
        .wait_ready(Duration::from_millis(5), Duration::from_secs(30) * slowdown)
        .map_err(|error| format!("the server did not start: {error:#}"))?;
    let client = ApiClient::new(&server).map_err(|error| format!("{error:#}"))?;
    let app_dir = scratch.join("tiny");
    write_bundle(&app_dir).map_err(|error| format!("{error:#}"))?;
    client
        .deploy("tiny", &app_dir)
        .map_err(|error| format!("deploying the service app was refused: {error:#}"))?;
    let address: SocketAddr = server.address;
    let deadline = Instant::now() + SERVICE_READY_LIMIT * slowdown;
    let mut last_status = None;
    loop {
        last_status = http_status(address, PREFIX).or(last_status);
        if last_status == Some(200) {
            break;
        }
        if Instant::now() > deadline {
            let answered = match last_status {
                Some(status) => format!("answered {status}"),
                None => "never answered".to_owned(),
            };
            return Err(format!(
                "GET {PREFIX} {answered} within {} s of the deploy (no service proxy in this \
                 build?)",
                SERVICE_READY_LIMIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Target {
        address,
        proxy_pid: server.pid(),
        rss_with_descendants: false,
        keep: vec![Box::new(server)],
    })
}
