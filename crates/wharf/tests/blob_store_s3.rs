//! `blob_store = "s3"` through the binary: a Wharf whose object bytes live in a bucket of
//! another S3 server (here a second Wharf's listener, a real S3 implementation) serves
//! PUT, GET and DELETE from there and survives a restart; one that cannot be reached
//! stops the start with an error that names it.

mod common;

use common::{wait_for, Server};
use std::time::Duration;

/// The remote's keys under `prefix`, from its ListObjectsV2.
fn remote_keys(remote: &Server, bucket: &str, prefix: &str) -> Vec<String> {
    remote
        .s3_keys(bucket)
        .into_iter()
        .filter(|key| key.starts_with(prefix))
        .collect()
}

#[test]
fn objects_live_in_the_remote_bucket_and_survive_a_restart() {
    let remote = Server::start();
    remote.s3_create_bucket("wharf-blobs");
    let exported = remote.s3_key_exports("blob store");
    let config = format!(
        "blob_store = \"s3\"\nblob_s3_endpoint = \"{}\"\nblob_s3_bucket = \"wharf-blobs\"\n\
         blob_s3_prefix = \"team-a\"\n",
        remote.s3_url()
    );
    // The credentials come from the environment, as the documentation suggests.
    let mut server = Server::start_with_env(
        &config,
        &[
            ("AWS_ACCESS_KEY_ID", &exported["AWS_ACCESS_KEY_ID"]),
            ("AWS_SECRET_ACCESS_KEY", &exported["AWS_SECRET_ACCESS_KEY"]),
        ],
    );
    assert!(
        server.server_log().contains("wharf-blobs"),
        "the server names its blob store at start:\n{}",
        server.server_log()
    );

    server.s3_create_bucket("data");
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    server.s3_put("data", "nested/../file.bin", body.clone());
    server.s3_put("data", "small.txt", b"hello".to_vec());
    assert_eq!(
        server.s3_get("data", "nested/../file.bin"),
        Some(body.clone())
    );

    // Nothing under the local data folder holds object bytes; the remote holds two blobs.
    let local_blobs = server.data_dir().join("objects").join("blobs");
    assert!(
        !local_blobs.exists() || std::fs::read_dir(&local_blobs).unwrap().next().is_none(),
        "no local blobs with blob_store = \"s3\""
    );
    let blobs = remote_keys(&remote, "wharf-blobs", "team-a/blobs/");
    assert_eq!(blobs.len(), 2, "{blobs:?}");

    // A restart reads the same bytes back.
    server.restart();
    assert_eq!(server.s3_get("data", "nested/../file.bin"), Some(body));
    assert_eq!(server.s3_get("data", "small.txt"), Some(b"hello".to_vec()));

    // Deleting an object deletes its blob in the remote bucket (after the commit).
    let response = server
        .http()
        .delete(format!("{}/data/small.txt", server.s3_url()))
        .bearer_auth(&server.token)
        .send()
        .expect("DELETE");
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(server.s3_get("data", "small.txt"), None);
    wait_for(
        "the deleted object's blob to leave the remote bucket",
        Duration::from_secs(20),
        || (remote_keys(&remote, "wharf-blobs", "team-a/blobs/").len() == 1).then_some(()),
    );
}

#[test]
fn a_blob_store_that_cannot_be_reached_is_a_clear_start_error() {
    let unreachable = format!("http://127.0.0.1:{}", common::free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\ns3_listen = \"off\"\n\
             blob_store = \"s3\"\nblob_s3_endpoint = \"{unreachable}\"\nblob_s3_bucket = \"b\"\n\
             blob_s3_access_key_id = \"AKIA\"\nblob_s3_secret_access_key = \"secret\"\n",
            common::free_port(),
            dir.path().join("data").display()
        ),
    )
    .expect("config");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["server", "--config"])
        .arg(&config)
        .output()
        .expect("run wharf server");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("the S3 blob store is not usable") && stderr.contains(&unreachable),
        "the error names the blob store:\n{stderr}"
    );
    assert!(!stderr.contains("secret\""), "{stderr}");
}
