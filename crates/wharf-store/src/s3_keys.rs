//! S3 access keys: a user's keys (every bucket) and the short-lived keys of runs (only the
//! buckets the app's manifest names). Secrets are stored sealed; sealing is the caller's.

use crate::{Store, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct S3Key {
    pub access_key: String,
    pub secret_sealed: String,
    pub user_id: Option<String>,
    pub run_id: Option<String>,
    /// JSON list of bucket names the key may use; None: every bucket.
    pub buckets: Option<String>,
    pub description: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl S3Key {
    /// The buckets this key is limited to; None: every bucket.
    pub fn bucket_scope(&self) -> Option<Vec<String>> {
        self.buckets
            .as_deref()
            .map(|text| serde_json::from_str(text).unwrap_or_default())
    }
}

const KEY_COLUMNS: &str =
    "access_key, secret_sealed, user_id, run_id, buckets, description, created_at, revoked_at";

impl Store {
    pub async fn insert_s3_key(&self, key: &S3Key) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO s3_keys (access_key, secret_sealed, user_id, run_id, buckets,
                 description, created_at, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.access_key)
        .bind(&key.secret_sealed)
        .bind(&key.user_id)
        .bind(&key.run_id)
        .bind(&key.buckets)
        .bind(&key.description)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A key that is not revoked.
    pub async fn find_active_s3_key(&self, access_key: &str) -> StoreResult<Option<S3Key>> {
        Ok(sqlx::query_as::<_, S3Key>(&format!(
            "SELECT {KEY_COLUMNS} FROM s3_keys WHERE access_key = $1 AND revoked_at IS NULL"
        ))
        .bind(access_key)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A user's keys (all users' when `user_id` is None), newest first; run keys excluded.
    pub async fn list_s3_keys(&self, user_id: Option<&str>) -> StoreResult<Vec<S3Key>> {
        Ok(sqlx::query_as::<_, S3Key>(&format!(
            "SELECT {KEY_COLUMNS} FROM s3_keys
             WHERE run_id IS NULL AND ($1 IS NULL OR user_id = $1)
             ORDER BY created_at DESC"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn revoke_s3_key(&self, access_key: &str, at: i64) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE s3_keys SET revoked_at = $1 WHERE access_key = $2 AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(access_key)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "there is no active S3 key {access_key}"
            )));
        }
        Ok(())
    }

    /// Deletes the keys issued to a run (when it ends).
    pub async fn delete_run_s3_keys(&self, run_id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM s3_keys WHERE run_id = $1")
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
