//! The listener's edges below the operations: presigned URLs, anonymous access and
//! public-read buckets, body limits, lying Content-Lengths and checksummed uploads.

mod common;

use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use common::{assert_failure, files_under, raw_exchange, test_bytes, wait_for, Listener, MIB};
use wharf_objects::ObjectsConfig;

fn presign(minutes: u64) -> PresigningConfig {
    PresigningConfig::expires_in(Duration::from_secs(minutes * 60)).expect("presigning config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_get_and_put() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("presign").await;
    listener
        .put(&bucket, "dir/a file+ü.txt", b"presigned body".to_vec())
        .await;
    let s3 = listener.client();
    let http = reqwest::Client::new();

    let get = s3
        .get_object()
        .bucket(&bucket)
        .key("dir/a file+ü.txt")
        .presigned(presign(5))
        .await
        .expect("presign GET");
    let answer = http.get(get.uri()).send().await.expect("GET");
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(
        answer.bytes().await.expect("body").as_ref(),
        b"presigned body"
    );
    // The signature covers the method and the key.
    let as_put = http
        .put(get.uri())
        .body("x")
        .send()
        .await
        .expect("PUT with a GET URL");
    assert_eq!(as_put.status().as_u16(), 403);
    assert!(as_put
        .text()
        .await
        .unwrap_or_default()
        .contains("SignatureDoesNotMatch"));

    let put = s3
        .put_object()
        .bucket(&bucket)
        .key("uploaded")
        .presigned(presign(5))
        .await
        .expect("presign PUT");
    let mut request = http.put(put.uri()).body("uploaded through a presigned URL");
    for (name, value) in put.headers() {
        request = request.header(name, value);
    }
    let answer = request.send().await.expect("PUT");
    assert_eq!(answer.status().as_u16(), 200, "{:?}", answer.text().await);
    assert_eq!(
        listener.get(&bucket, "uploaded").await,
        b"uploaded through a presigned URL"
    );
    let elsewhere = put.uri().replace("uploaded", "elsewhere");
    let answer = http.put(elsewhere).body("x").send().await.expect("PUT");
    assert_eq!(
        answer.status().as_u16(),
        403,
        "a URL signed for another key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_presigned_urls_are_access_denied() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("expired").await;
    listener.put(&bucket, "k", b"soon gone".to_vec()).await;
    let s3 = listener.client();
    let http = reqwest::Client::new();
    // Signed an hour ago for one minute: expired the moment it is made.
    let past = PresigningConfig::builder()
        .start_time(SystemTime::now() - Duration::from_secs(3600))
        .expires_in(Duration::from_secs(60))
        .build()
        .expect("config");
    let url = s3
        .get_object()
        .bucket(&bucket)
        .key("k")
        .presigned(past)
        .await
        .expect("presign");
    let answer = http.get(url.uri()).send().await.expect("GET");
    assert_eq!(answer.status().as_u16(), 403);
    assert!(answer
        .text()
        .await
        .unwrap_or_default()
        .contains("AccessDenied"));

    // Valid for one second: works, then stops working.
    let short = PresigningConfig::expires_in(Duration::from_secs(1)).expect("config");
    let url = s3
        .get_object()
        .bucket(&bucket)
        .key("k")
        .presigned(short)
        .await
        .expect("presign");
    let first = http
        .get(url.uri())
        .send()
        .await
        .expect("GET")
        .status()
        .as_u16();
    assert!(first == 200 || first == 403, "first use: {first}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let answer = http.get(url.uri()).send().await.expect("GET");
        if answer.status().as_u16() == 403 {
            assert!(answer
                .text()
                .await
                .unwrap_or_default()
                .contains("AccessDenied"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a 1-second URL still works after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_need_a_public_read_bucket() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("public").await;
    let private = listener.bucket("private").await;
    listener.put(&bucket, "k", b"public bytes".to_vec()).await;
    listener.put(&private, "k", b"private bytes".to_vec()).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}/{path}", listener.endpoint);
    let status_and_body = |response: reqwest::Response| async move {
        (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        )
    };

    let (status, body) =
        status_and_body(http.get(url("public/k")).send().await.expect("GET")).await;
    assert_eq!(status, 403);
    assert!(body.contains("AccessDenied"), "{body}");
    listener
        .objects
        .set_public_read(&bucket, true)
        .await
        .expect("make public");
    let (status, body) =
        status_and_body(http.get(url("public/k")).send().await.expect("GET")).await;
    assert_eq!((status, body.as_str()), (200, "public bytes"));
    assert_eq!(
        http.head(url("public/k"))
            .send()
            .await
            .expect("HEAD")
            .status()
            .as_u16(),
        200
    );
    let (status, body) = status_and_body(
        http.get(url("public?list-type=2"))
            .send()
            .await
            .expect("list"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("<Key>k</Key>"), "{body}");
    // Reads only, and only that bucket.
    let (status, _) = status_and_body(
        http.put(url("public/new"))
            .body("x")
            .send()
            .await
            .expect("PUT"),
    )
    .await;
    assert_eq!(status, 403, "anonymous PUT into a public bucket");
    let (status, _) =
        status_and_body(http.delete(url("public/k")).send().await.expect("DELETE")).await;
    assert_eq!(status, 403, "anonymous DELETE in a public bucket");
    let (status, _) = status_and_body(http.get(url("private/k")).send().await.expect("GET")).await;
    assert_eq!(status, 403, "anonymous GET of a private bucket");
    let (status, _) = status_and_body(http.get(url("")).send().await.expect("ListBuckets")).await;
    assert_eq!(status, 403, "anonymous ListBuckets");
    listener
        .objects
        .set_public_read(&bucket, false)
        .await
        .expect("make private");
    assert_eq!(
        http.get(url("public/k"))
            .send()
            .await
            .expect("GET")
            .status()
            .as_u16(),
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_entity_too_large() {
    let listener = Listener::start_with(ObjectsConfig {
        max_object_size: MIB as u64,
    })
    .await;
    let bucket = listener.bucket("limits").await;
    let s3 = listener.client();
    let put = |size: usize| {
        s3.put_object()
            .bucket(&bucket)
            .key(format!("k{size}"))
            .body(ByteStream::from(test_bytes(size, 3)))
            .send()
    };
    assert_failure("2 MiB PUT", put(2 * MIB).await, "EntityTooLarge", 400);
    assert_failure("1 MiB + 1 PUT", put(MIB + 1).await, "EntityTooLarge", 400);
    put(MIB).await.expect("exactly the limit");
    let upload = s3
        .create_multipart_upload()
        .bucket(&bucket)
        .key("mp")
        .send()
        .await
        .expect("create");
    let part = s3
        .upload_part()
        .bucket(&bucket)
        .key("mp")
        .upload_id(upload.upload_id().unwrap_or_default())
        .part_number(1)
        .body(ByteStream::from(test_bytes(2 * MIB, 4)))
        .send()
        .await;
    assert_failure("2 MiB part", part, "EntityTooLarge", 400);

    // Without a Content-Length the limit is found while streaming.
    let url = s3
        .put_object()
        .bucket(&bucket)
        .key("streamed")
        .presigned(presign(5))
        .await
        .expect("presign");
    let chunks = (0..8).map(|seed| Ok::<_, std::io::Error>(test_bytes(256 * 1024, seed)));
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let answer = reqwest::Client::new()
        .put(url.uri())
        .body(body)
        .send()
        .await
        .expect("PUT");
    assert_eq!(answer.status().as_u16(), 400);
    assert!(answer
        .text()
        .await
        .unwrap_or_default()
        .contains("EntityTooLarge"));
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, [format!("k{MIB}").as_str()]);
    let tmp = listener.objects_dir().join("tmp");
    wait_for(
        "rejected uploads to leave no temporary file",
        Duration::from_secs(10),
        || files_under(&tmp).is_empty().then_some(()),
    )
    .await;
}

/// The number of blob files (written objects and parts).
fn blob_count(listener: &Listener) -> usize {
    files_under(&listener.objects_dir().join("blobs")).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_content_length_never_stores_a_short_or_long_object() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("lying").await;
    let s3 = listener.client();
    let request = |declared: usize, body: &[u8], uri: &str| {
        let target = uri.trim_start_matches(&listener.endpoint).to_owned();
        let mut bytes = format!(
            "PUT {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {declared}\r\n\r\n",
            listener.address
        )
        .into_bytes();
        bytes.extend_from_slice(body);
        bytes
    };
    let before = blob_count(&listener);

    // Fewer bytes than declared, then the client hangs up.
    let short = s3
        .put_object()
        .bucket(&bucket)
        .key("short")
        .presigned(presign(5))
        .await
        .expect("presign");
    let reply = raw_exchange(
        listener.address,
        &request(1000, &[b's'; 500], short.uri()),
        true,
    )
    .await;
    assert!(
        !reply.starts_with("HTTP/1.1 200"),
        "a short body was accepted: {reply}"
    );
    let tmp = listener.objects_dir().join("tmp");
    wait_for(
        "the aborted upload's temporary file to go",
        Duration::from_secs(10),
        || files_under(&tmp).is_empty().then_some(()),
    )
    .await;
    let head = s3.head_object().bucket(&bucket).key("short").send().await;
    assert_eq!(
        common::failure(head).1,
        404,
        "the short upload became an object"
    );
    assert_eq!(
        blob_count(&listener),
        before,
        "a blob of the short upload was kept"
    );

    // More bytes than declared: exactly the declared ones are stored; the rest is not a
    // request.
    let long = s3
        .put_object()
        .bucket(&bucket)
        .key("long")
        .presigned(presign(5))
        .await
        .expect("presign");
    let reply = raw_exchange(
        listener.address,
        &request(10, b"0123456789EXTRA BYTES NOT A REQUEST", long.uri()),
        false,
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(listener.get(&bucket, "long").await, b"0123456789");
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["long"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksummed_and_streamed_uploads() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("checksums").await;
    let (s3, sent) = listener.recording_client();
    let data = test_bytes(700_000, 5);
    for algorithm in [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ] {
        let key = format!("with-{}", algorithm.as_str());
        s3.put_object()
            .bucket(&bucket)
            .key(&key)
            .checksum_algorithm(algorithm.clone())
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap_or_else(|error| panic!("{key}: {error:?}"));
        assert_eq!(listener.get(&bucket, &key).await, data, "{key}");
    }
    // A body from a file: the SDK streams it (aws-chunked with a checksum trailer).
    let file = listener.dir.path().join("upload.bin");
    std::fs::write(&file, &data).expect("write");
    let body = ByteStream::from_path(&file).await.expect("file body");
    s3.put_object()
        .bucket(&bucket)
        .key("from-file")
        .body(body)
        .send()
        .await
        .expect("streamed PUT");
    assert_eq!(listener.get(&bucket, "from-file").await, data);
    // Over plain HTTP the SDK signs every chunk and the trailer.
    assert_eq!(
        sent.last("x-amz-content-sha256").as_deref(),
        Some("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"),
        "the SDK sent the file another way; this test no longer covers signed aws-chunked trailers"
    );
    assert_eq!(
        sent.last("x-amz-trailer").as_deref(),
        Some("x-amz-checksum-crc32")
    );

    // A checksum that does not match the bytes: BadDigest, and nothing is stored.
    let wrong = s3
        .put_object()
        .bucket(&bucket)
        .key("wrong-crc32")
        .checksum_crc32("AAAAAA==")
        .body(ByteStream::from(data.clone()))
        .send()
        .await;
    assert_failure("wrong CRC32", wrong, "BadDigest", 400);
    let sha = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; // of no bytes
    let wrong = s3
        .put_object()
        .bucket(&bucket)
        .key("wrong-sha256")
        .checksum_sha256(sha)
        .body(ByteStream::from(data.clone()))
        .send()
        .await;
    assert_failure("wrong SHA256", wrong, "BadDigest", 400);
    s3.put_object()
        .bucket(&bucket)
        .key("empty-sha256")
        .checksum_sha256(sha)
        .body(ByteStream::from_static(b""))
        .send()
        .await
        .expect("right SHA256");
    for key in ["wrong-crc32", "wrong-sha256"] {
        assert_eq!(
            common::failure(s3.head_object().bucket(&bucket).key(key).send().await).1,
            404,
            "{key} was stored"
        );
    }
    let upload = s3
        .create_multipart_upload()
        .bucket(&bucket)
        .key("mp")
        .send()
        .await
        .expect("create");
    let id = upload.upload_id().unwrap_or_default();
    let part = s3
        .upload_part()
        .bucket(&bucket)
        .key("mp")
        .upload_id(id)
        .part_number(1)
        .checksum_crc32_c("AAAAAA==")
        .body(ByteStream::from_static(b"part"))
        .send()
        .await;
    assert_failure("a part with a wrong CRC32C", part, "BadDigest", 400);
    s3.upload_part()
        .bucket(&bucket)
        .key("mp")
        .upload_id(id)
        .part_number(1)
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .body(ByteStream::from_static(b"part"))
        .send()
        .await
        .expect("a part with its CRC32C");
    let tmp = listener.objects_dir().join("tmp");
    assert!(
        files_under(&tmp).is_empty(),
        "rejected bodies left temporary files"
    );
}

/// botocore's `Expect: 100-continue` on an empty PUT: answered at once (no 100 is due)
/// and the connection closed, so botocore does not misread the next answer on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_put_with_expect_continue_closes_the_connection() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("expect").await;
    let s3 = listener.client();
    for (length, body, closes) in [(0, "", true), (5, "hello", false)] {
        let url = s3
            .put_object()
            .bucket(&bucket)
            .key("k")
            .presigned(presign(5))
            .await
            .expect("presign");
        let target = url.uri().trim_start_matches(&listener.endpoint).to_owned();
        let request = format!(
            "PUT {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n{body}",
            listener.address
        );
        // Without closing our side: the answer ends only if the server closes.
        let reply = tokio::time::timeout(
            Duration::from_secs(3),
            raw_exchange(listener.address, request.as_bytes(), false),
        )
        .await;
        match (closes, reply) {
            (true, Ok(reply)) => {
                assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
                assert!(
                    reply.to_ascii_lowercase().contains("connection: close"),
                    "{reply}"
                );
            }
            (true, Err(_)) => panic!("the connection stayed open after an empty PUT with Expect"),
            (false, Ok(reply)) => panic!("a PUT with a body closed the connection: {reply}"),
            (false, Err(_)) => {}
        }
    }
    // An error answered before the body is read: closed too, and said so.
    let part = s3
        .upload_part()
        .bucket(&bucket)
        .key("k")
        .upload_id("no-such-upload")
        .part_number(1);
    let url = part.presigned(presign(5)).await.expect("presign");
    let target = url.uri().trim_start_matches(&listener.endpoint).to_owned();
    let request = format!(
        "PUT {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n",
        listener.address
    );
    let reply = raw_exchange(listener.address, request.as_bytes(), false).await;
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
}
