//! Users and API tokens. Tokens are stored as SHA-256 hashes only.

use sqlx::Row;

use crate::{now_millis, Store, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiToken {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl Store {
    pub async fn user_count(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Creates a user without a password (API tokens only).
    pub async fn create_user(&self, id: &str, name: &str, role: &str) -> StoreResult<User> {
        self.create_user_with_password(id, name, role, None).await
    }

    pub async fn find_user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        Ok(
            sqlx::query_as::<_, User>("SELECT id, name, role, created_at FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn find_user_by_name(&self, name: &str) -> StoreResult<Option<User>> {
        Ok(sqlx::query_as::<_, User>(
            "SELECT id, name, role, created_at FROM users WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Stores a token hash for `user_id`.
    pub async fn create_token(
        &self,
        id: &str,
        user_id: &str,
        name: &str,
        token_hash: &str,
    ) -> StoreResult<ApiToken> {
        let created_at = now_millis();
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(user_id)
        .bind(name)
        .bind(token_hash)
        .bind(created_at)
        .execute(&self.pool)
        .await?;
        Ok(ApiToken {
            id: id.to_owned(),
            user_id: user_id.to_owned(),
            name: name.to_owned(),
            created_at,
            last_used_at: None,
        })
    }

    /// Resolves a token hash to its user, recording the use at most once a minute.
    pub async fn authenticate_token(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<(User, ApiToken)>> {
        let row = sqlx::query(
            "SELECT u.id AS user_id, u.name AS user_name, u.role, u.created_at AS user_created_at,
                    t.id AS token_id, t.name AS token_name, t.created_at AS token_created_at,
                    t.last_used_at
             FROM api_tokens t JOIN users u ON u.id = t.user_id
             WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let user = User {
            id: row.try_get("user_id")?,
            name: row.try_get("user_name")?,
            role: row.try_get("role")?,
            created_at: row.try_get("user_created_at")?,
        };
        let token = ApiToken {
            id: row.try_get("token_id")?,
            user_id: user.id.clone(),
            name: row.try_get("token_name")?,
            created_at: row.try_get("token_created_at")?,
            last_used_at: row.try_get("last_used_at")?,
        };
        let now = now_millis();
        if token.last_used_at.is_none_or(|t| now - t > 60_000) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&token.id)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some((user, token)))
    }
}
