//! Named secrets, stored sealed; sealing and opening are the caller's.

use crate::{Store, StoreResult};

/// A secret without its value, as listings show it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SecretInfo {
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub updated_by: String,
}

impl Store {
    /// Creates the secret or replaces its value; true when it was created.
    pub async fn put_secret(
        &self,
        name: &str,
        sealed: &str,
        by: &str,
        at: i64,
    ) -> StoreResult<bool> {
        let mut transaction = self.pool.begin().await?;
        let existed = sqlx::query_scalar::<_, i64>("SELECT 1 FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *transaction)
            .await?
            .is_some();
        sqlx::query(
            "INSERT INTO secrets (name, sealed, created_at, updated_at, updated_by)
             VALUES ($1, $2, $3, $3, $4)
             ON CONFLICT (name) DO UPDATE
             SET sealed = excluded.sealed, updated_at = excluded.updated_at,
                 updated_by = excluded.updated_by",
        )
        .bind(name)
        .bind(sealed)
        .bind(at)
        .bind(by)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(!existed)
    }

    /// Every secret, by name, without values.
    pub async fn list_secrets(&self) -> StoreResult<Vec<SecretInfo>> {
        Ok(sqlx::query_as::<_, SecretInfo>(
            "SELECT name, created_at, updated_at, updated_by FROM secrets ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The sealed values of those of `names` that exist, as (name, sealed).
    pub async fn sealed_secrets(&self, names: &[String]) -> StoreResult<Vec<(String, String)>> {
        let mut found = Vec::with_capacity(names.len());
        for name in names {
            let sealed =
                sqlx::query_scalar::<_, String>("SELECT sealed FROM secrets WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
            if let Some(sealed) = sealed {
                found.push((name.clone(), sealed));
            }
        }
        Ok(found)
    }

    /// Deletes a secret; false when there was none.
    pub async fn delete_secret(&self, name: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
