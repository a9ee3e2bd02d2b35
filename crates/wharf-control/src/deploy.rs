//! Deploys: receive a bundle, unpack it safely beside the app's versions, validate its
//! manifest, and only then make it the active version. A rejected bundle leaves nothing
//! behind and the active version untouched.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use wharf_model::manifest::{Manifest, MANIFEST_FILE};
use wharf_store::NewVersion;

use crate::{remove_dir_if_exists, App, AppVersion, Control, ControlError, ControlResult};

/// A bundle upload as it arrives from the network.
pub type UploadStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// What a successful deploy produced.
#[derive(Debug, Clone)]
pub struct DeployOutcome {
    /// Buckets the manifest names that this deploy created.
    pub created_buckets: Vec<String>,
    pub app: App,
    pub version: AppVersion,
    pub manifest: Manifest,
    pub files: u64,
    pub unpacked_bytes: u64,
}

struct ReceivedBundle {
    path: PathBuf,
    size: u64,
    sha256: String,
}

impl Control {
    /// Deploys a bundle (tar.gz) as the next version of `app_name`, creating the app on
    /// its first deploy.
    pub async fn deploy(
        &self,
        app_name: &str,
        user: &str,
        upload: UploadStream,
    ) -> ControlResult<DeployOutcome> {
        wharf_model::name::validate_app_name(app_name).map_err(ControlError::Invalid)?;
        let lock = self.deploy_lock(app_name).await;
        let _serialised = lock.lock().await;

        let uploads = self.app_dir(app_name).join("uploads");
        std::fs::create_dir_all(&uploads).map_err(|e| ControlError::io(&uploads, e))?;
        let staging = uploads.join(format!("upload-{}", ulid::Ulid::new()));
        let result = self.deploy_staged(app_name, user, upload, &staging).await;
        // The staging folder holds the upload and, on failure, a partial unpack.
        let _ = std::fs::remove_file(staging.with_extension("tar.gz"));
        let _ = remove_dir_if_exists(&staging);
        if result.is_err() {
            // An app created by nothing but a failed first deploy leaves no folder.
            let app_dir = self.app_dir(app_name);
            if self.store().find_app(app_name).await?.is_none() {
                let _ = remove_dir_if_exists(&app_dir);
            }
        }
        result
    }

    async fn deploy_staged(
        &self,
        app_name: &str,
        user: &str,
        upload: UploadStream,
        staging: &Path,
    ) -> ControlResult<DeployOutcome> {
        let bundle = self
            .receive_bundle(upload, &staging.with_extension("tar.gz"))
            .await?;
        std::fs::create_dir(staging).map_err(|e| ControlError::io(staging, e))?;

        let limits = wharf_bundle::UnpackLimits {
            max_unpacked_bytes: self.config().max_unpacked_size,
            ..Default::default()
        };
        let (archive, dest) = (bundle.path.clone(), staging.to_path_buf());
        let unpacked = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&archive).map_err(|e| ControlError::io(&archive, e))?;
            wharf_bundle::unpack(std::io::BufReader::new(file), &dest, &limits)
                .map_err(|error| ControlError::InvalidBundle(format!("bundle rejected: {error}")))
        })
        .await
        .map_err(|error| ControlError::Internal(format!("unpack task failed: {error}")))??;

        let manifest = read_manifest(staging, &unpacked.files)?;
        if let Some(declared) = &manifest.name {
            if declared != app_name {
                return Err(ControlError::InvalidBundle(format!(
                    "{MANIFEST_FILE}: name \"{declared}\" does not match the app being deployed \
                     (\"{app_name}\"); deploy it as \"{declared}\" or change name in {MANIFEST_FILE}"
                )));
            }
        }
        self.check_secrets_exist(&manifest).await?;
        self.check_notify_channels(&manifest)?;

        let number = self.store().next_version_number(app_name).await?;
        let version_dir = self.version_dir(app_name, number);
        // A folder left by a crash between rename and commit belongs to no version.
        remove_dir_if_exists(&version_dir).map_err(|e| ControlError::io(&version_dir, e))?;
        if let Some(parent) = version_dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ControlError::io(parent, e))?;
        }
        std::fs::rename(staging, &version_dir).map_err(|e| ControlError::io(&version_dir, e))?;

        let manifest_json = serde_json::to_string(&manifest)
            .map_err(|error| ControlError::Internal(format!("manifest to JSON: {error}")))?;
        let recorded = self
            .store()
            .insert_version(&NewVersion {
                app_name: app_name.to_owned(),
                new_app_id: ulid::Ulid::new().to_string().to_lowercase(),
                kind: manifest.kind.as_str().to_owned(),
                manifest: manifest_json,
                bundle_sha256: bundle.sha256,
                bundle_size: bundle.size as i64,
                file_count: unpacked.files.len() as i64,
                created_by: user.to_owned(),
            })
            .await;
        let (app, version) = match recorded {
            Ok(recorded) => recorded,
            Err(error) => {
                let _ = remove_dir_if_exists(&version_dir);
                return Err(error.into());
            }
        };
        debug_assert_eq!(version.number, number);
        self.wake_scheduler();
        self.service_changed(&app.name).await;
        let created_buckets = self.create_named_buckets(&manifest, user).await;
        tracing::info!(
            app = app_name,
            version = number,
            files = unpacked.files.len(),
            "Deployed a new version."
        );
        Ok(DeployOutcome {
            app,
            version,
            manifest,
            files: unpacked.files.len() as u64,
            unpacked_bytes: unpacked.bytes,
            created_buckets,
        })
    }

    /// Creates the buckets a job's manifest names (trigger and output buckets) that do
    /// not exist yet, so a deploy is all a pipeline needs. Returns the ones created.
    async fn create_named_buckets(
        &self,
        manifest: &wharf_model::manifest::Manifest,
        user: &str,
    ) -> Vec<String> {
        let mut names: Vec<String> = manifest
            .job
            .triggers
            .iter()
            .filter_map(|trigger| match trigger {
                wharf_model::manifest::Trigger::ObjectCreated { bucket, .. } => {
                    Some(bucket.clone())
                }
                _ => None,
            })
            .collect();
        names.extend(manifest.job.io.output_bucket.clone());
        names.sort();
        names.dedup();
        let mut created = Vec::new();
        for name in names {
            match self.objects().create_bucket(&name, user).await {
                Ok(_) => created.push(name),
                Err(wharf_objects::ObjectError::BucketExists(_)) => {}
                Err(error) => {
                    tracing::warn!(bucket = %name, %error, "Could not create a bucket the manifest names.")
                }
            }
        }
        created
    }

    /// Streams the upload to `path`, hashing it and enforcing the size limit.
    async fn receive_bundle(
        &self,
        mut upload: UploadStream,
        path: &Path,
    ) -> ControlResult<ReceivedBundle> {
        let limit = self.config().max_bundle_size;
        let mut file = std::fs::File::create(path).map_err(|e| ControlError::io(path, e))?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = upload.next().await {
            let chunk = chunk.map_err(|error| {
                ControlError::Invalid(format!("the bundle upload was interrupted: {error}"))
            })?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(ControlError::TooLarge(format!(
                    "the bundle is larger than the server's limit of {}; \
                     leave large data out of it (.wharfignore) or raise max_bundle_size",
                    wharf_model::duration::format_size(limit)
                )));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .map_err(|e| ControlError::io(path, e))?;
        }
        if size == 0 {
            return Err(ControlError::InvalidBundle(
                "the bundle is empty; upload a tar.gz of the app folder (wharf deploy DIR)".into(),
            ));
        }
        file.sync_all().map_err(|e| ControlError::io(path, e))?;
        Ok(ReceivedBundle {
            path: path.to_path_buf(),
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// Activates an older (or newer) version.
    pub async fn rollback(&self, app_name: &str, version: i64) -> ControlResult<App> {
        let app = self.store().app(app_name).await?;
        let app = self.store().activate_version(&app, version).await?;
        self.wake_scheduler();
        self.service_changed(&app.name).await;
        Ok(app)
    }

    /// Deletes an app: cancels its runs, then removes its records and files.
    pub async fn delete_app(&self, app_name: &str) -> ControlResult<()> {
        let app = self.store().app(app_name).await?;
        let lock = self.deploy_lock(app_name).await;
        let _serialised = lock.lock().await;
        let runs = self.store().list_runs(Some(&app.id), i64::MAX).await?;
        for run in &runs {
            if !run.state.is_terminal() {
                self.cancel_run(&run.id).await?;
            }
        }
        for run in &runs {
            if run.state.is_active() {
                // Wait for the supervisor to record the end before the files go.
                let _ = wharf_runtime::wait_for_exit(&self.run_dir(&run.id)).await;
            }
        }
        self.stop_service(app_name).await;
        for replica_id in self.store().delete_app_replicas(app_name).await? {
            let dir = self.replica_dir(&replica_id);
            remove_dir_if_exists(&dir).map_err(|e| ControlError::io(&dir, e))?;
        }
        self.store().delete_app(&app).await?;
        self.store().delete_git_source(app_name).await?;
        self.remember_git_app(app_name, false);
        self.wake_scheduler();
        for run in &runs {
            let dir = self.run_dir(&run.id);
            remove_dir_if_exists(&dir).map_err(|e| ControlError::io(&dir, e))?;
        }
        let dir = self.app_dir(app_name);
        remove_dir_if_exists(&dir).map_err(|e| ControlError::io(&dir, e))?;
        tracing::info!(app = app_name, "Deleted app.");
        Ok(())
    }

    pub(crate) async fn deploy_lock(&self, app_name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.inner.deploy_locks.lock().await;
        locks.entry(app_name.to_owned()).or_default().clone()
    }
}

fn read_manifest(dir: &Path, files: &[String]) -> ControlResult<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    if path.symlink_metadata().is_ok_and(|meta| !meta.is_file()) {
        return Err(ControlError::InvalidBundle(format!(
            "{MANIFEST_FILE} in the bundle is not a regular file; it must be the app's manifest"
        )));
    }
    let text = match std::fs::read(&path) {
        Ok(bytes) => Some(String::from_utf8(bytes).map_err(|_| {
            ControlError::InvalidBundle(format!("{MANIFEST_FILE} is not valid UTF-8 text"))
        })?),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(ControlError::io(&path, error)),
    };
    wharf_model::manifest::load_manifest(MANIFEST_FILE, text.as_deref(), files)
        .map_err(|errors| ControlError::InvalidBundle(errors.to_string()))
}
