//! aws-cli on many objects: multipart uploads (automatic and by hand, with their errors),
//! sync, listing 2,500 keys in pages and recursive deletes (DeleteObjects).

use std::process::Output;

use serde_json::Value;

use crate::awscli::{check_failure, etag_of, Aws};
use crate::support::{multipart_etag, stderr, stdout, test_bytes, MIB};

#[test]
fn awscli_multipart_by_itself_and_by_hand() {
    let (_server, aws) = Aws::start();
    aws.ok(&["s3", "mb", "s3://cli-multipart"]);
    // aws s3 cp splits above 8 MiB into 8 MiB parts: 20 MiB is 3 parts.
    let big = test_bytes(20 * MIB, 2);
    aws.file("big.bin", &big);
    aws.ok(&[
        "s3",
        "cp",
        "big.bin",
        "s3://cli-multipart/big.bin",
        "--no-progress",
    ]);
    let head = aws.json(&[
        "s3api",
        "head-object",
        "--bucket",
        "cli-multipart",
        "--key",
        "big.bin",
    ]);
    assert_eq!(
        etag_of(&head),
        multipart_etag(&big, 8 * MIB),
        "multipart ETag rule"
    );
    aws.ok(&[
        "s3",
        "cp",
        "s3://cli-multipart/big.bin",
        "big-back.bin",
        "--no-progress",
    ]);
    assert!(
        std::fs::read(aws.dir().join("big-back.bin")).expect("read") == big,
        "bytes differ"
    );

    let start = |key: &str| -> String {
        let created = aws.json(&[
            "s3api",
            "create-multipart-upload",
            "--bucket",
            "cli-multipart",
            "--key",
            key,
        ]);
        created["UploadId"].as_str().expect("UploadId").to_owned()
    };
    let upload_part = |key: &str, upload: &str, number: &str, file: &str| -> String {
        let answer = aws.json(&[
            "s3api",
            "upload-part",
            "--bucket",
            "cli-multipart",
            "--key",
            key,
            "--upload-id",
            upload,
            "--part-number",
            number,
            "--body",
            file,
        ]);
        answer["ETag"].as_str().expect("ETag").to_owned()
    };
    let complete = |key: &str, upload: &str, parts: &[(u32, &str)]| -> Output {
        let list: Vec<Value> = parts
            .iter()
            .map(|(number, etag)| serde_json::json!({"PartNumber": number, "ETag": etag}))
            .collect();
        let file = aws.file(
            "parts.json",
            serde_json::json!({ "Parts": list }).to_string().as_bytes(),
        );
        let argument = format!("file://{}", file.display());
        aws.run(&[
            "s3api",
            "complete-multipart-upload",
            "--bucket",
            "cli-multipart",
            "--key",
            key,
            "--upload-id",
            upload,
            "--multipart-upload",
            &argument,
        ])
    };
    let first = test_bytes(5 * MIB, 3);
    let last = test_bytes(1000, 4);
    aws.file("first.part", &first);
    aws.file("last.part", &last);

    let upload = start("hand.bin");
    let uploads = aws.json(&[
        "s3api",
        "list-multipart-uploads",
        "--bucket",
        "cli-multipart",
    ]);
    assert_eq!(
        uploads["Uploads"][0]["UploadId"],
        upload.as_str(),
        "{uploads}"
    );
    let etag1 = upload_part("hand.bin", &upload, "1", "first.part");
    let etag2 = upload_part("hand.bin", &upload, "2", "last.part");
    let parts = aws.json(&[
        "s3api",
        "list-parts",
        "--bucket",
        "cli-multipart",
        "--key",
        "hand.bin",
        "--upload-id",
        &upload,
    ]);
    let sizes: Vec<i64> = parts["Parts"]
        .as_array()
        .expect("Parts")
        .iter()
        .map(|p| p["Size"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(sizes, [5 * MIB as i64, 1000]);
    let order = complete("hand.bin", &upload, &[(2, &etag2), (1, &etag1)]);
    check_failure(
        &order,
        "InvalidPartOrder",
        &["complete-multipart-upload (2, 1)"],
    );
    let wrong = complete(
        "hand.bin",
        &upload,
        &[(1, "\"00000000000000000000000000000000\"")],
    );
    check_failure(
        &wrong,
        "InvalidPart",
        &["complete-multipart-upload (wrong ETag)"],
    );
    let done = complete("hand.bin", &upload, &[(1, &etag1), (2, &etag2)]);
    assert!(done.status.success(), "complete: {}", stderr(&done));
    let whole = [first.clone(), last.clone()].concat();
    let head = aws.json(&[
        "s3api",
        "head-object",
        "--bucket",
        "cli-multipart",
        "--key",
        "hand.bin",
    ]);
    assert_eq!(etag_of(&head), multipart_etag(&whole, 5 * MIB));

    let small = start("small.bin");
    let etag1 = upload_part("small.bin", &small, "1", "last.part");
    let etag2 = upload_part("small.bin", &small, "2", "last.part");
    let too_small = complete("small.bin", &small, &[(1, &etag1), (2, &etag2)]);
    check_failure(
        &too_small,
        "EntityTooSmall",
        &["complete-multipart-upload (1000-byte parts)"],
    );
    aws.ok(&[
        "s3api",
        "abort-multipart-upload",
        "--bucket",
        "cli-multipart",
        "--key",
        "small.bin",
        "--upload-id",
        &small,
    ]);
    aws.fails_with(
        "NoSuchUpload",
        &[
            "s3api",
            "list-parts",
            "--bucket",
            "cli-multipart",
            "--key",
            "small.bin",
            "--upload-id",
            &small,
        ],
    );
    let uploads = aws.json(&[
        "s3api",
        "list-multipart-uploads",
        "--bucket",
        "cli-multipart",
    ]);
    assert!(
        uploads
            .get("Uploads")
            .is_none_or(|u| u.as_array().is_some_and(Vec::is_empty)),
        "{uploads}"
    );
}

#[test]
fn awscli_sync_listing_and_recursive_delete() {
    let (server, aws) = Aws::start();
    aws.ok(&["s3", "mb", "s3://cli-sync"]);
    for index in 0..30 {
        aws.file(
            &format!("up/dir{}/file{index}.txt", index % 3),
            format!("file {index}").as_bytes(),
        );
    }
    aws.file("up/ünï cödé +&.txt", b"unicode");
    aws.ok(&["s3", "sync", "up", "s3://cli-sync/up", "--no-progress"]);
    aws.ok(&["s3", "sync", "s3://cli-sync/up", "down", "--no-progress"]);
    for index in 0..30 {
        let name = format!("dir{}/file{index}.txt", index % 3);
        let back = std::fs::read(aws.dir().join("down").join(&name)).expect("synced down");
        assert_eq!(back, format!("file {index}").as_bytes(), "{name}");
    }
    assert_eq!(
        std::fs::read(aws.dir().join("down/ünï cödé +&.txt")).expect("unicode"),
        b"unicode"
    );
    std::fs::remove_file(aws.dir().join("up/dir0/file0.txt")).expect("rm");
    let deleted = aws.ok(&[
        "s3",
        "sync",
        "up",
        "s3://cli-sync/up",
        "--delete",
        "--no-progress",
    ]);
    assert!(
        deleted.contains("delete: s3://cli-sync/up/dir0/file0.txt"),
        "{deleted}"
    );

    let top = aws.json(&[
        "s3api",
        "list-objects-v2",
        "--bucket",
        "cli-sync",
        "--prefix",
        "up/",
        "--delimiter",
        "/",
    ]);
    let prefixes: Vec<&str> = top["CommonPrefixes"]
        .as_array()
        .expect("CommonPrefixes")
        .iter()
        .filter_map(|p| p["Prefix"].as_str())
        .collect();
    assert_eq!(prefixes, ["up/dir0/", "up/dir1/", "up/dir2/"]);
    assert_eq!(top["Contents"][0]["Key"], "up/ünï cödé +&.txt");

    // 2,500 keys, paged by 1,000 with continuation tokens. aws-cli uploads ~40 files a
    // second here, so the keys are made over the bearer-token path; aws-cli lists them.
    let expected: Vec<String> = (0..2500).map(|i| format!("many/k{i:05}")).collect();
    crate::support::seed_empty_objects(&server, "cli-sync", &expected);
    let mut token: Option<String> = None;
    let mut pages = Vec::new();
    let mut keys = Vec::new();
    loop {
        let mut args = vec![
            "s3api",
            "list-objects-v2",
            "--bucket",
            "cli-sync",
            "--prefix",
            "many/",
            "--max-keys",
            "1000",
            "--no-paginate",
        ];
        if let Some(token) = &token {
            args.extend(["--continuation-token", token.as_str()]);
        }
        let page = aws.json(&args);
        pages.push(page["KeyCount"].as_i64().unwrap_or(-1));
        keys.extend(
            page["Contents"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o["Key"].as_str().map(str::to_owned)),
        );
        if page["IsTruncated"] != true {
            break;
        }
        token = Some(
            page["NextContinuationToken"]
                .as_str()
                .expect("NextContinuationToken")
                .to_owned(),
        );
    }
    assert_eq!(pages, [1000, 1000, 500], "page sizes");
    assert_eq!(keys, expected);
    let after = aws.json(&[
        "s3api",
        "list-objects-v2",
        "--bucket",
        "cli-sync",
        "--prefix",
        "many/",
        "--start-after",
        "many/k02497",
    ]);
    let after: Vec<&str> = after["Contents"]
        .as_array()
        .expect("Contents")
        .iter()
        .filter_map(|o| o["Key"].as_str())
        .collect();
    assert_eq!(after, ["many/k02498", "many/k02499"]);
    let zero = aws.json(&[
        "s3api",
        "list-objects-v2",
        "--bucket",
        "cli-sync",
        "--max-keys",
        "0",
        "--no-paginate",
    ]);
    assert_eq!(zero["KeyCount"], 0, "{zero}");
    assert!(zero.get("Contents").is_none(), "{zero}");
    let all = aws.ok(&["s3", "ls", "s3://cli-sync/many/", "--recursive"]);
    assert_eq!(
        all.lines().count(),
        2500,
        "s3 ls --recursive pages through everything"
    );

    // rm --recursive sends DeleteObjects with the keys under the prefix only.
    aws.ok(&[
        "s3",
        "rm",
        "s3://cli-sync/up/",
        "--recursive",
        "--only-show-errors",
    ]);
    // aws s3 ls exits 1 when it lists nothing.
    let left = aws.run(&["s3", "ls", "s3://cli-sync/up/", "--recursive"]);
    assert_eq!(
        stdout(&left),
        "",
        "rm --recursive (DeleteObjects) left objects"
    );
    assert!(stderr(&left).is_empty(), "s3 ls failed: {}", stderr(&left));
    let kept = aws.ok(&["s3", "ls", "s3://cli-sync/many/", "--recursive"]);
    assert_eq!(
        kept.lines().count(),
        2500,
        "rm --recursive deleted outside its prefix"
    );
}
