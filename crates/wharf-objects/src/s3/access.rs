//! Who may do what on the S3 listener.
//!
//! - SigV4 (headers or presigned URL) with an access key from the store: s3s verifies the
//!   signature with the secret we open ([`KeyAuth`]); a user's key reaches every bucket, a
//!   run's key only the buckets its app's manifest names and cannot create or delete
//!   buckets.
//! - `Authorization: Bearer TOKEN` with a Wharf API token (what `wharf cp` sends): checked
//!   before s3s sees the request (see `serve.rs`), which records the user as a
//!   [`BearerUser`] extension.
//! - Nothing: only reads (GetObject, HeadObject, ListObjects) of a public-read bucket.

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::{s3_error, S3Result};

use crate::service::Objects;

/// The caller of an S3 request, as the operations see it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `detail.requester` of the events it causes: the user's name, `run:ID`, `anonymous`.
    pub name: String,
    /// None: every bucket.
    pub buckets: Option<Vec<String>>,
    /// May create and delete buckets.
    pub manages_buckets: bool,
}

impl Identity {
    pub fn allows_bucket(&self, bucket: &str) -> bool {
        self.buckets
            .as_ref()
            .is_none_or(|buckets| buckets.iter().any(|allowed| allowed == bucket))
    }
}

/// A user authenticated by a bearer token before s3s saw the request.
#[derive(Debug, Clone)]
pub struct BearerUser {
    pub name: String,
}

/// Resolves a Wharf API token to a user name (the server wires this to its token store).
#[async_trait::async_trait]
pub trait TokenCheck: Send + Sync + 'static {
    async fn user_for_token(&self, token: &str) -> Option<String>;
}

pub struct KeyAuth {
    pub(crate) objects: Objects,
}

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.objects.key_grant(access_key).await {
            Ok(Some(grant)) => Ok(SecretKey::from(grant.secret_key)),
            Ok(None) => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
            Err(error) => {
                tracing::error!(%error, "Could not look up an S3 access key.");
                Err(s3_error!(InternalError))
            }
        }
    }
}

pub struct KeyAccess {
    pub(crate) objects: Objects,
}

const ANONYMOUS_READS: [&str; 4] = ["GetObject", "HeadObject", "ListObjects", "ListObjectsV2"];
const BUCKET_ADMIN: [&str; 2] = ["CreateBucket", "DeleteBucket"];

fn path_bucket(path: &S3Path) -> Option<&str> {
    match path {
        S3Path::Root => None,
        S3Path::Bucket { bucket } => Some(bucket),
        S3Path::Object { bucket, .. } => Some(bucket),
    }
}

#[async_trait::async_trait]
impl S3Access for KeyAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let operation = cx.s3_op().name().to_owned();
        let operation = operation.as_str();
        let bucket = path_bucket(cx.s3_path()).map(str::to_owned);
        let identity = if let Some(credentials) = cx.credentials() {
            let grant = match self.objects.key_grant(&credentials.access_key).await {
                Ok(Some(grant)) => grant,
                Ok(None) => return Err(s3_error!(InvalidAccessKeyId)),
                Err(error) => {
                    tracing::error!(%error, "Could not look up an S3 access key.");
                    return Err(s3_error!(InternalError));
                }
            };
            let name = match (&grant.run_id, &grant.user_id) {
                (Some(run), _) => format!("run:{run}"),
                (None, Some(user)) => self.user_name(user).await,
                (None, None) => credentials.access_key.clone(),
            };
            Identity {
                name,
                manages_buckets: grant.run_id.is_none(),
                buckets: grant.buckets,
            }
        } else if let Some(user) = cx.extensions_mut().get::<BearerUser>().cloned() {
            Identity {
                name: user.name,
                buckets: None,
                manages_buckets: true,
            }
        } else {
            let public = match &bucket {
                Some(bucket) if ANONYMOUS_READS.contains(&operation) => self
                    .objects
                    .store()
                    .find_bucket(bucket)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|found| found.public_read),
                _ => false,
            };
            if !public {
                return Err(s3_error!(
                    AccessDenied,
                    "Anonymous access is forbidden for this operation; sign the request with an access key (wharf s3 keys create)"
                ));
            }
            Identity {
                name: "anonymous".into(),
                buckets: bucket.clone().map(|bucket| vec![bucket]),
                manages_buckets: false,
            }
        };
        if BUCKET_ADMIN.contains(&operation) && !identity.manages_buckets {
            return Err(s3_error!(
                AccessDenied,
                "This key may not create or delete buckets"
            ));
        }
        if let Some(bucket) = &bucket {
            if !identity.allows_bucket(bucket) {
                return Err(s3_error!(
                    AccessDenied,
                    "This key is limited to the buckets its app's manifest names"
                ));
            }
        }
        cx.extensions_mut().insert(identity);
        Ok(())
    }
}

impl KeyAccess {
    async fn user_name(&self, user_id: &str) -> String {
        self.objects
            .store()
            .find_user_by_id(user_id)
            .await
            .ok()
            .flatten()
            .map(|user| user.name)
            .unwrap_or_else(|| user_id.to_owned())
    }
}
