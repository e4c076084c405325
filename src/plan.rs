//! Observed state + settings + now -> what to do (pure).
//!
//! The planner reads no clock and draws no randomness: `now` and fresh ids come in as
//! arguments, so every decision is unit-tested with fixed inputs. The reconciler carries the
//! plan out; only `k8s` writes.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::api::{AutomaticRotation, Key, KeyMetadata, KeyState, KeyStatus};
use crate::error::{Code, Rejection};
use crate::rules::{self, RuleSettings, ValidKey};
use crate::schedule::format_kms_time;
use crate::store::{self, KeyRecord, NewKeyRecord, Store};

/// The condition type that kstatus, Argo CD and Flux read.
pub const READY: &str = "Ready";

/// Operator settings the plan depends on.
#[derive(Clone, Debug)]
pub struct PlanSettings {
    pub rules: RuleSettings,
    /// The account id keys are created under (KMS Creator, and part of the ARN).
    pub account_id: String,
}

/// What the reconciler saw: the Key, its material store and its consumer Secret.
pub struct Observed<'a> {
    pub key: &'a Key,
    pub store: Option<&'a Secret>,
    pub consumer: Option<&'a Secret>,
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
    /// Bring the consumer Secret and the status in line with the store and the spec.
    Converge(Box<Converge>),
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

/// How the key stands, for the Ready condition.
enum Outcome {
    Ready(String),
    PendingImport(String),
    Rejected(Rejection),
}

pub fn plan(
    observed: &Observed<'_>,
    settings: &PlanSettings,
    now: Timestamp,
    fresh: &FreshIds,
) -> Plan {
    match observed.store {
        None => plan_without_store(observed, settings, now, fresh),
        Some(store) => match Store::read(store, &observed.key.name_any()) {
            Ok(store) => plan_with_store(observed, &store, settings, now),
            Err(rejection) => {
                let previous = previous_metadata(observed.key).cloned();
                converge_status(observed.key, previous, Outcome::Rejected(rejection), now)
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
    let valid = match rules::validate(&key.spec, &settings.rules) {
        Ok(valid) => valid,
        Err(rejection) => return converge_status(key, None, Outcome::Rejected(rejection), now),
    };
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
        return converge_status(key, previous.cloned(), Outcome::Rejected(rejection), now);
    }
    if observed.consumer.is_some() {
        let rejection = secret_name_conflict(&consumer_secret_name(key));
        return converge_status(key, None, Outcome::Rejected(rejection), now);
    }
    Plan::CreateKey(new_key(&valid, settings, now, fresh))
}

/// The key exists: report it, and publish its material if the spec is valid and unchanged.
fn plan_with_store(
    observed: &Observed<'_>,
    store: &Store<'_>,
    settings: &PlanSettings,
    now: Timestamp,
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
            return converge_status(key, Some(metadata), Outcome::Rejected(rejection), now);
        }
    };

    let metadata = key_metadata(record, Some(&valid));
    if record.versions.is_empty() {
        let message = format!(
            "key {} has origin EXTERNAL and no material yet: import key material to enable it",
            record.key_id
        );
        return converge_status(key, Some(metadata), Outcome::PendingImport(message), now);
    }

    let secret_name = consumer_secret_name(key);
    let (consumer, mut notes) = match plan_consumer(observed, store, &secret_name) {
        Ok(planned) => planned,
        Err(rejection) => {
            return converge_status(key, Some(metadata), Outcome::Rejected(rejection), now);
        }
    };
    let newest = record
        .newest_version()
        .map_or("", |v| v.key_version_id.as_str());
    let message = format!(
        "key {} is Enabled; Secret {secret_name} serves version {newest}",
        record.key_id
    );
    let mut converge = status_update(
        key,
        Some(metadata),
        Outcome::Ready(message),
        Some(secret_name),
        now,
    );
    converge.consumer = consumer;
    notes.append(&mut converge.notes);
    converge.notes = notes;
    Plan::Converge(Box::new(converge))
}

/// The consumer Secret write, if any, and the event it deserves. A Secret of that name that
/// keyward did not create for this Key is a conflict, never overwritten.
fn plan_consumer(
    observed: &Observed<'_>,
    store: &Store<'_>,
    secret_name: &str,
) -> Result<(Option<SecretWrite>, Vec<Note>), Rejection> {
    let key_name = observed.key.name_any();
    let namespace = observed.key.namespace().unwrap_or_default();
    let existing = observed.consumer;
    if existing.is_some_and(|s| !store::is_consumer_of(s, &key_name)) {
        return Err(secret_name_conflict(secret_name));
    }
    let desired = store::desired_consumer(existing, &namespace, secret_name, &key_name, store);
    Ok(match existing {
        None => {
            let note = Note {
                warning: false,
                reason: "SecretCreated",
                message: format!("published key material in Secret {secret_name}"),
            };
            (Some(SecretWrite::Create(desired)), vec![note])
        }
        Some(existing) if !same_consumer(existing, &desired) => {
            let note = Note {
                warning: true,
                reason: "SecretRestored",
                message: format!(
                    "Secret {secret_name} differed from the material store (changed outside \
                     keyward); rebuilt it with all {} version(s)",
                    store.record.versions.len()
                ),
            };
            (Some(SecretWrite::Replace(desired)), vec![note])
        }
        Some(_) => (None, Vec::new()),
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
        created: crate::schedule::truncate_to_second(now),
        key_spec: valid.key_spec,
        key_usage: valid.key_usage,
        origin: valid.origin,
        protection_level: valid.protection_level,
        initial_version_id: mint.then_some(fresh.version_id.as_str()),
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
                 the spec now asks for {now}; set spec.{field}: {then}, or create a new Key for \
                 a {now} key",
                record.key_id
            ),
        )),
    }
}

/// The KMS KeyMetadata of a stored key. Without a valid spec, the spec-dependent fields
/// (description, rotation) take neutral values.
pub fn key_metadata(record: &KeyRecord, valid: Option<&ValidKey>) -> KeyMetadata {
    let key_state = if record.versions.is_empty() {
        KeyState::PendingImport
    } else {
        KeyState::Enabled
    };
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
        delete_date: None,
        description: valid.map(|v| v.description.clone()).unwrap_or_default(),
        key_id: record.key_id.clone(),
        key_spec: record.key_spec,
        key_state,
        key_usage: record.key_usage,
        last_rotation_date: last_rotation.map(format_kms_time),
        material_expire_time: None,
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

/// A plan that writes nothing but the status (when it changed).
fn converge_status(
    key: &Key,
    metadata: Option<KeyMetadata>,
    outcome: Outcome,
    now: Timestamp,
) -> Plan {
    let secret_name = key.status.as_ref().and_then(|s| s.secret_name.clone());
    Plan::Converge(Box::new(status_update(
        key,
        metadata,
        outcome,
        secret_name,
        now,
    )))
}

/// The status to write (if it changed) and the event that a change of readiness deserves.
fn status_update(
    key: &Key,
    metadata: Option<KeyMetadata>,
    outcome: Outcome,
    secret_name: Option<String>,
    now: Timestamp,
) -> Converge {
    let generation = key.metadata.generation;
    let previous = key.status.as_ref();
    let previous_ready = previous.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    let (ready, reason, message, warning) = match outcome {
        Outcome::Ready(message) => ("True", "KeyReady", message, false),
        Outcome::PendingImport(message) => ("False", "PendingImport", message, false),
        Outcome::Rejected(r) => ("False", r.code.reason(), r.to_string(), true),
    };
    let last_transition_time = match previous_ready {
        Some(c) if c.status == ready => c.last_transition_time.clone(),
        _ => Time(crate::schedule::truncate_to_second(now)),
    };
    let condition = Condition {
        type_: READY.to_string(),
        status: ready.to_string(),
        reason: reason.to_string(),
        message: message.clone(),
        observed_generation: generation,
        last_transition_time,
    };
    let mut conditions: Vec<Condition> = previous
        .map(|s| {
            s.conditions
                .iter()
                .filter(|c| c.type_ != READY)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    conditions.push(condition);
    let desired = KeyStatus {
        key_metadata: metadata,
        secret_name,
        conditions,
        observed_generation: generation,
    };

    let changed_readiness = previous_ready
        .is_none_or(|c| c.status != ready || c.reason != reason || c.message != message);
    let notes = if changed_readiness {
        vec![Note {
            warning,
            reason,
            message,
        }]
    } else {
        Vec::new()
    };
    let status = (previous != Some(&desired)).then_some(desired);
    Converge {
        consumer: None,
        status,
        notes,
    }
}
