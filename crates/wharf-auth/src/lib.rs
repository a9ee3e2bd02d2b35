//! Authentication material. Today: [`SecretBox`], which seals secrets that Wharf must be
//! able to read back (S3 secret keys, needed to verify SigV4 signatures) with the
//! server's own key, so the database alone never reveals them.

mod secrets;

pub use crate::secrets::{random_token, SecretBox, SecretError};
