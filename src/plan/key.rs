//! A Key and its store: create the key, or report it as it stands, refusing what the spec
//! may not change; rotation and the lifecycle's steps are decided here too (pure).

use jiff::Timestamp;
use kube::ResourceExt;

use super::consumer::{consumer_secret_name, plan_consumer, secret_name_conflict};
use super::import::{plan_external, plan_pending_import};
use super::key_version::{LIMIT_RECHECK, within_limit};
use super::lifecycle::{self, LifecycleStep};
use super::status::{
    Outcome, Report, converge_status, key_metadata, status_update, version_entries,
};
use super::{FreshIds, NewKey, NewVersion, Observed, Plan, PlanSettings};
use crate::api::{Key, KeyMetadata, KeyState};
use crate::kms::error::{Code, Rejection};
use crate::kms::reason::{READY, Reason};
use crate::kms::rules::{self, ValidKey};
use crate::kms::schedule;
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
                "the material store Secret {} (in keyward's store namespace) of key {key_id} is \
                 gone; keyward will not mint replacement material for an existing key: restore \
                 the Secret from a backup, or delete the Key and its consumer Secret to start a \
                 new key",
                store::store_name(&key.namespace().unwrap_or_default(), &key_name)
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
    if !valid.key_spec.is_symmetric() {
        // Not counted is not room: never mint past the limit.
        let held = observed.asymmetric_versions.unwrap_or(usize::MAX);
        let namespace = key.namespace().unwrap_or_default();
        if let Err(rejection) = within_limit(&namespace, held, settings) {
            let mut plan = converge_status(key, None, None, Outcome::Rejected(rejection), now);
            if let Plan::Converge(converge) = &mut plan {
                converge.requeue_after = Some(LIMIT_RECHECK);
            }
            return plan;
        }
    }
    let consumer = consumer_secret_name(key);
    Plan::CreateKey(new_key(&valid, &consumer, settings, now, fresh))
}

/// A key that exists and whose spec is usable: what each check of [`plan_with_store`] reads.
struct Existing<'a> {
    observed: &'a Observed<'a>,
    store: &'a Store,
    valid: ValidKey,
    settings: &'a PlanSettings,
    now: Timestamp,
    fresh: &'a FreshIds,
}

impl Existing<'_> {
    fn key(&self) -> &Key {
        self.observed.key
    }

    fn record(&self) -> &KeyRecord {
        &self.store.record
    }

    fn metadata(&self) -> KeyMetadata {
        key_metadata(self.record(), Some(&self.valid))
    }

    /// Refuses what the spec asks, while still reporting the key as it is.
    fn refuse(&self, rejection: Rejection) -> Plan {
        let outcome = Outcome::Rejected(rejection);
        converge_status(
            self.key(),
            Some(self.metadata()),
            Some(self.record()),
            outcome,
            self.now,
        )
    }

    /// When the key rotates next, if it rotates (Enabled, with rotation on, and room for
    /// another version).
    fn next_rotation(&self) -> Option<Timestamp> {
        let interval = self.valid.rotation?;
        let enabled = lifecycle::key_state(self.record(), Some(self.valid.desired_state))
            == KeyState::Enabled;
        let record = self.record();
        if record.versions.len() >= store::max_versions(record.key_spec) {
            return None;
        }
        let last = self.record().last_rotation()?;
        enabled
            .then(|| schedule::next_rotation(last, interval))
            .flatten()
    }
}

/// One check of an existing key: a plan that settles this pass, or `None` to ask the next.
type Check = fn(&Existing<'_>) -> Option<Plan>;

/// The checks of an existing key, in order; the first with a plan wins, and a key that passes
/// them all converges on its spec ([`settled`]).
const CHECKS: [Check; 8] = [
    consumers_recorded,
    former_consumer_retired,
    held_by_deletion_protection,
    lifecycle_step,
    deletion_refused_by_protection,
    rotation_due,
    external_step,
    awaiting_import,
];

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
            let outcome = Outcome::Rejected(rejection);
            return converge_status(key, Some(metadata), Some(record), outcome, now);
        }
    };
    let existing = Existing {
        observed,
        store,
        valid,
        settings,
        now,
        fresh,
    };
    CHECKS
        .iter()
        .find_map(|check| check(&existing))
        .unwrap_or_else(|| settled(&existing))
}

/// The record names every consumer Secret before keyward writes it, so that none is forgotten
/// when `secretName` changes: the current one, and those found for a record from before the
/// list was kept.
fn consumers_recorded(existing: &Existing<'_>) -> Option<Plan> {
    let recorded = &existing.record().consumer_secrets;
    let current = consumer_secret_name(existing.key());
    let legacy = recorded
        .is_empty()
        .then_some(existing.observed.former_consumers.keys());
    let missing: Vec<String> = std::iter::once(&current)
        .chain(legacy.into_iter().flatten())
        .filter(|name| !recorded.contains(*name))
        .cloned()
        .collect();
    if missing.is_empty() {
        return None;
    }
    let mut record = existing.record().clone();
    record.consumer_secrets.extend(missing);
    Some(Plan::UpdateRecord(Box::new(record), None))
}

/// A consumer Secret of an earlier `secretName` is deleted (it held the key's material), then
/// dropped from the record; one that is gone already, or is no longer keyward's, is dropped.
fn former_consumer_retired(existing: &Existing<'_>) -> Option<Plan> {
    let key = existing.key();
    let current = consumer_secret_name(key);
    let key_name = key.name_any();
    let record = existing.record();
    let former = record.consumer_secrets.iter().filter(|n| **n != current);
    let observed = existing.observed.former_consumers;
    let mut gone = Vec::new();
    for name in former {
        match observed.get(name) {
            Some(Some(secret)) if store::is_consumer_of(secret, &key_name) => {
                let note = super::event::consumer_retired(record, name, &current);
                return Some(Plan::RetireConsumer(Box::new(secret.clone()), note));
            }
            // Not read this pass: decided once it is.
            None => {}
            Some(_) => gone.push(name.clone()),
        }
    }
    if gone.is_empty() {
        return None;
    }
    let mut updated = record.clone();
    updated.consumer_secrets.retain(|n| !gone.contains(n));
    Some(Plan::UpdateRecord(Box::new(updated), None))
}

/// A protected Key's deletion is held by its finalizer, and says why.
fn held_by_deletion_protection(existing: &Existing<'_>) -> Option<Plan> {
    let deleting = existing.key().metadata.deletion_timestamp.is_some();
    if !(deleting && existing.valid.deletion_protection) {
        return None;
    }
    Some(existing.refuse(Rejection::new(
        Code::DeletionProtected,
        format!(
            "deleting this Key is held because spec.deletionProtection is true; set it to false \
             to let the deletion proceed (key {} then enters PendingDeletion for {} days before \
             its material is destroyed)",
            existing.record().key_id,
            existing.valid.pending_window_days
        ),
    )))
}

/// A deletion to schedule, cancel or carry out, or the pending window to record.
fn lifecycle_step(existing: &Existing<'_>) -> Option<Plan> {
    let step = lifecycle::plan_lifecycle(
        existing.record(),
        &existing.valid,
        existing.settings,
        existing.now,
    )?;
    Some(match step {
        LifecycleStep::Record(record, note) => Plan::UpdateRecord(record, note),
        LifecycleStep::Destroy => Plan::Destroy,
    })
}

/// `keyState: PendingDeletion` that the lifecycle did not schedule: deletion protection holds it.
fn deletion_refused_by_protection(existing: &Existing<'_>) -> Option<Plan> {
    let asked = existing.valid.desired_state == KeyState::PendingDeletion;
    if !(asked && existing.record().deletion.is_none()) {
        return None;
    }
    Some(existing.refuse(Rejection::new(
        Code::DeletionProtected,
        format!(
            "spec.keyState PendingDeletion is refused: key {} has spec.deletionProtection true; \
             turn deletion protection off first, or set spec.keyState back to Enabled",
            existing.record().key_id
        ),
    )))
}

/// A rotation is due: once, however long ago (after downtime the schedule starts anew from
/// now; it does not catch up interval by interval).
fn rotation_due(existing: &Existing<'_>) -> Option<Plan> {
    let due = existing.next_rotation()?;
    if !schedule::is_due(existing.now, due) {
        return None;
    }
    let version = VersionRecord {
        key_version_id: existing.fresh.version_id.clone(),
        creation_date: schedule::truncate_to_second(existing.now),
        requested_by: None,
    };
    Some(Plan::AddVersion(NewVersion {
        record: existing.record().clone(),
        version,
    }))
}

/// An EXTERNAL key's import step, or why its import is refused.
fn external_step(existing: &Existing<'_>) -> Option<Plan> {
    let (observed, record, now) = (existing.observed, existing.record(), existing.now);
    match plan_external(observed, record, &existing.valid, now, existing.fresh) {
        Ok(plan) => plan,
        Err(rejection) => {
            let metadata = existing.metadata();
            if metadata.key_state != KeyState::PendingImport {
                return Some(existing.refuse(rejection));
            }
            let outcome = Outcome::Rejected(rejection);
            let settings = existing.settings;
            let store = existing.store;
            Some(plan_pending_import(
                observed, store, metadata, settings, now, outcome,
            ))
        }
    }
}

/// An EXTERNAL key without material reports how to import it.
fn awaiting_import(existing: &Existing<'_>) -> Option<Plan> {
    let metadata = existing.metadata();
    if metadata.key_state != KeyState::PendingImport {
        return None;
    }
    let message = format!(
        "key {} has origin EXTERNAL and no material: import key material (spec.keyMaterial, \
         wrapped with status.importParameters.publicKey) to enable it",
        existing.record().key_id
    );
    let (observed, store, settings) = (existing.observed, existing.store, existing.settings);
    let outcome = Outcome::PendingImport(message);
    Some(plan_pending_import(
        observed,
        store,
        metadata,
        settings,
        existing.now,
        outcome,
    ))
}

/// The key is as its spec asks: its consumer Secret and status follow, and it is looked at
/// again when its next rotation, deletion or material expiry falls due.
fn settled(existing: &Existing<'_>) -> Plan {
    let (key, record, now) = (existing.key(), existing.record(), existing.now);
    let metadata = existing.metadata();
    let state = metadata.key_state;
    let secret_name = consumer_secret_name(key);
    let (consumer, mut notes) =
        match plan_consumer(existing.observed, existing.store, &secret_name, state) {
            Ok(planned) => planned,
            Err(rejection) => return existing.refuse(rejection),
        };
    let outcome = settled_outcome(record, &metadata, &secret_name);
    let report = Report {
        metadata: Some(metadata),
        versions: version_entries(record),
        secret_name: Some(secret_name),
        import_parameters: None,
    };
    let mut converge = status_update(key, report, outcome, now);
    converge.consumer = consumer;
    notes.append(&mut converge.notes);
    converge.notes = notes;
    let expiry = record.imported.as_ref().and_then(|i| i.expire_time);
    let delete_due = record.deletion.as_ref().map(lifecycle::due_time);
    let due = [existing.next_rotation(), delete_due, expiry]
        .into_iter()
        .flatten()
        .min();
    let max_requeue = existing.settings.max_requeue;
    converge.requeue_after = due.map(|due| schedule::requeue_delay(now, due, max_requeue));
    Plan::Converge(Box::new(converge))
}

/// What the Ready condition says of a key as its spec asks. No version in the message: a
/// rotation is its own event, not a change of readiness.
fn settled_outcome(record: &KeyRecord, metadata: &KeyMetadata, secret_name: &str) -> Outcome {
    let key_id = &record.key_id;
    let (reason, message) = match metadata.key_state {
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
        _ if record.versions.len() >= store::max_versions(record.key_spec) => (
            Reason::KeyReady,
            format!(
                "key {key_id} is Enabled; its material is in Secret {secret_name}; it holds {} \
                 versions, the most one key may hold, so it rotates no more: create a new key \
                 to rotate to",
                record.versions.len()
            ),
        ),
        _ => (
            Reason::KeyReady,
            format!("key {key_id} is Enabled; its material is in Secret {secret_name}"),
        ),
    };
    Outcome::Settled { reason, message }
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
    consumer_secret: &str,
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
        consumer_secret,
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
