//! Authentication material: [`SecretBox`], which seals secrets that Wharf must be able to
//! read back (S3 secret keys, needed to verify SigV4 signatures) with the server's own
//! key, so the database alone never reveals them; and passwords (argon2id) and browser
//! session tokens (stored as SHA-256), in `password`.

mod password;
mod secrets;

pub use crate::password::{
    generate_password, hash_password, hash_session_token, new_session_token, verify_password,
    PasswordError,
};
pub use crate::secrets::{random_token, SecretBox, SecretError};
