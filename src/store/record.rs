//! The store's record of a key: its identity, creation facts, versions and lifecycle facts,
//! as typed values (read and written as `key.json`).

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::api::ImportParameters;
use crate::api::{KeySpec, KeyUsage, Origin, ProtectionLevel};
use crate::kms::schedule::{kms_time, truncate_to_second};

/// What the store records about a key: its identity and creation facts, fixed when the key is
/// created, and its versions, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    pub key_id: String,
    pub arn: String,
    pub creator: String,
    #[serde(with = "kms_time")]
    pub creation_date: Timestamp,
    pub key_spec: KeySpec,
    pub key_usage: KeyUsage,
    pub origin: Origin,
    pub protection_level: ProtectionLevel,
    #[serde(default)]
    pub versions: Vec<VersionRecord>,
    /// The pending window the spec last asked for, in days: used if the Key object is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_window_days: Option<u32>,
    /// A scheduled deletion, kept with the material so that no restart, downtime or deleted
    /// Key object can lose or shorten it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion: Option<ScheduledDeletion>,
    /// An EXTERNAL key's current import parameters; the wrapping private key is the store's
    /// `import.private.pem` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_parameters: Option<ImportParameters>,
    /// An EXTERNAL key's imported material: its version and fingerprint stay after it expires,
    /// so that importing the same material again restores it and other material is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<ImportedMaterial>,
    /// The consumer Secrets keyward may have written for this key, in the Key's namespace:
    /// each name is recorded before its first write, and dropped only once that Secret no
    /// longer holds the key (after a `secretName` change). Empty in a store written before
    /// keyward kept this list.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub consumer_secrets: BTreeSet<String>,
}

/// What is known of an EXTERNAL key's material (never the material itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportedMaterial {
    pub key_version_id: String,
    #[serde(with = "kms_time")]
    pub creation_date: Timestamp,
    /// SHA-256 of the material, to recognise a re-import of the same material.
    pub fingerprint: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "kms_time::option"
    )]
    pub expire_time: Option<Timestamp>,
}

/// When the material will be destroyed, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledDeletion {
    #[serde(with = "kms_time")]
    pub delete_date: Timestamp,
    #[serde(with = "kms_time")]
    pub scheduled_at: Timestamp,
    pub cause: DeletionCause,
}

/// What scheduled a deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeletionCause {
    /// `spec.keyState: PendingDeletion`.
    KeyState,
    /// The Key object was deleted.
    KeyDeleted,
}

/// One key version (KMS DescribeKeyVersion).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionRecord {
    pub key_version_id: String,
    #[serde(with = "kms_time")]
    pub creation_date: Timestamp,
    /// The UID of the KeyVersion that asked for this version, so that a request whose status
    /// was never written (a crash) finds its version instead of minting another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

impl KeyRecord {
    /// Whether the key has version `key_version_id`.
    pub fn has_version(&self, key_version_id: &str) -> bool {
        self.versions
            .iter()
            .any(|v| v.key_version_id == key_version_id)
    }

    /// The newest version: the primary version of a symmetric key, the default entries of an
    /// asymmetric one.
    pub fn newest_version(&self) -> Option<&VersionRecord> {
        self.versions.last()
    }

    /// When the newest version was generated (KMS LastRotationDate).
    pub fn last_rotation(&self) -> Option<Timestamp> {
        self.newest_version().map(|v| v.creation_date)
    }
}

/// The record of a new key.
pub struct NewKeyRecord<'a> {
    pub key_id: &'a str,
    pub region: &'a str,
    pub account_id: &'a str,
    pub created: Timestamp,
    pub key_spec: KeySpec,
    pub key_usage: KeyUsage,
    pub origin: Origin,
    pub protection_level: ProtectionLevel,
    /// The initial version's id; `None` for a key that awaits imported material.
    pub initial_version_id: Option<&'a str>,
    pub pending_window_days: u32,
    /// The consumer Secret the key will be published in.
    pub consumer_secret: &'a str,
}

impl NewKeyRecord<'_> {
    pub fn build(&self) -> KeyRecord {
        let creation_date = truncate_to_second(self.created);
        KeyRecord {
            key_id: self.key_id.to_string(),
            arn: format!(
                "acs:kms:{}:{}:key/{}",
                self.region, self.account_id, self.key_id
            ),
            creator: self.account_id.to_string(),
            creation_date,
            key_spec: self.key_spec,
            key_usage: self.key_usage,
            origin: self.origin,
            protection_level: self.protection_level,
            versions: self
                .initial_version_id
                .map(|id| VersionRecord {
                    key_version_id: id.to_string(),
                    creation_date,
                    requested_by: None,
                })
                .into_iter()
                .collect(),
            pending_window_days: Some(self.pending_window_days),
            deletion: None,
            import_parameters: None,
            imported: None,
            consumer_secrets: BTreeSet::from([self.consumer_secret.to_string()]),
        }
    }
}
