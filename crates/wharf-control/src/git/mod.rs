//! Git-backed apps: an app whose files come from a git repository, fetched again at each
//! run start. The fetch goes into a cached repository beside the app's versions
//! (`apps/APP/git`, shallow: only the ref's newest commit); a commit not seen before
//! becomes a new version through the same checks as an uploaded bundle (`git archive` of
//! the folder, unpacked safely, manifest validated); the run records the commit.
//!
//! git runs as a child process with an argument list (never a shell string), prompts
//! disabled, the user's and system's git configuration ignored, and only the network
//! protocols allowed (local paths and `file://` only when `git_allow_local` is set). A
//! token travels in an HTTP header set through the environment, a deploy key in a 0600
//! file that exists only while git runs; neither appears in an argument list or a log.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncReadExt;
use wharf_store::GitSource;

mod checks;

use crate::deploy::{DeployOutcome, UploadStream};
use crate::git::checks::{check_ref, check_url, normalise_subdir};
use crate::{Control, ControlError, ControlResult};

/// What `wharf deploy --git` asks for.
#[derive(Debug, Clone)]
pub struct GitDeploy {
    /// The app's name; None: the manifest's `name`, else the repository's name.
    pub app_name: Option<String>,
    pub url: String,
    /// A branch, tag or commit id; None: "main".
    pub git_ref: Option<String>,
    /// A folder inside the repository holding the app; None: the root.
    pub subdir: Option<String>,
    pub credential: GitCredential,
}

/// How to authenticate to the repository.
#[derive(Clone, Default)]
pub enum GitCredential {
    #[default]
    None,
    /// An HTTPS token, or `user:token`.
    Token(String),
    /// An SSH private key (OpenSSH format).
    SshKey(String),
}

impl std::fmt::Debug for GitCredential {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            GitCredential::None => "None",
            GitCredential::Token(_) => "Token(hidden)",
            GitCredential::SshKey(_) => "SshKey(hidden)",
        })
    }
}

impl GitCredential {
    fn kind(&self) -> &'static str {
        match self {
            GitCredential::None => "none",
            GitCredential::Token(_) => "token",
            GitCredential::SshKey(_) => "ssh_key",
        }
    }

    fn secret(&self) -> Option<&str> {
        match self {
            GitCredential::None => None,
            GitCredential::Token(secret) | GitCredential::SshKey(secret) => Some(secret),
        }
    }
}

/// The commit a fetch found and the version made from it (or reused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedSource {
    pub commit: String,
    pub version: i64,
    /// Whether this fetch made a new version.
    pub new_version: bool,
}

const DEFAULT_REF: &str = "main";
/// How much of git's error output a failure message quotes.
const STDERR_LINES: usize = 6;

impl Control {
    /// Creates (or re-points) a git-backed app: fetches the ref once, makes its first
    /// version from it and records where it comes from. Later runs fetch again.
    pub async fn deploy_git(&self, request: GitDeploy, user: &str) -> ControlResult<DeployOutcome> {
        check_url(&request.url, self.config().git_allow_local)?;
        let git_ref = request
            .git_ref
            .clone()
            .unwrap_or_else(|| DEFAULT_REF.into());
        check_ref(&git_ref)?;
        let subdir = normalise_subdir(request.subdir.as_deref().unwrap_or(""))?;
        if let GitCredential::Token(token) | GitCredential::SshKey(token) = &request.credential {
            if token.trim().is_empty() {
                return Err(ControlError::Invalid(
                    "the git credential is empty; pass a token or a deploy key".into(),
                ));
            }
        }
        let sealed = request
            .credential
            .secret()
            .map(|secret| self.objects().secrets().seal(secret));
        let now = wharf_store::now_millis();
        let mut source = GitSource {
            app_name: String::new(),
            url: request.url.clone(),
            git_ref,
            subdir,
            credential_kind: request.credential.kind().into(),
            credential_sealed: sealed,
            last_commit: None,
            last_version: None,
            last_fetch_at: None,
            last_error: None,
            created_at: now,
            updated_at: now,
        };
        // Fetch into a folder of its own first: the app's name may come from the files.
        let pending = self.config().data_dir.join("apps").join(format!(
            ".git-{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ));
        let fetched = self
            .fetch_commit(&source, &request.credential, &pending)
            .await;
        let outcome = async {
            let commit = fetched?;
            let app_name = match &request.app_name {
                Some(name) => name.clone(),
                None => self.name_from_repository(&source, &pending, &commit).await?,
            };
            wharf_model::name::validate_app_name(&app_name).map_err(ControlError::Invalid)?;
            if self.store().find_app(&app_name).await?.is_some()
                && self.store().find_git_source(&app_name).await?.is_none()
            {
                return Err(ControlError::Conflict(format!(
                    "the app \"{app_name}\" exists and is deployed from bundles; delete it first \
                     or pick another name with --name"
                )));
            }
            let deployed = self
                .deploy(&app_name, user, archive_stream(&pending, &commit, &source.subdir)?)
                .await?;
            let cache = self.git_cache_dir(&app_name);
            crate::remove_dir_if_exists(&cache).map_err(|e| ControlError::io(&cache, e))?;
            std::fs::rename(&pending, &cache).map_err(|e| ControlError::io(&cache, e))?;
            source.app_name = app_name.clone();
            source.last_commit = Some(commit);
            source.last_version = Some(deployed.version.number);
            source.last_fetch_at = Some(wharf_store::now_millis());
            self.store().upsert_git_source(&source).await?;
            self.remember_git_app(&app_name, true);
            tracing::info!(app = %app_name, url = %source.url, git_ref = %source.git_ref, "Deployed a git-backed app.");
            Ok(deployed)
        }
        .await;
        let _ = crate::remove_dir_if_exists(&pending);
        outcome
    }

    /// The git source of an app, if it has one.
    pub async fn git_source(&self, app_name: &str) -> ControlResult<Option<GitSource>> {
        Ok(self.store().find_git_source(app_name).await?)
    }

    /// Fetches a git-backed app's ref and makes a new version when the commit is new.
    /// On failure the app keeps its version; the error says what went wrong and which
    /// version stays, and is recorded as the source's `last_error`.
    pub(crate) async fn refresh_git_app(
        &self,
        source: &GitSource,
        user: &str,
    ) -> ControlResult<FetchedSource> {
        let lock = self.git_lock(&source.app_name).await;
        let _serialised = lock.lock().await;
        // Another run may have fetched while we waited.
        let source = self
            .store()
            .find_git_source(&source.app_name)
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("app {}", source.app_name)))?;
        match self.fetch_and_deploy(&source, user).await {
            Ok(fetched) => {
                self.store()
                    .record_git_fetch(
                        &source.app_name,
                        &fetched.commit,
                        fetched.version,
                        wharf_store::now_millis(),
                    )
                    .await?;
                if fetched.new_version {
                    tracing::info!(app = %source.app_name, commit = %short(&fetched.commit), version = fetched.version, "A run start fetched a new commit.");
                }
                Ok(fetched)
            }
            Err(error) => {
                let kept = match (&source.last_version, &source.last_commit) {
                    (Some(version), Some(commit)) => format!(
                        "; the app keeps version {version} (commit {})",
                        short(commit)
                    ),
                    _ => String::new(),
                };
                let message = format!("{error}{kept}");
                self.store()
                    .record_git_fetch_error(&source.app_name, &message, wharf_store::now_millis())
                    .await?;
                Err(ControlError::Invalid(message))
            }
        }
    }

    /// The fetch, and the deploy of a commit not seen before.
    async fn fetch_and_deploy(
        &self,
        source: &GitSource,
        user: &str,
    ) -> ControlResult<FetchedSource> {
        let credential = self.open_credential(source)?;
        let cache = self.git_cache_dir(&source.app_name);
        let commit = self.fetch_commit(source, &credential, &cache).await?;
        let active = self.store().app(&source.app_name).await?.active_version;
        if let (Some(last), Some(version)) = (&source.last_commit, source.last_version) {
            if *last == commit && active == Some(version) {
                return Ok(FetchedSource {
                    commit,
                    version,
                    new_version: false,
                });
            }
        }
        let deployed = self
            .deploy(
                &source.app_name,
                user,
                archive_stream(&cache, &commit, &source.subdir)?,
            )
            .await
            .map_err(|error| {
                ControlError::Invalid(format!(
                    "commit {} of {} ({}) cannot be deployed: {error}",
                    short(&commit),
                    source.url,
                    source.git_ref
                ))
            })?;
        Ok(FetchedSource {
            commit,
            version: deployed.version.number,
            new_version: true,
        })
    }

    /// Whether runs of `app_name` fetch their files first.
    pub(crate) fn is_git_app(&self, app_name: &str) -> bool {
        self.inner
            .git_apps
            .lock()
            .is_ok_and(|apps| apps.contains(app_name))
    }

    pub(crate) fn remember_git_app(&self, app_name: &str, git_backed: bool) {
        if let Ok(mut apps) = self.inner.git_apps.lock() {
            if git_backed {
                apps.insert(app_name.to_owned());
            } else {
                apps.remove(app_name);
            }
        }
    }

    /// Fetches a git-backed run's files, points the run at the version they became, then
    /// launches it; a failed fetch fails the run with the reason.
    pub(crate) async fn launch_git_run(&self, mut run: wharf_store::Run) {
        let fetched = match self.store().find_git_source(&run.app_name).await {
            Ok(Some(source)) => self.refresh_git_app(&source, "git").await,
            Ok(None) => Err(ControlError::Internal(format!(
                "{} is no longer a git-backed app",
                run.app_name
            ))),
            Err(error) => Err(error.into()),
        };
        let launched = async {
            let fetched = fetched?;
            self.store()
                .set_run_source(&run.id, fetched.version, &fetched.commit)
                .await?;
            run.version = fetched.version;
            run.source_commit = Some(fetched.commit);
            let manifest = self.manifest(&run.app_id, run.version).await?;
            self.launch_run(&run, &manifest).await
        }
        .await;
        if let Err(error) = launched {
            tracing::warn!(run_id = %run.id, app = %run.app_name, %error, "A git-backed run could not start.");
            if let Err(error) = self
                .fail_unstartable(&run, &format!("Wharf could not start the run: {error}"))
                .await
            {
                tracing::error!(run_id = %run.id, %error, "Could not record a run that failed to start.");
            }
        }
    }

    fn git_cache_dir(&self, app_name: &str) -> PathBuf {
        self.app_dir(app_name).join("git")
    }

    fn open_credential(&self, source: &GitSource) -> ControlResult<GitCredential> {
        let Some(sealed) = &source.credential_sealed else {
            return Ok(GitCredential::None);
        };
        let secret = self.objects().secrets().open(sealed).map_err(|error| {
            ControlError::Internal(format!(
                "the git credential of {} cannot be read with this server's key: {error}",
                source.app_name
            ))
        })?;
        Ok(match source.credential_kind.as_str() {
            "ssh_key" => GitCredential::SshKey(secret),
            _ => GitCredential::Token(secret),
        })
    }

    async fn git_lock(&self, app_name: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        self.deploy_lock(&format!("git:{app_name}")).await
    }

    /// Fetches `source`'s ref into the repository at `repository` (made when missing) and
    /// returns the commit id.
    async fn fetch_commit(
        &self,
        source: &GitSource,
        credential: &GitCredential,
        repository: &Path,
    ) -> ControlResult<String> {
        if !repository.join("HEAD").exists() {
            std::fs::create_dir_all(repository).map_err(|e| ControlError::io(repository, e))?;
            self.git(repository, credential, &["init", "--quiet", "--bare"])
                .await
                .map_err(|error| ControlError::Internal(format!("git init failed: {error}")))?;
        }
        self.git(
            repository,
            credential,
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--depth",
                "1",
                "--end-of-options",
                &source.url,
                &source.git_ref,
            ],
        )
        .await
        .map_err(|error| {
            ControlError::Invalid(format!(
                "could not fetch {} from {}: {error}",
                source.git_ref, source.url
            ))
        })?;
        let commit = self
            .git(
                repository,
                credential,
                &[
                    "rev-parse",
                    "--verify",
                    "--end-of-options",
                    "FETCH_HEAD^{commit}",
                ],
            )
            .await
            .map_err(|error| {
                ControlError::Invalid(format!(
                    "{} of {} is not a commit: {error}",
                    source.git_ref, source.url
                ))
            })?;
        let commit = commit.trim().to_owned();
        if !source.subdir.is_empty() {
            let tree = format!("{commit}:{}", source.subdir);
            self.git(
                repository,
                credential,
                &["cat-file", "-e", "--end-of-options", &tree],
            )
            .await
            .map_err(|_| {
                ControlError::Invalid(format!(
                    "the folder \"{}\" does not exist at commit {} of {} ({})",
                    source.subdir,
                    short(&commit),
                    source.url,
                    source.git_ref
                ))
            })?;
        }
        Ok(commit)
    }

    /// The app name a repository gives: its manifest's `name`, else the repository's
    /// name (the URL's last part without `.git`).
    async fn name_from_repository(
        &self,
        source: &GitSource,
        repository: &Path,
        commit: &str,
    ) -> ControlResult<String> {
        let manifest_path = if source.subdir.is_empty() {
            format!("{commit}:{}", wharf_model::manifest::MANIFEST_FILE)
        } else {
            format!(
                "{commit}:{}/{}",
                source.subdir,
                wharf_model::manifest::MANIFEST_FILE
            )
        };
        let text = self
            .git(
                repository,
                &GitCredential::None,
                &["show", "--end-of-options", &manifest_path],
            )
            .await
            .ok();
        let declared = text.and_then(|text| {
            let table: toml::Table = text.parse().ok()?;
            table.get("name")?.as_str().map(str::to_owned)
        });
        if let Some(name) = declared {
            return Ok(name);
        }
        let from_folder = if source.subdir.is_empty() {
            source.url.trim_end_matches('/').rsplit(['/', ':']).next()
        } else {
            source.subdir.rsplit('/').next()
        }
        .unwrap_or_default()
        .trim_end_matches(".git")
        .to_owned();
        wharf_model::name::app_name_from_folder(&from_folder).ok_or_else(|| {
            ControlError::Invalid(format!(
                "cannot tell the app's name from {}; pass --name",
                source.url
            ))
        })
    }

    /// Runs git in `repository` and returns its standard output; an error carries the
    /// last lines of its standard error.
    async fn git(
        &self,
        repository: &Path,
        credential: &GitCredential,
        args: &[&str],
    ) -> Result<String, String> {
        let mut command = tokio::process::Command::new("git");
        command
            .arg("-C")
            .arg(repository)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", repository)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "/bin/false")
            .env("SSH_ASKPASS", "/bin/false")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_ALLOW_PROTOCOL", self.allowed_protocols())
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let key_file = match credential {
            GitCredential::None => None,
            GitCredential::Token(token) => {
                let (user, secret) = token
                    .split_once(':')
                    .unwrap_or(("x-access-token", token.as_str()));
                use base64::Engine;
                let basic =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
                command
                    .env("GIT_CONFIG_COUNT", "1")
                    .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                    .env(
                        "GIT_CONFIG_VALUE_0",
                        format!("Authorization: Basic {basic}"),
                    );
                None
            }
            GitCredential::SshKey(key) => {
                let key_file = write_private_file(repository, key)
                    .map_err(|error| format!("could not write the deploy key for git: {error}"))?;
                let known_hosts = repository.join("known_hosts");
                command.env(
                    "GIT_SSH_COMMAND",
                    format!(
                        "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes \
                         -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={}",
                        shell_quote(&key_file.0),
                        shell_quote(&known_hosts)
                    ),
                );
                Some(key_file)
            }
        };
        let mut child = command
            .spawn()
            .map_err(|error| format!("cannot run git ({error}); install git"))?;
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let timeout = self.config().git_timeout;
        let collected = tokio::time::timeout(timeout, async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let read_out = async {
                if let Some(stdout) = stdout.as_mut() {
                    let _ = stdout.read_to_end(&mut out).await;
                }
            };
            let read_err = async {
                if let Some(stderr) = stderr.as_mut() {
                    let _ = stderr.read_to_end(&mut err).await;
                }
            };
            tokio::join!(read_out, read_err);
            let status = child.wait().await;
            (status, out, err)
        })
        .await;
        drop(key_file);
        let (status, out, err) = collected.map_err(|_| {
            format!(
                "git took longer than {} (git_timeout) and was stopped",
                wharf_model::duration::format_duration(timeout)
            )
        })?;
        let status = status.map_err(|error| format!("git failed: {error}"))?;
        if status.success() {
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        let text = String::from_utf8_lossy(&err);
        let lines: Vec<&str> = text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect();
        let tail = lines[lines.len().saturating_sub(STDERR_LINES)..].join(" / ");
        Err(if tail.is_empty() {
            format!("git exited with {status}")
        } else {
            tail
        })
    }

    fn allowed_protocols(&self) -> &'static str {
        if self.config().git_allow_local {
            "https:http:ssh:git:file"
        } else {
            "https:http:ssh:git"
        }
    }
}

/// `git archive` of `commit` (or of one folder in it) as a tar.gz stream for `deploy`.
fn archive_stream(repository: &Path, commit: &str, subdir: &str) -> ControlResult<UploadStream> {
    let tree = if subdir.is_empty() {
        commit.to_owned()
    } else {
        format!("{commit}:{subdir}")
    };
    let mut child = tokio::process::Command::new("git")
        .arg("-C")
        .arg(repository)
        .args(["archive", "--format=tar.gz", "--end-of-options", &tree])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", repository)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| ControlError::Internal(format!("cannot run git archive: {error}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| ControlError::Internal("git archive has no output".into()))?;
    // The stream owns the child, so it is reaped (or killed) when the upload ends.
    let stream = futures::stream::unfold(
        (stdout, Some(child)),
        |(mut reader, mut child)| async move {
            let mut buffer = vec![0u8; 64 * 1024];
            match reader.read(&mut buffer).await {
                Ok(0) => {
                    let status = match child.take() {
                        Some(mut child) => child.wait().await.ok(),
                        None => return None,
                    };
                    match status {
                        Some(status) if !status.success() => Some((
                            Err(std::io::Error::other(format!(
                                "git archive exited with {status}"
                            ))),
                            (reader, None),
                        )),
                        _ => None,
                    }
                }
                Ok(read) => {
                    buffer.truncate(read);
                    Some((Ok(bytes::Bytes::from(buffer)), (reader, child)))
                }
                Err(error) => Some((Err(error), (reader, None))),
            }
        },
    );
    Ok(Box::pin(stream))
}

/// A file readable only by us, removed when dropped.
struct PrivateFile(PathBuf);

impl Drop for PrivateFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_private_file(folder: &Path, contents: &str) -> std::io::Result<PrivateFile> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = folder.join(format!(
        ".deploy-key-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    let guard = PrivateFile(path);
    file.write_all(contents.as_bytes())?;
    if !contents.ends_with('\n') {
        file.write_all(b"\n")?;
    }
    Ok(guard)
}

/// Single-quotes a path for the one shell command git runs for SSH (paths are ours).
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}
