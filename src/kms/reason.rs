//! Every reason keyward reports, named once: the reason of each event it records and of each
//! Ready condition it writes. A refusal's reason is its code's ([`Code::reason`]).

use std::fmt;

use crate::kms::error::Code;

/// The condition type that kstatus, Argo CD and Flux read.
pub const READY: &str = "Ready";

/// Why an event was recorded or why the Ready condition says what it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    // The Ready condition of a Key.
    /// Enabled, its material published.
    KeyReady,
    /// Disabled: its material withdrawn.
    KeyDisabled,
    /// PendingDeletion: its material withdrawn until it is destroyed.
    KeyPendingDeletion,
    /// An EXTERNAL key awaiting its material.
    PendingImport,
    /// Destroyed as scheduled; final for its Key object.
    KeyDeleted,

    // Events of a Key.
    KeyCreated,
    KeyRotated,
    KeyDeletionScheduled,
    KeyDeletionCancelled,
    KeyMaterialDestroyed,
    ImportParametersIssued,
    KeyMaterialImported,
    KeyMaterialExpired,
    MaterialWithdrawn,
    MaterialRestored,
    SecretCreated,
    SecretRestored,
    SecretRetired,

    // The Ready condition of a KeyVersion.
    /// The version was created: the request's answer.
    Created,
    /// The Key named by the request does not exist (yet).
    WaitingForKey,

    /// Refused, with the KMS's code.
    Refused(Code),
}

impl Reason {
    /// The reason as written on events and conditions (CamelCase, no dots).
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::KeyReady => "KeyReady",
            Reason::KeyDisabled => "KeyDisabled",
            Reason::KeyPendingDeletion => "KeyPendingDeletion",
            Reason::PendingImport => "PendingImport",
            Reason::KeyDeleted => "KeyDeleted",
            Reason::KeyCreated => "KeyCreated",
            Reason::KeyRotated => "KeyRotated",
            Reason::KeyDeletionScheduled => "KeyDeletionScheduled",
            Reason::KeyDeletionCancelled => "KeyDeletionCancelled",
            Reason::KeyMaterialDestroyed => "KeyMaterialDestroyed",
            Reason::ImportParametersIssued => "ImportParametersIssued",
            Reason::KeyMaterialImported => "KeyMaterialImported",
            Reason::KeyMaterialExpired => "KeyMaterialExpired",
            Reason::MaterialWithdrawn => "MaterialWithdrawn",
            Reason::MaterialRestored => "MaterialRestored",
            Reason::SecretCreated => "SecretCreated",
            Reason::SecretRestored => "SecretRestored",
            Reason::SecretRetired => "SecretRetired",
            Reason::Created => "Created",
            Reason::WaitingForKey => "WaitingForKey",
            Reason::Refused(code) => code.reason(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason is compared with what a condition or event says.
impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<Reason> for &str {
    fn eq(&self, other: &Reason) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Reason> for String {
    fn eq(&self, other: &Reason) -> bool {
        self == other.as_str()
    }
}
