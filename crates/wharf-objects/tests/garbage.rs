//! Blob lifetimes: a blob is deleted only after nothing refers to it, and blobs a crash
//! left unreferenced are swept at start; keys never become paths.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use wharf_objects::{bytes_stream, FsBlobStore, Objects, ObjectsConfig, PutOptions};

async fn objects(root: &Path) -> Objects {
    let store = wharf_store::Store::open_in_memory().await.expect("store");
    store
        .create_user("u1", "admin", "admin")
        .await
        .expect("user");
    let blobs = FsBlobStore::open(&root.join("objects")).expect("blobs");
    let objects = Objects::new(
        store,
        Arc::new(blobs),
        wharf_auth::SecretBox::from_key([7; 32]),
        ObjectsConfig::default(),
    );
    objects
        .create_bucket("data", "admin")
        .await
        .expect("bucket");
    objects
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            if entry.file_type().expect("type").is_dir() {
                pending.push(entry.path());
            } else {
                found.push(entry.path());
            }
        }
    }
    found
}

fn blob_count(root: &Path) -> usize {
    files(&root.join("objects/blobs")).len()
}

async fn put(objects: &Objects, key: &str, body: &'static [u8]) {
    objects
        .put_object("data", key, bytes_stream(body), PutOptions::default())
        .await
        .expect("put");
}

#[tokio::test]
async fn replaced_and_deleted_objects_free_their_blobs_after_the_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = objects(dir.path()).await;
    put(&objects, "a", b"first").await;
    put(&objects, "a", b"second").await;
    assert_eq!(
        blob_count(dir.path()),
        2,
        "the old blob waits for the collector"
    );
    while objects.collect_garbage().await.expect("collect") {}
    assert_eq!(blob_count(dir.path()), 1);
    let row = objects.head_object("data", "a").await.expect("head");
    assert_eq!(row.size, 6);

    objects
        .delete_object("data", "a", "admin")
        .await
        .expect("delete");
    while objects.collect_garbage().await.expect("collect") {}
    assert_eq!(blob_count(dir.path()), 0);
}

#[tokio::test]
async fn aborted_multipart_uploads_free_their_parts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = objects(dir.path()).await;
    let upload = objects
        .create_multipart_upload("data", "big", PutOptions::default())
        .await
        .expect("create");
    for part in 1..=3 {
        objects
            .upload_part(
                "data",
                "big",
                &upload.id,
                part,
                bytes_stream(&b"part"[..]),
                None,
            )
            .await
            .expect("part");
    }
    assert_eq!(blob_count(dir.path()), 3);
    objects
        .abort_multipart_upload("data", "big", &upload.id)
        .await
        .expect("abort");
    while objects.collect_garbage().await.expect("collect") {}
    assert_eq!(blob_count(dir.path()), 0);
}

#[tokio::test]
async fn blobs_a_crash_left_unreferenced_are_swept_once_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = objects(dir.path()).await;
    put(&objects, "kept", b"kept").await;
    // A blob written before a crash, whose metadata never committed: two hours old, and
    // a fresh one (an upload in progress) that must survive the sweep.
    let shard = dir.path().join("objects/blobs/zz");
    std::fs::create_dir_all(&shard).expect("shard");
    let old = shard.join("01orphanorphanorphanorphazz");
    std::fs::write(&old, b"orphan").expect("orphan");
    std::fs::File::options()
        .write(true)
        .open(&old)
        .expect("open")
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .expect("age it");
    let fresh = shard.join("01freshfreshfreshfreshfrezz");
    std::fs::write(&fresh, b"in progress").expect("fresh");
    objects.sweep_orphans().await;
    assert!(!old.exists(), "the old orphan is deleted");
    assert!(
        fresh.exists(),
        "a young blob may belong to an upload in progress"
    );
    assert_eq!(blob_count(dir.path()), 2);
    assert!(objects.head_object("data", "kept").await.is_ok());
}

#[tokio::test]
async fn keys_that_look_like_paths_stay_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = objects(dir.path()).await;
    for key in [
        "../escape",
        "/etc/passwd",
        "a/../../b",
        "ünïcødé/ファイル",
        "..",
        ".",
    ] {
        put(&objects, key, b"x").await;
        assert_eq!(
            objects.head_object("data", key).await.expect("head").key,
            key
        );
    }
    let outside: Vec<_> = files(dir.path())
        .into_iter()
        .filter(|path| !path.starts_with(dir.path().join("objects")))
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
}
