//! A Key and its store: create the key, or report it as it stands, refusing what the spec
//! may not change; rotation and the lifecycle's steps are decided here too (pure).

use jiff::Timestamp;
use kube::ResourceExt;

use super::consumer::{consumer_secret_name, plan_consumer, secret_name_conflict};
use super::import::{plan_external, plan_pending_import};
use super::lifecycle::{self, LifecycleStep};
use super::status::{
    Outcome, Report, converge_status, key_metadata, status_update, version_entries,
};
use super::{FreshIds, NewKey, NewVersion, Observed, Plan, PlanSettings};
use crate::api::{AutomaticRotation, Key, KeyMetadata, KeyState};
use crate::kms::error::{Code, Rejection};
use crate::kms::reason::{READY, Reason};
use crate::kms::rules::{self, ValidKey};
use crate::kms::schedule::{self, format_kms_time};
use crate::store::{self, KeyRecord, NewKeyRecord, Store, VersionRecord};

/// No store: create the key, unless the request is invalid or the key existed before (then
/// its store was lost, and minting again would silently replace its material).
pub(super) fn plan_without_store(
    observed: &Observed<'_>,
    settings: &PlanSettings,
    now: Timestamp,
    fresh: &FreshIds,
) -> Plan {
    let key = observed.key;
    let key_name = key.name_any();
    let previous = previous_metadata(key);
    if let Some(message) = destroyed_as_scheduled(key, now) {
        return converge_status(key, None, None, Outcome::Deleted(message), now);
    }
    // Whether the key existed comes first: a lost store must be reported whatever the spec
    // says now, and the KeyId in status must survive an invalid spec.
    let existed = previous.is_some()
        || observed
            .consumer
            .is_some_and(|s| store::is_consumer_of(s, &key_name));
    if existed {
        let key_id = previous.map_or("(unknown)", |m| m.key_id.as_str());
        let rejection = Rejection::new(
            Code::MaterialStoreMissing,
            format!(
                "the material store Secret {} of key {key_id} is gone; keyward will not mint \
                 replacement material for an existing key: restore the Secret from a backup, or \
                 delete the Key and its consumer Secret to start a new key",
                store::store_name(&key_name)
            ),
        );
        return converge_status(
            key,
            previous.cloned(),
            None,
            Outcome::Rejected(rejection),
            now,
        );
    }
    let valid = match rules::validate(&key.spec, &settings.rules) {
        Ok(valid) => valid,
        Err(rejection) => {
            return converge_status(key, None, None, Outcome::Rejected(rejection), now);
        }
    };
    if observed.consumer.is_some() {
        let rejection = secret_name_conflict(&consumer_secret_name(key));
        return converge_status(key, None, None, Outcome::Rejected(rejection), now);
    }
    Plan::CreateKey(new_key(&valid, settings, now, fresh))
}

/// The key exists: report it, and publish its material if the spec is valid and unchanged.
pub(super) fn plan_with_store(
    observed: &Observed<'_>,
    store: &Store,
    settings: &PlanSettings,
    now: Timestamp,
    fresh: &FreshIds,
) -> Plan {
    let key = observed.key;
    let record = &store.record;
    let valid = rules::validate(&key.spec, &settings.rules)
        .and_then(|valid| check_immutable(&valid, record).map(|()| valid));
    let valid = match valid {
        Ok(valid) => valid,
        Err(rejection) => {
            // Keep reporting the key as it is; the spec's changes are not taken.
            let metadata = match previous_metadata(key) {
                Some(m) if m.key_id == record.key_id => m.clone(),
                _ => key_metadata(record, None),
            };
            return converge_status(
                key,
                Some(metadata),
                Some(record),
                Outcome::Rejected(rejection),
                now,
            );
        }
    };

    if key.metadata.deletion_timestamp.is_some() && valid.deletion_protection {
        let rejection = Rejection::new(
            Code::DeletionProtected,
            format!(
                "deleting this Key is held because spec.deletionProtection is true; set it to \
                 false to let the deletion proceed (key {} then enters PendingDeletion for \
                 {} days before its material is destroyed)",
                record.key_id, valid.pending_window_days
            ),
        );
        return refuse(key, record, &valid, rejection, now);
    }
    if let Some(step) = lifecycle::plan_lifecycle(record, &valid, settings, now) {
        return match step {
            LifecycleStep::Record(record, note) => Plan::UpdateRecord(record, note),
            LifecycleStep::Destroy => Plan::Destroy,
        };
    }
    if valid.desired_state == KeyState::PendingDeletion && record.deletion.is_none() {
        let rejection = Rejection::new(
            Code::DeletionProtected,
            format!(
                "spec.keyState PendingDeletion is refused: key {} has spec.deletionProtection \
                 true; turn deletion protection off first, or set spec.keyState back to Enabled",
                record.key_id
            ),
        );
        return refuse(key, record, &valid, rejection, now);
    }

    let metadata = key_metadata(record, Some(&valid));
    let next_rotation = metadata
        .next_rotation_date
        .as_deref()
        .and_then(schedule::parse_kms_time);
    let rotates = metadata.automatic_rotation == AutomaticRotation::Enabled;
    if rotates
        && let Some(due) = next_rotation
        && schedule::is_due(now, due)
    {
        // Due once, however long ago: a rotation after downtime starts the schedule anew from
        // now, it does not catch up interval by interval.
        let version = VersionRecord {
            key_version_id: fresh.version_id.clone(),
            creation_date: format_kms_time(now),
            requested_by: None,
        };
        return Plan::AddVersion(NewVersion {
            record: record.clone(),
            version,
        });
    }
    match plan_external(observed, record, &valid, now, fresh) {
        Ok(Some(plan)) => return plan,
        Ok(None) => {}
        Err(rejection) if metadata.key_state == KeyState::PendingImport => {
            let outcome = Outcome::Rejected(rejection);
            return plan_pending_import(observed, store, metadata, settings, now, outcome);
        }
        Err(rejection) => {
            return converge_status(
                key,
                Some(metadata),
                Some(record),
                Outcome::Rejected(rejection),
                now,
            );
        }
    }
    let state = metadata.key_state;
    if state == KeyState::PendingImport {
        let message = format!(
            "key {} has origin EXTERNAL and no material: import key material (spec.keyMaterial, \
             wrapped with status.importParameters.publicKey) to enable it",
            record.key_id
        );
        let outcome = Outcome::PendingImport(message);
        return plan_pending_import(observed, store, metadata, settings, now, outcome);
    }

    let secret_name = consumer_secret_name(key);
    let (consumer, mut notes) = match plan_consumer(observed, store, &secret_name, state) {
        Ok(planned) => planned,
        Err(rejection) => {
            return converge_status(
                key,
                Some(metadata),
                Some(record),
                Outcome::Rejected(rejection),
                now,
            );
        }
    };
    let key_id = &record.key_id;
    // No version in the message: a rotation is its own event, not a change of readiness.
    let (reason, message) = match state {
        KeyState::Disabled => (
            Reason::KeyDisabled,
            format!(
                "key {key_id} is Disabled: its material is withdrawn from Secret {secret_name} \
                 until spec.keyState is Enabled again"
            ),
        ),
        KeyState::PendingDeletion => (
            Reason::KeyPendingDeletion,
            format!(
                "key {key_id} will be destroyed at {}: its material is withdrawn from Secret \
                 {secret_name}; set spec.keyState to Enabled or Disabled before then to cancel",
                metadata.delete_date.as_deref().unwrap_or_default()
            ),
        ),
        _ => (
            Reason::KeyReady,
            format!("key {key_id} is Enabled; its material is in Secret {secret_name}"),
        ),
    };
    let delete_due = record.deletion.as_ref().and_then(lifecycle::due_time);
    let report = Report {
        metadata: Some(metadata),
        versions: version_entries(record),
        secret_name: Some(secret_name),
        import_parameters: None,
    };
    let mut converge = status_update(key, report, Outcome::Settled { reason, message }, now);
    converge.consumer = consumer;
    notes.append(&mut converge.notes);
    converge.notes = notes;
    let expiry = record
        .imported
        .as_ref()
        .and_then(|i| i.expire_time.as_deref())
        .and_then(schedule::parse_kms_time);
    let due = [
        if rotates { next_rotation } else { None },
        delete_due,
        expiry,
    ]
    .into_iter()
    .flatten()
    .min();
    converge.requeue_after = due.map(|due| schedule::requeue_delay(now, due, settings.max_requeue));
    Plan::Converge(Box::new(converge))
}

/// Refuses what the spec asks, while still reporting the key as it is.
pub(super) fn refuse(
    key: &Key,
    record: &KeyRecord,
    valid: &ValidKey,
    rejection: Rejection,
    now: Timestamp,
) -> Plan {
    let metadata = key_metadata(record, Some(valid));
    converge_status(
        key,
        Some(metadata),
        Some(record),
        Outcome::Rejected(rejection),
        now,
    )
}

/// Whether the key this Key reported was destroyed as scheduled (its store is gone after its
/// deletion date, or the Key already says so): then it stays deleted, and nothing is minted.
pub(super) fn destroyed_as_scheduled(key: &Key, now: Timestamp) -> Option<String> {
    let status = key.status.as_ref()?;
    let already = status
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.reason == Reason::KeyDeleted);
    let metadata = status.key_metadata.as_ref();
    let due = metadata
        .filter(|m| m.key_state == KeyState::PendingDeletion)
        .and_then(|m| m.delete_date.as_deref())
        .and_then(schedule::parse_kms_time)
        .is_some_and(|due| schedule::is_due(now, due));
    if !(already || due) {
        return None;
    }
    let previous = status
        .conditions
        .iter()
        .find(|c| c.type_ == READY && c.reason == Reason::KeyDeleted);
    Some(match (previous, metadata) {
        (Some(condition), _) => condition.message.clone(),
        (None, Some(m)) => format!(
            "key {} was deleted at {}: its material is destroyed; delete this Key, or create a \
             Key with another name for a new key",
            m.key_id,
            m.delete_date.as_deref().unwrap_or_default()
        ),
        (None, None) => "the key was deleted".to_string(),
    })
}

pub(super) fn previous_metadata(key: &Key) -> Option<&KeyMetadata> {
    key.status.as_ref().and_then(|s| s.key_metadata.as_ref())
}

pub(super) fn new_key(
    valid: &ValidKey,
    settings: &PlanSettings,
    now: Timestamp,
    fresh: &FreshIds,
) -> NewKey {
    let mint = valid.origin == crate::api::Origin::AliyunKms;
    let record = NewKeyRecord {
        key_id: &fresh.key_id,
        region: &settings.rules.region,
        account_id: &settings.account_id,
        created: crate::kms::schedule::truncate_to_second(now),
        key_spec: valid.key_spec,
        key_usage: valid.key_usage,
        origin: valid.origin,
        protection_level: valid.protection_level,
        initial_version_id: mint.then_some(fresh.version_id.as_str()),
        pending_window_days: valid.pending_window_days,
    }
    .build();
    NewKey { record, mint }
}

/// A key's creation facts never change: a spec that now asks for something else is refused.
pub(super) fn check_immutable(valid: &ValidKey, record: &KeyRecord) -> Result<(), Rejection> {
    let changes = [
        ("keySpec", valid.key_spec.as_str(), record.key_spec.as_str()),
        (
            "keyUsage",
            valid.key_usage.as_str(),
            record.key_usage.as_str(),
        ),
        ("origin", valid.origin.as_str(), record.origin.as_str()),
        (
            "protectionLevel",
            valid.protection_level.as_str(),
            record.protection_level.as_str(),
        ),
    ];
    match changes.into_iter().find(|(_, now, then)| now != then) {
        None => Ok(()),
        Some((field, now, then)) => Err(Rejection::new(
            Code::ImmutableField,
            format!(
                "spec.{field} is immutable once the key exists: key {} was created with {then}, \
                 the spec now asks for {now}; set spec.{field}: {then}, or create a Key with \
                 another name for {now}",
                record.key_id
            ),
        )),
    }
}
