//! Git-backed apps: the repository, ref and folder an app's files come from, the sealed
//! credential used to fetch them, and what the last fetch found.

use crate::{Store, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GitSource {
    pub app_name: String,
    pub url: String,
    pub git_ref: String,
    /// A folder inside the repository ("" for its root).
    pub subdir: String,
    /// "none", "token" or "ssh_key".
    pub credential_kind: String,
    /// The credential, sealed by the caller (never stored in the clear).
    pub credential_sealed: Option<String>,
    /// The commit the newest version was made from.
    pub last_commit: Option<String>,
    pub last_version: Option<i64>,
    pub last_fetch_at: Option<i64>,
    /// Why the last fetch failed; None after a good one.
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const GIT_COLUMNS: &str = "app_name, url, git_ref, subdir, credential_kind, credential_sealed, \
    last_commit, last_version, last_fetch_at, last_error, created_at, updated_at";

impl Store {
    /// Creates or replaces an app's git source. Replacing keeps nothing of the old one:
    /// the next fetch decides the version again.
    pub async fn upsert_git_source(&self, source: &GitSource) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO git_sources (app_name, url, git_ref, subdir, credential_kind,
                 credential_sealed, last_commit, last_version, last_fetch_at, last_error,
                 created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (app_name) DO UPDATE SET url = $2, git_ref = $3, subdir = $4,
                 credential_kind = $5, credential_sealed = $6, last_commit = $7,
                 last_version = $8, last_fetch_at = $9, last_error = $10, updated_at = $12",
        )
        .bind(&source.app_name)
        .bind(&source.url)
        .bind(&source.git_ref)
        .bind(&source.subdir)
        .bind(&source.credential_kind)
        .bind(&source.credential_sealed)
        .bind(&source.last_commit)
        .bind(source.last_version)
        .bind(source.last_fetch_at)
        .bind(&source.last_error)
        .bind(source.created_at)
        .bind(source.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn find_git_source(&self, app_name: &str) -> StoreResult<Option<GitSource>> {
        Ok(sqlx::query_as::<_, GitSource>(&format!(
            "SELECT {GIT_COLUMNS} FROM git_sources WHERE app_name = $1"
        ))
        .bind(app_name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The names of every git-backed app.
    pub async fn git_app_names(&self) -> StoreResult<Vec<String>> {
        Ok(
            sqlx::query_scalar::<_, String>("SELECT app_name FROM git_sources ORDER BY app_name")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Records a good fetch: the commit and the version made from it (or reused).
    pub async fn record_git_fetch(
        &self,
        app_name: &str,
        commit: &str,
        version: i64,
        at: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE git_sources SET last_commit = $2, last_version = $3, last_fetch_at = $4,
                 last_error = NULL WHERE app_name = $1",
        )
        .bind(app_name)
        .bind(commit)
        .bind(version)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a failed fetch; the last good commit and version stay.
    pub async fn record_git_fetch_error(
        &self,
        app_name: &str,
        error: &str,
        at: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE git_sources SET last_error = $2, last_fetch_at = $3 WHERE app_name = $1",
        )
        .bind(app_name)
        .bind(error)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_git_source(&self, app_name: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM git_sources WHERE app_name = $1")
            .bind(app_name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Points a run that is starting at the version its fetched files became, and records
    /// their commit.
    pub async fn set_run_source(
        &self,
        run_id: &str,
        version: i64,
        commit: &str,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE runs SET version = $2, source_commit = $3 WHERE id = $1")
            .bind(run_id)
            .bind(version)
            .bind(commit)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
