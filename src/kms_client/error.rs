//! What can go wrong calling the KMS API: the KMS refused (its code, message and request id),
//! the endpoint could not be reached, or it answered something that is not the KMS's document.
//! No variant holds a credential, a plaintext or a response body.

use std::fmt;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The KMS answered with its error document.
    #[error("{0}")]
    Kms(KmsFailure),
    /// The endpoint, CA bundle or credentials given are unusable.
    #[error("{0}")]
    Config(String),
    /// Connecting, TLS or HTTP failed.
    #[error("{0}")]
    Transport(String),
    /// The answer was not a KMS document (`what` says what was expected).
    #[error("the KMS API answered HTTP {status} with a body that is not {what}")]
    Response { status: u16, what: &'static str },
}

/// The KMS error document, as the server sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub request_id: String,
}

impl fmt::Display for KmsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (HTTP {}, RequestId {})",
            self.code, self.message, self.status, self.request_id
        )
    }
}

impl ClientError {
    /// The KMS's error code, when the KMS answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Kms(failure) => Some(&failure.code),
            _ => None,
        }
    }

    pub(crate) fn transport(what: &str, error: impl fmt::Display) -> Self {
        ClientError::Transport(format!("{what}: {error}"))
    }
}
