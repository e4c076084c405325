//! Observed state + settings + now -> what to do (pure).
//!
//! The planner reads no clock and draws no randomness: `now` and fresh ids come in as
//! arguments, so every decision is unit-tested with fixed inputs. The reconciler carries the
//! plan out; only [`crate::cluster`] talks to the API server.
//!
//! One file per concern: [`key`] (a Key and its store: create, report, refuse, rotate),
//! [`consumer`] (the Secret workloads mount), [`import`] (EXTERNAL keys), [`lifecycle`]
//! (states, scheduled deletion, destruction), [`key_version`] (CreateKeyVersion requests),
//! [`status`] (KeyMetadata and the Ready condition) and [`event`] (what is recorded).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::api::labels;
use crate::api::{Key, KeyStatus};
use crate::kms::error::Rejection;
use crate::kms::material::SecretBytes;
use crate::kms::rules::{self, RuleSettings};
use crate::kms::schedule::Interval;
use crate::store::{KeyRecord, Store, VersionRecord};
use key::{plan_with_store, plan_without_store, previous_metadata};
use status::{Outcome, converge_status};

pub mod access_key;
pub mod consumer;
pub mod event;
pub mod import;
pub mod key;
pub mod key_version;
pub mod lifecycle;
pub mod status;

pub use consumer::consumer_secret_name;
pub use event::Note;
pub use status::key_metadata;

/// Operator settings the plan depends on.
#[derive(Clone, Debug)]
pub struct PlanSettings {
    pub rules: RuleSettings,
    /// The account id keys are created under (KMS Creator, and part of the ARN).
    pub account_id: String,
    /// The longest a rotating key waits before its schedule is looked at again. Timers run on
    /// a monotonic clock, schedules on the wall clock: this bounds how late a wall-clock jump
    /// or a suspended process can make a rotation.
    pub max_requeue: Duration,
    /// The shortest time between two versions of an asymmetric key (the KMS: 7 days).
    pub key_version_min_interval: Interval,
    /// The most asymmetric key versions across every key the operator manages (the KMS: 50).
    pub max_asymmetric_versions: usize,
    /// The length of one "day" of a pending deletion window: a day, except in tests and
    /// development (`--pending-window-unit`).
    pub pending_window_unit: Interval,
}

/// What the reconciler saw: the Key, its material store and its consumer Secret.
pub struct Observed<'a> {
    pub key: &'a Key,
    /// The material store, parsed: whole, or why it cannot be used.
    pub store: Option<&'a Result<Store, Rejection>>,
    pub consumer: Option<&'a Secret>,
    /// The other consumer Secrets the key may have had (the store's record names them; for a
    /// record from before keyward kept that list, keyward's Secrets labelled with the Key), as
    /// read now: `None` where none is left.
    pub former_consumers: &'a BTreeMap<String, Option<Secret>>,
    /// Asymmetric versions of the Key's namespace, counted when the key may be created with
    /// an asymmetric spec (its initial version is a version); `None` when not counted.
    pub asymmetric_versions: Option<usize>,
    /// For an EXTERNAL key with spec.keyMaterial set: the material read (and unwrapped) from
    /// the named Secret, or why it cannot be imported.
    pub import: Option<&'a Result<SecretBytes, Rejection>>,
}

/// Identifiers for anything the plan may create, drawn by the caller.
pub struct FreshIds {
    pub key_id: String,
    pub version_id: String,
}

/// The next step for one Key.
#[derive(Debug)]
pub enum Plan {
    /// The key does not exist yet: mint its initial material (if any) and create its store.
    /// After that the reconciler plans again with the new store.
    CreateKey(NewKey),
    /// Mint a new version and add it to the key's store (a rotation). After that the
    /// reconciler plans again with the grown store.
    AddVersion(NewVersion),
    /// Rewrite the store's record: a deletion scheduled or cancelled, the pending window
    /// recorded. After that the reconciler plans again.
    UpdateRecord(Box<KeyRecord>, Option<Note>),
    /// The scheduled deletion is due: destroy the material (the store and the consumer
    /// Secret). After that the reconciler plans again and reports the key deleted.
    Destroy,
    /// Issue new import parameters for an EXTERNAL key (none yet, or the token expired).
    IssueImportParameters,
    /// Store the observed imported material as the key's only version, as this record says.
    ImportMaterial(Box<KeyRecord>),
    /// Imported material expired: remove it, leaving this record (DeleteKeyMaterial).
    RemoveMaterial(Box<KeyRecord>),
    /// Delete a consumer Secret the key no longer uses (after a `secretName` change), as it
    /// was read, so that no Secret but the current one holds the key's material.
    RetireConsumer(Box<Secret>, Note),
    /// Bring the consumer Secret and the status in line with the store and the spec.
    Converge(Box<Converge>),
}

/// A version to add to an existing key.
#[derive(Debug, PartialEq)]
pub struct NewVersion {
    pub record: KeyRecord,
    pub version: VersionRecord,
}

/// A key to create.
#[derive(Debug, PartialEq)]
pub struct NewKey {
    pub record: KeyRecord,
    /// Whether to mint the initial version's material (not for keys awaiting an import).
    pub mint: bool,
}

/// Writes that bring the world in line; each `None` or empty means nothing to write.
#[derive(Debug, Default, PartialEq)]
pub struct Converge {
    pub consumer: Option<SecretWrite>,
    pub status: Option<KeyStatus>,
    pub notes: Vec<Note>,
    /// When to look at the key again without a change (a rotation or deletion falling due).
    pub requeue_after: Option<Duration>,
    /// Add (true) or remove (false) the deletion-protection finalizer.
    pub finalizer: Option<bool>,
}

/// A write of the consumer Secret. Holds key material: never log it.
pub enum SecretWrite {
    Create(Secret),
    /// Replace an existing Secret; its resourceVersion makes the write conditional.
    Replace(Secret),
}

impl std::fmt::Debug for SecretWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (verb, secret) = match self {
            SecretWrite::Create(s) => ("Create", s),
            SecretWrite::Replace(s) => ("Replace", s),
        };
        write!(f, "{verb}(Secret {})", secret.name_any())
    }
}

impl PartialEq for SecretWrite {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (SecretWrite::Create(a), SecretWrite::Create(b))
            | (SecretWrite::Replace(a), SecretWrite::Replace(b)) => a == b,
            _ => false,
        }
    }
}

impl Converge {
    /// Writes nothing, asks for nothing.
    pub fn is_noop(&self) -> bool {
        self.consumer.is_none()
            && self.status.is_none()
            && self.notes.is_empty()
            && self.finalizer.is_none()
    }
}

pub fn plan(
    observed: &Observed<'_>,
    settings: &PlanSettings,
    now: Timestamp,
    fresh: &FreshIds,
) -> Plan {
    let mut plan = plan_key(observed, settings, now, fresh);
    // The finalizer follows spec.deletionProtection of a usable spec; an unusable spec changes
    // nothing, this included.
    if let Plan::Converge(converge) = &mut plan
        && let Ok(valid) = rules::validate(&observed.key.spec, &settings.rules)
    {
        let held = observed
            .key
            .finalizers()
            .iter()
            .any(|f| f == labels::DELETION_PROTECTION_FINALIZER);
        if held != valid.deletion_protection {
            converge.finalizer = Some(valid.deletion_protection);
        }
    }
    plan
}

fn plan_key(
    observed: &Observed<'_>,
    settings: &PlanSettings,
    now: Timestamp,
    fresh: &FreshIds,
) -> Plan {
    match observed.store {
        None => plan_without_store(observed, settings, now, fresh),
        Some(Ok(store)) => plan_with_store(observed, store, settings, now, fresh),
        Some(Err(rejection)) => {
            let previous = previous_metadata(observed.key).cloned();
            let outcome = Outcome::Rejected(rejection.clone());
            converge_status(observed.key, previous, None, outcome, now)
        }
    }
}

#[cfg(test)]
mod tests;
