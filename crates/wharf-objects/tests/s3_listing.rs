//! ListObjectsV2 and ListObjects edge cases through aws-sdk-s3: prefixes, delimiters,
//! continuation tokens over 2,500 keys, start-after, max-keys 0 and URL encoding.

mod common;

use aws_sdk_s3::types::EncodingType;
use aws_sdk_s3::Client;
use common::{assert_failure, Listener};

/// One ListObjectsV2 page: (keys, common prefixes, truncated, next token).
async fn page(
    s3: &Client,
    bucket: &str,
    prefix: Option<&str>,
    delimiter: Option<&str>,
    start_after: Option<&str>,
    max_keys: Option<i32>,
) -> (Vec<String>, Vec<String>, bool, Option<String>) {
    let answer = s3
        .list_objects_v2()
        .bucket(bucket)
        .set_prefix(prefix.map(str::to_owned))
        .set_delimiter(delimiter.map(str::to_owned))
        .set_start_after(start_after.map(str::to_owned))
        .set_max_keys(max_keys)
        .send()
        .await
        .expect("list");
    let keys: Vec<String> = answer
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    let prefixes: Vec<String> = answer
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix().map(str::to_owned))
        .collect();
    let count = answer.key_count().unwrap_or(-1);
    let page = (
        keys,
        prefixes,
        answer.is_truncated().unwrap_or(false),
        answer.next_continuation_token().map(str::to_owned),
    );
    assert_eq!(
        count as usize,
        page.0.len() + page.1.len(),
        "KeyCount counts keys and prefixes"
    );
    page
}

/// PUTs an empty object under each key, `per_task` keys to each of several tasks at once.
async fn put_empty_objects(s3: &Client, bucket: &str, keys: &[String], per_task: usize) {
    let mut puts = tokio::task::JoinSet::new();
    for chunk in keys.chunks(per_task) {
        let (s3, bucket, chunk) = (s3.clone(), bucket.to_owned(), chunk.to_vec());
        puts.spawn(async move {
            for key in chunk {
                let body = aws_sdk_s3::primitives::ByteStream::from_static(b"");
                s3.put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(body)
                    .send()
                    .await
                    .expect("put");
            }
        });
    }
    while let Some(done) = puts.join_next().await {
        done.expect("put task");
    }
}

const KEYS: [&str; 12] = [
    "a.txt",
    "dir.txt",
    "dir/1",
    "dir/2",
    "dir/sub/3",
    "dir/sub/4",
    "dir/sub/deeper/5",
    "dir0/6",
    "other/7",
    "z",
    "z/8",
    "zz::9::x",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_delimiters_and_start_after() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("listing").await;
    for key in KEYS {
        listener.put(&bucket, key, key.as_bytes().to_vec()).await;
    }
    let s3 = listener.client();
    // (prefix, delimiter, start-after, keys, common prefixes)
    type Case<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        &'a [&'a str],
        &'a [&'a str],
    );
    let cases: [Case; 13] = [
        (None, None, None, &KEYS, &[]),
        (
            Some("dir/"),
            None,
            None,
            &[
                "dir/1",
                "dir/2",
                "dir/sub/3",
                "dir/sub/4",
                "dir/sub/deeper/5",
            ],
            &[],
        ),
        (
            None,
            Some("/"),
            None,
            &["a.txt", "dir.txt", "z", "zz::9::x"],
            &["dir/", "dir0/", "other/", "z/"],
        ),
        (
            Some("dir/"),
            Some("/"),
            None,
            &["dir/1", "dir/2"],
            &["dir/sub/"],
        ),
        (
            Some("dir/sub/"),
            Some("/"),
            None,
            &["dir/sub/3", "dir/sub/4"],
            &["dir/sub/deeper/"],
        ),
        // A prefix that is not a "folder": the delimiter applies after it.
        (
            Some("dir"),
            Some("/"),
            None,
            &["dir.txt"],
            &["dir/", "dir0/"],
        ),
        // A delimiter of several characters.
        (
            None,
            Some("::"),
            None,
            &[
                "a.txt",
                "dir.txt",
                "dir/1",
                "dir/2",
                "dir/sub/3",
                "dir/sub/4",
                "dir/sub/deeper/5",
                "dir0/6",
                "other/7",
                "z",
                "z/8",
            ],
            &["zz::"],
        ),
        (
            None,
            None,
            Some("dir/sub/4"),
            &[
                "dir/sub/deeper/5",
                "dir0/6",
                "other/7",
                "z",
                "z/8",
                "zz::9::x",
            ],
            &[],
        ),
        // Start-after at a common prefix skips the whole prefix (v1's NextMarker relies on it).
        (
            None,
            Some("/"),
            Some("dir/"),
            &["z", "zz::9::x"],
            &["dir0/", "other/", "z/"],
        ),
        (
            Some("dir/"),
            None,
            Some("a"),
            &[
                "dir/1",
                "dir/2",
                "dir/sub/3",
                "dir/sub/4",
                "dir/sub/deeper/5",
            ],
            &[],
        ),
        (None, None, Some("zzz"), &[], &[]),
        (Some("nothing/"), Some("/"), None, &[], &[]),
        (Some("z"), Some("/"), None, &["z", "zz::9::x"], &["z/"]),
    ];
    for (prefix, delimiter, start_after, keys, prefixes) in cases {
        let got = page(&s3, &bucket, prefix, delimiter, start_after, None).await;
        let case = format!("prefix {prefix:?} delimiter {delimiter:?} start-after {start_after:?}");
        assert_eq!(got.0, keys, "{case}: keys");
        assert_eq!(got.1, prefixes, "{case}: common prefixes");
        assert!(!got.2, "{case}: truncated");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_keys_and_continuation_tokens() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("paging").await;
    for key in KEYS {
        listener.put(&bucket, key, Vec::new()).await;
    }
    let s3 = listener.client();
    let (keys, prefixes, truncated, token) = page(&s3, &bucket, None, None, None, Some(0)).await;
    assert!(
        keys.is_empty() && prefixes.is_empty() && token.is_none(),
        "max-keys 0"
    );
    assert!(!truncated, "max-keys 0 is not truncated (as S3 answers)");

    // Pages of 3 with a delimiter: a common prefix counts as one entry and is never split.
    let mut seen_keys = Vec::new();
    let mut seen_prefixes = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let answer = s3
            .list_objects_v2()
            .bucket(&bucket)
            .delimiter("/")
            .max_keys(3)
            .set_continuation_token(token.clone())
            .send()
            .await
            .expect("list");
        pages += 1;
        assert!(answer.contents().len() + answer.common_prefixes().len() <= 3);
        seen_keys.extend(
            answer
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        seen_prefixes.extend(
            answer
                .common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned)),
        );
        assert_eq!(
            answer.continuation_token().map(str::to_owned),
            token,
            "the token is echoed"
        );
        if !answer.is_truncated().unwrap_or(false) {
            break;
        }
        token = answer.next_continuation_token().map(str::to_owned);
        assert!(token.is_some(), "a truncated page has a next token");
    }
    assert_eq!(seen_keys, ["a.txt", "dir.txt", "z", "zz::9::x"]);
    assert_eq!(seen_prefixes, ["dir/", "dir0/", "other/", "z/"]);
    assert_eq!(pages, 3);

    let invalid = s3
        .list_objects_v2()
        .bucket(&bucket)
        .continuation_token("not-a-token")
        .send()
        .await;
    assert_failure(
        "a made-up continuation token",
        invalid,
        "InvalidArgument",
        400,
    );
    let negative = s3
        .list_objects_v2()
        .bucket(&bucket)
        .max_keys(-1)
        .send()
        .await;
    assert_failure("max-keys -1", negative, "InvalidArgument", 400);
    let capped = s3
        .list_objects_v2()
        .bucket(&bucket)
        .max_keys(5000)
        .send()
        .await
        .expect("list");
    assert_eq!(capped.max_keys(), Some(1000), "max-keys is capped at 1000");
    let missing = s3.list_objects_v2().bucket("no-such-bucket").send().await;
    assert_failure("missing bucket", missing, "NoSuchBucket", 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_over_2500_keys() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("many").await;
    let keys: Vec<String> = (0..2500).map(|i| format!("k/{i:05}")).collect();
    let s3 = listener.client();
    put_empty_objects(&s3, &bucket, &keys, 313).await;
    let mut listed = Vec::new();
    let mut sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let answer = s3
            .list_objects_v2()
            .bucket(&bucket)
            .max_keys(1000)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list");
        sizes.push(answer.key_count().unwrap_or(-1));
        listed.extend(
            answer
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        if !answer.is_truncated().unwrap_or(false) {
            break;
        }
        token = answer.next_continuation_token().map(str::to_owned);
    }
    assert_eq!(sizes, [1000, 1000, 500]);
    assert_eq!(listed, keys);
    // The SDK's paginator gets the same, and a delimiter folds them into one prefix.
    let pages: Vec<_> = s3
        .list_objects_v2()
        .bucket(&bucket)
        .into_paginator()
        .send()
        .collect()
        .await;
    let total: usize = pages
        .iter()
        .map(|page| page.as_ref().expect("page").contents().len())
        .sum();
    assert_eq!(total, 2500);
    let folded = page(&s3, &bucket, None, Some("/"), None, Some(1)).await;
    assert_eq!(
        (folded.0.len(), folded.1, folded.2),
        (0, vec!["k/".to_owned()], false)
    );
    let after = page(&s3, &bucket, None, None, Some("k/02497"), None).await;
    assert_eq!(after.0, ["k/02498", "k/02499"]);
}

/// Runs of plain keys of every length between common prefixes (a delimited listing
/// fetches rows in growing batches between prefixes), paged with several page sizes,
/// against the listing worked out here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delimited_listings_over_runs_of_keys_and_prefixes() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("runs").await;
    let mut keys = Vec::new();
    for (group, run) in [0usize, 1, 2, 7, 8, 9, 17, 40, 3].into_iter().enumerate() {
        keys.extend((0..run).map(|i| format!("{group}-key-{i:03}")));
        keys.extend((0..3).map(|i| format!("{group}-dir/{i}")));
    }
    let s3 = listener.client();
    put_empty_objects(&s3, &bucket, &keys, 40).await;
    keys.sort();
    let mut expected: Vec<String> = Vec::new();
    for key in &keys {
        let entry = match key.find('/') {
            Some(at) => key[..=at].to_owned(),
            None => key.clone(),
        };
        if expected.last() != Some(&entry) {
            expected.push(entry);
        }
    }
    for max_keys in [1, 2, 5, 16, 1000] {
        let mut listed = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let answer = s3
                .list_objects_v2()
                .bucket(&bucket)
                .delimiter("/")
                .max_keys(max_keys)
                .set_continuation_token(token)
                .send()
                .await
                .expect("list");
            let mut entries: Vec<String> = answer
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .chain(
                    answer
                        .common_prefixes()
                        .iter()
                        .filter_map(|p| p.prefix().map(str::to_owned)),
                )
                .collect();
            entries.sort();
            assert!(entries.len() <= max_keys as usize, "page size {max_keys}");
            listed.extend(entries);
            if !answer.is_truncated().unwrap_or(false) {
                break;
            }
            token = answer.next_continuation_token().map(str::to_owned);
        }
        assert_eq!(listed, expected, "pages of {max_keys}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_encoded_listings_and_list_objects_v1() {
    let listener = Listener::start().await;
    let bucket = listener.bucket("encoding").await;
    let keys = ["a b/ü+%.txt", "a b/x&y<z>", "plain"];
    for key in keys {
        listener.put(&bucket, key, Vec::new()).await;
    }
    let s3 = listener.client();
    let answer = s3
        .list_objects_v2()
        .bucket(&bucket)
        .encoding_type(EncodingType::Url)
        .delimiter("/")
        .send()
        .await
        .expect("list");
    let prefixes: Vec<String> = answer
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .map(common::percent_decode)
        .collect();
    assert_eq!(prefixes, ["a b/"]);
    let inner = s3
        .list_objects_v2()
        .bucket(&bucket)
        .encoding_type(EncodingType::Url)
        .prefix("a b/")
        .send()
        .await
        .expect("list");
    let listed: Vec<String> = inner
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .map(common::percent_decode)
        .collect();
    assert_eq!(listed, ["a b/x&y<z>", "a b/ü+%.txt"]);
    for key in inner.contents().iter().filter_map(|o| o.key()) {
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"%-_.~/+".contains(&b)),
            "not encoded: {key}"
        );
    }

    // ListObjects (v1): marker paging and NextMarker with a delimiter.
    let first = s3
        .list_objects()
        .bucket(&bucket)
        .max_keys(1)
        .send()
        .await
        .expect("v1");
    assert_eq!(
        first
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .collect::<Vec<_>>(),
        ["a b/x&y<z>"]
    );
    assert_eq!(first.is_truncated(), Some(true));
    let second = s3
        .list_objects()
        .bucket(&bucket)
        .max_keys(5)
        .marker("a b/x&y<z>")
        .send()
        .await
        .expect("v1");
    assert_eq!(
        second
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .collect::<Vec<_>>(),
        ["a b/ü+%.txt", "plain"]
    );
    let folded = s3
        .list_objects()
        .bucket(&bucket)
        .delimiter("/")
        .max_keys(1)
        .send()
        .await
        .expect("v1");
    assert_eq!(
        folded
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix())
            .collect::<Vec<_>>(),
        ["a b/"]
    );
    assert_eq!(
        folded.next_marker(),
        Some("a b/"),
        "NextMarker after a common prefix"
    );
    let rest = s3
        .list_objects()
        .bucket(&bucket)
        .delimiter("/")
        .marker("a b/")
        .send()
        .await
        .expect("v1");
    assert_eq!(
        rest.contents()
            .iter()
            .filter_map(|o| o.key())
            .collect::<Vec<_>>(),
        ["plain"]
    );
    assert!(
        rest.common_prefixes().is_empty(),
        "the marker's prefix came again: paging would never end"
    );
}
