//! Local users and browser sessions: adding users with a role and an argon2id password,
//! changing passwords (which ends the user's sessions), logging in and out.
//!
//! Sessions have an absolute lifetime (`session_lifetime`, default 7 days from the
//! login): the cookie's Max-Age and the stored expiry agree, and nothing extends them.
//! Password work runs in `spawn_blocking`, at most a few at a time, and a user name with
//! too many failed logins in the window is refused without checking the password.

use std::sync::Mutex;
use std::time::Duration;

use wharf_model::access::{check_new_password, validate_role, validate_user_name, LoginThrottle};
use wharf_store::{SessionRow, User, UserListing};

use crate::{Control, ControlError, ControlResult};

/// How many password hashes or checks run at once (each takes tens of milliseconds of
/// one core and 19 MiB of memory).
const CONCURRENT_PASSWORD_WORK: usize = 4;

/// User names whose failed logins are remembered at most.
const THROTTLED_NAMES: usize = 10_000;

/// A session just created: the token goes into the cookie and is never stored.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub user: User,
    /// Unix milliseconds.
    pub expires_at: i64,
}

/// What a login attempt came to.
#[derive(Debug, Clone)]
pub enum LoginOutcome {
    LoggedIn(NewSession),
    /// Unknown user, no password set or wrong password: the caller cannot tell which.
    Refused,
    /// Too many failed logins for this user name recently; try again after this long.
    Throttled {
        retry_after: Duration,
    },
}

/// The failed-login throttle and the limit on concurrent password work.
pub(crate) struct LoginGuard {
    throttle: Mutex<LoginThrottle>,
    password_work: tokio::sync::Semaphore,
}

impl LoginGuard {
    pub(crate) fn new(max_failures: u32, window: Duration) -> LoginGuard {
        LoginGuard {
            throttle: Mutex::new(LoginThrottle::new(
                max_failures as usize,
                window.as_millis().min(i64::MAX as u128) as i64,
                THROTTLED_NAMES,
            )),
            password_work: tokio::sync::Semaphore::new(CONCURRENT_PASSWORD_WORK),
        }
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, LoginThrottle> {
        // The throttle's counts are valid whatever panicked while it was held.
        self.throttle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn new_id() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

/// The throttle's key for a typed user name (bounded, whatever was typed).
fn throttle_key(name: &str) -> String {
    name.chars().take(64).collect()
}

impl Control {
    async fn run_password_work<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> ControlResult<T> {
        let _permit = self
            .inner
            .logins
            .password_work
            .acquire()
            .await
            .map_err(|_| ControlError::Internal("the password worker limit is closed".into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|error| ControlError::Internal(format!("password work failed: {error}")))
    }

    async fn hash_new_password(&self, password: &str) -> ControlResult<String> {
        check_new_password(password).map_err(ControlError::Invalid)?;
        let password = password.to_owned();
        self.run_password_work(move || wharf_auth::hash_password(&password))
            .await?
            .map_err(|error| ControlError::Internal(error.to_string()))
    }

    /// Adds a user with a role (admin, publisher or viewer) and, optionally, a password
    /// (without one, the user can only use API tokens).
    pub async fn add_user(
        &self,
        name: &str,
        role: &str,
        password: Option<&str>,
    ) -> ControlResult<User> {
        validate_user_name(name).map_err(ControlError::Invalid)?;
        validate_role(role).map_err(ControlError::Invalid)?;
        let hash = match password {
            Some(password) => Some(self.hash_new_password(password).await?),
            None => None,
        };
        let user = self
            .store()
            .create_user_with_password(&new_id(), name, role, hash.as_deref())
            .await?;
        tracing::info!(user = %user.name, role = %user.role, "Added a user.");
        Ok(user)
    }

    /// Sets a user's password and ends all of the user's sessions. Returns how many
    /// sessions ended.
    pub async fn set_password(&self, name: &str, password: &str) -> ControlResult<u64> {
        let user = self.user_named(name).await?;
        let hash = self.hash_new_password(password).await?;
        let ended = self.store().set_password_hash(&user.id, &hash).await?;
        tracing::info!(user = %user.name, sessions_ended = ended, "Changed a user's password.");
        Ok(ended)
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> ControlResult<Vec<UserListing>> {
        Ok(self.store().list_users().await?)
    }

    /// Deletes a user with its tokens, sessions and S3 keys. The last admin cannot be
    /// deleted.
    pub async fn delete_user(&self, name: &str) -> ControlResult<()> {
        if !self.store().delete_user(name).await? {
            return Err(no_such_user(name));
        }
        tracing::info!(user = %name, "Deleted a user.");
        Ok(())
    }

    async fn user_named(&self, name: &str) -> ControlResult<User> {
        self.store()
            .find_user_by_name(name)
            .await?
            .ok_or_else(|| no_such_user(name))
    }

    /// Checks a user name and password and, when they match, starts a session. An
    /// unknown user, a user without a password and a wrong password take the same path
    /// (a full argon2id check) and give the same answer.
    pub async fn login(&self, name: &str, password: &str) -> ControlResult<LoginOutcome> {
        let key = throttle_key(name);
        let now = wharf_store::now_millis();
        if let Some(wait_ms) = self.inner.logins.throttle().retry_after(&key, now) {
            return Ok(LoginOutcome::Throttled {
                retry_after: Duration::from_millis(wait_ms.max(0) as u64),
            });
        }
        let found = if validate_user_name(name).is_ok() {
            self.store().find_user_credentials(name).await?
        } else {
            None
        };
        let (user, stored_hash) = match found {
            Some((user, hash)) => (Some(user), hash),
            None => (None, None),
        };
        let password = password.to_owned();
        let matches = self
            .run_password_work(move || {
                wharf_auth::verify_password(&password, stored_hash.as_deref())
            })
            .await?;
        let user = match (matches, user) {
            (true, Some(user)) => user,
            _ => {
                let now = wharf_store::now_millis();
                self.inner.logins.throttle().record_failure(&key, now);
                tracing::info!(user = %key.escape_debug(), "A login failed.");
                return Ok(LoginOutcome::Refused);
            }
        };
        self.inner.logins.throttle().clear(&key);
        let token = wharf_auth::new_session_token();
        let now = wharf_store::now_millis();
        let lifetime = self
            .config()
            .session_lifetime
            .as_millis()
            .min(i64::MAX as u128) as i64;
        let session = SessionRow {
            token_hash: wharf_auth::hash_session_token(&token),
            user_id: user.id.clone(),
            created_at: now,
            expires_at: now.saturating_add(lifetime),
            last_seen_at: now,
        };
        self.store().create_session(&session).await?;
        tracing::info!(user = %user.name, "A user logged in.");
        Ok(LoginOutcome::LoggedIn(NewSession {
            token,
            user,
            expires_at: session.expires_at,
        }))
    }

    /// The user of a session token, when the session exists and has not expired.
    pub async fn session_user(&self, token: &str) -> ControlResult<Option<User>> {
        let hash = wharf_auth::hash_session_token(token);
        let found = self
            .store()
            .find_session(&hash, wharf_store::now_millis())
            .await?;
        Ok(found.map(|(user, _session)| user))
    }

    /// Ends a session; false when there was none (already ended or never existed).
    pub async fn logout(&self, token: &str) -> ControlResult<bool> {
        Ok(self
            .store()
            .delete_session(&wharf_auth::hash_session_token(token))
            .await?)
    }

    /// Deletes expired sessions; returns how many.
    pub async fn sweep_expired_sessions(&self) -> ControlResult<u64> {
        Ok(self
            .store()
            .delete_expired_sessions(wharf_store::now_millis())
            .await?)
    }

    pub(crate) async fn session_sweep_loop(&self) {
        loop {
            match self.sweep_expired_sessions().await {
                Ok(0) => {}
                Ok(deleted) => tracing::debug!(deleted, "Deleted expired sessions."),
                Err(error) => tracing::error!(%error, "Sweeping expired sessions failed."),
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
}

fn no_such_user(name: &str) -> ControlError {
    ControlError::NotFound(format!(
        "there is no user \"{}\"; `wharf user list` shows them",
        name.escape_debug()
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::{Control, ControlConfig, ControlError, LoginOutcome, SandboxPolicy};

    async fn control(dir: &std::path::Path, max_failures: u32) -> Control {
        let store = wharf_store::Store::open_in_memory().await.unwrap();
        let blobs = wharf_objects::FsBlobStore::open(&dir.join("objects")).unwrap();
        let objects = wharf_objects::Objects::new(
            store.clone(),
            Arc::new(blobs),
            wharf_auth::SecretBox::from_key([1; 32]),
            wharf_objects::ObjectsConfig::default(),
        );
        let mut config = ControlConfig::with_data_dir(dir.to_path_buf());
        config.sandbox = SandboxPolicy::Off;
        config.login_max_failures = max_failures;
        config.session_lifetime = Duration::from_secs(3600);
        Control::new(store, objects, config).unwrap()
    }

    fn token(outcome: LoginOutcome) -> String {
        match outcome {
            LoginOutcome::LoggedIn(session) => session.token,
            other => panic!("expected a session, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn login_sessions_and_password_changes() {
        let dir = tempfile::tempdir().unwrap();
        let control = control(dir.path(), 10).await;
        let ana = control
            .add_user("ana", "viewer", Some("correct horse"))
            .await
            .unwrap();
        assert_eq!(ana.role, "viewer");
        control.add_user("robot", "publisher", None).await.unwrap();
        for (name, password) in [
            ("ana", "wrong password"),
            ("nobody", "correct horse"),
            ("robot", ""),
            ("not a name", "x"),
        ] {
            let outcome = control.login(name, password).await.unwrap();
            assert!(
                matches!(outcome, LoginOutcome::Refused),
                "{name}: {outcome:?}"
            );
        }
        let before = wharf_store::now_millis();
        let outcome = control.login("ana", "correct horse").await.unwrap();
        let LoginOutcome::LoggedIn(session) = outcome else {
            panic!("{outcome:?}")
        };
        assert!(session.expires_at >= before + 3_600_000);
        let first = session.token;
        let second = token(control.login("ana", "correct horse").await.unwrap());
        assert_eq!(
            control.session_user(&first).await.unwrap().unwrap().name,
            "ana"
        );
        assert!(control.session_user("forged").await.unwrap().is_none());
        assert!(control.logout(&first).await.unwrap());
        assert!(control.session_user(&first).await.unwrap().is_none());
        assert!(!control.logout(&first).await.unwrap());
        assert_eq!(
            control.set_password("ana", "battery staple").await.unwrap(),
            1
        );
        assert!(control.session_user(&second).await.unwrap().is_none());
        assert!(matches!(
            control.login("ana", "correct horse").await.unwrap(),
            LoginOutcome::Refused
        ));
        token(control.login("ana", "battery staple").await.unwrap());
        let listed = control.list_users().await.unwrap();
        let names: Vec<&str> = listed.iter().map(|u| u.user.name.as_str()).collect();
        assert_eq!(names, ["ana", "robot"]);
        assert!(!listed[1].has_password);
        control.delete_user("ana").await.unwrap();
        assert!(matches!(
            control.delete_user("ana").await,
            Err(ControlError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn bad_input_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let control = control(dir.path(), 10).await;
        let cases = [
            ("ana", "root", Some("correct horse"), "not a role"),
            (
                "ana lopez",
                "viewer",
                Some("correct horse"),
                "not a valid user name",
            ),
            ("ana", "viewer", Some("short"), "too short"),
        ];
        for (name, role, password, expected) in cases {
            let error = control.add_user(name, role, password).await.unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
        control.add_user("ana", "viewer", None).await.unwrap();
        assert!(matches!(
            control.add_user("ana", "viewer", None).await,
            Err(ControlError::Conflict(_))
        ));
        assert!(matches!(
            control.set_password("bob", "correct horse").await,
            Err(ControlError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn too_many_failures_throttle_the_name_even_for_the_right_password() {
        let dir = tempfile::tempdir().unwrap();
        let control = control(dir.path(), 3).await;
        control
            .add_user("ana", "viewer", Some("correct horse"))
            .await
            .unwrap();
        for _ in 0..3 {
            let outcome = control.login("ana", "guess").await.unwrap();
            assert!(matches!(outcome, LoginOutcome::Refused));
        }
        match control.login("ana", "correct horse").await.unwrap() {
            LoginOutcome::Throttled { retry_after } => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(60))
            }
            other => panic!("expected throttling, got {other:?}"),
        }
        // Other names are not affected.
        control
            .add_user("bob", "viewer", Some("correct horse"))
            .await
            .unwrap();
        token(control.login("bob", "correct horse").await.unwrap());
    }
}
