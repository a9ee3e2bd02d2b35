//! Multipart uploads through aws-sdk-s3: S3's ETag rule, the errors of
//! CompleteMultipartUpload, aborts, listing parts and uploads, and concurrent writers.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use common::{assert_failure, failure, multipart_etag, test_bytes, Listener, MIB};

async fn start(s3: &Client, bucket: &str, key: &str) -> String {
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("create upload");
    upload.upload_id().expect("upload id").to_owned()
}

async fn part(
    s3: &Client,
    bucket: &str,
    key: &str,
    upload: &str,
    number: i32,
    bytes: &[u8],
) -> String {
    let answer = s3
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(upload)
        .part_number(number)
        .body(ByteStream::from(bytes.to_vec()))
        .send()
        .await
        .unwrap_or_else(|error| panic!("upload part {number}: {error:?}"));
    answer.e_tag().expect("part ETag").to_owned()
}

/// (part number, ETag) as a client lists them.
type PartList = Vec<(i32, String)>;

fn parts(list: &[(i32, &str)]) -> CompletedMultipartUpload {
    let parts = list
        .iter()
        .map(|(number, etag)| {
            CompletedPart::builder()
                .part_number(*number)
                .e_tag(*etag)
                .build()
        })
        .collect();
    CompletedMultipartUpload::builder()
        .set_parts(Some(parts))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_follows_the_etag_rule_and_serves_ranges_across_parts() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("multipart").await;
    let s3 = listener.client();
    let upload = s3
        .create_multipart_upload()
        .bucket(&bucket)
        .key("big")
        .content_type("application/x-big")
        .metadata("m", "v")
        .send()
        .await
        .expect("create");
    let id = upload.upload_id().expect("id").to_owned();
    let chunks = [
        test_bytes(5 * MIB, 1),
        test_bytes(5 * MIB, 2),
        test_bytes(12_345, 3),
    ];
    let mut etags = Vec::new();
    // Uploaded out of order; part 2 twice (the second replaces the first).
    part(&s3, &bucket, "big", &id, 2, &test_bytes(5 * MIB, 99)).await;
    for (number, bytes) in [(3, &chunks[2]), (1, &chunks[0]), (2, &chunks[1])] {
        let etag = part(&s3, &bucket, "big", &id, number, bytes).await;
        assert_eq!(
            etag,
            format!("\"{}\"", common::md5_hex(bytes)),
            "part {number} ETag is its MD5"
        );
        etags.push((number, etag));
    }
    etags.sort();
    let listed = s3
        .list_parts()
        .bucket(&bucket)
        .key("big")
        .upload_id(&id)
        .send()
        .await
        .expect("list parts");
    let sizes: Vec<(i32, i64)> = listed
        .parts()
        .iter()
        .map(|p| (p.part_number().unwrap_or(0), p.size().unwrap_or(0)))
        .collect();
    assert_eq!(
        sizes,
        [(1, 5 * MIB as i64), (2, 5 * MIB as i64), (3, 12_345)]
    );
    let list: Vec<(i32, &str)> = etags.iter().map(|(n, e)| (*n, e.as_str())).collect();
    let done = s3
        .complete_multipart_upload()
        .bucket(&bucket)
        .key("big")
        .upload_id(&id)
        .multipart_upload(parts(&list))
        .send()
        .await
        .expect("complete");
    let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    assert_eq!(
        done.e_tag(),
        Some(multipart_etag(&slices).as_str()),
        "md5 of the part md5s + -3"
    );
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key("big")
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_length(), Some((10 * MIB + 12_345) as i64));
    assert_eq!(head.content_type(), Some("application/x-big"));
    assert_eq!(
        head.metadata().and_then(|m| m.get("m")).map(String::as_str),
        Some("v")
    );
    assert_eq!(head.e_tag(), done.e_tag());
    let whole = chunks.concat();
    assert!(
        listener.get(&bucket, "big").await == whole,
        "the object is its parts in order"
    );
    for (start, end) in [
        (5 * MIB - 3, 5 * MIB + 2),
        (0, 10 * MIB + 12_344),
        (10 * MIB, 10 * MIB + 10),
        (MIB, 9 * MIB),
    ] {
        let answer = s3
            .get_object()
            .bucket(&bucket)
            .key("big")
            .range(format!("bytes={start}-{end}"))
            .send()
            .await
            .expect("range");
        let body = answer.body.collect().await.expect("body").to_vec();
        assert!(
            body == whole[start..=end],
            "range {start}-{end} across parts"
        );
    }
    // Completed: the upload is gone.
    assert_failure(
        "list parts after complete",
        s3.list_parts()
            .bucket(&bucket)
            .key("big")
            .upload_id(&id)
            .send()
            .await,
        "NoSuchUpload",
        404,
    );
    let uploads = s3
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .expect("list uploads");
    assert!(uploads.uploads().is_empty());
    // A copy of a multipart object keeps its bytes.
    s3.copy_object()
        .bucket(&bucket)
        .key("copy")
        .copy_source(format!("{bucket}/big"))
        .send()
        .await
        .expect("copy");
    assert!(listener.get(&bucket, "copy").await == whole);
    // A single part upload: "-1".
    let id = start(&s3, &bucket, "one").await;
    let etag = part(&s3, &bucket, "one", &id, 1, b"tiny").await;
    let done = s3
        .complete_multipart_upload()
        .bucket(&bucket)
        .key("one")
        .upload_id(&id)
        .multipart_upload(parts(&[(1, &etag)]))
        .send()
        .await
        .expect("complete");
    assert_eq!(done.e_tag(), Some(multipart_etag(&[b"tiny"]).as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_rejects_bad_part_lists() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("bad-parts").await;
    let s3 = listener.client();
    let big = test_bytes(5 * MIB, 4);
    let id = start(&s3, &bucket, "k").await;
    let e1 = part(&s3, &bucket, "k", &id, 1, &big).await;
    let e2 = part(&s3, &bucket, "k", &id, 2, b"small middle").await;
    let e3 = part(&s3, &bucket, "k", &id, 3, b"last").await;
    let complete = |list: Vec<(i32, String)>| {
        let list: Vec<(i32, &str)> = list.iter().map(|(n, e)| (*n, e.as_str())).collect();
        s3.complete_multipart_upload()
            .bucket(&bucket)
            .key("k")
            .upload_id(&id)
            .multipart_upload(parts(&list))
            .send()
    };
    let zero = "\"00000000000000000000000000000000\"".to_owned();
    // (what, parts, code)
    let cases: [(&str, PartList, &str); 7] = [
        (
            "a small part in the middle",
            vec![(1, e1.clone()), (2, e2.clone()), (3, e3.clone())],
            "EntityTooSmall",
        ),
        ("a wrong ETag", vec![(1, zero.clone())], "InvalidPart"),
        (
            "a part never uploaded",
            vec![(1, e1.clone()), (4, e3.clone())],
            "InvalidPart",
        ),
        (
            "descending numbers",
            vec![(3, e3.clone()), (1, e1.clone())],
            "InvalidPartOrder",
        ),
        (
            "a small part listed first, out of order",
            vec![(2, e2.clone()), (1, e1.clone())],
            "InvalidPartOrder",
        ),
        (
            "a repeated part",
            vec![(1, e1.clone()), (1, e1.clone())],
            "InvalidPartOrder",
        ),
        (
            "the ETag of another part",
            vec![(1, e3.clone())],
            "InvalidPart",
        ),
    ];
    for (what, list, code) in cases {
        assert_failure(what, complete(list).await, code, 400);
    }
    let empty = s3
        .complete_multipart_upload()
        .bucket(&bucket)
        .key("k")
        .upload_id(&id)
        .multipart_upload(CompletedMultipartUpload::builder().build())
        .send()
        .await;
    assert_eq!(failure(empty).1, 400, "no parts");
    // None of that consumed the upload: skipping the small part completes it.
    complete(vec![(1, e1.clone()), (3, e3.clone())])
        .await
        .expect("complete 1 + 3");
    assert!(listener.get(&bucket, "k").await == [big.as_slice(), b"last"].concat());

    // Part numbers out of range, unknown uploads, a key that is not the upload's.
    let id = start(&s3, &bucket, "other").await;
    for number in [0, 10_001] {
        let answer = s3
            .upload_part()
            .bucket(&bucket)
            .key("other")
            .upload_id(&id)
            .part_number(number)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await;
        assert_eq!(failure(answer).1, 400, "part number {number}");
    }
    let wrong_key = s3
        .upload_part()
        .bucket(&bucket)
        .key("not-other")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_failure("an upload of another key", wrong_key, "NoSuchUpload", 404);
    let unknown = s3
        .upload_part()
        .bucket(&bucket)
        .key("other")
        .upload_id("no-such-upload")
        .part_number(1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_failure("an unknown upload", unknown, "NoSuchUpload", 404);
    let digest = s3
        .upload_part()
        .bucket(&bucket)
        .key("other")
        .upload_id(&id)
        .part_number(1)
        .content_md5("eV7Mhw9ebZlhbhyn0pgl/g==")
        .body(ByteStream::from_static(b"data"))
        .send()
        .await;
    assert_failure("a part with a wrong Content-MD5", digest, "BadDigest", 400);
    let missing_bucket = s3
        .create_multipart_upload()
        .bucket("no-such-bucket")
        .key("k")
        .send()
        .await;
    assert_failure(
        "an upload into a missing bucket",
        missing_bucket,
        "NoSuchBucket",
        404,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_and_listing_of_parts_and_uploads() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("uploads").await;
    let s3 = listener.client();
    let a1 = start(&s3, &bucket, "a").await;
    let a2 = start(&s3, &bucket, "a").await;
    let b = start(&s3, &bucket, "dir/b").await;
    for number in 1..=5 {
        part(
            &s3,
            &bucket,
            "a",
            &a1,
            number,
            format!("part {number}").as_bytes(),
        )
        .await;
    }
    // ListParts pages with max-parts and part-number-marker.
    let first = s3
        .list_parts()
        .bucket(&bucket)
        .key("a")
        .upload_id(&a1)
        .max_parts(2)
        .send()
        .await
        .expect("list parts");
    let numbers: Vec<i32> = first
        .parts()
        .iter()
        .filter_map(|p| p.part_number())
        .collect();
    assert_eq!(numbers, [1, 2]);
    assert_eq!(first.is_truncated(), Some(true));
    let marker = first
        .next_part_number_marker()
        .expect("next marker")
        .to_owned();
    let rest = s3
        .list_parts()
        .bucket(&bucket)
        .key("a")
        .upload_id(&a1)
        .part_number_marker(marker)
        .send()
        .await
        .expect("list parts");
    let numbers: Vec<i32> = rest
        .parts()
        .iter()
        .filter_map(|p| p.part_number())
        .collect();
    assert_eq!(numbers, [3, 4, 5]);
    assert_eq!(rest.is_truncated(), Some(false));

    let all = s3
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .expect("list uploads");
    let mut listed: Vec<(String, String)> = all
        .uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap_or("").to_owned(),
                u.upload_id().unwrap_or("").to_owned(),
            )
        })
        .collect();
    listed.sort();
    let mut expected = vec![
        ("a".to_owned(), a1.clone()),
        ("a".to_owned(), a2.clone()),
        ("dir/b".to_owned(), b.clone()),
    ];
    expected.sort();
    assert_eq!(listed, expected);
    let prefixed = s3
        .list_multipart_uploads()
        .bucket(&bucket)
        .prefix("dir/")
        .send()
        .await
        .expect("list uploads");
    assert_eq!(prefixed.uploads().len(), 1);
    let paged = s3
        .list_multipart_uploads()
        .bucket(&bucket)
        .max_uploads(1)
        .send()
        .await
        .expect("list uploads");
    assert_eq!(
        (paged.uploads().len(), paged.is_truncated()),
        (1, Some(true))
    );

    s3.abort_multipart_upload()
        .bucket(&bucket)
        .key("a")
        .upload_id(&a1)
        .send()
        .await
        .expect("abort");
    let again = s3
        .abort_multipart_upload()
        .bucket(&bucket)
        .key("a")
        .upload_id(&a1)
        .send()
        .await;
    assert_failure("abort twice", again, "NoSuchUpload", 404);
    let after = s3
        .upload_part()
        .bucket(&bucket)
        .key("a")
        .upload_id(&a1)
        .part_number(6)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_failure("a part after abort", after, "NoSuchUpload", 404);
    let complete = s3
        .complete_multipart_upload()
        .bucket(&bucket)
        .key("a")
        .upload_id(&a1)
        .multipart_upload(parts(&[(1, "\"x\"")]))
        .send()
        .await;
    assert_failure("complete after abort", complete, "NoSuchUpload", 404);
    assert_failure(
        "no object after abort",
        s3.get_object().bucket(&bucket).key("a").send().await,
        "NoSuchKey",
        404,
    );
    let left = s3
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .expect("list uploads");
    assert_eq!(left.uploads().len(), 2);
    // The aborted upload's parts go to garbage collection: nothing but live blobs stays.
    while listener
        .objects
        .collect_garbage()
        .await
        .expect("collect garbage")
    {}
    let blobs = common::files_under(&listener.objects_dir().join("blobs")).len();
    assert_eq!(blobs, 0, "blobs of the aborted upload are left");
}

/// Many writers at once against a file-backed store, as `aws s3 sync` and rclone write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_and_parts_all_succeed() {
    let listener = Listener::start_on_disk().await;
    // The server collects garbage while clients write (every overwrite and part makes some).
    let collector = tokio::spawn(listener.objects.clone().garbage_loop());
    let bucket = listener.bucket("concurrent").await;
    let s3 = listener.client();
    let id = start(&s3, &bucket, "mp").await;
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..16 {
        let (s3, bucket, id) = (s3.clone(), bucket.clone(), id.clone());
        tasks.spawn(async move {
            let mut failures = Vec::new();
            for index in 0..25 {
                // Every other PUT overwrites the previous key, leaving its blob as garbage.
                let key = format!("w{writer:02}/{:02}", index / 2 * 2);
                let put = s3
                    .put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(ByteStream::from(key.clone().into_bytes()))
                    .send()
                    .await;
                if let Err(error) = put {
                    failures.push(format!("PUT {key}: {:?}", failure::<(), _>(Err(error))));
                }
            }
            let number = writer + 1;
            let upload = s3
                .upload_part()
                .bucket(&bucket)
                .key("mp")
                .upload_id(&id)
                .part_number(number)
                .body(ByteStream::from_static(b"p"))
                .send()
                .await;
            if let Err(error) = upload {
                failures.push(format!("part {number}: {:?}", failure::<(), _>(Err(error))));
            }
            failures
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        failures.extend(done.expect("writer"));
    }
    assert!(
        failures.is_empty(),
        "{} of 416 concurrent writes failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    let count: usize = s3
        .list_objects_v2()
        .bucket(&bucket)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await
        .iter()
        .map(|p| p.as_ref().expect("page").contents().len())
        .sum();
    assert_eq!(count, 16 * 13);
    collector.abort();
}
