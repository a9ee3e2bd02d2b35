//! Passwords (argon2id, PHC strings) and browser session tokens (random, stored as
//! SHA-256 only).
//!
//! Hashing uses the argon2 crate's defaults, which are OWASP's recommendation for
//! argon2id: 19 MiB of memory, 2 passes, 1 lane. The PHC string keeps the parameters,
//! so hashes made with other parameters still verify. Both functions take tens of
//! milliseconds of CPU on purpose: callers on an async runtime run them in
//! `spawn_blocking`.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::secrets::random_token;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Hashes a password with argon2id and a random 16-byte salt, as a PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| PasswordError::Hash(error.to_string()))
}

/// Whether `password` matches `stored` (a PHC string). With no stored hash (an unknown
/// user, or one without a password) or an unreadable one, the password is checked
/// against a dummy hash and the answer is false, so every failure costs the same time.
pub fn verify_password(password: &str, stored: Option<&str>) -> bool {
    let parsed = stored.and_then(|text| PasswordHash::new(text).ok());
    match parsed {
        Some(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        None => {
            if let Ok(dummy) = PasswordHash::new(dummy_hash()) {
                let _ = Argon2::default().verify_password(password.as_bytes(), &dummy);
            }
            false
        }
    }
}

/// A hash of a random password nobody knows, with the current parameters.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let unknowable = random_token(b"abcdefghijklmnopqrstuvwxyz0123456789", 32);
        hash_password(&unknowable).unwrap_or_default()
    })
}

/// A new browser session token: 32 random bytes in hex. Only its SHA-256 is stored.
pub fn new_session_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The stored form of a session token.
pub fn hash_session_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A strong random password (24 letters and digits, about 140 bits), for users whose
/// first password is made for them.
pub fn generate_password() -> String {
    // No 0/O, 1/l/I: the password may be read aloud or copied by hand.
    random_token(
        b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789",
        24,
    )
}

#[cfg(test)]
mod tests {
    use crate::password::*;

    #[test]
    fn a_password_verifies_only_against_its_own_hash() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(!hash.contains("correct"));
        assert!(verify_password("correct horse battery", Some(&hash)));
        assert!(!verify_password("correct horse batterY", Some(&hash)));
        assert!(!verify_password("", Some(&hash)));
        let again = hash_password("correct horse battery").unwrap();
        assert_ne!(hash, again, "salts differ");
        assert!(verify_password("correct horse battery", Some(&again)));
    }

    #[test]
    fn missing_or_damaged_hashes_never_verify() {
        for stored in [None, Some(""), Some("plain"), Some("$argon2id$v=19$broken")] {
            assert!(!verify_password("anything", stored), "{stored:?}");
            assert!(!verify_password("", stored), "{stored:?}");
        }
        assert!(PasswordHash::new(dummy_hash()).is_ok());
    }

    #[test]
    fn hashes_with_other_parameters_still_verify() {
        let params = argon2::Params::new(8 * 1024, 1, 1, None).unwrap();
        let weaker = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let hash = weaker
            .hash_password(b"pass phrase", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password("pass phrase", Some(&hash)));
        assert!(!verify_password("pass phrasE", Some(&hash)));
    }

    #[test]
    fn session_tokens_are_random_and_hashed() {
        let first = new_session_token();
        let second = new_session_token();
        assert_eq!(first.len(), 64);
        assert_ne!(first, second);
        assert_eq!(hash_session_token(&first), hash_session_token(&first));
        assert_ne!(hash_session_token(&first), first);
        assert_eq!(hash_session_token(&first).len(), 64);
        let password = generate_password();
        assert_eq!(password.len(), 24);
        assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(password, generate_password());
    }
}
