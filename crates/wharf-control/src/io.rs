//! A run's data: before launch, the triggering event and object are staged and an S3 key
//! limited to the app's buckets is issued; after the run, outputs are uploaded (under
//! `failed/` when the run did not succeed) and, after success only, the input is archived.
//!
//! Both post-run steps are idempotent (an output already stored with the same MD5 is not
//! uploaded again; an input already archived is left alone), because a server that dies
//! after them but before recording the run's end does them again at restart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use wharf_model::manifest::{Manifest, Trigger as ManifestTrigger};
use wharf_model::run::RunState;
use wharf_objects::{ObjectError, PutOptions};
use wharf_store::RunOutcome;

use crate::dispatcher::archive_requester;
use crate::{Control, ControlError, ControlResult, Run};

/// Where the staged event is written, relative to the run's work folder.
const EVENT_FILE: &str = "event.json";

/// The object an `Object Created` event of Wharf's buckets names.
fn created_object(event: &serde_json::Value) -> Option<(String, String)> {
    if event.get("source")?.as_str()? != wharf_objects::events::SOURCE
        || event.get("detail-type")?.as_str()? != wharf_objects::events::OBJECT_CREATED
    {
        return None;
    }
    let bucket = event.pointer("/detail/bucket/name")?.as_str()?;
    let key = event.pointer("/detail/object/key")?.as_str()?;
    Some((bucket.to_owned(), key.to_owned()))
}

/// A file name for a staged key: its last segment, never empty, `.` or `..`.
fn staged_file_name(key: &str) -> String {
    let name = key.rsplit('/').next().unwrap_or_default();
    match name {
        "" | "." | ".." => "input".to_owned(),
        name => name.to_owned(),
    }
}

fn content_type_for(path: &Path) -> Option<String> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    let known = match extension.as_str() {
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "txt" | "log" => "text/plain",
        "json" => "application/json",
        "html" | "htm" => "text/html",
        "md" => "text/markdown",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "parquet" => "application/vnd.apache.parquet",
        _ => "application/octet-stream",
    };
    Some(known.to_owned())
}

/// Regular files under `dir`, with their keys (`/`-separated relative paths), sorted.
fn output_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let relative = path.strip_prefix(dir).unwrap_or(&path);
                let key: Vec<String> = relative
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy().into_owned())
                    .collect();
                found.push((path, key.join("/")));
            }
        }
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    found
}

fn file_md5(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Md5::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Appends a line from Wharf itself to a run's log.
fn log_line(run_dir: &Path, text: &str) {
    use std::io::Write;
    let line = serde_json::json!({
        "t": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "s": "wharf",
        "l": text,
    });
    let path = run_dir.join(wharf_runtime::LOG_FILE);
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
    {
        let _ = writeln!(file, "{line}");
    }
}

impl Control {
    /// Stages the event and its object and issues the run's S3 key; returns the
    /// environment variables that tell the workload about them.
    pub(crate) async fn prepare_run_io(
        &self,
        run: &Run,
        manifest: &Manifest,
        run_dir: &Path,
    ) -> ControlResult<Vec<(String, String)>> {
        let mut env = Vec::new();
        let mut buckets: BTreeSet<String> = manifest
            .job
            .triggers
            .iter()
            .filter_map(|trigger| match trigger {
                ManifestTrigger::ObjectCreated { bucket, .. } => Some(bucket.clone()),
                _ => None,
            })
            .collect();
        buckets.extend(manifest.job.io.output_bucket.clone());
        if let Some(event_id) = &run.event_id {
            let event = self.store().find_event(event_id).await?.ok_or_else(|| {
                ControlError::Invalid(format!(
                    "the event {event_id} that started this run is no longer stored (past event_retention)"
                ))
            })?;
            let json = event.to_json();
            let work = run_dir.join(wharf_runtime::WORK_DIR);
            let input_dir = work.join(wharf_runtime::INPUT_DIR);
            std::fs::create_dir_all(&input_dir)
                .map_err(|error| ControlError::io(&input_dir, error))?;
            let event_path = work.join(EVENT_FILE);
            let text = serde_json::to_vec_pretty(&json)
                .map_err(|error| ControlError::Internal(error.to_string()))?;
            std::fs::write(&event_path, text)
                .map_err(|error| ControlError::io(&event_path, error))?;
            env.push((
                "WHARF_EVENT".to_owned(),
                wharf_runtime::workload_work_path(self.sandbox(), run_dir, EVENT_FILE),
            ));
            if let Some((bucket, key)) = created_object(&json) {
                buckets.insert(bucket.clone());
                env.push(("WHARF_INPUT_BUCKET".to_owned(), bucket.clone()));
                env.push(("WHARF_INPUT_KEY".to_owned(), key.clone()));
                if manifest.job.io.stage_input {
                    let name = staged_file_name(&key);
                    let target = input_dir.join(&name);
                    match self.objects().download_to_file(&bucket, &key, &target).await {
                        Ok(_) => {}
                        Err(ObjectError::NoSuchKey { .. }) | Err(ObjectError::NoSuchBucket(_)) => {
                            return Err(ControlError::Invalid(format!(
                                "the input s3://{bucket}/{key} no longer exists (it was deleted or renamed before the run started)"
                            )))
                        }
                        Err(error) => return Err(error.into()),
                    }
                    env.push((
                        "WHARF_INPUT_FILE".to_owned(),
                        wharf_runtime::workload_work_path(
                            self.sandbox(),
                            run_dir,
                            &format!("{}/{name}", wharf_runtime::INPUT_DIR),
                        ),
                    ));
                }
            }
        }
        if let (false, Some(endpoint)) = (buckets.is_empty(), &self.config().s3_endpoint) {
            let buckets: Vec<String> = buckets.into_iter().collect();
            let key = self.objects().create_run_key(&run.id, &buckets).await?;
            env.push(("AWS_ENDPOINT_URL".to_owned(), endpoint.clone()));
            env.push(("AWS_ACCESS_KEY_ID".to_owned(), key.access_key));
            env.push(("AWS_SECRET_ACCESS_KEY".to_owned(), key.secret_key));
            env.push(("AWS_DEFAULT_REGION".to_owned(), "us-east-1".to_owned()));
            env.push(("AWS_REGION".to_owned(), "us-east-1".to_owned()));
            env.push(("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()));
        }
        Ok(env)
    }

    /// Uploads outputs and archives the input of a run that has ended; a failure turns a
    /// success into a failure that says what went wrong.
    pub(crate) async fn finish_run_io(&self, run: &Run, outcome: &mut RunOutcome) {
        let run_dir = self.run_dir(&run.id);
        if let Err(problem) = self.upload_outputs(run, outcome.state, &run_dir).await {
            log_line(&run_dir, &problem);
            if outcome.state == RunState::Succeeded {
                outcome.state = RunState::Failed;
                outcome.error = Some(problem);
            }
        }
        if outcome.state == RunState::Succeeded {
            if let Err(problem) = self.archive_input(run, &run_dir).await {
                log_line(&run_dir, &problem);
                outcome.state = RunState::Failed;
                outcome.error = Some(problem);
            }
        }
        if let Err(error) = self.objects().delete_run_keys(&run.id).await {
            tracing::warn!(run_id = %run.id, %error, "Could not delete a finished run's S3 key.");
        }
    }

    async fn upload_outputs(
        &self,
        run: &Run,
        state: RunState,
        run_dir: &Path,
    ) -> Result<(), String> {
        let manifest = self
            .manifest(&run.app_id, run.version)
            .await
            .map_err(|error| error.to_string())?;
        let Some(bucket) = manifest.job.io.output_bucket.clone() else {
            return Ok(());
        };
        let output_dir = run_dir
            .join(wharf_runtime::WORK_DIR)
            .join(wharf_runtime::OUTPUT_DIR);
        let prefix = if state == RunState::Succeeded {
            ""
        } else {
            "failed/"
        };
        for (path, relative) in output_files(&output_dir) {
            let key = format!("{prefix}{relative}");
            let md5 = file_md5(&path)
                .map_err(|error| format!("Could not read the output {relative}: {error}"))?;
            let existing = self
                .store()
                .find_object(&bucket, &key)
                .await
                .map_err(|error| error.to_string())?;
            if existing.is_some_and(|row| row.etag == md5) {
                continue;
            }
            let options = PutOptions {
                content_type: content_type_for(&path),
                requester: format!("run:{}", run.id),
                ..Default::default()
            };
            let row = self
                .objects()
                .upload_file(&bucket, &key, &path, options)
                .await
                .map_err(|error| {
                    format!(
                        "Uploading the output {relative} to s3://{bucket}/{key} failed: {error}"
                    )
                })?;
            log_line(
                run_dir,
                &format!(
                    "Uploaded output {relative} to s3://{bucket}/{key} ({} bytes).",
                    row.size
                ),
            );
        }
        Ok(())
    }

    async fn archive_input(&self, run: &Run, run_dir: &Path) -> Result<(), String> {
        let Some(event_id) = &run.event_id else {
            return Ok(());
        };
        let manifest = self
            .manifest(&run.app_id, run.version)
            .await
            .map_err(|error| error.to_string())?;
        let Some(template) = manifest.job.io.archive_input.clone() else {
            return Ok(());
        };
        let Some(event) = self
            .store()
            .find_event(event_id)
            .await
            .map_err(|error| error.to_string())?
        else {
            return Ok(());
        };
        let json = event.to_json();
        let Some((bucket, key)) = created_object(&json) else {
            return Ok(());
        };
        let event_etag = json
            .pointer("/detail/object/etag")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let now = chrono::Utc::now();
        let target = wharf_model::archive::render_archive_key(&template, &key, &run.id, now)
            .map_err(|problem| format!("Archiving the input failed: archive_input: {problem}"))?;
        let requester = archive_requester(&run.app_name);
        let store = self.store();
        let source = store
            .find_object(&bucket, &key)
            .await
            .map_err(|error| error.to_string())?;
        match source {
            // Already archived by an earlier attempt at this step, or removed by someone.
            None => return Ok(()),
            Some(source) if source.etag != event_etag => {
                log_line(
                    run_dir,
                    &format!("Not archiving s3://{bucket}/{key}: it was replaced by a newer upload after this run started."),
                );
                return Ok(());
            }
            Some(_) => {}
        }
        self.objects()
            .copy_object(&bucket, &key, &bucket, &target, None, &requester)
            .await
            .map_err(|error| format!("Archiving s3://{bucket}/{key} failed: {error}"))?;
        self.objects()
            .delete_object(&bucket, &key, &requester)
            .await
            .map_err(|error| format!("Archiving s3://{bucket}/{key} failed: {error}"))?;
        log_line(
            run_dir,
            &format!("Archived the input s3://{bucket}/{key} as s3://{bucket}/{target}."),
        );
        Ok(())
    }
}
