//! API tokens and the first admin. Tokens are random secrets shown once; the store keeps
//! only their SHA-256, so a copy of the database holds no working token.

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{Control, ControlResult, User};

/// The stored form of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("wharf_{}", hex::encode(bytes))
}

fn new_id() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

impl Control {
    /// On the first start (no users yet) creates the `admin` user and a token for it,
    /// returning the token so it can be shown once. Later starts return None.
    pub async fn bootstrap_admin(&self) -> ControlResult<Option<String>> {
        if self.store().user_count().await? > 0 {
            return Ok(None);
        }
        let user = self
            .store()
            .create_user(&new_id(), "admin", "admin")
            .await?;
        let token = self.issue_token(&user, "bootstrap").await?;
        Ok(Some(token))
    }

    /// Creates a new API token for `user`; the secret is returned once and never stored.
    pub async fn issue_token(&self, user: &User, name: &str) -> ControlResult<String> {
        let secret = new_token_secret();
        self.store()
            .create_token(&new_id(), &user.id, name, &hash_token(&secret))
            .await?;
        Ok(secret)
    }

    /// The user a token belongs to, if it is valid.
    pub async fn authenticate(&self, token: &str) -> ControlResult<Option<User>> {
        let found = self.store().authenticate_token(&hash_token(token)).await?;
        Ok(found.map(|(user, _token)| user))
    }
}
