//! The status of a Key: its KMS KeyMetadata and the standard Ready condition, written only
//! when it changed, and the event a change of readiness deserves (pure).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::lifecycle;
use super::{Converge, Note, Plan};
use crate::api::key::KeyVersionEntry;
use crate::api::{AutomaticRotation, ImportParameters, Key, KeyMetadata, KeyState, KeyStatus};
use crate::kms::error::Rejection;
use crate::kms::reason::{READY, Reason};
use crate::kms::rules::ValidKey;
use crate::kms::schedule::{self, format_kms_time};
use crate::store::KeyRecord;

/// How the key stands, for the Ready condition.
pub(super) enum Outcome {
    /// As the spec asks: Enabled, Disabled or PendingDeletion.
    Settled {
        reason: Reason,
        message: String,
    },
    PendingImport(String),
    /// Destroyed as scheduled; final for this Key object.
    Deleted(String),
    Rejected(Rejection),
}

/// The KMS KeyMetadata of a stored key. Without a valid spec, the spec-dependent fields
/// (description, rotation) take neutral values.
pub fn key_metadata(record: &KeyRecord, valid: Option<&ValidKey>) -> KeyMetadata {
    let key_state = lifecycle::key_state(record, valid.map(|v| v.desired_state));
    let rotation = valid.and_then(|v| v.rotation);
    // A key holding the most versions one key may hold rotates no more.
    let full = record.versions.len() >= crate::store::max_versions(record.key_spec);
    let rotation = rotation.filter(|_| !full);
    let automatic_rotation = match rotation {
        None if full && valid.is_some_and(|v| v.rotation.is_some()) => AutomaticRotation::Suspended,
        None => AutomaticRotation::Disabled,
        Some(_) if key_state == KeyState::Enabled => AutomaticRotation::Enabled,
        Some(_) => AutomaticRotation::Suspended,
    };
    let last_rotation = record.last_rotation();
    KeyMetadata {
        arn: record.arn.clone(),
        automatic_rotation,
        creation_date: format_kms_time(record.creation_date),
        creator: record.creator.clone(),
        delete_date: record
            .deletion
            .as_ref()
            .map(|d| format_kms_time(d.delete_date)),
        description: valid.map(|v| v.description.clone()).unwrap_or_default(),
        key_id: record.key_id.clone(),
        key_spec: record.key_spec,
        key_state,
        key_usage: record.key_usage,
        last_rotation_date: last_rotation.map(format_kms_time),
        material_expire_time: record
            .imported
            .as_ref()
            .filter(|_| !record.versions.is_empty())
            .and_then(|i| i.expire_time.map(format_kms_time)),
        next_rotation_date: rotation
            .zip(last_rotation)
            .and_then(|(interval, last)| last.checked_add(interval.as_duration()).ok())
            .map(format_kms_time),
        origin: record.origin,
        primary_key_version: record
            .key_spec
            .is_symmetric()
            .then(|| record.newest_version().map(|v| v.key_version_id.clone()))
            .flatten(),
        protection_level: record.protection_level,
        rotation_interval: rotation.map(|i| i.to_kms_string()),
    }
}

/// What the status reports about the key itself.
pub(super) struct Report {
    pub(super) metadata: Option<KeyMetadata>,
    pub(super) versions: Vec<KeyVersionEntry>,
    pub(super) secret_name: Option<String>,
    pub(super) import_parameters: Option<ImportParameters>,
}

/// Every version of a key, oldest first (KMS ListKeyVersions).
pub(super) fn version_entries(record: &KeyRecord) -> Vec<KeyVersionEntry> {
    record
        .versions
        .iter()
        .map(|v| KeyVersionEntry {
            key_version_id: v.key_version_id.clone(),
            creation_date: format_kms_time(v.creation_date),
        })
        .collect()
}

/// A plan that writes nothing but the status (when it changed). Without a record, what the
/// status said about the key's versions and Secret is kept as long as the key is reported.
pub(super) fn converge_status(
    key: &Key,
    metadata: Option<KeyMetadata>,
    record: Option<&KeyRecord>,
    outcome: Outcome,
    now: Timestamp,
) -> Plan {
    let previous = key.status.as_ref().filter(|_| metadata.is_some());
    let versions = match record {
        Some(record) => version_entries(record),
        None => previous.map(|s| s.key_versions.clone()).unwrap_or_default(),
    };
    let secret_name = key.status.as_ref().and_then(|s| s.secret_name.clone());
    // Import parameters are shown while a key awaits its material.
    let import_parameters = record
        .filter(|r| r.versions.is_empty())
        .and_then(|r| r.import_parameters.clone());
    let report = Report {
        metadata,
        versions,
        secret_name,
        import_parameters,
    };
    Plan::Converge(Box::new(status_update(key, report, outcome, now)))
}

/// The status to write (if it changed) and the event that a change of readiness deserves.
pub(super) fn status_update(
    key: &Key,
    report: Report,
    outcome: Outcome,
    now: Timestamp,
) -> Converge {
    let previous = key.status.as_ref();
    let readiness = match outcome {
        Outcome::Settled { reason, message } => Readiness::ready(reason, message),
        Outcome::PendingImport(message) => Readiness::waiting(Reason::PendingImport, message),
        Outcome::Deleted(message) => Readiness::waiting(Reason::KeyDeleted, message),
        Outcome::Rejected(rejection) => Readiness::rejected(&rejection),
    };
    let previous_conditions = previous.map_or(&[][..], |s| s.conditions.as_slice());
    // A new key turning Ready needs no event of its own: creating it recorded KeyCreated.
    let first_ready = readiness.ready && !previous_conditions.iter().any(|c| c.type_ == READY);
    let (conditions, note) =
        ready_conditions(previous_conditions, readiness, key.metadata.generation, now);
    let note = note.filter(|_| !first_ready);
    let desired = KeyStatus {
        key_metadata: report.metadata,
        key_versions: report.versions,
        import_parameters: report.import_parameters,
        secret_name: report.secret_name,
        conditions,
        observed_generation: key.metadata.generation,
    };
    let status = (previous != Some(&desired)).then_some(desired);
    Converge {
        consumer: None,
        status,
        notes: note.into_iter().collect(),
        requeue_after: None,
        finalizer: None,
    }
}

/// What the Ready condition should say.
pub(crate) struct Readiness {
    ready: bool,
    reason: Reason,
    message: String,
    warning: bool,
}

impl Readiness {
    pub(crate) fn ready(reason: Reason, message: String) -> Self {
        Readiness {
            ready: true,
            reason,
            message,
            warning: false,
        }
    }

    /// Not ready, and nothing is wrong: waiting for something to happen.
    pub(crate) fn waiting(reason: Reason, message: String) -> Self {
        Readiness {
            ready: false,
            reason,
            message,
            warning: false,
        }
    }

    pub(crate) fn rejected(rejection: &Rejection) -> Self {
        Readiness {
            ready: false,
            reason: Reason::Refused(rejection.code),
            message: rejection.to_string(),
            warning: true,
        }
    }
}

/// The conditions with Ready set as `readiness` says (others kept), and the event to record if
/// readiness changed. `lastTransitionTime` only moves when the condition's status does.
pub(crate) fn ready_conditions(
    previous: &[Condition],
    readiness: Readiness,
    generation: Option<i64>,
    now: Timestamp,
) -> (Vec<Condition>, Option<Note>) {
    let status = if readiness.ready { "True" } else { "False" };
    let previous_ready = previous.iter().find(|c| c.type_ == READY);
    let last_transition_time = match previous_ready {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(schedule::truncate_to_second(now)),
    };
    let changed = previous_ready.is_none_or(|c| {
        c.status != status || c.reason != readiness.reason || c.message != readiness.message
    });
    let mut conditions: Vec<Condition> = previous
        .iter()
        .filter(|c| c.type_ != READY)
        .cloned()
        .collect();
    conditions.push(Condition {
        type_: READY.to_string(),
        status: status.to_string(),
        reason: readiness.reason.to_string(),
        message: readiness.message.clone(),
        observed_generation: generation,
        last_transition_time,
    });
    let note = changed.then_some(Note {
        warning: readiness.warning,
        reason: readiness.reason,
        message: readiness.message,
    });
    (conditions, note)
}
