//! Named secrets: set, listed (names only) and deleted through the API, sealed with the
//! server's key in the store, and handed to workloads still sealed (the shim opens them
//! just before the workload starts; see `wharf_runtime::SealedEnv`).

use std::collections::BTreeMap;

use wharf_model::manifest::{EnvValue, Manifest, MANIFEST_FILE};
use wharf_runtime::SealedEnv;
use wharf_store::SecretInfo;

use crate::{Control, ControlError, ControlResult};

/// Longest secret value accepted (an environment variable, not a file).
pub const MAX_SECRET_SIZE: usize = 64 * 1024;
const MAX_NAME_LEN: usize = 128;

/// Why `name` cannot name a secret, if it cannot.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "a secret name has 1 to {MAX_NAME_LEN} characters; {name:?} has {}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "the secret name {name:?} contains {bad:?}; use letters, digits, '_', '-' and '.'"
        ));
    }
    Ok(())
}

/// The secrets `manifest` refers to, as (variable, secret name).
fn referenced(manifest: &Manifest) -> Vec<(&str, &str)> {
    manifest
        .env
        .iter()
        .filter_map(|(variable, value)| match value {
            EnvValue::Secret { secret } => Some((variable.as_str(), secret.as_str())),
            EnvValue::Plain(_) => None,
        })
        .collect()
}

/// Whether `manifest` gives some variable the value of secret `name`.
pub(crate) fn names_secret(manifest: &Manifest, name: &str) -> bool {
    referenced(manifest)
        .iter()
        .any(|(_, secret)| *secret == name)
}

impl Control {
    /// Creates or replaces a secret; true when it was created. Services that name it
    /// roll their replicas over to the new value.
    pub async fn set_secret(&self, name: &str, value: &str, by: &str) -> ControlResult<bool> {
        check_secret_name(name).map_err(ControlError::Invalid)?;
        if value.len() > MAX_SECRET_SIZE {
            return Err(ControlError::TooLarge(format!(
                "a secret's value may have at most {MAX_SECRET_SIZE} bytes; this one has {}",
                value.len()
            )));
        }
        if value.contains('\0') {
            return Err(ControlError::Invalid(
                "a secret's value becomes an environment variable and cannot contain a NUL byte"
                    .into(),
            ));
        }
        let sealed = self.objects().secrets().seal(value);
        let created = self
            .store()
            .put_secret(name, &sealed, by, wharf_store::now_millis())
            .await?;
        tracing::info!(secret = %name, by = %by, created, "A secret was set.");
        self.secret_changed(name);
        Ok(created)
    }

    /// Every secret, each with the apps whose active version names it.
    pub async fn list_secrets(&self) -> ControlResult<Vec<(SecretInfo, Vec<String>)>> {
        let mut users = self.secret_users().await?;
        let secrets = self.store().list_secrets().await?;
        Ok(secrets
            .into_iter()
            .map(|secret| {
                let apps = users.remove(&secret.name).unwrap_or_default();
                (secret, apps)
            })
            .collect())
    }

    /// Deletes a secret. One that an app's active version names is kept (409, naming the
    /// apps) unless `force`: those apps would fail to start.
    pub async fn delete_secret(&self, name: &str, by: &str, force: bool) -> ControlResult<()> {
        if !force {
            if let Some(apps) = self.secret_users().await?.remove(name) {
                return Err(ControlError::Conflict(format!(
                    "secret {name:?} is used by {}; their runs and replicas would fail to \
                     start without it. Remove it from their manifests first, or delete it \
                     anyway with --force",
                    apps.join(", ")
                )));
            }
        }
        if !self.store().delete_secret(name).await? {
            return Err(ControlError::NotFound(format!(
                "there is no secret named {name:?}; `wharf secret list` lists them"
            )));
        }
        tracing::info!(secret = %name, by = %by, "A secret was deleted.");
        Ok(())
    }

    /// Secret name → the apps whose active version names it (sorted).
    async fn secret_users(&self) -> ControlResult<BTreeMap<String, Vec<String>>> {
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for app in self.store().list_apps().await? {
            let Some(version) = app.active_version else {
                continue;
            };
            let manifest = self.manifest(&app.id, version).await?;
            for (_, secret) in referenced(&manifest) {
                let apps = users.entry(secret.to_owned()).or_default();
                if !apps.contains(&app.name) {
                    apps.push(app.name.clone());
                }
            }
        }
        for apps in users.values_mut() {
            apps.sort();
        }
        Ok(users)
    }

    /// At deploy: every secret the manifest names must exist.
    pub(crate) async fn check_secrets_exist(&self, manifest: &Manifest) -> ControlResult<()> {
        for (variable, name) in referenced(manifest) {
            check_secret_name(name).map_err(|error| {
                ControlError::InvalidBundle(format!("{MANIFEST_FILE}: env.{variable}: {error}"))
            })?;
        }
        self.sealed_env(manifest)
            .await
            .map(|_| ())
            .map_err(|error| match error {
                ControlError::NotFound(message) => ControlError::InvalidBundle(message),
                other => other,
            })
    }

    /// The manifest's secret variables, sealed, for a launch; NotFound names a missing one.
    pub(crate) async fn sealed_env(&self, manifest: &Manifest) -> ControlResult<Option<SealedEnv>> {
        let wanted = referenced(manifest);
        if wanted.is_empty() {
            return Ok(None);
        }
        let names: Vec<String> = wanted.iter().map(|(_, name)| name.to_string()).collect();
        let found = self.store().sealed_secrets(&names).await?;
        let mut env = Vec::with_capacity(wanted.len());
        for (variable, name) in wanted {
            let Some((_, sealed)) = found.iter().find(|(found, _)| found == name) else {
                return Err(ControlError::NotFound(format!(
                    "{MANIFEST_FILE}: env.{variable} refers to secret \"{name}\", which does not \
                     exist; create it with `wharf secret set {name}`"
                )));
            };
            env.push((variable.to_owned(), sealed.clone()));
        }
        Ok(Some(SealedEnv {
            key_file: self.secret_key_file(),
            env,
        }))
    }

    /// The value of one secret (notification channels), or why there is none.
    pub(crate) async fn open_secret(&self, name: &str) -> Result<String, String> {
        let found = self
            .store()
            .sealed_secrets(&[name.to_owned()])
            .await
            .map_err(|error| format!("could not read the secret {name:?}: {error}"))?;
        let Some((_, sealed)) = found.into_iter().next() else {
            return Err(format!(
                "the secret {name:?} does not exist; create it with `wharf secret set {name}`"
            ));
        };
        self.objects()
            .secrets()
            .open(&sealed)
            .map_err(|error| format!("the secret {name:?} could not be opened: {error}"))
    }

    /// `DATA/secret.key`, which the server creates at its first start.
    pub(crate) fn secret_key_file(&self) -> std::path::PathBuf {
        self.config().data_dir.join("secret.key")
    }
}
