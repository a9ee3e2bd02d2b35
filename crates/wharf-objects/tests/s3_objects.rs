//! aws-sdk-s3 against the listener: objects, ranges, conditional requests, copies,
//! metadata and DeleteObjects.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, MetadataDirective, ObjectIdentifier};
use common::{assert_failure, failure, md5_hex, test_bytes, Listener};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_head_delete_with_metadata_and_etag() {
    let listener = Listener::start().await;
    let s3 = listener.client();
    let bucket = listener.bucket("objects").await;
    let data = test_bytes(300_000, 1);
    let put = s3
        .put_object()
        .bucket(&bucket)
        .key("dir/data.bin")
        .content_type("application/x-test")
        .metadata("Owner", "ada")
        .metadata("run-id", "42")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .expect("put");
    assert_eq!(
        put.e_tag(),
        Some(format!("\"{}\"", md5_hex(&data)).as_str())
    );
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key("dir/data.bin")
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_length(), Some(300_000));
    assert_eq!(head.content_type(), Some("application/x-test"));
    assert_eq!(head.e_tag(), put.e_tag());
    let metadata = head.metadata().cloned().unwrap_or_default();
    assert_eq!(metadata.get("owner").map(String::as_str), Some("ada"));
    assert_eq!(metadata.get("run-id").map(String::as_str), Some("42"));
    assert_eq!(listener.get(&bucket, "dir/data.bin").await, data);

    listener.put(&bucket, "empty", Vec::new()).await;
    assert_eq!(listener.get(&bucket, "empty").await, Vec::<u8>::new());
    // Overwriting replaces the bytes.
    listener
        .put(&bucket, "dir/data.bin", b"second".to_vec())
        .await;
    assert_eq!(listener.get(&bucket, "dir/data.bin").await, b"second");

    s3.delete_object()
        .bucket(&bucket)
        .key("dir/data.bin")
        .send()
        .await
        .expect("delete");
    s3.delete_object()
        .bucket(&bucket)
        .key("never-was")
        .send()
        .await
        .expect("delete a missing key");
    let missing = s3
        .get_object()
        .bucket(&bucket)
        .key("dir/data.bin")
        .send()
        .await;
    assert_failure("get after delete", missing, "NoSuchKey", 404);
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key("dir/data.bin")
        .send()
        .await;
    assert_eq!(failure(head).1, 404, "head after delete");
    let other = s3
        .get_object()
        .bucket("no-such-bucket")
        .key("k")
        .send()
        .await;
    assert_failure("get from a missing bucket", other, "NoSuchBucket", 404);
    let put = s3
        .put_object()
        .bucket("no-such-bucket")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_failure("put into a missing bucket", put, "NoSuchBucket", 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_are_served_and_unsatisfiable_ones_are_416() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("ranges").await;
    let data = test_bytes(1000, 2);
    listener.put(&bucket, "k", data.clone()).await;
    let s3 = listener.client();
    // (Range header, expected slice, Content-Range)
    let cases: [(&str, std::ops::Range<usize>, &str); 7] = [
        ("bytes=0-9", 0..10, "bytes 0-9/1000"),
        ("bytes=0-0", 0..1, "bytes 0-0/1000"),
        ("bytes=990-", 990..1000, "bytes 990-999/1000"),
        ("bytes=-7", 993..1000, "bytes 993-999/1000"),
        ("bytes=995-5000", 995..1000, "bytes 995-999/1000"),
        ("bytes=-5000", 0..1000, "bytes 0-999/1000"),
        ("bytes=999-999", 999..1000, "bytes 999-999/1000"),
    ];
    for (range, slice, content_range) in cases {
        let answer = s3
            .get_object()
            .bucket(&bucket)
            .key("k")
            .range(range)
            .send()
            .await;
        let answer = answer.unwrap_or_else(|error| panic!("{range}: {error:?}"));
        assert_eq!(answer.content_range(), Some(content_range), "{range}");
        assert_eq!(answer.content_length(), Some(slice.len() as i64), "{range}");
        let body = answer.body.collect().await.expect("body").to_vec();
        assert_eq!(body, data[slice], "{range}");
    }
    for range in ["bytes=1000-", "bytes=1000-2000", "bytes=5000-6000"] {
        let answer = s3
            .get_object()
            .bucket(&bucket)
            .key("k")
            .range(range)
            .send()
            .await;
        assert_failure(range, answer, "InvalidRange", 416);
    }
    listener.put(&bucket, "empty", Vec::new()).await;
    let answer = s3
        .get_object()
        .bucket(&bucket)
        .key("empty")
        .range("bytes=0-")
        .send()
        .await;
    assert_failure("a range of an empty object", answer, "InvalidRange", 416);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_requests() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("conditions").await;
    let etag = listener.put(&bucket, "k", b"v1".to_vec()).await;
    let s3 = listener.client();
    let get = || s3.get_object().bucket(&bucket).key("k");
    let head = || s3.head_object().bucket(&bucket).key("k");
    assert_eq!(
        failure(get().if_none_match(&etag).send().await).1,
        304,
        "If-None-Match: same"
    );
    assert_eq!(
        failure(get().if_none_match("*").send().await).1,
        304,
        "If-None-Match: *"
    );
    assert_eq!(
        failure(head().if_none_match(&etag).send().await).1,
        304,
        "HEAD If-None-Match"
    );
    assert_failure(
        "If-Match: other",
        get().if_match("\"0000\"").send().await,
        "PreconditionFailed",
        412,
    );
    assert_eq!(
        failure(head().if_match("\"0000\"").send().await).1,
        412,
        "HEAD If-Match"
    );
    get().if_match(&etag).send().await.expect("If-Match: same");
    get().if_match("*").send().await.expect("If-Match: *");
    get()
        .if_none_match("\"0000\"")
        .send()
        .await
        .expect("If-None-Match: other");
    let future = aws_sdk_s3::primitives::DateTime::from_secs(4_000_000_000);
    let past = aws_sdk_s3::primitives::DateTime::from_secs(1_000_000_000);
    assert_eq!(
        failure(get().if_modified_since(future).send().await).1,
        304,
        "If-Modified-Since: future"
    );
    get()
        .if_modified_since(past)
        .send()
        .await
        .expect("If-Modified-Since: past");
    assert_failure(
        "If-Unmodified-Since: past",
        get().if_unmodified_since(past).send().await,
        "PreconditionFailed",
        412,
    );
    // If-Match wins over If-Unmodified-Since (RFC 9110).
    get()
        .if_match(&etag)
        .if_unmodified_since(past)
        .send()
        .await
        .expect("If-Match + old If-Unmodified-Since");
    // PUT with If-None-Match: * does not overwrite.
    let put = s3
        .put_object()
        .bucket(&bucket)
        .key("k")
        .if_none_match("*")
        .body(ByteStream::from_static(b"v2"))
        .send()
        .await;
    assert_failure(
        "PUT If-None-Match: * on an existing key",
        put,
        "PreconditionFailed",
        412,
    );
    assert_eq!(listener.get(&bucket, "k").await, b"v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_md5_is_checked() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("digests").await;
    let s3 = listener.client();
    let put = |md5: &str| {
        s3.put_object()
            .bucket(&bucket)
            .key("k")
            .content_md5(md5)
            .body(ByteStream::from_static(b"data"))
            .send()
    };
    // base64(md5("other"))
    assert_failure(
        "wrong Content-MD5",
        put("eV7Mhw9ebZlhbhyn0pgl/g==").await,
        "BadDigest",
        400,
    );
    assert_eq!(
        failure(put("not base64!").await).1,
        400,
        "malformed Content-MD5"
    );
    assert_failure(
        "nothing stored",
        s3.get_object().bucket(&bucket).key("k").send().await,
        "NoSuchKey",
        404,
    );
    put("jXd/OF09/siBXSD3SWAm3A==")
        .await
        .expect("right Content-MD5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_keep_or_replace_metadata() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("copies").await;
    let other = listener.bucket("copies-other").await;
    let s3 = listener.client();
    s3.put_object()
        .bucket(&bucket)
        .key("src")
        .content_type("text/x-src")
        .metadata("a", "1")
        .body(ByteStream::from_static(b"source bytes"))
        .send()
        .await
        .expect("put source");
    let copied = s3
        .copy_object()
        .bucket(&other)
        .key("copy")
        .copy_source(format!("{bucket}/src"))
        .send()
        .await
        .expect("COPY");
    let expected = format!("\"{}\"", md5_hex(b"source bytes"));
    assert_eq!(
        copied.copy_object_result().and_then(|r| r.e_tag()),
        Some(expected.as_str())
    );
    let head = s3
        .head_object()
        .bucket(&other)
        .key("copy")
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_type(), Some("text/x-src"));
    assert_eq!(
        head.metadata().and_then(|m| m.get("a")).map(String::as_str),
        Some("1")
    );

    s3.copy_object()
        .bucket(&bucket)
        .key("replaced")
        .copy_source(format!("{bucket}/src"))
        .metadata_directive(MetadataDirective::Replace)
        .content_type("text/x-new")
        .metadata("b", "2")
        .send()
        .await
        .expect("REPLACE");
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key("replaced")
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_type(), Some("text/x-new"));
    let metadata = head.metadata().cloned().unwrap_or_default();
    assert_eq!(
        (metadata.get("a"), metadata.get("b").map(String::as_str)),
        (None, Some("2"))
    );
    assert_eq!(listener.get(&bucket, "replaced").await, b"source bytes");

    let to_itself = s3
        .copy_object()
        .bucket(&bucket)
        .key("src")
        .copy_source(format!("{bucket}/src"))
        .send()
        .await;
    assert_failure(
        "copy onto itself without REPLACE",
        to_itself,
        "InvalidRequest",
        400,
    );
    s3.copy_object()
        .bucket(&bucket)
        .key("src")
        .copy_source(format!("{bucket}/src"))
        .metadata_directive(MetadataDirective::Replace)
        .metadata("c", "3")
        .send()
        .await
        .expect("copy onto itself with REPLACE");
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key("src")
        .send()
        .await
        .expect("head");
    assert_eq!(
        head.metadata().and_then(|m| m.get("c")).map(String::as_str),
        Some("3")
    );
    let missing = s3
        .copy_object()
        .bucket(&bucket)
        .key("x")
        .copy_source(format!("{bucket}/missing"))
        .send()
        .await;
    assert_failure("copy of a missing key", missing, "NoSuchKey", 404);
    // A source key with characters that need encoding.
    listener.put(&bucket, "a b/ü+%.txt", b"odd".to_vec()).await;
    s3.copy_object()
        .bucket(&bucket)
        .key("odd-copy")
        .copy_source(format!("{bucket}/a%20b/%C3%BC%2B%25.txt"))
        .send()
        .await
        .expect("copy of an encoded source key");
    assert_eq!(listener.get(&bucket, "odd-copy").await, b"odd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_objects_reports_every_key() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("deletes").await;
    for key in ["a", "b", "c/d"] {
        listener.put(&bucket, key, key.as_bytes().to_vec()).await;
    }
    let ids = ["a", "c/d", "missing"]
        .map(|key| ObjectIdentifier::builder().key(key).build().expect("id"));
    let delete = Delete::builder()
        .set_objects(Some(ids.to_vec()))
        .build()
        .expect("delete");
    let s3 = listener.client();
    let answer = s3
        .delete_objects()
        .bucket(&bucket)
        .delete(delete)
        .send()
        .await
        .expect("DeleteObjects");
    let mut deleted: Vec<&str> = answer.deleted().iter().filter_map(|d| d.key()).collect();
    deleted.sort_unstable();
    assert_eq!(deleted, ["a", "c/d", "missing"]);
    assert!(answer.errors().is_empty(), "{:?}", answer.errors());
    let left = s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    let left: Vec<&str> = left.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(left, ["b"]);

    let quiet = Delete::builder()
        .objects(ObjectIdentifier::builder().key("b").build().expect("id"))
        .quiet(true)
        .build()
        .expect("delete");
    let answer = s3
        .delete_objects()
        .bucket(&bucket)
        .delete(quiet)
        .send()
        .await
        .expect("quiet");
    assert!(answer.deleted().is_empty(), "quiet mode lists nothing");
    s3.delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("the bucket is empty now");
}
