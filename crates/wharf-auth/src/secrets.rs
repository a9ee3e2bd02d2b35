//! Secrets sealed at rest with XChaCha20-Poly1305.
//!
//! The server's 32-byte key lives in `DATA/secret.key` (created on first start, mode
//! 0600). A sealed secret is `v1:` followed by the hex of a random 24-byte nonce and the
//! ciphertext with its tag; tampering or a different key makes opening fail.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

const VERSION_PREFIX: &str = "v1:";
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read or create the secret key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("the secret key file {path} is not 32 bytes; restore it from a backup (secrets sealed with another key cannot be opened)")]
    BadKeyFile { path: String },
    #[error("a sealed secret is damaged or was sealed with another key")]
    CannotOpen,
}

/// Seals and opens secrets with the server's key. Cheap to clone.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// A box with the given key (tests, and keys kept elsewhere).
    pub fn from_key(key: [u8; 32]) -> SecretBox {
        SecretBox {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// Loads the key from `path`, which must exist.
    pub fn load(path: &Path) -> Result<SecretBox, SecretError> {
        let bytes = std::fs::read(path).map_err(|source| SecretError::KeyFile {
            path: path.display().to_string(),
            source,
        })?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadKeyFile {
            path: path.display().to_string(),
        })?;
        Ok(SecretBox::from_key(key))
    }

    /// Loads the key from `path`, creating it (random, 0600) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<SecretBox, SecretError> {
        let describe = |source| SecretError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::metadata(path) {
            Ok(_) => SecretBox::load(path),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(describe)?;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(describe)?;
                file.write_all(&key).map_err(describe)?;
                file.sync_all().map_err(describe)?;
                Ok(SecretBox::from_key(key))
            }
            Err(error) => Err(describe(error)),
        }
    }

    pub fn seal(&self, secret: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), secret.as_bytes())
            .unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        format!("{VERSION_PREFIX}{}", hex::encode(bytes))
    }

    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let bytes = sealed
            .strip_prefix(VERSION_PREFIX)
            .and_then(|text| hex::decode(text).ok())
            .filter(|bytes| bytes.len() > NONCE_LEN)
            .ok_or(SecretError::CannotOpen)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretError::CannotOpen)?;
        String::from_utf8(plain).map_err(|_| SecretError::CannotOpen)
    }
}

/// A random string of `len` characters from `alphabet` (keys, secrets, tokens).
pub fn random_token(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| {
            let index = (rng.next_u32() as usize) % alphabet.len().max(1);
            char::from(alphabet.get(index).copied().unwrap_or(b'x'))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_with_the_same_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let first = SecretBox::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = first.seal("wJalrXUtnFEMI/K7MDENG");
        assert!(!sealed.contains("wJalr"));
        assert_ne!(sealed, first.seal("wJalrXUtnFEMI/K7MDENG"), "nonces differ");
        let again = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), "wJalrXUtnFEMI/K7MDENG");
        let other = SecretBox::from_key([7; 32]);
        assert!(other.open(&sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.replace_range(sealed.len() - 2.., "00");
        assert!(first.open(&tampered).is_err() || tampered == sealed);
        for bad in ["", "v1:", "v1:zz", "v2:00", "plain"] {
            assert!(first.open(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_key_file_of_the_wrong_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        std::fs::write(&path, b"short").unwrap();
        let error = SecretBox::load_or_create(&path).unwrap_err();
        assert!(error.to_string().contains("not 32 bytes"), "{error}");
    }
}
