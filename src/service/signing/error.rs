//! Why a request was not authenticated, as the KMS API answers it (pure).

use std::fmt;

use http::StatusCode;

/// The start of the `SignatureDoesNotMatch` message, as Alibaba words it. The v1 SDK splits the
/// message on `:` and compares the second part with its own string to sign (to tell a wrong
/// AccessKeySecret from a bad request): a message without a `:` crashes it with an
/// `IndexError`. Neither string to sign contains a `:` (v1 percent-encodes every value).
pub const SIGNATURE_MISMATCH_MESSAGE: &str =
    "Specified signature is not matched with our calculation. server string to sign is:";

/// What went wrong. Each code has one wire spelling, one HTTP status and one reason for metric
/// labels and events (bounded: never built from the request).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthCode {
    /// The credentials are malformed: an `Authorization` header that cannot be read, a header
    /// left out of the ACS3 signature, more than one credential, or none.
    IncompleteSignature,
    /// A signature v1 parameter is absent (`AccessKeyId`, `SignatureNonce`, `Timestamp`, ...).
    MissingParameter,
    /// A signature method or version keyward does not verify (only HMAC-SHA1 1.0 and
    /// ACS3-HMAC-SHA256), or an `Authorization` scheme other than ACS3 and Bearer.
    InvalidSignatureMethod,
    /// The signature is not the one the secret gives for this request.
    SignatureDoesNotMatch,
    /// The timestamp is more than [`super::TIME_WINDOW`] away from the server's clock.
    TimestampExpired,
    /// The timestamp cannot be read.
    TimestampFormat,
    /// The nonce was used already within the time window: a replay.
    SignatureNonceUsed,
    /// The server remembers as many nonces as it can; the request is refused rather than risk a
    /// replay (see [`super::NonceCache`]).
    NonceCacheFull,
    /// No AccessKey has this id (for the caller, which looks secrets up).
    AccessKeyNotFound,
    /// The AccessKey exists but is disabled (for the caller).
    AccessKeyInactive,
}

impl AuthCode {
    /// The `Code` of the error document.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthCode::IncompleteSignature => "IncompleteSignature",
            AuthCode::MissingParameter => "MissingParameter",
            AuthCode::InvalidSignatureMethod => "InvalidSignatureMethod",
            AuthCode::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            AuthCode::TimestampExpired => "InvalidTimeStamp.Expired",
            AuthCode::TimestampFormat => "InvalidTimeStamp.Format",
            AuthCode::SignatureNonceUsed => "SignatureNonceUsed",
            AuthCode::NonceCacheFull => "ServiceUnavailableTemporary",
            AuthCode::AccessKeyNotFound => "InvalidAccessKeyId.NotFound",
            AuthCode::AccessKeyInactive => "InvalidAccessKeyId.Inactive",
        }
    }

    pub const fn status(self) -> StatusCode {
        match self {
            AuthCode::AccessKeyNotFound => StatusCode::NOT_FOUND,
            AuthCode::NonceCacheFull => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// CamelCase without dots: event reason and metric label.
    pub const fn reason(self) -> &'static str {
        match self {
            AuthCode::TimestampExpired => "InvalidTimeStampExpired",
            AuthCode::TimestampFormat => "InvalidTimeStampFormat",
            AuthCode::NonceCacheFull => "NonceCacheFull",
            AuthCode::AccessKeyNotFound => "InvalidAccessKeyIdNotFound",
            AuthCode::AccessKeyInactive => "InvalidAccessKeyIdInactive",
            other => other.as_str(),
        }
    }
}

/// A refused authentication. No message holds a secret, the signature keyward expected, or a
/// bearer token. The `SignatureDoesNotMatch` message holds keyward's string to sign, as the
/// SDKs expect; for v1 that string carries the request's own parameters (a plaintext, say), so
/// [`AuthError::message`] goes to the client that sent them, and `Display`/`Debug` (for logs)
/// leave it out.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthError {
    code: AuthCode,
    message: String,
    string_to_sign: Option<String>,
}

impl AuthError {
    pub(super) fn new(code: AuthCode, message: impl Into<String>) -> Self {
        AuthError {
            code,
            message: message.into(),
            string_to_sign: None,
        }
    }

    pub(super) fn incomplete(message: impl Into<String>) -> Self {
        AuthError::new(AuthCode::IncompleteSignature, message)
    }

    pub(super) fn missing(parameter: &str) -> Self {
        AuthError::new(
            AuthCode::MissingParameter,
            format!(
                "The input parameter \"{parameter}\" that is mandatory for processing this request is not supplied."
            ),
        )
    }

    pub(super) fn method(message: impl Into<String>) -> Self {
        AuthError::new(AuthCode::InvalidSignatureMethod, message)
    }

    pub(super) fn mismatch(string_to_sign: String) -> Self {
        AuthError {
            code: AuthCode::SignatureDoesNotMatch,
            message: SIGNATURE_MISMATCH_MESSAGE.to_owned(),
            string_to_sign: Some(string_to_sign),
        }
    }

    /// The AccessKeyId names no AccessKey.
    pub fn access_key_not_found() -> Self {
        AuthError::new(
            AuthCode::AccessKeyNotFound,
            "Specified access key is not found.",
        )
    }

    /// The AccessKey is disabled.
    pub fn access_key_inactive() -> Self {
        AuthError::new(
            AuthCode::AccessKeyInactive,
            "Specified access key is disabled.",
        )
    }

    pub fn code(&self) -> AuthCode {
        self.code
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The `Message` of the error document, for the client that sent the request.
    pub fn message(&self) -> String {
        match &self.string_to_sign {
            Some(string_to_sign) => format!("{}{string_to_sign}", self.message),
            None => self.message.clone(),
        }
    }
}

impl fmt::Display for AuthError {
    /// For logs: the code and message, without the string to sign.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)?;
        if self.string_to_sign.is_some() {
            f.write_str("<withheld from logs>")?;
        }
        Ok(())
    }
}

impl fmt::Debug for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthError({self})")
    }
}

impl std::error::Error for AuthError {}
