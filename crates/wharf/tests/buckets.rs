//! Buckets, `wharf cp`/`ls`, S3 keys, events and the S3 notification hook, through the
//! real binary: its CLI, its API and its S3 listener.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use md5::{Digest, Md5};
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs the CLI, expects it to fail, and returns what it printed on stderr.
fn cli_fails(server: &Server, args: &[&str]) -> String {
    let output = server.cli(args);
    assert!(
        !output.status.success(),
        "wharf {args:?} should fail:\n{}",
        stdout(&output)
    );
    stderr(&output)
}

/// `size` bytes that differ between seeds (xorshift).
fn test_bytes(size: usize, seed: u64) -> Vec<u8> {
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

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&path, bytes).expect("write");
    path
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// The objects `wharf ls --recursive --json` reports, by key.
fn listed(server: &Server, target: &str) -> Vec<Value> {
    let text = server.cli_ok(&["ls", "--recursive", "--json", target]);
    let listing: Value = serde_json::from_str(&text).expect("ls --json");
    listing["objects"].as_array().cloned().unwrap_or_default()
}

fn api(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = server
        .http()
        .request(
            method.parse().expect("method"),
            format!("{}/api/v1{path}", server.url()),
        )
        .bearer_auth(&server.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().expect("request");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn buckets_through_the_cli_and_the_api() {
    let server = Server::start();
    assert!(server
        .cli_ok(&["bucket", "create", "reports"])
        .contains("Created bucket reports"));
    let (status, created) = api(
        &server,
        "POST",
        "/buckets",
        Some(json!({"name": "public-data", "public_read": true})),
    );
    assert_eq!(status, 201);
    assert_eq!(created["owner"], "admin");
    assert_eq!(created["public_read"], true);

    let table = server.cli_ok(&["bucket", "ls"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("reports") && table.contains("public-data"));
    let listed: Value =
        serde_json::from_str(&server.cli_ok(&["bucket", "ls", "--json"])).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert!(server.cli_ok(&["ls"]).contains(" reports\n"));

    // Bad names are refused with S3's rule; a second bucket of a name is a conflict.
    let message = cli_fails(&server, &["bucket", "create", "Bad_Name"]);
    assert!(
        message.contains("\"Bad_Name\"")
            && message.contains("lowercase letters, digits, '-' and '.'"),
        "{message}"
    );
    let (status, body) = api(&server, "POST", "/buckets", Some(json!({"name": "ab"})));
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("3 to 63 characters"));
    let (status, _) = api(
        &server,
        "POST",
        "/buckets",
        Some(json!({"name": "reports"})),
    );
    assert_eq!(status, 409);
    let (status, _) = api(&server, "POST", "/buckets", Some(json!({"nom": "x"})));
    assert_eq!(status, 400);

    let (status, updated) = api(
        &server,
        "PATCH",
        "/buckets/public-data",
        Some(json!({"public_read": false})),
    );
    assert_eq!((status, &updated["public_read"]), (200, &json!(false)));
    server.cli_ok(&["bucket", "set", "reports", "--public-read", "true"]);
    assert_eq!(
        api(&server, "GET", "/buckets", None).1[1]["public_read"],
        true
    );

    // A bucket with an object is not deleted.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(dir.path(), "a.txt", b"hello");
    server.cli_ok(&["cp", path_str(&file), "s3://reports/a.txt"]);
    let message = cli_fails(&server, &["bucket", "rm", "reports"]);
    assert!(message.contains("is not empty"), "{message}");
    let (status, body) = api(&server, "DELETE", "/buckets/reports", None);
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "conflict");

    let deleted = server
        .http()
        .delete(format!("{}/reports/a.txt", server.s3_url()))
        .bearer_auth(&server.token)
        .send()
        .expect("S3 DELETE");
    assert_eq!(deleted.status().as_u16(), 204);
    server.cli_ok(&["bucket", "rm", "reports"]);
    assert_eq!(api(&server, "DELETE", "/buckets/reports", None).0, 404);
    assert_eq!(api(&server, "DELETE", "/buckets/public-data", None).0, 204);

    let document = server.get("/openapi.json");
    for path in [
        "/api/v1/buckets",
        "/api/v1/buckets/{name}",
        "/api/v1/events",
        "/api/v1/hooks/s3",
    ] {
        assert!(document["paths"][path].is_object(), "{path} is documented");
    }
    assert_eq!(server.get("/whoami")["s3_endpoint"], json!(server.s3_url()));
}

#[test]
fn cp_round_trips_small_and_multipart_files() {
    let server = Server::start();
    server.cli_ok(&["bucket", "create", "data"]);
    let dir = tempfile::tempdir().expect("tempdir");

    let small = test_bytes(1000, 1);
    let source = write_file(dir.path(), "small.bin", &small);
    let said = server.cli_ok(&["cp", path_str(&source), "s3://data/in/"]);
    assert!(said.contains("to s3://data/in/small.bin"), "{said}");
    let back = dir.path().join("back.bin");
    server.cli_ok(&["cp", "s3://data/in/small.bin", path_str(&back)]);
    assert_eq!(std::fs::read(&back).expect("read"), small);
    let into = dir.path().join("into");
    std::fs::create_dir(&into).expect("mkdir");
    server.cli_ok(&["cp", "s3://data/in/small.bin", path_str(&into)]);
    assert_eq!(std::fs::read(into.join("small.bin")).expect("read"), small);
    let piped = server.cli(&["cp", "s3://data/in/small.bin", "-"]);
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert_eq!(piped.stdout, small, "to stdout, nothing else");

    // Above the threshold: parts of 16 MiB, so 70 MiB is 5 parts.
    let big = test_bytes(70 * MIB, 2);
    let source = write_file(dir.path(), "big.bin", &big);
    server.cli_ok(&["cp", path_str(&source), "s3://data/big.bin"]);
    let objects = listed(&server, "s3://data/big.bin");
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["size"], json!(70 * MIB));
    let mut joined = Vec::new();
    for part in big.chunks(16 * MIB) {
        joined.extend_from_slice(&Md5::digest(part));
    }
    let expected = format!("{}-5", hex::encode(Md5::digest(&joined)));
    assert_eq!(objects[0]["etag"], json!(expected));
    let head = server
        .http()
        .head(format!("{}/data/big.bin", server.s3_url()))
        .bearer_auth(&server.token)
        .send()
        .expect("HEAD");
    let etag = head.headers()["etag"].to_str().expect("etag").to_owned();
    assert!(etag.ends_with("-5\""), "{etag}");
    let back = dir.path().join("big.back");
    server.cli_ok(&["cp", "s3://data/big.bin", path_str(&back)]);
    let same = std::process::Command::new("cmp")
        .arg(&source)
        .arg(&back)
        .status()
        .expect("cmp");
    assert!(same.success(), "the 70 MiB file round-trips byte for byte");

    // A lower threshold makes even a small file multipart (one part).
    server.cli_ok(&[
        "cp",
        "--multipart-threshold",
        "100",
        path_str(&dir.path().join("small.bin")),
        "s3://data/one-part.bin",
    ]);
    let objects = listed(&server, "s3://data/one-part.bin");
    assert!(objects[0]["etag"]
        .as_str()
        .unwrap_or_default()
        .ends_with("-1"));

    // Errors are S3's, readable.
    let message = cli_fails(&server, &["cp", path_str(&source), "s3://nope/x"]);
    assert!(
        message.contains("NoSuchBucket: bucket \"nope\" does not exist"),
        "{message}"
    );
    let message = cli_fails(&server, &["cp", "s3://data/missing", "-"]);
    assert!(message.contains("NoSuchKey"), "{message}");
    let message = cli_fails(&server, &["cp", path_str(dir.path()), "s3://data/"]);
    assert!(message.contains("add --recursive"), "{message}");
    assert!(
        !std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("wharf-partial")),
        "no partial files are left behind"
    );
}

#[test]
fn recursive_copies_server_side_copies_and_prefix_listings() {
    let server = Server::start();
    server.cli_ok(&["bucket", "create", "src"]);
    server.cli_ok(&["bucket", "create", "dst"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("tree");
    write_file(&tree, "top.csv", b"top");
    write_file(&tree, "sub/a.csv", b"a");
    write_file(&tree, "sub/deeper/b.csv", b"bb");
    server.cli_ok(&["cp", "--recursive", path_str(&tree), "s3://src/run1"]);

    let keys: Vec<String> = listed(&server, "s3://src")
        .iter()
        .map(|o| o["key"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        keys,
        ["run1/sub/a.csv", "run1/sub/deeper/b.csv", "run1/top.csv"]
    );
    assert_eq!(server.cli_ok(&["ls", "s3://src"]).trim(), "PRE run1/");
    let lines = server.cli_ok(&["ls", "s3://src/run1/"]);
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].trim(), "PRE sub/");
    assert!(lines[1].ends_with("          3 top.csv"), "{}", lines[1]);
    assert!(server
        .cli_ok(&["ls", "s3://src/run1/sub/d"])
        .contains("PRE deeper/"));
    assert!(server
        .cli_ok(&["ls", "--recursive", "s3://src/run1/sub"])
        .contains(" run1/sub/deeper/b.csv"));

    // Server-side copies, one object and a whole prefix.
    server.cli_ok(&["cp", "s3://src/run1/top.csv", "s3://dst/copied/"]);
    server.cli_ok(&["cp", "-r", "s3://src/run1/sub", "s3://dst/tree"]);
    let keys: Vec<String> = listed(&server, "s3://dst")
        .iter()
        .map(|o| o["key"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(keys, ["copied/top.csv", "tree/a.csv", "tree/deeper/b.csv"]);

    let down = dir.path().join("down");
    server.cli_ok(&["cp", "--recursive", "s3://dst/tree/", path_str(&down)]);
    assert_eq!(std::fs::read(down.join("a.csv")).expect("a"), b"a");
    assert_eq!(std::fs::read(down.join("deeper/b.csv")).expect("b"), b"bb");

    // Listings follow continuation tokens past a page of 1000.
    let many = dir.path().join("many");
    for index in 0..1005 {
        write_file(&many, &format!("f{index:04}"), b"x");
    }
    server.cli_ok(&["cp", "-r", path_str(&many), "s3://src/many/"]);
    assert_eq!(listed(&server, "s3://src/many/").len(), 1005);
    assert_eq!(
        server.cli_ok(&["ls", "s3://src/many/"]).lines().count(),
        1005
    );
}

#[test]
fn odd_keys_round_trip_and_never_become_paths() {
    let server = Server::start();
    server.cli_ok(&["bucket", "create", "odd"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = [
        "dir with spaces/file name.txt",
        "ünïcødé/日本語 ✓.txt",
        "../escape-wharf-test",
        "a/../../escape-two",
        "plus+and%percent?.txt",
    ];
    for (index, key) in keys.iter().enumerate() {
        let content = format!("content {index}");
        let file = write_file(dir.path(), &format!("up{index}"), content.as_bytes());
        server.cli_ok(&["cp", path_str(&file), &format!("s3://odd/{key}")]);
        let back = dir.path().join(format!("down{index}"));
        server.cli_ok(&["cp", &format!("s3://odd/{key}"), path_str(&back)]);
        assert_eq!(
            std::fs::read_to_string(&back).expect("read"),
            content,
            "{key}"
        );
    }
    let mut found: Vec<String> = listed(&server, "s3://odd")
        .iter()
        .map(|o| o["key"].as_str().unwrap_or_default().to_owned())
        .collect();
    found.sort();
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(found, expected, "stored as keys, not as paths");

    // A recursive download skips keys that would land outside the folder.
    let down = dir.path().join("nested/down");
    let output = server.cli(&["cp", "-r", "s3://odd", path_str(&down)]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("skipped s3://odd/../escape-wharf-test"));
    assert!(down.join("ünïcødé/日本語 ✓.txt").is_file());

    let mut everything = Vec::new();
    let mut pending = vec![dir.path().to_path_buf(), server.dir.path().to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                pending.push(entry.path());
            }
            everything.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    for name in &everything {
        assert!(!name.contains("escape"), "a key became a file: {name}");
    }
    let parent = dir.path().parent().expect("parent");
    assert!(!parent.join("escape-wharf-test").exists());
    assert!(!parent.join("escape-two").exists());
}

#[test]
fn s3_keys_sign_real_requests_until_revoked() {
    let server = Server::start();
    server.cli_ok(&["bucket", "create", "signed"]);
    let exported = server.s3_key_exports("laptop");
    assert_eq!(exported["AWS_ENDPOINT_URL"], server.s3_url());
    let access_key = exported["AWS_ACCESS_KEY_ID"].clone();
    let secret_key = exported["AWS_SECRET_ACCESS_KEY"].clone();
    let list = server.cli_ok(&["s3", "keys", "list"]);
    assert!(
        list.contains(&access_key) && list.contains("laptop"),
        "{list}"
    );
    assert!(!list.contains(&secret_key), "the secret is shown once");

    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(dir.path(), "signed.txt", b"signed upload");
    let aws = |args: &[&str]| {
        let mut command = std::process::Command::new("aws");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AWS_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .args(["--endpoint-url", &server.s3_url()])
            .env("HOME", dir.path())
            .env("AWS_ACCESS_KEY_ID", &access_key)
            .env("AWS_SECRET_ACCESS_KEY", &secret_key)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("aws-cli is installed (pip install awscli)")
    };
    let put = aws(&["s3", "cp", path_str(&file), "s3://signed/signed.txt"]);
    assert!(put.status.success(), "{}", stderr(&put));
    let ls = aws(&["s3", "ls", "s3://signed/"]);
    assert!(ls.status.success(), "{}", stderr(&ls));
    assert!(stdout(&ls).contains("signed.txt"));

    assert!(server
        .cli_ok(&["s3", "keys", "revoke", &access_key])
        .contains("Revoked"));
    let ls = aws(&["s3", "ls", "s3://signed/"]);
    assert!(!ls.status.success());
    assert!(
        stderr(&ls).contains("InvalidAccessKeyId"),
        "{}",
        stderr(&ls)
    );
    let list = server.cli_ok(&["s3", "keys", "list", "--json"]);
    let keys: Value = serde_json::from_str(&list).expect("json");
    assert!(keys[0]["revoked_at"].is_string());
    let message = cli_fails(&server, &["s3", "keys", "revoke", &access_key]);
    assert!(message.contains("no active S3 key"), "{message}");
}

#[test]
fn events_list_and_follow() {
    let server = Server::start();
    server.cli_ok(&["bucket", "create", "watched"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let first = write_file(dir.path(), "first.csv", b"a,b\n1,2\n");
    server.cli_ok(&["cp", path_str(&first), "s3://watched/in/first.csv"]);
    let etag = listed(&server, "s3://watched")[0]["etag"].clone();

    let lines = server.cli_ok(&["events", "--json"]);
    let items: Vec<Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let created = items
        .iter()
        .find(|item| item["event"]["detail-type"] == "Object Created")
        .expect("an Object Created event");
    let detail = &created["event"]["detail"];
    assert_eq!(created["event"]["source"], "wharf.s3");
    assert_eq!(detail["bucket"]["name"], "watched");
    assert_eq!(detail["object"]["key"], "in/first.csv");
    assert_eq!(detail["object"]["size"], 8);
    assert_eq!(detail["object"]["etag"], etag);
    assert!(created["seq"].is_i64() && created["dispatched"].is_boolean());
    let readable = server.cli_ok(&["events"]);
    assert!(
        readable.contains("Object Created  s3://watched/in/first.csv  8B"),
        "{readable}"
    );
    let (status, page) = api(&server, "GET", "/events?after=0&limit=1", None);
    assert_eq!((status, page.as_array().map(Vec::len)), (200, Some(1)));
    assert_eq!(api(&server, "GET", "/events?limit=0", None).0, 400);

    // A follower sees what is written after it started.
    let mut follower = server
        .cli_cmd(&["events", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wharf events --follow");
    let (sender, received) = mpsc::channel::<String>();
    let output = follower.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let wait_line = |needle: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match received.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line with {needle:?} from wharf events --follow"),
            }
        }
    };
    wait_line("s3://watched/in/first.csv");
    let second = write_file(dir.path(), "second.csv", b"later");
    server.cli_ok(&["cp", path_str(&second), "s3://watched/in/second.csv"]);
    let line = wait_line("s3://watched/in/second.csv");
    assert!(
        line.contains("Object Created") && line.contains("5B"),
        "{line}"
    );
    let _ = follower.kill();
    let _ = follower.wait();
}

fn minio_record(event_name: &str, key: &str, sequencer: &str) -> Value {
    json!({
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": "",
        "eventTime": "2024-05-01T12:30:45.123Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "minioadmin"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": "external", "arn": "arn:aws:s3:::external"},
            "object": {"key": key, "size": 42, "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                "contentType": "text/csv", "sequencer": sequencer},
        },
    })
}

#[test]
fn s3_hook_stores_notifications_once() {
    let server = Server::start();
    let body = json!({
        "EventName": "s3:ObjectCreated:Put",
        "Key": "external/incoming/a b.csv",
        "Records": [
            minio_record("s3:ObjectCreated:Put", "incoming/a+b.csv", "17C4A1"),
            minio_record("s3:ObjectAccessed:Get", "incoming/a+b.csv", "17C4A2"),
            minio_record("s3:ObjectRemoved:Delete", "incoming/%C3%BC.csv", "17C4A3"),
        ],
    });
    let (status, result) = api(&server, "POST", "/hooks/s3", Some(body.clone()));
    assert_eq!(status, 200, "{result}");
    assert_eq!(
        (&result["received"], &result["stored"], &result["ignored"]),
        (&json!(3), &json!(2), &json!(1))
    );
    let (status, again) = api(&server, "POST", "/hooks/s3", Some(body));
    assert_eq!(status, 200);
    assert_eq!(
        (&again["stored"], &again["duplicates"]),
        (&json!(0), &json!(2))
    );
    assert_eq!(again["event_ids"], result["event_ids"]);

    let events = server.get("/events");
    let events = events.as_array().expect("list");
    assert_eq!(events.len(), 2, "a redelivery is not stored twice");
    let created = &events[0]["event"];
    assert_eq!(created["source"], "aws.s3");
    assert_eq!(created["detail-type"], "Object Created");
    assert_eq!(created["detail"]["bucket"]["name"], "external");
    assert_eq!(created["detail"]["object"]["key"], "incoming/a b.csv");
    assert_eq!(created["detail"]["object"]["size"], 42);
    assert_eq!(created["detail"]["reason"], "PutObject");
    assert_eq!(created["detail"]["requester"], "minioadmin");
    let deleted = &events[1]["event"];
    assert_eq!(deleted["detail-type"], "Object Deleted");
    assert_eq!(deleted["detail"]["object"]["key"], "incoming/ü.csv");
    assert!(server
        .cli_ok(&["events"])
        .contains("Object Created  s3://external/incoming/a b.csv  42B  [aws.s3]"));

    let mut broken = minio_record("s3:ObjectCreated:Put", "x", "1");
    broken["s3"]["object"]
        .as_object_mut()
        .expect("object")
        .remove("key");
    let (status, error) = api(
        &server,
        "POST",
        "/hooks/s3",
        Some(json!({"Records": [minio_record("s3:ObjectCreated:Put", "ok", "2"), broken]})),
    );
    assert_eq!(status, 400);
    assert_eq!(
        error["error"]["message"],
        "Records[1].s3.object.key is missing"
    );
    assert_eq!(server.get("/events").as_array().map(Vec::len), Some(2));
    let not_json = server
        .http()
        .post(format!("{}/api/v1/hooks/s3", server.url()))
        .bearer_auth(&server.token)
        .body("Records=1")
        .send()
        .expect("post");
    assert_eq!(not_json.status().as_u16(), 400);
    let anonymous = server
        .http()
        .post(format!("{}/api/v1/hooks/s3", server.url()))
        .json(&json!({"Records": []}))
        .send()
        .expect("post");
    assert_eq!(anonymous.status().as_u16(), 401);
}
