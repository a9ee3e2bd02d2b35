//! Local logins: users' password hashes, and browser sessions. A session is stored as
//! the SHA-256 of its token, so a copy of the database holds no working session.

use sqlx::Row;

use crate::{now_millis, Store, StoreError, StoreResult, User};

/// A user as listed to an administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserListing {
    pub user: User,
    /// Whether the user can log in with a password.
    pub has_password: bool,
    /// Sessions that have not expired.
    pub active_sessions: i64,
}

/// A browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub token_hash: String,
    pub user_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_seen_at: i64,
}

fn user_from(row: &sqlx::sqlite::SqliteRow) -> StoreResult<User> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Creates a user with a password hash (None: a user that only uses API tokens).
    pub async fn create_user_with_password(
        &self,
        id: &str,
        name: &str,
        role: &str,
        password_hash: Option<&str>,
    ) -> StoreResult<User> {
        let created_at = now_millis();
        let inserted = sqlx::query(
            "INSERT INTO users (id, name, role, created_at, password_hash)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(name)
        .bind(role)
        .bind(created_at)
        .bind(password_hash)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "user \"{name}\" already exists"
            )));
        }
        Ok(User {
            id: id.to_owned(),
            name: name.to_owned(),
            role: role.to_owned(),
            created_at,
        })
    }

    /// A user by name with its password hash (None inside: no password set).
    pub async fn find_user_credentials(
        &self,
        name: &str,
    ) -> StoreResult<Option<(User, Option<String>)>> {
        let row = sqlx::query(
            "SELECT id, name, role, created_at, password_hash FROM users WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some((user_from(&row)?, row.try_get("password_hash")?))),
            None => Ok(None),
        }
    }

    /// Replaces a user's password hash and, in the same transaction, ends every session
    /// of the user. Returns how many sessions ended.
    pub async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "user {user_id} does not exist"
            )));
        }
        let ended = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(ended)
    }

    /// Every user, by name, with whether it has a password and its live sessions.
    pub async fn list_users(&self) -> StoreResult<Vec<UserListing>> {
        let rows = sqlx::query(
            "SELECT u.id, u.name, u.role, u.created_at,
                    CASE WHEN u.password_hash IS NULL THEN 0 ELSE 1 END AS has_password,
                    (SELECT COUNT(*) FROM sessions s
                      WHERE s.user_id = u.id AND s.expires_at > $1) AS active_sessions
             FROM users u ORDER BY u.name",
        )
        .bind(now_millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let has_password: i64 = row.try_get("has_password")?;
                Ok(UserListing {
                    user: user_from(row)?,
                    has_password: has_password != 0,
                    active_sessions: row.try_get("active_sessions")?,
                })
            })
            .collect()
    }

    /// How many users have `role`.
    pub async fn count_users_with_role(&self, role: &str) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = $1")
            .bind(role)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Deletes a user with its API tokens, sessions and S3 keys (cascading). Refuses to
    /// delete the last admin, checked in the same transaction. False when there is no
    /// such user.
    pub async fn delete_user(&self, name: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT role FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(false) };
        let role: String = row.try_get("role")?;
        if role == "admin" {
            let admins: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = 'admin'")
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            if admins <= 1 {
                return Err(StoreError::Conflict(format!(
                    "\"{name}\" is the only admin; add another admin before deleting it"
                )));
            }
        }
        sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Stores a new session (its token's hash).
    pub async fn create_session(&self, session: &SessionRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, last_seen_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&session.token_hash)
        .bind(&session.user_id)
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(session.last_seen_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user of a session that has not expired at `now`, recording the use at most
    /// once a minute.
    pub async fn find_session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> StoreResult<Option<(User, SessionRow)>> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.role, u.created_at,
                    s.token_hash, s.created_at AS session_created_at, s.expires_at,
                    s.last_seen_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let user = user_from(&row)?;
        let session = SessionRow {
            token_hash: row.try_get("token_hash")?,
            user_id: user.id.clone(),
            created_at: row.try_get("session_created_at")?,
            expires_at: row.try_get("expires_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
        };
        if now - session.last_seen_at > 60_000 {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
                .bind(now)
                .bind(token_hash)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some((user, session)))
    }

    /// Ends one session; false when there was none.
    pub async fn delete_session(&self, token_hash: &str) -> StoreResult<bool> {
        let deleted = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Ends every session of a user; returns how many.
    pub async fn delete_user_sessions(&self, user_id: &str) -> StoreResult<u64> {
        let deleted = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected())
    }

    /// Deletes sessions that expired at or before `now`; returns how many.
    pub async fn delete_expired_sessions(&self, now: i64) -> StoreResult<u64> {
        let deleted = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use crate::sessions::SessionRow;
    use crate::{now_millis, Store, StoreError};

    fn session(token_hash: &str, user_id: &str, now: i64, lifetime: i64) -> SessionRow {
        SessionRow {
            token_hash: token_hash.into(),
            user_id: user_id.into(),
            created_at: now,
            expires_at: now + lifetime,
            last_seen_at: now,
        }
    }

    #[tokio::test]
    async fn sessions_find_expire_and_end() {
        let store = Store::open_in_memory().await.unwrap();
        let ana = store
            .create_user_with_password("u1", "ana", "viewer", Some("$argon2id$x"))
            .await
            .unwrap();
        let now = now_millis();
        store
            .create_session(&session("h1", &ana.id, now, 1000))
            .await
            .unwrap();
        store
            .create_session(&session("h2", &ana.id, now, 1000))
            .await
            .unwrap();
        store
            .create_session(&session("old", &ana.id, now - 5000, 1000))
            .await
            .unwrap();
        let (user, found) = store.find_session("h1", now).await.unwrap().unwrap();
        assert_eq!(user.name, "ana");
        assert_eq!(found.expires_at, now + 1000);
        assert!(
            store
                .find_session("h1", now + 1000)
                .await
                .unwrap()
                .is_none(),
            "expired"
        );
        assert!(store.find_session("old", now).await.unwrap().is_none());
        assert!(store.find_session("nope", now).await.unwrap().is_none());
        let listed = store.list_users().await.unwrap();
        assert_eq!(listed[0].active_sessions, 2);
        assert!(listed[0].has_password);
        assert_eq!(store.delete_expired_sessions(now).await.unwrap(), 1);
        assert!(store.delete_session("h1").await.unwrap());
        assert!(!store.delete_session("h1").await.unwrap());
        assert_eq!(store.delete_user_sessions(&ana.id).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_new_password_ends_the_users_sessions_only() {
        let store = Store::open_in_memory().await.unwrap();
        let ana = store
            .create_user_with_password("u1", "ana", "viewer", None)
            .await
            .unwrap();
        let bob = store
            .create_user_with_password("u2", "bob", "viewer", None)
            .await
            .unwrap();
        let now = now_millis();
        store
            .create_session(&session("a", &ana.id, now, 60_000))
            .await
            .unwrap();
        store
            .create_session(&session("b", &bob.id, now, 60_000))
            .await
            .unwrap();
        let (_, hash) = store.find_user_credentials("ana").await.unwrap().unwrap();
        assert_eq!(hash, None);
        assert_eq!(store.set_password_hash(&ana.id, "$new").await.unwrap(), 1);
        let (_, hash) = store.find_user_credentials("ana").await.unwrap().unwrap();
        assert_eq!(hash.as_deref(), Some("$new"));
        assert!(store.find_session("a", now).await.unwrap().is_none());
        assert!(store.find_session("b", now).await.unwrap().is_some());
        assert!(matches!(
            store.set_password_hash("missing", "$x").await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn deleting_users_cascades_and_keeps_one_admin() {
        let store = Store::open_in_memory().await.unwrap();
        store
            .create_user_with_password("u0", "admin", "admin", None)
            .await
            .unwrap();
        let ana = store
            .create_user_with_password("u1", "ana", "viewer", None)
            .await
            .unwrap();
        let now = now_millis();
        store
            .create_session(&session("a", &ana.id, now, 60_000))
            .await
            .unwrap();
        assert!(store.delete_user("ana").await.unwrap());
        assert!(store.find_session("a", now).await.unwrap().is_none());
        assert!(!store.delete_user("ana").await.unwrap());
        let error = store.delete_user("admin").await.unwrap_err();
        assert!(error.to_string().contains("only admin"), "{error}");
        store
            .create_user_with_password("u2", "root2", "admin", None)
            .await
            .unwrap();
        assert_eq!(store.count_users_with_role("admin").await.unwrap(), 2);
        assert!(store.delete_user("admin").await.unwrap());
        assert!(matches!(
            store
                .create_user_with_password("u3", "root2", "viewer", None)
                .await,
            Err(StoreError::Conflict(_))
        ));
    }
}
