//! What the client tests share: an access key on a started server, the check that a
//! client is installed, deterministic test bytes, S3's ETag rules and the data-folder walk.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use md5::{Digest, Md5};

use crate::common::Server;

pub const MIB: usize = 1024 * 1024;

/// Where and how a client reaches the S3 listener.
pub struct S3Target {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    /// The server's SQLite file (the boto3 suite holds its write lock to slow a request).
    pub database: PathBuf,
}

/// A fresh access key of the admin user (`POST /api/v1/s3/keys`).
pub fn s3_target(server: &Server) -> S3Target {
    let response = server.post(
        "/s3/keys",
        serde_json::json!({ "description": "client tests" }),
    );
    assert_eq!(response.status().as_u16(), 201, "create an S3 key");
    let key: serde_json::Value = response.json().expect("key JSON");
    S3Target {
        endpoint: server.s3_url(),
        access_key: key["access_key"].as_str().expect("access_key").to_owned(),
        secret_key: key["secret_key"].as_str().expect("secret_key").to_owned(),
        database: server.data_dir().join("wharf.db"),
    }
}

/// Fails the test (never skips it) when a client is missing: CI installs them all.
pub fn require_tool(program: &str, version_args: &[&str], install: &str) {
    let found = Command::new(program)
        .args(version_args)
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "`{program}` is not installed or does not run: install {install} (scripts/install-deps.sh does it)"
    );
}

/// A command with no AWS_* or RCLONE_* settings of the machine it runs on (a CA bundle,
/// a profile or an endpoint there would change what the client does).
pub fn clean_command(program: &str, home: &Path) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("AWS_") || name.starts_with("RCLONE_") {
            command.env_remove(name);
        }
    }
    command.env("HOME", home).env_remove("XDG_CONFIG_HOME");
    command
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `size` bytes that differ between seeds (xorshift; no two parts of a file alike).
pub fn test_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(size + 8);
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// S3's ETag of an object uploaded in parts of `part_size`: MD5 of the parts' binary
/// MD5s, then `-N`.
pub fn multipart_etag(bytes: &[u8], part_size: usize) -> String {
    let mut joined = Vec::new();
    let mut count = 0;
    for part in bytes.chunks(part_size) {
        joined.extend_from_slice(&Md5::digest(part));
        count += 1;
    }
    format!("{}-{count}", md5_hex(&joined))
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, found);
        }
        found.push(path);
    }
}

/// Object keys never become paths: everything under DATA/objects is a blob named by its
/// id (`blobs/XY/ID`) or a temporary write, and no file anywhere in the server's folder
/// carries a name taken from a key (`../../escape.txt`, `/etc/passwd`, unicode keys).
pub fn assert_keys_never_became_paths(server: &Server, key_fragments: &[&str]) {
    let mut found = Vec::new();
    walk(server.dir.path(), &mut found);
    let objects = server.data_dir().join("objects");
    for path in &found {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        for fragment in key_fragments {
            assert!(
                !name.contains(fragment),
                "a file named after an object key exists: {}",
                path.display()
            );
        }
        let Ok(inside) = path.strip_prefix(&objects) else {
            continue;
        };
        let parts: Vec<String> = inside
            .components()
            .map(|part| part.as_os_str().to_string_lossy().into_owned())
            .collect();
        let is_id =
            |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric());
        let allowed = match parts.as_slice() {
            [] => true,
            [top] => top == "blobs" || top == "tmp",
            [top, shard] if top == "blobs" => shard.len() == 2 && is_id(shard),
            [top, shard, id] if top == "blobs" => id.ends_with(shard.as_str()) && is_id(id),
            [top, id] if top == "tmp" => is_id(id),
            _ => false,
        };
        assert!(
            allowed,
            "unexpected path under DATA/objects: {}",
            path.display()
        );
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    assert!(
        !passwd.contains("wharf odd key"),
        "/etc/passwd was written through an object key"
    );
}

/// Creates empty objects fast, to list them with a client: PUTs over the listener's
/// bearer-token path (what `wharf cp` uses) from 8 threads.
pub fn seed_empty_objects(server: &Server, bucket: &str, keys: &[String]) {
    let http = reqwest::blocking::Client::new();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(key) = keys.get(index) else { break };
                let url = format!("{}/{bucket}/{key}", server.s3_url());
                let status = http
                    .put(&url)
                    .bearer_auth(&server.token)
                    .body(Vec::new())
                    .send()
                    .map(|answer| answer.status().as_u16());
                assert!(matches!(status, Ok(200)), "seed PUT {url}: {status:?}");
            });
        }
    });
}
