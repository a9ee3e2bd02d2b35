//! Apps and their versions. A deploy inserts a version and activates it in one
//! transaction; rollback activates an older one.

use crate::{now_millis, Store, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct App {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub active_version: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AppVersion {
    pub app_id: String,
    pub number: i64,
    /// The validated manifest as JSON (`wharf_model::manifest::Manifest`).
    pub manifest: String,
    pub bundle_sha256: String,
    pub bundle_size: i64,
    pub file_count: i64,
    pub created_at: i64,
    pub created_by: String,
}

/// What a deploy records about a new version.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub app_name: String,
    pub new_app_id: String,
    pub kind: String,
    pub manifest: String,
    pub bundle_sha256: String,
    pub bundle_size: i64,
    pub file_count: i64,
    pub created_by: String,
}

const APP_COLUMNS: &str = "id, name, kind, active_version, created_at, updated_at, created_by";
const VERSION_COLUMNS: &str =
    "app_id, number, manifest, bundle_sha256, bundle_size, file_count, created_at, created_by";

impl Store {
    pub async fn list_apps(&self) -> StoreResult<Vec<App>> {
        Ok(
            sqlx::query_as::<_, App>(&format!("SELECT {APP_COLUMNS} FROM apps ORDER BY name"))
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn find_app(&self, name: &str) -> StoreResult<Option<App>> {
        Ok(
            sqlx::query_as::<_, App>(&format!("SELECT {APP_COLUMNS} FROM apps WHERE name = $1"))
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn find_app_by_id(&self, id: &str) -> StoreResult<Option<App>> {
        Ok(
            sqlx::query_as::<_, App>(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn app(&self, name: &str) -> StoreResult<App> {
        self.find_app(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("app \"{name}\" does not exist")))
    }

    /// Creates the app if needed, inserts the next version number and makes it active,
    /// all in one transaction. Returns the app (after the change) and the version.
    pub async fn insert_version(&self, new: &NewVersion) -> StoreResult<(App, AppVersion)> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO apps (id, name, kind, active_version, created_at, updated_at, created_by)
             VALUES ($1, $2, $3, NULL, $4, $4, $5) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&new.new_app_id)
        .bind(&new.app_name)
        .bind(&new.kind)
        .bind(now)
        .bind(&new.created_by)
        .execute(&mut *tx)
        .await?;
        let app_id: String = sqlx::query_scalar("SELECT id FROM apps WHERE name = $1")
            .bind(&new.app_name)
            .fetch_one(&mut *tx)
            .await?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(number) FROM app_versions WHERE app_id = $1")
                .bind(&app_id)
                .fetch_one(&mut *tx)
                .await?;
        let number = last.unwrap_or(0) + 1;
        sqlx::query(&format!(
            "INSERT INTO app_versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&app_id)
        .bind(number)
        .bind(&new.manifest)
        .bind(&new.bundle_sha256)
        .bind(new.bundle_size)
        .bind(new.file_count)
        .bind(now)
        .bind(&new.created_by)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE apps SET active_version = $1, kind = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(number)
        .bind(&new.kind)
        .bind(now)
        .bind(&app_id)
        .execute(&mut *tx)
        .await?;
        let app =
            sqlx::query_as::<_, App>(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1"))
                .bind(&app_id)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        let version = AppVersion {
            app_id,
            number,
            manifest: new.manifest.clone(),
            bundle_sha256: new.bundle_sha256.clone(),
            bundle_size: new.bundle_size,
            file_count: new.file_count,
            created_at: now,
            created_by: new.created_by.clone(),
        };
        Ok((app, version))
    }

    /// The number the next deploy of `app_name` will get (1 for a new app).
    pub async fn next_version_number(&self, app_name: &str) -> StoreResult<i64> {
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(v.number) FROM app_versions v JOIN apps a ON a.id = v.app_id
             WHERE a.name = $1",
        )
        .bind(app_name)
        .fetch_one(&self.pool)
        .await?;
        Ok(last.unwrap_or(0) + 1)
    }

    pub async fn list_versions(&self, app_id: &str) -> StoreResult<Vec<AppVersion>> {
        Ok(sqlx::query_as::<_, AppVersion>(&format!(
            "SELECT {VERSION_COLUMNS} FROM app_versions WHERE app_id = $1 ORDER BY number DESC"
        ))
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn version(&self, app: &App, number: i64) -> StoreResult<AppVersion> {
        sqlx::query_as::<_, AppVersion>(&format!(
            "SELECT {VERSION_COLUMNS} FROM app_versions WHERE app_id = $1 AND number = $2"
        ))
        .bind(&app.id)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!("app \"{}\" has no version {number}", app.name))
        })
    }

    /// Makes `number` the active version (rollback or roll forward).
    pub async fn activate_version(&self, app: &App, number: i64) -> StoreResult<App> {
        let version = self.version(app, number).await?;
        let kind: String = serde_json::from_str::<serde_json::Value>(&version.manifest)
            .ok()
            .and_then(|m| m.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
            .unwrap_or_else(|| app.kind.clone());
        sqlx::query(
            "UPDATE apps SET active_version = $1, kind = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(number)
        .bind(&kind)
        .bind(now_millis())
        .bind(&app.id)
        .execute(&self.pool)
        .await?;
        self.app(&app.name).await
    }

    /// Deletes the app with its versions and runs.
    pub async fn delete_app(&self, app: &App) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM runs WHERE app_id = $1")
            .bind(&app.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM app_versions WHERE app_id = $1")
            .bind(&app.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM apps WHERE id = $1")
            .bind(&app.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
