//! aws-cli (`aws s3` and `aws s3api`) with its default settings against the listener.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{wait_for, Server};
use crate::support::{
    clean_command, md5_hex, require_tool, s3_target, stderr, stdout, test_bytes, S3Target,
};

/// aws-cli with a private HOME, region us-east-1 and the listener as its endpoint.
pub struct Aws {
    pub target: S3Target,
    home: tempfile::TempDir,
}

impl Aws {
    pub fn start() -> (Server, Aws) {
        require_tool("aws", &["--version"], "aws-cli (Debian package awscli)");
        let server = Server::start();
        let target = s3_target(&server);
        let home = tempfile::tempdir().expect("tempdir");
        (server, Aws { target, home })
    }

    pub fn dir(&self) -> &Path {
        self.home.path()
    }

    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, bytes).expect("write test file");
        path
    }

    pub fn run_as(&self, access_key: &str, secret_key: &str, args: &[&str]) -> Output {
        clean_command("aws", self.dir())
            .arg("--endpoint-url")
            .arg(&self.target.endpoint)
            .args(args)
            .current_dir(self.dir())
            .env("AWS_ACCESS_KEY_ID", access_key)
            .env("AWS_SECRET_ACCESS_KEY", secret_key)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_PAGER", "")
            .stdin(Stdio::null())
            .output()
            .expect("run aws")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_as(&self.target.access_key, &self.target.secret_key, args)
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "aws {args:?} failed ({}):\n{}\n{}",
            output.status,
            stdout(&output),
            stderr(&output)
        );
        stdout(&output)
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("aws {args:?}: {error}: {text}"))
    }

    /// Asserts the command fails and its error names `code`.
    pub fn fails_with(&self, code: &str, args: &[&str]) {
        check_failure(&self.run(args), code, args);
    }
}

pub fn check_failure(output: &Output, code: &str, args: &[&str]) {
    assert!(
        !output.status.success(),
        "aws {args:?} succeeded, expected {code}:\n{}",
        stdout(output)
    );
    assert!(
        stderr(output).contains(code),
        "aws {args:?} failed without {code}:\n{}",
        stderr(output)
    );
}

pub fn etag_of(head: &Value) -> String {
    head["ETag"]
        .as_str()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned()
}

#[test]
fn awscli_buckets_objects_ranges_conditions_and_copies() {
    let (_server, aws) = Aws::start();
    aws.ok(&["s3", "mb", "s3://cli-objects"]);
    assert!(
        aws.ok(&["s3", "ls"]).contains("cli-objects"),
        "s3 ls lists the bucket"
    );
    aws.ok(&["s3api", "head-bucket", "--bucket", "cli-objects"]);
    aws.fails_with("BucketAlreadyOwnedByYou", &["s3", "mb", "s3://cli-objects"]);
    for name in ["ab", "Upper-Case", "bad_name", "-lead", "192.168.0.1"] {
        let argument = format!("--bucket={name}");
        aws.fails_with("InvalidBucketName", &["s3api", "create-bucket", &argument]);
    }

    let data = test_bytes(100, 1);
    aws.file("data.bin", &data);
    aws.ok(&[
        "s3",
        "cp",
        "data.bin",
        "s3://cli-objects/dir/data.bin",
        "--no-progress",
        "--content-type",
        "text/x-cli",
        "--metadata",
        "owner=ada,run=7",
    ]);
    let head = aws.json(&[
        "s3api",
        "head-object",
        "--bucket",
        "cli-objects",
        "--key",
        "dir/data.bin",
    ]);
    assert_eq!(
        etag_of(&head),
        md5_hex(&data),
        "ETag is the MD5 of a single PUT"
    );
    assert_eq!(head["ContentType"], "text/x-cli");
    assert_eq!(head["ContentLength"], 100);
    assert_eq!(
        head["Metadata"],
        serde_json::json!({"owner": "ada", "run": "7"})
    );
    aws.ok(&[
        "s3",
        "cp",
        "s3://cli-objects/dir/data.bin",
        "back.bin",
        "--no-progress",
    ]);
    assert_eq!(
        std::fs::read(aws.dir().join("back.bin")).expect("back.bin"),
        data
    );
    let listed = aws.ok(&["s3", "ls", "s3://cli-objects/dir/"]);
    assert!(
        listed.contains(" 100 data.bin"),
        "s3 ls shows the object: {listed}"
    );

    for (range, expected, content_range) in [
        ("bytes=0-9", &data[0..10], "bytes 0-9/100"),
        ("bytes=90-", &data[90..], "bytes 90-99/100"),
        ("bytes=-5", &data[95..], "bytes 95-99/100"),
    ] {
        let answer = aws.json(&[
            "s3api",
            "get-object",
            "--bucket",
            "cli-objects",
            "--key",
            "dir/data.bin",
            "--range",
            range,
            "part.bin",
        ]);
        assert_eq!(answer["ContentRange"], content_range, "{range}");
        assert_eq!(
            std::fs::read(aws.dir().join("part.bin")).expect("part"),
            expected,
            "{range}"
        );
    }
    let get = [
        "s3api",
        "get-object",
        "--bucket",
        "cli-objects",
        "--key",
        "dir/data.bin",
    ];
    aws.fails_with(
        "InvalidRange",
        &[&get[..], &["--range", "bytes=100-200", "x.bin"]].concat(),
    );
    let etag = format!("\"{}\"", md5_hex(&data));
    aws.fails_with(
        "304",
        &[&get[..], &["--if-none-match", &etag, "x.bin"]].concat(),
    );
    aws.fails_with(
        "PreconditionFailed",
        &[&get[..], &["--if-match", "\"00\"", "x.bin"]].concat(),
    );
    aws.ok(&[&get[..], &["--if-match", &etag, "x.bin"]].concat());
    aws.fails_with(
        "NoSuchKey",
        &[
            "s3api",
            "get-object",
            "--bucket",
            "cli-objects",
            "--key",
            "nope",
            "x",
        ],
    );
    aws.fails_with("NoSuchBucket", &["s3", "ls", "s3://cli-missing"]);
    aws.fails_with(
        "BadDigest",
        &[
            "s3api",
            "put-object",
            "--bucket",
            "cli-objects",
            "--key",
            "digest",
            "--body",
            "data.bin",
            "--content-md5",
            "AAAAAAAAAAAAAAAAAAAAAA==",
        ],
    );

    aws.ok(&[
        "s3",
        "cp",
        "s3://cli-objects/dir/data.bin",
        "s3://cli-objects/copy.bin",
    ]);
    let copied = aws.json(&[
        "s3api",
        "head-object",
        "--bucket",
        "cli-objects",
        "--key",
        "copy.bin",
    ]);
    assert_eq!(
        copied["Metadata"], head["Metadata"],
        "a copy keeps the metadata (COPY)"
    );
    assert_eq!(copied["ContentType"], "text/x-cli");
    aws.ok(&[
        "s3api",
        "copy-object",
        "--bucket",
        "cli-objects",
        "--key",
        "replaced.bin",
        "--copy-source",
        "cli-objects/dir/data.bin",
        "--metadata-directive",
        "REPLACE",
        "--content-type",
        "text/x-new",
        "--metadata",
        "fresh=yes",
    ]);
    let replaced = aws.json(&[
        "s3api",
        "head-object",
        "--bucket",
        "cli-objects",
        "--key",
        "replaced.bin",
    ]);
    assert_eq!(
        replaced["Metadata"],
        serde_json::json!({"fresh": "yes"}),
        "REPLACE"
    );
    assert_eq!(replaced["ContentType"], "text/x-new");
    assert_eq!(etag_of(&replaced), md5_hex(&data));

    aws.fails_with("BucketNotEmpty", &["s3", "rb", "s3://cli-objects"]);
    aws.ok(&["s3", "rm", "s3://cli-objects/copy.bin"]);
    aws.ok(&["s3", "rb", "s3://cli-objects", "--force"]);
    aws.fails_with("404", &["s3api", "head-bucket", "--bucket", "cli-objects"]);
}

#[test]
fn awscli_credentials_are_checked() {
    let (_server, aws) = Aws::start();
    aws.ok(&["s3", "mb", "s3://cli-private"]);
    let wrong_secret = format!("x{}", &aws.target.secret_key[1..]);
    let output = aws.run_as(&aws.target.access_key, &wrong_secret, &["s3", "ls"]);
    check_failure(&output, "SignatureDoesNotMatch", &["s3", "ls"]);
    let output = aws.run_as(
        "WKNOSUCHKEY000000000",
        &aws.target.secret_key,
        &["s3", "ls"],
    );
    check_failure(&output, "InvalidAccessKeyId", &["s3", "ls"]);
    aws.fails_with("AccessDenied", &["s3", "ls", "--no-sign-request"]);
    aws.fails_with(
        "AccessDenied",
        &["s3", "ls", "s3://cli-private", "--no-sign-request"],
    );
}

#[test]
fn awscli_presigned_urls_work_then_expire() {
    let (_server, aws) = Aws::start();
    aws.ok(&["s3", "mb", "s3://cli-presign"]);
    aws.file("note.txt", b"presigned by aws-cli");
    aws.ok(&[
        "s3",
        "cp",
        "note.txt",
        "s3://cli-presign/a dir/note.txt",
        "--no-progress",
    ]);
    let http = reqwest::blocking::Client::new();
    let url = aws.ok(&[
        "s3",
        "presign",
        "s3://cli-presign/a dir/note.txt",
        "--expires-in",
        "300",
    ]);
    let answer = http.get(url.trim()).send().expect("GET presigned");
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.text().expect("body"), "presigned by aws-cli");
    let missing = aws.ok(&[
        "s3",
        "presign",
        "s3://cli-presign/missing",
        "--expires-in",
        "300",
    ]);
    let answer = http.get(missing.trim()).send().expect("GET presigned");
    assert_eq!(answer.status().as_u16(), 404);
    assert!(answer.text().expect("body").contains("NoSuchKey"));

    let short = aws.ok(&[
        "s3",
        "presign",
        "s3://cli-presign/a dir/note.txt",
        "--expires-in",
        "1",
    ]);
    let body = wait_for(
        "the 1-second presigned URL to expire",
        Duration::from_secs(15),
        || {
            let answer = http.get(short.trim()).send().expect("GET presigned");
            (answer.status().as_u16() == 403).then(|| answer.text().unwrap_or_default())
        },
    );
    assert!(body.contains("AccessDenied"), "expired presign: {body}");
}
