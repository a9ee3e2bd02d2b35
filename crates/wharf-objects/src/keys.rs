//! S3 access keys: created for users (`wharf s3 keys create`) and for runs (limited to
//! the buckets the app's manifest names, deleted when the run ends). Secrets are sealed
//! with the server's key before they reach the store and shown once.

use wharf_store::S3Key;

use crate::error::{ObjectError, ObjectResult};
use crate::service::Objects;

const ACCESS_KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A key with its secret in the clear: returned once, at creation.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub access_key: String,
    pub secret_key: String,
    pub key: S3Key,
}

/// A key as the S3 listener needs it to check a request.
#[derive(Debug, Clone)]
pub struct KeyGrant {
    pub secret_key: String,
    pub user_id: Option<String>,
    pub run_id: Option<String>,
    /// None: every bucket.
    pub buckets: Option<Vec<String>>,
}

impl KeyGrant {
    pub fn allows_bucket(&self, bucket: &str) -> bool {
        self.buckets
            .as_ref()
            .is_none_or(|buckets| buckets.iter().any(|allowed| allowed == bucket))
    }
}

impl Objects {
    async fn issue_key(
        &self,
        prefix: &str,
        user_id: Option<&str>,
        run_id: Option<&str>,
        buckets: Option<&[String]>,
        description: &str,
    ) -> ObjectResult<IssuedKey> {
        let access_key = format!(
            "{prefix}{}",
            wharf_auth::random_token(ACCESS_KEY_ALPHABET, 20 - prefix.len())
        );
        let secret_key = wharf_auth::random_token(SECRET_ALPHABET, 40);
        let key = S3Key {
            access_key: access_key.clone(),
            secret_sealed: self.inner.secrets.seal(&secret_key),
            user_id: user_id.map(str::to_owned),
            run_id: run_id.map(str::to_owned),
            buckets: buckets
                .map(|list| serde_json::to_string(list).unwrap_or_else(|_| "[]".into())),
            description: description.to_owned(),
            created_at: wharf_store::now_millis(),
            revoked_at: None,
        };
        self.store().insert_s3_key(&key).await?;
        Ok(IssuedKey {
            access_key,
            secret_key,
            key,
        })
    }

    /// A key of `user_id` for every bucket.
    pub async fn create_user_key(
        &self,
        user_id: &str,
        description: &str,
    ) -> ObjectResult<IssuedKey> {
        self.issue_key("WK", Some(user_id), None, None, description)
            .await
    }

    /// A key for one run, limited to `buckets`.
    pub async fn create_run_key(
        &self,
        run_id: &str,
        buckets: &[String],
    ) -> ObjectResult<IssuedKey> {
        self.issue_key(
            "WR",
            None,
            Some(run_id),
            Some(buckets),
            &format!("run {run_id}"),
        )
        .await
    }

    pub async fn delete_run_keys(&self, run_id: &str) -> ObjectResult<()> {
        Ok(self.store().delete_run_s3_keys(run_id).await?)
    }

    pub async fn list_user_keys(&self, user_id: Option<&str>) -> ObjectResult<Vec<S3Key>> {
        Ok(self.store().list_s3_keys(user_id).await?)
    }

    pub async fn revoke_key(&self, access_key: &str) -> ObjectResult<()> {
        self.store()
            .revoke_s3_key(access_key, wharf_store::now_millis())
            .await
            .map_err(|error| match error {
                wharf_store::StoreError::NotFound(message) => ObjectError::InvalidArgument(message),
                other => other.into(),
            })
    }

    /// The active key `access_key` with its secret opened; None if unknown or revoked.
    pub async fn key_grant(&self, access_key: &str) -> ObjectResult<Option<KeyGrant>> {
        let Some(key) = self.store().find_active_s3_key(access_key).await? else {
            return Ok(None);
        };
        let secret_key = self
            .inner
            .secrets
            .open(&key.secret_sealed)
            .map_err(|error| ObjectError::Internal(format!("S3 key {access_key}: {error}")))?;
        Ok(Some(KeyGrant {
            secret_key,
            buckets: key.bucket_scope(),
            user_id: key.user_id,
            run_id: key.run_id,
        }))
    }
}
