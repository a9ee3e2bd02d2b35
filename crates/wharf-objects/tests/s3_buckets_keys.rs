//! aws-sdk-s3 against the listener: bucket rules, odd keys (which never become paths)
//! and who may do what (wrong secrets, unknown and revoked keys, run keys).

mod common;

use aws_sdk_s3::error::ProvideErrorMetadata;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::EncodingType;
use common::{assert_failure, failure, files_under, Listener};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_lifecycle_and_names() {
    let listener = Listener::start().await;
    let s3 = listener.client();
    let bucket = listener.bucket("life").await;
    let listed = s3.list_buckets().send().await.expect("list buckets");
    let names: Vec<&str> = listed.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["life"]);
    s3.head_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("head bucket");
    assert_eq!(
        failure(s3.head_bucket().bucket("missing-bucket").send().await).1,
        404
    );
    assert_failure(
        "create twice",
        s3.create_bucket().bucket(&bucket).send().await,
        "BucketAlreadyOwnedByYou",
        409,
    );
    listener.put(&bucket, "k", b"x".to_vec()).await;
    assert_failure(
        "delete non-empty",
        s3.delete_bucket().bucket(&bucket).send().await,
        "BucketNotEmpty",
        409,
    );
    s3.delete_object()
        .bucket(&bucket)
        .key("k")
        .send()
        .await
        .expect("delete object");
    // An unfinished multipart upload also keeps the bucket.
    let upload = s3
        .create_multipart_upload()
        .bucket(&bucket)
        .key("mp")
        .send()
        .await
        .expect("create upload");
    assert_failure(
        "delete with an upload",
        s3.delete_bucket().bucket(&bucket).send().await,
        "BucketNotEmpty",
        409,
    );
    let upload_id = upload.upload_id().unwrap_or_default();
    s3.abort_multipart_upload()
        .bucket(&bucket)
        .key("mp")
        .upload_id(upload_id)
        .send()
        .await
        .expect("abort");
    s3.delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("delete empty");
    assert_failure(
        "delete missing",
        s3.delete_bucket().bucket(&bucket).send().await,
        "NoSuchBucket",
        404,
    );

    let invalid = [
        "ab",
        "a".repeat(64).as_str(),
        "Upper",
        "under_score",
        "-lead",
        "trail-",
        "a..b",
        "192.168.1.1",
        "sp ace",
    ]
    .map(str::to_owned);
    for name in invalid {
        let answer = s3.create_bucket().bucket(&name).send().await;
        // The message says what is wrong (s3s alone answers the bare code).
        let message = answer
            .as_ref()
            .err()
            .and_then(|error| error.message())
            .unwrap_or_default()
            .to_owned();
        assert!(
            message.contains("is not valid: a bucket name"),
            "{name:?}: {message:?}"
        );
        assert_failure(
            &format!("bucket name {name:?}"),
            answer,
            "InvalidBucketName",
            400,
        );
    }
    for name in ["abc", "a-b.c", "0day", &"a".repeat(63)] {
        s3.create_bucket()
            .bucket(name)
            .send()
            .await
            .unwrap_or_else(|error| panic!("{name}: {error:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_keys_round_trip_and_never_become_paths() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("keys").await;
    let keys = [
        "../../escape.txt".to_owned(),
        "/etc/passwd".to_owned(),
        "a/../../b".to_owned(),
        "./x/./y".to_owned(),
        "double//slash".to_owned(),
        "trailing/".to_owned(),
        "données/ü/日本語 ✓.txt".to_owned(),
        "emoji-😀".to_owned(),
        "plus+space %20 &amp;?#".to_owned(),
        "tab\tnewline\ncontrol\u{1}".to_owned(),
        "k".repeat(1024),
        "é".repeat(512),
    ];
    for (index, key) in keys.iter().enumerate() {
        listener
            .put(&bucket, key, format!("odd key {index}").into_bytes())
            .await;
    }
    for (index, key) in keys.iter().enumerate() {
        assert_eq!(
            listener.get(&bucket, key).await,
            format!("odd key {index}").into_bytes(),
            "{key:?}"
        );
    }
    let s3 = listener.client();
    // A control character cannot be in an XML document: clients ask for encoding-type=url.
    let encoded = s3
        .list_objects_v2()
        .bucket(&bucket)
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .expect("list");
    let mut listed: Vec<String> = encoded
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .map(common::percent_decode)
        .collect();
    let mut expected = keys.to_vec();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected, "encoding-type=url listing");
    let control = "tab\tnewline\ncontrol\u{1}";
    s3.delete_object()
        .bucket(&bucket)
        .key(control)
        .send()
        .await
        .expect("delete");
    let plain = s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    let mut listed: Vec<String> = plain
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    listed.sort();
    expected.retain(|key| key != control);
    assert_eq!(listed, expected, "plain listing");

    let too_long = s3
        .put_object()
        .bucket(&bucket)
        .key("k".repeat(1025))
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_failure("1025-byte key", too_long, "KeyTooLongError", 400);

    // Everything the blob store wrote is blobs/XY/ID; nothing is named after a key.
    let root = listener.dir.path();
    for path in files_under(root) {
        let relative = path
            .strip_prefix(root)
            .expect("inside")
            .to_string_lossy()
            .into_owned();
        let is_db = relative.starts_with("wharf.db");
        let parts: Vec<&str> = relative.split('/').collect();
        let is_blob = matches!(parts.as_slice(), ["objects", "blobs", shard, id]
            if shard.len() == 2 && id.ends_with(shard) && id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(is_db || is_blob, "unexpected file {relative:?}");
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    assert!(!passwd.contains("odd key"), "/etc/passwd was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("private").await;
    listener.put(&bucket, "k", b"secret".to_vec()).await;
    let wrong = listener.client_as(
        &listener.access_key,
        "wrong-secret-wrong-secret-wrong-secret-00",
    );
    assert_failure(
        "wrong secret",
        wrong.list_buckets().send().await,
        "SignatureDoesNotMatch",
        403,
    );
    let unknown = listener.client_as("WKUNKNOWNUNKNOWN0000", &listener.secret_key);
    assert_failure(
        "unknown key",
        unknown.list_buckets().send().await,
        "InvalidAccessKeyId",
        403,
    );
    let revoked = listener
        .objects
        .create_user_key("user-1", "to revoke")
        .await
        .expect("key");
    listener
        .objects
        .revoke_key(&revoked.access_key)
        .await
        .expect("revoke");
    let revoked = listener.client_as(&revoked.access_key, &revoked.secret_key);
    assert_failure(
        "revoked key",
        revoked.list_buckets().send().await,
        "InvalidAccessKeyId",
        403,
    );

    // A run's key reaches only its buckets and cannot manage buckets.
    let other = listener.bucket("other").await;
    let run = listener
        .objects
        .create_run_key("run-1", std::slice::from_ref(&bucket))
        .await
        .expect("run key");
    let run = listener.client_as(&run.access_key, &run.secret_key);
    run.get_object()
        .bucket(&bucket)
        .key("k")
        .send()
        .await
        .expect("run key reads its bucket");
    assert_failure(
        "run key, other bucket",
        run.get_object().bucket(&other).key("k").send().await,
        "AccessDenied",
        403,
    );
    assert_failure(
        "run key creates a bucket",
        run.create_bucket().bucket("run-made").send().await,
        "AccessDenied",
        403,
    );
    let listed = run.list_buckets().send().await.expect("list buckets");
    let names: Vec<&str> = listed.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, [bucket.as_str()], "a run key sees only its buckets");
}
