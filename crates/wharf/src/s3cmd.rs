//! `wharf cp`: files to, from and between buckets, over the S3 protocol. Big files go up
//! as multipart uploads (parts in parallel, aborted on failure); downloads are written
//! whole or not at all.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::cli::CpArgs;
use crate::s3client::{is_retryable, FileRange, S3Client};

/// Size of each part of a multipart upload (more when a file needs over 10,000 parts).
pub const PART_SIZE: u64 = 16 * 1024 * 1024;
const PARTS_IN_FLIGHT: usize = 4;
const MAX_PARTS: u64 = 10_000;
const PART_ATTEMPTS: u32 = 3;

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    /// `-`: standard output.
    Stdio,
    S3 {
        bucket: String,
        key: String,
    },
}

pub fn parse_location(text: &str) -> anyhow::Result<Location> {
    if text == "-" {
        return Ok(Location::Stdio);
    }
    let Some(rest) = text.strip_prefix("s3://") else {
        anyhow::ensure!(!text.is_empty(), "a path is empty");
        return Ok(Location::Local(PathBuf::from(text)));
    };
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    anyhow::ensure!(
        !bucket.is_empty(),
        "\"{text}\" names no bucket; write s3://BUCKET/KEY"
    );
    Ok(Location::S3 {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
    })
}

/// The last segment of a key (what a file made from it is called).
fn base_name(key: &str) -> Option<&str> {
    key.rsplit('/')
        .next()
        .filter(|name| !name.is_empty() && *name != "." && *name != "..")
}

/// `prefix/` + `name` when the destination key is empty or ends with '/'.
fn key_in(destination: &str, name: &str) -> String {
    if destination.is_empty() || destination.ends_with('/') {
        format!("{destination}{name}")
    } else {
        destination.to_owned()
    }
}

/// A prefix for a recursive copy: what is under "dir" is what is under "dir/".
fn folder_prefix(key: &str) -> String {
    if key.is_empty() || key.ends_with('/') {
        key.to_owned()
    } else {
        format!("{key}/")
    }
}

/// The path below `root` for the part of a key under a prefix; None when that part is
/// not a plain relative path (empty, `.` or `..` segments), so nothing is written outside.
pub fn local_path_for(root: &Path, relative_key: &str) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    for segment in relative_key.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." || segment.contains('\0') {
            return None;
        }
        path.push(segment);
    }
    Some(path)
}

pub fn transfer_bar(total: u64, label: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_owned());
    bar
}

#[derive(Clone)]
struct Copier {
    client: S3Client,
    multipart_threshold: u64,
    /// Print a line per copied file (not when the data goes to standard output).
    report: bool,
    /// Cancelled on Ctrl-C: the transfer under way stops and cleans up (an unfinished
    /// multipart upload is aborted, a partial download removed).
    interrupted: CancellationToken,
}

fn interrupted_error() -> anyhow::Error {
    anyhow::anyhow!("interrupted")
}

impl Copier {
    /// Runs `work` unless Ctrl-C comes first.
    async fn unless_interrupted<T>(
        &self,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::select! {
            outcome = work => outcome,
            () = self.interrupted.cancelled() => Err(interrupted_error()),
        }
    }
}

pub async fn cp(args: CpArgs) -> anyhow::Result<()> {
    let source = parse_location(&args.source)?;
    let destination = parse_location(&args.destination)?;
    let multipart_threshold = wharf_model::duration::parse_size(&args.multipart_threshold)
        .map_err(|problem| anyhow::anyhow!("--multipart-threshold: {problem}"))?;
    anyhow::ensure!(
        matches!(source, Location::S3 { .. }) || matches!(destination, Location::S3 { .. }),
        "one side of `wharf cp` must be s3://BUCKET/KEY (use cp(1) for local copies)"
    );
    anyhow::ensure!(
        source != Location::Stdio,
        "`wharf cp -` (reading standard input) is not supported; write it to a file first"
    );
    anyhow::ensure!(
        !(args.recursive && destination == Location::Stdio),
        "--recursive cannot write to standard output"
    );
    let copier = Copier {
        client: S3Client::from_env().await?,
        multipart_threshold,
        report: destination != Location::Stdio,
        interrupted: CancellationToken::new(),
    };
    let interrupted = copier.interrupted.clone();
    let listener = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            interrupted.cancel();
        }
    });
    let work = copier.run(source, destination, args.recursive);
    // After Ctrl-C the transfer under way gets a moment to clean up, no more.
    let give_up = async {
        copier.interrupted.cancelled().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    };
    let outcome = tokio::select! {
        outcome = work => outcome,
        () = give_up => Err(interrupted_error()),
    };
    listener.abort();
    outcome
}

impl Copier {
    async fn run(
        &self,
        source: Location,
        destination: Location,
        recursive: bool,
    ) -> anyhow::Result<()> {
        match (source, destination) {
            (Location::Local(path), Location::S3 { bucket, key }) if recursive => {
                self.upload_folder(&path, &bucket, &key).await
            }
            (Location::Local(path), Location::S3 { bucket, key }) => {
                let meta = std::fs::metadata(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                anyhow::ensure!(
                    !meta.is_dir(),
                    "{} is a folder; add --recursive to copy what is in it",
                    path.display()
                );
                let name = path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .with_context(|| format!("{} has no UTF-8 file name", path.display()))?;
                self.upload(&path, &bucket, &key_in(&key, name)).await
            }
            (Location::S3 { bucket, key }, Location::Local(path)) if recursive => {
                self.download_folder(&bucket, &key, &path).await
            }
            (Location::S3 { bucket, key }, Location::Local(path)) => {
                let name = base_name(&key).with_context(|| {
                    format!("s3://{bucket}/{key} names no object; write s3://{bucket}/KEY")
                })?;
                let into_folder = path.is_dir() || path.to_string_lossy().ends_with('/');
                let target = if into_folder { path.join(name) } else { path };
                self.download(&bucket, &key, &target).await
            }
            (Location::S3 { bucket, key }, Location::Stdio) => {
                anyhow::ensure!(
                    !key.is_empty(),
                    "s3://{bucket}/ names no object; write s3://{bucket}/KEY"
                );
                self.download_to_stdout(&bucket, &key).await
            }
            (
                Location::S3 { bucket, key },
                Location::S3 {
                    bucket: to_bucket,
                    key: to_key,
                },
            ) => {
                if recursive {
                    self.copy_folder(&bucket, &key, &to_bucket, &to_key).await
                } else {
                    let name = base_name(&key).with_context(|| {
                        format!("s3://{bucket}/{key} names no object; write s3://{bucket}/KEY")
                    })?;
                    self.copy(&bucket, &key, &to_bucket, &key_in(&to_key, name))
                        .await
                }
            }
            _ => anyhow::bail!("this combination of source and destination is not supported"),
        }
    }
}

impl Copier {
    async fn upload(&self, path: &Path, bucket: &str, key: &str) -> anyhow::Result<()> {
        let size = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        let bar = transfer_bar(size, &path.display().to_string());
        let result = if size > self.multipart_threshold {
            self.upload_multipart(path, size, bucket, key, &bar).await
        } else {
            let range = FileRange {
                path,
                offset: 0,
                length: size,
            };
            self.unless_interrupted(self.client.put_file_range(bucket, key, "", range, &bar))
                .await
                .map(drop)
        };
        bar.finish_and_clear();
        result?;
        if self.report {
            println!("upload: {} to s3://{bucket}/{key}", path.display());
        }
        Ok(())
    }

    /// Uploads in parts, several at once; on any failure (or Ctrl-C) the upload is
    /// aborted so no parts are left behind.
    async fn upload_multipart(
        &self,
        path: &Path,
        size: u64,
        bucket: &str,
        key: &str,
        bar: &ProgressBar,
    ) -> anyhow::Result<()> {
        let part_size = PART_SIZE.max(size.div_ceil(MAX_PARTS));
        let count = size.div_ceil(part_size).max(1);
        let upload_id = self.client.create_multipart(bucket, key).await?;
        let parts = async {
            let mut etags: Vec<(u64, String)> = futures::stream::iter(1..=count)
                .map(|number| {
                    let offset = (number - 1) * part_size;
                    let range = FileRange {
                        path,
                        offset,
                        length: part_size.min(size - offset),
                    };
                    self.upload_part(bucket, key, &upload_id, number, range, bar)
                })
                .buffer_unordered(PARTS_IN_FLIGHT)
                .try_collect()
                .await?;
            etags.sort_by_key(|(number, _)| *number);
            let etags: Vec<String> = etags.into_iter().map(|(_, etag)| etag).collect();
            self.client
                .complete_multipart(bucket, key, &upload_id, &etags)
                .await
        };
        let outcome = self.unless_interrupted(parts).await;
        let Err(error) = outcome else {
            return Ok(());
        };
        match self.client.abort_multipart(bucket, key, &upload_id).await {
            Ok(()) => Err(error.context(format!(
                "the upload of {} to s3://{bucket}/{key} failed and was aborted",
                path.display()
            ))),
            Err(abort_error) => Err(error.context(format!(
                "the upload of {} to s3://{bucket}/{key} failed, and aborting upload {upload_id} \
                 failed too ({abort_error}); its parts stay on the server until it is aborted \
                 (e.g. aws s3api abort-multipart-upload --upload-id {upload_id})",
                path.display()
            ))),
        }
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u64,
        range: FileRange<'_>,
        bar: &ProgressBar,
    ) -> anyhow::Result<(u64, String)> {
        let query = format!(
            "partNumber={number}&uploadId={}",
            crate::s3client::encode(upload_id, false)
        );
        let mut attempt = 1;
        loop {
            match self
                .client
                .put_file_range(bucket, key, &query, range, bar)
                .await
            {
                Ok(etag) => return Ok((number, etag)),
                Err(error) if attempt < PART_ATTEMPTS && is_retryable(&error) => {
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(error) => return Err(error.context(format!("part {number}"))),
            }
        }
    }

    async fn upload_folder(&self, folder: &Path, bucket: &str, key: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            folder.is_dir(),
            "{} is not a folder (--recursive copies a folder)",
            folder.display()
        );
        let prefix = folder_prefix(key);
        let files = tokio::task::spawn_blocking({
            let folder = folder.to_path_buf();
            move || files_below(&folder)
        })
        .await??;
        for (path, relative) in files {
            self.upload(&path, bucket, &format!("{prefix}{relative}"))
                .await?;
        }
        Ok(())
    }

    async fn download(&self, bucket: &str, key: &str, target: &Path) -> anyhow::Result<()> {
        let response = self.client.get_object(bucket, key).await?;
        let bar = transfer_bar(
            response.content_length().unwrap_or(0),
            &format!("s3://{bucket}/{key}"),
        );
        let name = target
            .file_name()
            .with_context(|| format!("{} is not a file path", target.display()))?;
        let partial = target.with_file_name(format!(".{}.wharf-partial", name.to_string_lossy()));
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .with_context(|| format!("cannot create the folder {}", parent.display()))?;
        }
        let written = async {
            let mut file = tokio::fs::File::create(&partial)
                .await
                .with_context(|| format!("cannot write {}", partial.display()))?;
            let mut body = response.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.with_context(|| {
                    format!("the download of s3://{bucket}/{key} was interrupted")
                })?;
                file.write_all(&chunk)
                    .await
                    .with_context(|| format!("cannot write {}", partial.display()))?;
                bar.inc(chunk.len() as u64);
            }
            file.flush().await?;
            drop(file);
            tokio::fs::rename(&partial, target)
                .await
                .with_context(|| format!("cannot write {}", target.display()))
        };
        let written = self.unless_interrupted(written).await;
        bar.finish_and_clear();
        if written.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        written?;
        if self.report {
            println!("download: s3://{bucket}/{key} to {}", target.display());
        }
        Ok(())
    }

    async fn download_to_stdout(&self, bucket: &str, key: &str) -> anyhow::Result<()> {
        self.unless_interrupted(self.stream_to_stdout(bucket, key))
            .await
    }

    async fn stream_to_stdout(&self, bucket: &str, key: &str) -> anyhow::Result<()> {
        let response = self.client.get_object(bucket, key).await?;
        let mut body = response.bytes_stream();
        let mut stdout = tokio::io::stdout();
        while let Some(chunk) = body.next().await {
            let chunk = chunk
                .with_context(|| format!("the download of s3://{bucket}/{key} was interrupted"))?;
            match stdout.write_all(&chunk).await {
                Ok(()) => {}
                // The reader stopped early (`| head`): not an error of ours.
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(error) => return Err(error).context("cannot write to standard output"),
            }
        }
        match stdout.flush().await {
            Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(error).context("cannot write to standard output")
            }
            _ => Ok(()),
        }
    }

    async fn download_folder(&self, bucket: &str, key: &str, folder: &Path) -> anyhow::Result<()> {
        let prefix = folder_prefix(key);
        let objects = self
            .unless_interrupted(self.client.list_all(bucket, &prefix))
            .await?;
        for object in objects {
            let relative = &object.key[prefix.len()..];
            if relative.ends_with('/') && object.size == 0 {
                continue; // a folder marker
            }
            let Some(target) = local_path_for(folder, relative) else {
                eprintln!(
                    "skipped s3://{bucket}/{}: its key is not a plain path under {}",
                    object.key,
                    folder.display()
                );
                continue;
            };
            self.download(bucket, &object.key, &target).await?;
        }
        Ok(())
    }

    async fn copy(
        &self,
        bucket: &str,
        key: &str,
        to_bucket: &str,
        to_key: &str,
    ) -> anyhow::Result<()> {
        self.unless_interrupted(self.client.copy_object(bucket, key, to_bucket, to_key))
            .await?;
        if self.report {
            println!("copy: s3://{bucket}/{key} to s3://{to_bucket}/{to_key}");
        }
        Ok(())
    }

    async fn copy_folder(
        &self,
        bucket: &str,
        key: &str,
        to_bucket: &str,
        to_key: &str,
    ) -> anyhow::Result<()> {
        let prefix = folder_prefix(key);
        let to_prefix = folder_prefix(to_key);
        for object in self
            .unless_interrupted(self.client.list_all(bucket, &prefix))
            .await?
        {
            let relative = &object.key[prefix.len()..];
            self.copy(
                bucket,
                &object.key,
                to_bucket,
                &format!("{to_prefix}{relative}"),
            )
            .await?;
        }
        Ok(())
    }
}

/// Files below a folder with their '/'-separated paths relative to it, sorted. Links to
/// files are followed; links to folders are not (they could loop).
fn files_below(root: &Path) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
            let path = entry.path();
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| anyhow::anyhow!("{} has no UTF-8 name", path.display()))?;
            let relative = format!("{prefix}{name}");
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                pending.push((path, format!("{relative}/")));
            } else if file_type.is_file() || std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                files.push((path, relative));
            } else {
                eprintln!("skipped {}: not a regular file", path.display());
            }
        }
    }
    files.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let check = |text: &str, expect: Location| {
            assert_eq!(parse_location(text).expect("parses"), expect, "{text}");
        };
        let s3 = |bucket: &str, key: &str| Location::S3 {
            bucket: bucket.into(),
            key: key.into(),
        };
        check("-", Location::Stdio);
        check("./a.csv", Location::Local("./a.csv".into()));
        check("s3://b", s3("b", ""));
        check("s3://b/", s3("b", ""));
        check("s3://b/dir/x y.csv", s3("b", "dir/x y.csv"));
        check("s3://b/../x", s3("b", "../x"));
        assert!(parse_location("s3://").is_err());
        assert!(parse_location("s3:///key").is_err());
        assert!(parse_location("").is_err());
    }

    #[test]
    fn destination_keys_and_names() {
        assert_eq!(key_in("", "a.csv"), "a.csv");
        assert_eq!(key_in("dir/", "a.csv"), "dir/a.csv");
        assert_eq!(key_in("named.csv", "a.csv"), "named.csv");
        assert_eq!(base_name("dir/a.csv"), Some("a.csv"));
        assert_eq!(base_name("a.csv"), Some("a.csv"));
        assert_eq!(base_name("dir/"), None);
        assert_eq!(base_name("x/.."), None);
        assert_eq!(folder_prefix("dir"), "dir/");
        assert_eq!(folder_prefix("dir/"), "dir/");
        assert_eq!(folder_prefix(""), "");
    }

    #[test]
    fn keys_never_escape_the_download_folder() {
        let root = Path::new("/dest");
        let check = |key: &str, expect: Option<&str>| {
            assert_eq!(
                local_path_for(root, key),
                expect.map(PathBuf::from),
                "{key}"
            );
        };
        check("a.csv", Some("/dest/a.csv"));
        check("dir/x y.csv", Some("/dest/dir/x y.csv"));
        check("../x", None);
        check("a/../../x", None);
        check("./x", None);
        check("a//b", None);
        check("/etc/passwd", None);
        check("", None);
    }
}
