//! Observed state + settings + now -> what to do (pure).
//!
//! The planner reads no clock and draws no randomness: `now` and fresh ids come in as
//! arguments, so every decision is unit-tested with fixed inputs. The reconciler carries the
//! plan out; only `k8s` writes.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::api::ImportParameters;
use crate::api::Origin;
use crate::api::key::KeyVersionEntry;
use crate::api::labels;
use crate::api::{AutomaticRotation, Key, KeyMetadata, KeyState, KeyStatus};
use crate::kms::error::{Code, Rejection};
use crate::kms::material::SecretBytes;
use crate::kms::rules::{self, RuleSettings, ValidKey};
use crate::kms::schedule::{self, Interval, format_kms_time};
use crate::store::{self, ImportedMaterial, KeyRecord, NewKeyRecord, Store, VersionRecord};
use lifecycle::LifecycleStep;

pub mod key_version;
pub mod lifecycle;

/// The condition type that kstatus, Argo CD and Flux read.
pub const READY: &str = "Ready";

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
    pub store: Option<&'a Secret>,
    pub consumer: Option<&'a Secret>,
    /// For an EXTERNAL key with spec.keyMaterial set: the material read (and unwrapped) from
    /// the named Secret, or why it cannot be imported.
    pub import: Option<Result<SecretBytes, Rejection>>,
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

/// An event to record on the Key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
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

/// How the key stands, for the Ready condition.
enum Outcome {
    /// As the spec asks: Enabled, Disabled or PendingDeletion.
    Settled {
        reason: &'static str,
        message: String,
    },
    PendingImport(String),
    /// Destroyed as scheduled; final for this Key object.
    Deleted(String),
    Rejected(Rejection),
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
        Some(store) => match Store::read(store, &observed.key.name_any()) {
            Ok(store) => plan_with_store(observed, &store, settings, now, fresh),
            Err(rejection) => {
                let previous = previous_metadata(observed.key).cloned();
                converge_status(
                    observed.key,
                    previous,
                    None,
                    Outcome::Rejected(rejection),
                    now,
                )
            }
        },
    }
}

/// No store: create the key, unless the request is invalid or the key existed before (then
/// its store was lost, and minting again would silently replace its material).
fn plan_without_store(
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
fn plan_with_store(
    observed: &Observed<'_>,
    store: &Store<'_>,
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
            "KeyDisabled",
            format!(
                "key {key_id} is Disabled: its material is withdrawn from Secret {secret_name} \
                 until spec.keyState is Enabled again"
            ),
        ),
        KeyState::PendingDeletion => (
            "KeyPendingDeletion",
            format!(
                "key {key_id} will be destroyed at {}: its material is withdrawn from Secret \
                 {secret_name}; set spec.keyState to Enabled or Disabled before then to cancel",
                metadata.delete_date.as_deref().unwrap_or_default()
            ),
        ),
        _ => (
            "KeyReady",
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
fn refuse(
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

/// The consumer Secret write, if any, and the event it deserves. A Secret of that name that
/// keyward did not create for this Key is a conflict, never overwritten.
fn plan_consumer(
    observed: &Observed<'_>,
    store: &Store<'_>,
    secret_name: &str,
    state: KeyState,
) -> Result<(Option<SecretWrite>, Vec<Note>), Rejection> {
    let key_name = observed.key.name_any();
    let namespace = observed.key.namespace().unwrap_or_default();
    let existing = observed.consumer;
    if existing.is_some_and(|s| !store::is_consumer_of(s, &key_name)) {
        return Err(secret_name_conflict(secret_name));
    }
    let desired =
        store::desired_consumer(existing, &namespace, secret_name, &key_name, store, state);
    // What keyward last published, by the state it wrote down (not by the data, which a hand
    // edit may have changed).
    let withdrawn = |s: &Secret| {
        let published = s.annotations().get(labels::KEY_STATE).map(String::as_str);
        published.is_some_and(|state| state != KeyState::Enabled.as_str())
    };
    let versions = store.record.versions.len();
    match existing {
        Some(existing) if !withdrawn(existing) && state != KeyState::Enabled => {
            let note = Note {
                warning: false,
                reason: "MaterialWithdrawn",
                message: format!(
                    "withdrew the material from Secret {secret_name}: the key is {state}; the \
                     Secret stays, and gets all {versions} version(s) back if the key is enabled"
                ),
            };
            return Ok((Some(SecretWrite::Replace(desired)), vec![note]));
        }
        Some(existing) if withdrawn(existing) && state == KeyState::Enabled => {
            let note = Note {
                warning: false,
                reason: "MaterialRestored",
                message: format!(
                    "restored all {versions} version(s) to Secret {secret_name}: the key is Enabled"
                ),
            };
            return Ok((Some(SecretWrite::Replace(desired)), vec![note]));
        }
        _ => {}
    }
    let status_secret_name = observed
        .key
        .status
        .as_ref()
        .and_then(|s| s.secret_name.as_deref());
    let published_before = status_secret_name == Some(secret_name);
    Ok(match existing {
        None if published_before => {
            let note = Note {
                warning: true,
                reason: "SecretRestored",
                message: format!(
                    "Secret {secret_name} was deleted; rebuilt it from the material store with \
                     all {} version(s)",
                    store.record.versions.len()
                ),
            };
            (Some(SecretWrite::Create(desired)), vec![note])
        }
        // A key's first Secret is part of creating it: its KeyCreated event names the Secret.
        None if status_secret_name.is_none() => (Some(SecretWrite::Create(desired)), Vec::new()),
        None => {
            let note = Note {
                warning: false,
                reason: "SecretCreated",
                message: format!("published key material in Secret {secret_name}"),
            };
            (Some(SecretWrite::Create(desired)), vec![note])
        }
        Some(existing) if !same_consumer(existing, &desired) => {
            let versions = store.record.versions.len();
            // Serving an older version of this key is the normal state after a new version
            // was added, which has its own event (KeyRotated, the KeyVersion's Created,
            // KeyMaterialImported); anything else means the Secret was changed by hand.
            let served = existing.data.as_ref().and_then(|d| d.get("keyVersionId"));
            let older = store.record.versions.iter().rev().skip(1);
            let notes = if older
                .map(|v| v.key_version_id.as_bytes())
                .any(|id| served.is_some_and(|b| b.0 == id))
            {
                Vec::new()
            } else {
                vec![Note {
                    warning: true,
                    reason: "SecretRestored",
                    message: format!(
                        "Secret {secret_name} differed from the material store (changed outside \
                         keyward); rebuilt it with all {versions} version(s)"
                    ),
                }]
            };
            (Some(SecretWrite::Replace(desired)), notes)
        }
        Some(_) => (None, Vec::new()),
    })
}

/// An EXTERNAL key without material: it reports how to import, withdraws material that
/// expired from its consumer Secret, and looks again when the import token expires.
fn plan_pending_import(
    observed: &Observed<'_>,
    store: &Store<'_>,
    metadata: KeyMetadata,
    settings: &PlanSettings,
    now: Timestamp,
    outcome: Outcome,
) -> Plan {
    let key = observed.key;
    let record = &store.record;
    let token_expiry = record
        .import_parameters
        .as_ref()
        .and_then(|p| schedule::parse_kms_time(&p.token_expire_time));
    let mut plan = converge_status(key, Some(metadata), Some(record), outcome, now);
    if let Plan::Converge(converge) = &mut plan {
        let secret_name = consumer_secret_name(key);
        if observed.consumer.is_some()
            && let Ok((write, mut notes)) =
                plan_consumer(observed, store, &secret_name, KeyState::PendingImport)
        {
            converge.consumer = write;
            notes.append(&mut converge.notes);
            converge.notes = notes;
        }
        converge.requeue_after =
            token_expiry.map(|due| schedule::requeue_delay(now, due, settings.max_requeue));
    }
    plan
}

/// The refusal of material other than what an EXTERNAL key was imported with.
fn other_material(record: &KeyRecord, imported_version: &str) -> Rejection {
    Rejection::new(
        Code::InvalidKeyMaterial,
        format!(
            "key {} was imported with other material (version {imported_version}): only that \
             material can be imported into it again; import it into a new EXTERNAL Key instead",
            record.key_id
        ),
    )
}

/// An EXTERNAL key: import parameters issued while it awaits material, material imported
/// from spec.keyMaterial, other material refused, and expired material removed.
fn plan_external(
    observed: &Observed<'_>,
    record: &KeyRecord,
    valid: &ValidKey,
    now: Timestamp,
    fresh: &FreshIds,
) -> Result<Option<Plan>, Rejection> {
    if record.origin != Origin::External {
        return Ok(None);
    }
    let expire_time = valid.import.as_ref().and_then(|i| i.expire_time);
    if !record.versions.is_empty() {
        let expired = record
            .imported
            .as_ref()
            .and_then(|i| i.expire_time.as_deref());
        if expired
            .and_then(schedule::parse_kms_time)
            .is_some_and(|t| schedule::is_due(now, t))
        {
            let mut removed = record.clone();
            removed.versions.clear();
            return Ok(Some(Plan::RemoveMaterial(Box::new(removed))));
        }
        // Material that cannot be read any more (its Secret deleted once imported, its token
        // expired) is no change; other material that can be is refused: it never replaces the
        // material a key was imported with.
        if let (Some(Ok(material)), Some(previous)) = (&observed.import, &record.imported)
            && crate::kms::import::fingerprint(material.expose()) != previous.fingerprint
        {
            return Err(other_material(record, &previous.key_version_id));
        }
        // The expiry time follows the spec while the material is there; a time already past
        // is refused rather than taking the key out of service at once.
        if let Some(at) = expire_time.filter(|t| schedule::is_due(now, *t))
            && record.imported.as_ref().and_then(|i| i.expire_time.clone())
                != Some(format_kms_time(at))
        {
            return Err(Rejection::new(
                Code::InvalidParameter,
                format!(
                    "spec.keyMaterial.expireTime {} has passed; set a later time, or remove it \
                     for material that does not expire",
                    format_kms_time(at)
                ),
            ));
        }
        let wanted = expire_time.map(format_kms_time);
        if let Some(imported) = &record.imported
            && valid.import.is_some()
            && imported.expire_time != wanted
        {
            let mut updated = record.clone();
            if let Some(i) = updated.imported.as_mut() {
                i.expire_time = wanted;
            }
            return Ok(Some(Plan::UpdateRecord(Box::new(updated), None)));
        }
        return Ok(None);
    }
    // Parameters first: an import is only tried against parameters that are still valid.
    let token_expired = record.import_parameters.as_ref().is_none_or(|p| {
        schedule::parse_kms_time(&p.token_expire_time).is_none_or(|t| schedule::is_due(now, t))
    });
    if token_expired {
        return Ok(Some(Plan::IssueImportParameters));
    }
    match observed.import.as_ref() {
        Some(Err(rejection)) => return Err(rejection.clone()),
        Some(Ok(material)) => {
            let fingerprint = crate::kms::import::fingerprint(material.expose());
            if let Some(previous) = &record.imported
                && previous.fingerprint != fingerprint
            {
                return Err(other_material(record, &previous.key_version_id));
            }
            if let Some(at) = expire_time.filter(|t| schedule::is_due(now, *t)) {
                return Err(Rejection::new(
                    Code::InvalidParameter,
                    format!(
                        "spec.keyMaterial.expireTime {} has passed; set a later time, or remove \
                         it for material that does not expire",
                        format_kms_time(at)
                    ),
                ));
            }
            // The same material again takes its version back; new material gets a new one.
            let (version_id, created) = match &record.imported {
                Some(previous) => (
                    previous.key_version_id.clone(),
                    previous.creation_date.clone(),
                ),
                None => (fresh.version_id.clone(), format_kms_time(now)),
            };
            let mut imported = record.clone();
            imported.versions = vec![VersionRecord {
                key_version_id: version_id.clone(),
                creation_date: created.clone(),
                requested_by: None,
            }];
            imported.imported = Some(ImportedMaterial {
                key_version_id: version_id,
                creation_date: created,
                fingerprint,
                expire_time: expire_time.map(format_kms_time),
            });
            // The parameters stay until their token expires: the same wrapped Secret can
            // import the same material again after it expired.
            return Ok(Some(Plan::ImportMaterial(Box::new(imported))));
        }
        None => {}
    }
    Ok(None)
}

/// Whether the key this Key reported was destroyed as scheduled (its store is gone after its
/// deletion date, or the Key already says so): then it stays deleted, and nothing is minted.
fn destroyed_as_scheduled(key: &Key, now: Timestamp) -> Option<String> {
    let status = key.status.as_ref()?;
    let already = status
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.reason == "KeyDeleted");
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
        .find(|c| c.type_ == READY && c.reason == "KeyDeleted");
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

fn previous_metadata(key: &Key) -> Option<&KeyMetadata> {
    key.status.as_ref().and_then(|s| s.key_metadata.as_ref())
}

/// The Secret consumers mount: `spec.secretName`, or the Key's name.
pub fn consumer_secret_name(key: &Key) -> String {
    key.spec
        .secret_name
        .clone()
        .unwrap_or_else(|| key.name_any())
}

fn secret_name_conflict(secret_name: &str) -> Rejection {
    Rejection::new(
        Code::SecretNameConflict,
        format!(
            "Secret {secret_name} already exists and was not created by keyward for this Key; \
             keyward never takes over or overwrites it: set spec.secretName to an unused name, \
             or remove that Secret"
        ),
    )
}

/// Equal in everything keyward owns: type, data, and keyward's labels and annotations.
fn same_consumer(existing: &Secret, desired: &Secret) -> bool {
    existing.type_ == desired.type_
        && existing.data == desired.data
        && contains_all(&existing.metadata.labels, &desired.metadata.labels)
        && contains_all(
            &existing.metadata.annotations,
            &desired.metadata.annotations,
        )
}

fn contains_all(
    have: &Option<std::collections::BTreeMap<String, String>>,
    want: &Option<std::collections::BTreeMap<String, String>>,
) -> bool {
    let want = want.iter().flatten();
    want.into_iter()
        .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
}

fn new_key(valid: &ValidKey, settings: &PlanSettings, now: Timestamp, fresh: &FreshIds) -> NewKey {
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
fn check_immutable(valid: &ValidKey, record: &KeyRecord) -> Result<(), Rejection> {
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

/// The KMS KeyMetadata of a stored key. Without a valid spec, the spec-dependent fields
/// (description, rotation) take neutral values.
pub fn key_metadata(record: &KeyRecord, valid: Option<&ValidKey>) -> KeyMetadata {
    let key_state = lifecycle::key_state(record, valid.map(|v| v.desired_state));
    let rotation = valid.and_then(|v| v.rotation);
    let automatic_rotation = match rotation {
        None => AutomaticRotation::Disabled,
        Some(_) if key_state == KeyState::Enabled => AutomaticRotation::Enabled,
        Some(_) => AutomaticRotation::Suspended,
    };
    let last_rotation = record.last_rotation();
    KeyMetadata {
        arn: record.arn.clone(),
        automatic_rotation,
        creation_date: record.creation_date.clone(),
        creator: record.creator.clone(),
        delete_date: record.deletion.as_ref().map(|d| d.delete_date.clone()),
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
            .and_then(|i| i.expire_time.clone()),
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
struct Report {
    metadata: Option<KeyMetadata>,
    versions: Vec<KeyVersionEntry>,
    secret_name: Option<String>,
    import_parameters: Option<ImportParameters>,
}

/// Every version of a key, oldest first (KMS ListKeyVersions).
fn version_entries(record: &KeyRecord) -> Vec<KeyVersionEntry> {
    record
        .versions
        .iter()
        .map(|v| KeyVersionEntry {
            key_version_id: v.key_version_id.clone(),
            creation_date: v.creation_date.clone(),
        })
        .collect()
}

/// A plan that writes nothing but the status (when it changed). Without a record, what the
/// status said about the key's versions and Secret is kept as long as the key is reported.
fn converge_status(
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
fn status_update(key: &Key, report: Report, outcome: Outcome, now: Timestamp) -> Converge {
    let previous = key.status.as_ref();
    let readiness = match outcome {
        Outcome::Settled { reason, message } => Readiness::ready(reason, message),
        Outcome::PendingImport(message) => Readiness::waiting("PendingImport", message),
        Outcome::Deleted(message) => Readiness::waiting("KeyDeleted", message),
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
    reason: &'static str,
    message: String,
    warning: bool,
}

impl Readiness {
    pub(crate) fn ready(reason: &'static str, message: String) -> Self {
        Readiness {
            ready: true,
            reason,
            message,
            warning: false,
        }
    }

    /// Not ready, and nothing is wrong: waiting for something to happen.
    pub(crate) fn waiting(reason: &'static str, message: String) -> Self {
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
            reason: rejection.code.reason(),
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

#[cfg(test)]
mod tests;
