use std::path::Path;

/// Errors of the control plane. `wharf-api` maps each variant to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The named thing does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or not allowed as asked (400).
    #[error("{0}")]
    Invalid(String),
    /// The bundle was rejected; the active version is untouched (422).
    #[error("{0}")]
    InvalidBundle(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The upload is larger than allowed (413).
    #[error("{0}")]
    TooLarge(String),
    /// Anything else (500). The message is logged, not shown.
    #[error("{0}")]
    Internal(String),
}

pub type ControlResult<T> = Result<T, ControlError>;

impl ControlError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> ControlError {
        ControlError::Internal(format!("{}: {error}", path.display()))
    }
}

impl From<wharf_store::StoreError> for ControlError {
    fn from(error: wharf_store::StoreError) -> ControlError {
        match error {
            wharf_store::StoreError::NotFound(message) => ControlError::NotFound(message),
            wharf_store::StoreError::Conflict(message) => ControlError::Conflict(message),
            other => ControlError::Internal(other.to_string()),
        }
    }
}

impl From<wharf_runtime::RuntimeError> for ControlError {
    fn from(error: wharf_runtime::RuntimeError) -> ControlError {
        ControlError::Internal(error.to_string())
    }
}

impl From<wharf_objects::ObjectError> for ControlError {
    fn from(error: wharf_objects::ObjectError) -> ControlError {
        use wharf_objects::ObjectError as E;
        match error {
            E::NoSuchBucket(_) | E::NoSuchKey { .. } | E::NoSuchUpload(_) => {
                ControlError::NotFound(error.to_string())
            }
            E::BucketExists(_) | E::BucketNotEmpty(_) => ControlError::Conflict(error.to_string()),
            E::InvalidBucketName { .. }
            | E::InvalidArgument(_)
            | E::InvalidPart(_)
            | E::BadDigest
            | E::InvalidRange { .. }
            | E::BodyRead(_) => ControlError::Invalid(error.to_string()),
            E::TooLarge { .. } => ControlError::TooLarge(error.to_string()),
            other => ControlError::Internal(other.to_string()),
        }
    }
}
