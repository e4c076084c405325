//! The KMS's error codes and the refusals that carry them (pure).
//!
//! A [`Rejection`] is a problem with what the user asked for (or with what the cluster holds):
//! it is reported on the resource and is not retried until something changes. Each [`Code`]
//! maps to a condition reason, an event reason and a bounded metric label. Failures to talk to
//! the API server are [`crate::error::Error`]s instead.

use std::fmt;

/// What is wrong, as a KMS error code where the seed has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// A field has a value the KMS does not accept.
    InvalidParameter,
    /// A field the KMS requires in this combination is missing.
    MissingParameter,
    /// The combination is valid on its own but the KMS does not support it.
    UnsupportedOperation,
    /// The protection level cannot hold the key: no HSM, or an HSM without the key spec.
    UnsupportedProtectionLevel,
    /// A field that is fixed once the key exists was changed.
    ImmutableField,
    /// The consumer Secret's name is taken by a Secret keyward did not create for this key.
    SecretNameConflict,
    /// The key exists but its material store is gone: keyward will not mint replacement material.
    MaterialStoreMissing,
    /// The material store exists but cannot be read (edited by hand, or another tool's Secret).
    MaterialStoreInvalid,
    /// CreateKeyVersion: not available for this key, or too soon after the last version.
    RejectedUnsupportedOperation,
    /// CreateKeyVersion: the key is Disabled.
    RejectedDisabled,
    /// CreateKeyVersion: the key is PendingDeletion.
    RejectedPendingDeletion,
    /// CreateKeyVersion: the key awaits imported material.
    RejectedPendingImport,
    /// CreateKeyVersion: the limit of asymmetric key versions is reached.
    RejectedLimitExceeded,
    /// Deletion refused (or a Key's deletion held) by spec.deletionProtection.
    DeletionProtected,
    /// ImportKeyMaterial: the material is wrong (length, unwrap) or not this key's.
    InvalidKeyMaterial,
    /// ImportKeyMaterial: the token is not the current import parameters' token.
    InvalidImportToken,
    /// ImportKeyMaterial: the token has expired.
    ExpiredImportToken,
}

impl Code {
    /// The text a message starts with: the KMS spelling for the seed's codes.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::InvalidParameter => "InvalidParameter",
            Code::MissingParameter => "MissingParameter",
            Code::UnsupportedOperation => "UnsupportedOperation",
            Code::UnsupportedProtectionLevel => "Unsupported.ProtectionLevel",
            Code::ImmutableField => "ImmutableField",
            Code::SecretNameConflict => "SecretNameConflict",
            Code::MaterialStoreMissing => "MaterialStoreMissing",
            Code::MaterialStoreInvalid => "MaterialStoreInvalid",
            Code::RejectedUnsupportedOperation => "Rejected.UnsupportedOperation",
            Code::RejectedDisabled => "Rejected.Disabled",
            Code::RejectedPendingDeletion => "Rejected.PendingDeletion",
            Code::RejectedPendingImport => "Rejected.PendingImport",
            Code::RejectedLimitExceeded => "Rejected.LimitExceeded",
            Code::DeletionProtected => "Forbidden.DeletionProtection",
            Code::InvalidKeyMaterial => "InvalidKeyMaterial",
            Code::InvalidImportToken => "InvalidImportToken",
            Code::ExpiredImportToken => "ExpiredImportToken",
        }
    }

    /// The code in CamelCase without dots: condition reason, event reason and metric label.
    pub const fn reason(self) -> &'static str {
        match self {
            Code::InvalidParameter => "InvalidParameter",
            Code::MissingParameter => "MissingParameter",
            Code::UnsupportedOperation => "UnsupportedOperation",
            Code::UnsupportedProtectionLevel => "UnsupportedProtectionLevel",
            Code::ImmutableField => "ImmutableField",
            Code::SecretNameConflict => "SecretNameConflict",
            Code::MaterialStoreMissing => "MaterialStoreMissing",
            Code::MaterialStoreInvalid => "MaterialStoreInvalid",
            Code::RejectedUnsupportedOperation => "RejectedUnsupportedOperation",
            Code::RejectedDisabled => "RejectedDisabled",
            Code::RejectedPendingDeletion => "RejectedPendingDeletion",
            Code::RejectedPendingImport => "RejectedPendingImport",
            Code::RejectedLimitExceeded => "RejectedLimitExceeded",
            Code::DeletionProtected => "ForbiddenDeletionProtection",
            Code::InvalidKeyMaterial => "InvalidKeyMaterial",
            Code::InvalidImportToken => "InvalidImportToken",
            Code::ExpiredImportToken => "ExpiredImportToken",
        }
    }

    /// Whether this is a final answer to a CreateKeyVersion request.
    pub const fn is_final_rejection(self) -> bool {
        matches!(
            self,
            Code::RejectedUnsupportedOperation
                | Code::RejectedDisabled
                | Code::RejectedPendingDeletion
                | Code::RejectedPendingImport
        )
    }

    /// Every code, for tests and documentation.
    pub const ALL: &'static [Code] = &[
        Code::InvalidParameter,
        Code::MissingParameter,
        Code::UnsupportedOperation,
        Code::UnsupportedProtectionLevel,
        Code::ImmutableField,
        Code::SecretNameConflict,
        Code::MaterialStoreMissing,
        Code::MaterialStoreInvalid,
        Code::RejectedUnsupportedOperation,
        Code::RejectedDisabled,
        Code::RejectedPendingDeletion,
        Code::RejectedPendingImport,
        Code::RejectedLimitExceeded,
        Code::DeletionProtected,
        Code::InvalidKeyMaterial,
        Code::InvalidImportToken,
        Code::ExpiredImportToken,
    ];
}

/// A refused request: what is wrong and what to set instead. Never carries key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub code: Code,
    /// Which field, which value, what is allowed; without the code prefix.
    pub detail: String,
}

impl Rejection {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Rejection {
            code,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl std::error::Error for Rejection {}

/// Quotes a user-supplied value for a message: escaped, and cut short if long, so that neither
/// control characters nor a megabyte of text end up in a condition or event.
pub fn quote(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    if value.chars().count() <= MAX_CHARS {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX_CHARS).collect();
        format!("{head:?}... ({} characters)", value.chars().count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_message_starts_with_the_kms_code() {
        let r = Rejection::new(Code::UnsupportedProtectionLevel, "HSM has no backend");
        assert_eq!(
            r.to_string(),
            "Unsupported.ProtectionLevel: HSM has no backend"
        );
    }

    #[test]
    fn reasons_are_camel_case_without_dots() {
        for &code in Code::ALL {
            let reason = code.reason();
            assert!(
                reason.chars().next().unwrap().is_ascii_uppercase(),
                "{reason}"
            );
            assert!(
                reason.chars().all(|c| c.is_ascii_alphanumeric()),
                "{reason}"
            );
            assert_eq!(reason, code.as_str().replace('.', ""), "{reason}");
        }
    }

    #[test]
    fn quote_escapes_and_shortens() {
        assert_eq!(quote("7D"), "\"7D\"");
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(10_000);
        let quoted = quote(&long);
        assert!(quoted.len() < 100, "{quoted}");
        assert!(quoted.ends_with("(10000 characters)"));
    }
}
