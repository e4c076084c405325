//! The events a plan asks to record: each with its reason, named once in
//! [`crate::kms::reason::Reason`].

pub use crate::kms::reason::Reason;
use jiff::Timestamp;

use crate::api::KeyState;
use crate::kms::schedule::format_kms_time;
use crate::store::KeyRecord;

/// An event to record on the Key (or on the store, for a deleted Key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: Reason,
    pub message: String,
}

impl Note {
    /// A Normal event: something keyward did as asked.
    pub fn normal(reason: Reason, message: String) -> Self {
        Note {
            warning: false,
            reason,
            message,
        }
    }

    /// A Warning event: something a person should look at.
    pub fn warning(reason: Reason, message: String) -> Self {
        Note {
            warning: true,
            reason,
            message,
        }
    }
}

/// The one event of a new key: its first Secret and first Ready get none of their own.
pub fn key_created(record: &KeyRecord, secret_name: &str) -> Note {
    let message = match record.newest_version() {
        Some(v) => format!(
            "created key {} ({}) with initial version {}, published in Secret {secret_name}",
            record.key_id, record.key_spec, v.key_version_id,
        ),
        None => format!(
            "created key {} ({}) awaiting imported key material",
            record.key_id, record.key_spec
        ),
    };
    Note::normal(Reason::KeyCreated, message)
}

/// The consumer Secret of an earlier `secretName` was deleted: no Secret but the current one
/// holds the key's material.
pub fn consumer_retired(record: &KeyRecord, former: &str, current: &str) -> Note {
    Note::normal(
        Reason::SecretRetired,
        format!(
            "deleted Secret {former}, which held key {} before spec.secretName became {current}: \
             the key's material is now only in Secret {current}",
            record.key_id
        ),
    )
}

/// A rotation added `version_id`, now the primary version.
pub fn key_rotated(record: &KeyRecord, version_id: &str) -> Note {
    Note::normal(
        Reason::KeyRotated,
        format!(
            "rotated key {}: version {version_id} is now the primary version",
            record.key_id
        ),
    )
}

/// New import parameters were written with the key's record.
pub fn import_parameters_issued(record: &KeyRecord) -> Note {
    let expires = record
        .import_parameters
        .as_ref()
        .map(|p| p.token_expire_time.as_str())
        .unwrap_or_default();
    Note::normal(
        Reason::ImportParametersIssued,
        format!(
            "issued import parameters for key {}: wrap the material with \
             status.importParameters.publicKey and import it before {expires}",
            record.key_id
        ),
    )
}

/// Imported material became the key's version.
pub fn material_imported(record: &KeyRecord) -> Note {
    let version = record.imported.as_ref().map(|i| i.key_version_id.as_str());
    Note::normal(
        Reason::KeyMaterialImported,
        format!(
            "imported key material into key {} as version {}",
            record.key_id,
            version.unwrap_or_default()
        ),
    )
}

/// Imported material expired and left the store (DeleteKeyMaterial).
pub fn material_expired(record: &KeyRecord) -> Note {
    Note::normal(
        Reason::KeyMaterialExpired,
        format!(
            "the imported material of key {} expired and was removed; the key awaits its import \
             again (the same material only)",
            record.key_id
        ),
    )
}

/// A Key's scheduled deletion was due and its material destroyed.
pub fn material_destroyed() -> Note {
    Note::normal(
        Reason::KeyMaterialDestroyed,
        "the scheduled deletion was due: destroyed the key's material".to_string(),
    )
}

/// A deleted Key's store got its deletion recorded.
pub fn deleted_key_scheduled(key_name: &str, record: &KeyRecord) -> Note {
    let delete_date = record
        .deletion
        .as_ref()
        .map(|d| format_kms_time(d.delete_date));
    Note::normal(
        Reason::KeyDeletionScheduled,
        format!(
            "Key {key_name} was deleted: key {} is kept until {} and destroyed then; apply the Key \
             again before then to restore it",
            record.key_id,
            delete_date.unwrap_or_default()
        ),
    )
}

/// A deleted Key's material was destroyed after its pending window.
pub fn deleted_key_destroyed(key_name: &str, record: &KeyRecord) -> Note {
    Note::normal(
        Reason::KeyMaterialDestroyed,
        format!(
            "the pending window of deleted Key {key_name} has passed: destroyed the material of \
             key {}",
            record.key_id
        ),
    )
}

/// The key stopped being Enabled: its Secret stays, without material.
pub fn material_withdrawn(secret_name: &str, state: KeyState, versions: usize) -> Note {
    Note::normal(
        Reason::MaterialWithdrawn,
        format!(
            "withdrew the material from Secret {secret_name}: the key is {state}; the Secret \
             stays, and gets all {versions} version(s) back if the key is enabled"
        ),
    )
}

/// The key is Enabled again: its Secret serves every version again.
pub fn material_restored(secret_name: &str, versions: usize) -> Note {
    Note::normal(
        Reason::MaterialRestored,
        format!("restored all {versions} version(s) to Secret {secret_name}: the key is Enabled"),
    )
}

/// The Secret keyward published was deleted, and is rebuilt from the store.
pub fn secret_deleted_restored(secret_name: &str, versions: usize) -> Note {
    Note::warning(
        Reason::SecretRestored,
        format!(
            "Secret {secret_name} was deleted; rebuilt it from the material store with all \
             {versions} version(s)"
        ),
    )
}

/// The Secret was changed outside keyward, and is rebuilt from the store.
pub fn secret_edited_restored(secret_name: &str, versions: usize) -> Note {
    Note::warning(
        Reason::SecretRestored,
        format!(
            "Secret {secret_name} differed from the material store (changed outside keyward); \
             rebuilt it with all {versions} version(s)"
        ),
    )
}

/// The key's material is published in a Secret of a new name (spec.secretName changed).
pub fn secret_created(secret_name: &str) -> Note {
    Note::normal(
        Reason::SecretCreated,
        format!("published key material in Secret {secret_name}"),
    )
}

/// `keyState` left PendingDeletion before the date: the deletion is cancelled.
pub fn deletion_cancelled(record: &KeyRecord, delete_date: Timestamp, state: KeyState) -> Note {
    Note::normal(
        Reason::KeyDeletionCancelled,
        format!(
            "cancelled the deletion of key {} scheduled for {}; the key is {state}",
            record.key_id,
            format_kms_time(delete_date)
        ),
    )
}

/// `keyState: PendingDeletion` scheduled the key's destruction.
pub fn deletion_scheduled(record: &KeyRecord, delete_date: &str) -> Note {
    Note::normal(
        Reason::KeyDeletionScheduled,
        format!(
            "key {} will be destroyed at {delete_date}; set spec.keyState to Enabled or Disabled \
             before then to cancel",
            record.key_id
        ),
    )
}
