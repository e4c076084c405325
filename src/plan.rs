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
        return converge_status(key, previous.cloned(), Outcome::Rejected(rejection), now);
    }
    let valid = match rules::validate(&key.spec, &settings.rules) {
        Ok(valid) => valid,
        Err(rejection) => return converge_status(key, None, Outcome::Rejected(rejection), now),
    };
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

#[cfg(test)]
mod tests {
    //! The planner, table-driven, with fixed `now` and fresh ids. Stores are built the way the
    //! reconciler builds them (`store::new_store` with real material), and every plan's writes
    //! can be fed back in as the next observation. No assertion message prints a Secret.

    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;
    use crate::api::labels;
    use crate::api::{KeyRequest, KeySpec, KeyUsage, Origin, ProtectionLevel};
    use crate::material;
    use crate::store::{RECORD_ENTRY, VersionRecord};

    const NS: &str = "team-a";
    const NAME: &str = "payments";
    const REGION: &str = "cn-hangzhou";
    const ACCOUNT: &str = "123456";
    const KEY_ID: &str = "08c33a6f-4e0a-4a1b-a3fa-7ddfa1d4c0de";
    const VERSION_ID: &str = "0ec2d249-9f64-4d8f-9587-1215525ec0de";
    /// The creation time the seed's sample shows: `t0()` truncated to the second.
    const CREATED: &str = "2016-03-25T10:42:40Z";
    const STORE: &str = "payments.keyward-material";

    fn settings() -> PlanSettings {
        PlanSettings {
            rules: RuleSettings::with_seed_bounds(REGION),
            account_id: ACCOUNT.into(),
        }
    }

    fn fresh() -> FreshIds {
        FreshIds {
            key_id: KEY_ID.into(),
            version_id: VERSION_ID.into(),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// When the key is first planned: a fraction of a second past [`CREATED`].
    fn t0() -> Timestamp {
        at("2016-03-25T10:42:40.987654321Z")
    }

    /// Much later, to show that time alone changes nothing.
    fn later() -> Timestamp {
        at("2017-06-01T08:00:00.5Z")
    }

    fn key(edit: impl FnOnce(&mut KeyRequest)) -> Key {
        let mut spec = KeyRequest::default();
        edit(&mut spec);
        let mut key = Key::new(NAME, spec);
        key.metadata.namespace = Some(NS.into());
        key.metadata.generation = Some(1);
        key
    }

    fn spec_usage(spec: &str, usage: &str) -> Key {
        key(|r| {
            r.key_spec = Some(spec.into());
            r.key_usage = Some(usage.into());
        })
    }

    fn plan_at(
        key: &Key,
        store: Option<&Secret>,
        consumer: Option<&Secret>,
        now: Timestamp,
    ) -> Plan {
        plan(
            &Observed {
                key,
                store,
                consumer,
            },
            &settings(),
            now,
            &fresh(),
        )
    }

    // `Plan`'s Debug holds no material: `SecretWrite` prints only the Secret's name.
    fn expect_create(plan: Plan) -> NewKey {
        match plan {
            Plan::CreateKey(new) => new,
            Plan::Converge(c) => panic!("expected CreateKey, got {c:?}"),
        }
    }

    fn expect_converge(plan: Plan) -> Converge {
        match plan {
            Plan::Converge(c) => *c,
            Plan::CreateKey(new) => panic!("expected Converge, got CreateKey {new:?}"),
        }
    }

    /// What the reconciler does with a CreateKey plan: mint, and build the store Secret.
    fn store_for(key: &Key) -> Secret {
        let new = expect_create(plan_at(key, None, None, t0()));
        let material = new
            .mint
            .then(|| material::generate(new.record.key_spec).expect("minting works"));
        let mut store = store::new_store(NS, NAME, &new.record, material.as_ref());
        store.metadata.resource_version = Some("100".into());
        store
    }

    /// A Key, its store and its consumer Secret as the API server holds them.
    struct World {
        key: Key,
        store: Option<Secret>,
        consumer: Option<Secret>,
    }

    impl World {
        /// A Key whose store has just been created; nothing else written yet.
        fn created(key: Key) -> Self {
            let store = Some(store_for(&key));
            World {
                key,
                store,
                consumer: None,
            }
        }

        /// A Key planned (and its plans carried out) until nothing is left to write.
        fn settled(key: Key) -> Self {
            let mut world = World::created(key);
            world.settle(t0());
            world
        }

        fn plan(&self, now: Timestamp) -> Plan {
            plan_at(&self.key, self.store.as_ref(), self.consumer.as_ref(), now)
        }

        fn converge(&self, now: Timestamp) -> Converge {
            expect_converge(self.plan(now))
        }

        /// Carries out a Converge as the reconciler and the API server would.
        fn apply(&mut self, converge: &Converge) {
            if let Some(status) = &converge.status {
                self.key.status = Some(status.clone());
            }
            match &converge.consumer {
                None => {}
                Some(SecretWrite::Create(secret)) => {
                    assert!(self.consumer.is_none(), "Create over an existing Secret");
                    let mut secret = secret.clone();
                    secret.metadata.resource_version = Some("1".into());
                    self.consumer = Some(secret);
                }
                Some(SecretWrite::Replace(secret)) => {
                    let observed = self.consumer.as_ref().expect("Replace of a missing Secret");
                    assert_eq!(
                        secret.metadata.resource_version, observed.metadata.resource_version,
                        "a Replace must be conditional on the observed resourceVersion"
                    );
                    let mut secret = secret.clone();
                    let next = observed.metadata.resource_version.as_deref().unwrap_or("0");
                    secret.metadata.resource_version =
                        Some((next.parse::<u64>().unwrap() + 1).to_string());
                    self.consumer = Some(secret);
                }
            }
        }

        fn settle(&mut self, now: Timestamp) {
            for _ in 0..4 {
                let converge = self.converge(now);
                if converge.consumer.is_none() && converge.status.is_none() {
                    return;
                }
                self.apply(&converge);
            }
            panic!("the plans did not settle");
        }

        fn status(&self) -> &KeyStatus {
            self.key.status.as_ref().expect("a status")
        }

        fn metadata(&self) -> &KeyMetadata {
            self.status().key_metadata.as_ref().expect("keyMetadata")
        }

        fn consumer_mut(&mut self) -> &mut Secret {
            self.consumer.as_mut().expect("a consumer Secret")
        }

        fn store_mut(&mut self) -> &mut Secret {
            self.store.as_mut().expect("a store Secret")
        }
    }

    fn ready(status: &KeyStatus) -> &Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == READY)
            .expect("a Ready condition")
    }

    fn data(secret: &Secret) -> &BTreeMap<String, ByteString> {
        secret.data.as_ref().expect("Secret data")
    }

    fn entry_names(secret: &Secret) -> Vec<&str> {
        data(secret).keys().map(String::as_str).collect()
    }

    /// Whether entry `name` of `a` holds the same bytes as entry `from` of `b` (never printed).
    fn same_bytes(a: &Secret, name: &str, b: &Secret, from: &str) -> bool {
        match (data(a).get(name), data(b).get(from)) {
            (Some(x), Some(y)) => !x.0.is_empty() && x == y,
            _ => false,
        }
    }

    fn string_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The KeyMetadata of the default key (Aliyun_AES_256) created at [`CREATED`].
    fn aes_metadata() -> KeyMetadata {
        KeyMetadata {
            arn: format!("acs:kms:{REGION}:{ACCOUNT}:key/{KEY_ID}"),
            automatic_rotation: AutomaticRotation::Disabled,
            creation_date: CREATED.into(),
            creator: ACCOUNT.into(),
            delete_date: None,
            description: String::new(),
            key_id: KEY_ID.into(),
            key_spec: KeySpec::AliyunAes256,
            key_state: KeyState::Enabled,
            key_usage: KeyUsage::EncryptDecrypt,
            last_rotation_date: Some(CREATED.into()),
            material_expire_time: None,
            next_rotation_date: None,
            origin: Origin::AliyunKms,
            primary_key_version: Some(VERSION_ID.into()),
            protection_level: ProtectionLevel::Software,
            rotation_interval: None,
        }
    }

    fn ready_message() -> String {
        format!("key {KEY_ID} is Enabled; Secret {NAME} serves version {VERSION_ID}")
    }

    /// A Converge that writes no consumer and reports Ready=False with `code` in a new Warning
    /// event; returns the status it writes.
    fn assert_rejected(converge: &Converge, code: Code) -> KeyStatus {
        assert_eq!(converge.consumer, None, "no consumer write on {code:?}");
        let status = converge.status.clone().expect("a status write");
        let condition = ready(&status);
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("False", code.reason())
        );
        assert!(
            condition
                .message
                .starts_with(&format!("{}: ", code.as_str())),
            "{}",
            condition.message
        );
        assert_eq!(
            converge.notes,
            vec![Note {
                warning: true,
                reason: code.reason(),
                message: condition.message.clone(),
            }]
        );
        status
    }

    // ---- CreateKey ----------------------------------------------------------------------

    #[test]
    fn valid_new_key_is_created_with_the_fresh_ids_and_the_kms_defaults() {
        let new = expect_create(plan_at(&key(|_| {}), None, None, t0()));
        assert_eq!(
            new,
            NewKey {
                record: KeyRecord {
                    key_id: KEY_ID.into(),
                    arn: "acs:kms:cn-hangzhou:123456:key/08c33a6f-4e0a-4a1b-a3fa-7ddfa1d4c0de"
                        .into(),
                    creator: "123456".into(),
                    creation_date: "2016-03-25T10:42:40Z".into(),
                    key_spec: KeySpec::AliyunAes256,
                    key_usage: KeyUsage::EncryptDecrypt,
                    origin: Origin::AliyunKms,
                    protection_level: ProtectionLevel::Software,
                    versions: vec![VersionRecord {
                        key_version_id: VERSION_ID.into(),
                        creation_date: "2016-03-25T10:42:40Z".into(),
                    }],
                },
                mint: true,
            }
        );
    }

    #[test]
    fn new_key_record_holds_the_effective_request() {
        let cases = [
            (key(|_| {}), KeySpec::AliyunAes256, KeyUsage::EncryptDecrypt),
            (
                key(|r| r.key_spec = Some("Aliyun_SM4".into())),
                KeySpec::AliyunSm4,
                KeyUsage::EncryptDecrypt,
            ),
            (
                spec_usage("RSA_2048", "SIGN/VERIFY"),
                KeySpec::Rsa2048,
                KeyUsage::SignVerify,
            ),
            (
                spec_usage("EC_P256", "SIGN/VERIFY"),
                KeySpec::EcP256,
                KeyUsage::SignVerify,
            ),
            (
                spec_usage("EC_P256K", "SIGN/VERIFY"),
                KeySpec::EcP256K,
                KeyUsage::SignVerify,
            ),
            (
                key(|r| r.key_spec = Some("EC_SM2".into())),
                KeySpec::EcSm2,
                KeyUsage::EncryptDecrypt,
            ),
            // Mutable fields do not enter the record.
            (
                key(|r| {
                    r.description = Some("key description example".into());
                    r.enable_automatic_rotation = Some(true);
                    r.rotation_interval = Some("365d".into());
                    r.secret_name = Some("elsewhere".into());
                }),
                KeySpec::AliyunAes256,
                KeyUsage::EncryptDecrypt,
            ),
        ];
        for (key, spec, usage) in cases {
            let new = expect_create(plan_at(&key, None, None, t0()));
            assert!(new.mint, "{spec}");
            let record = new.record;
            assert_eq!((record.key_spec, record.key_usage), (spec, usage));
            assert_eq!(
                (record.origin, record.protection_level),
                (Origin::AliyunKms, ProtectionLevel::Software)
            );
            assert_eq!(record.versions.len(), 1, "{spec}");
            assert_eq!(record.creation_date, CREATED, "{spec}");
        }
    }

    #[test]
    fn external_origin_creates_a_key_without_material_to_mint() {
        for spec in ["Aliyun_AES_256", "Aliyun_SM4"] {
            let key = key(|r| {
                r.key_spec = Some(spec.into());
                r.origin = Some("EXTERNAL".into());
            });
            let new = expect_create(plan_at(&key, None, None, t0()));
            assert!(!new.mint, "{spec}");
            assert_eq!(new.record.origin, Origin::External);
            assert_eq!(new.record.key_spec.as_str(), spec);
            assert_eq!(new.record.versions, Vec::new(), "{spec}");
            assert_eq!(new.record.key_id, KEY_ID);
            assert_eq!(new.record.creation_date, CREATED);
        }
    }

    // ---- Invalid requests -----------------------------------------------------------------

    #[test]
    fn invalid_request_without_store_is_reported_and_never_created() {
        type Edit = fn(&mut KeyRequest);
        let cases: [(Edit, Code); 7] = [
            (
                |r| r.key_spec = Some("AES_128".into()),
                Code::InvalidParameter,
            ),
            (
                |r| r.key_usage = Some("SIGN/VERIFY".into()),
                Code::InvalidParameter,
            ),
            (
                |r| r.protection_level = Some("HSM".into()),
                Code::UnsupportedProtectionLevel,
            ),
            (
                |r| {
                    r.key_spec = Some("RSA_2048".into());
                    r.origin = Some("EXTERNAL".into());
                },
                Code::UnsupportedOperation,
            ),
            (
                |r| r.enable_automatic_rotation = Some(true),
                Code::MissingParameter,
            ),
            (
                |r| {
                    r.enable_automatic_rotation = Some(true);
                    r.rotation_interval = Some("6d".into());
                },
                Code::InvalidParameter,
            ),
            (
                |r| r.description = Some("x".repeat(8193)),
                Code::InvalidParameter,
            ),
        ];
        for (edit, code) in cases {
            let key = key(edit);
            let expected = rules::validate(&key.spec, &settings().rules).unwrap_err();
            assert_eq!(expected.code, code);
            let converge = expect_converge(plan_at(&key, None, None, t0()));
            let status = assert_rejected(&converge, code);
            assert_eq!(
                status,
                KeyStatus {
                    key_metadata: None,
                    secret_name: None,
                    conditions: vec![Condition {
                        type_: READY.into(),
                        status: "False".into(),
                        reason: code.reason().into(),
                        message: expected.to_string(),
                        observed_generation: Some(1),
                        last_transition_time: Time(at(CREATED)),
                    }],
                    observed_generation: Some(1),
                }
            );
        }
    }

    #[test]
    fn invalid_request_message_is_the_kms_code_and_what_to_set() {
        let converge = expect_converge(plan_at(
            &key(|r| r.protection_level = Some("HSM".into())),
            None,
            None,
            t0(),
        ));
        let status = assert_rejected(&converge, Code::UnsupportedProtectionLevel);
        assert_eq!(
            ready(&status).message,
            "Unsupported.ProtectionLevel: spec.protectionLevel HSM is not supported: keyward \
             has no hardware security module backend yet; set spec.protectionLevel: SOFTWARE \
             (or omit it)"
        );
    }

    #[test]
    fn rejected_request_is_not_reported_again_when_nothing_changed() {
        let mut world = World {
            key: key(|r| r.key_spec = Some("AES_128".into())),
            store: None,
            consumer: None,
        };
        world.apply(&world.converge(t0()));
        assert_eq!(world.converge(later()), Converge::default());
    }

    #[test]
    fn fixing_a_rejected_request_creates_the_key() {
        let mut world = World {
            key: key(|r| r.key_spec = Some("AES_128".into())),
            store: None,
            consumer: None,
        };
        world.apply(&world.converge(t0()));
        world.key.spec.key_spec = Some("Aliyun_AES_256".into());
        world.key.metadata.generation = Some(2);
        let new = expect_create(world.plan(later()));
        assert_eq!(new.record.creation_date, "2017-06-01T08:00:00Z");
    }

    // ---- Lost store ------------------------------------------------------------------------

    fn store_missing_message(key_id: &str) -> String {
        format!(
            "MaterialStoreMissing: the material store Secret {STORE} of key {key_id} is gone; \
             keyward will not mint replacement material for an existing key: restore the \
             Secret from a backup, or delete the Key and its consumer Secret to start a new key"
        )
    }

    #[test]
    fn store_missing_for_a_key_with_key_metadata_is_never_created_again() {
        for consumer_left in [true, false] {
            let mut world = World::settled(key(|_| {}));
            world.store = None;
            if !consumer_left {
                world.consumer = None;
            }
            let converge = world.converge(later());
            let status = assert_rejected(&converge, Code::MaterialStoreMissing);
            assert_eq!(ready(&status).message, store_missing_message(KEY_ID));
            assert_eq!(status.key_metadata, Some(aes_metadata()));
            assert_eq!(status.secret_name.as_deref(), Some(NAME));
            // Ready went from True to False: a new transition time.
            assert_eq!(
                ready(&status).last_transition_time,
                Time(at("2017-06-01T08:00:00Z"))
            );
        }
    }

    #[test]
    fn store_missing_with_our_consumer_secret_but_no_status_is_never_created_again() {
        let mut world = World::settled(key(|_| {}));
        world.store = None;
        world.key.status = None;
        let converge = world.converge(later());
        let status = assert_rejected(&converge, Code::MaterialStoreMissing);
        assert_eq!(ready(&status).message, store_missing_message("(unknown)"));
        assert_eq!(status.key_metadata, None);
    }

    #[test]
    fn store_missing_keeps_key_metadata_even_when_the_spec_is_invalid() {
        let mut world = World::settled(key(|_| {}));
        world.store = None;
        // A mutable field made invalid: no CEL rule or schema check stops this.
        world.key.spec.enable_automatic_rotation = Some(true);
        world.key.metadata.generation = Some(2);
        let converge = world.converge(later());
        let reported = converge
            .status
            .as_ref()
            .and_then(|s| s.key_metadata.clone());
        world.apply(&converge);
        // The consumer Secret is deleted too (say, a namespace cleanup), then the spec is fixed.
        world.consumer = None;
        world.key.spec.rotation_interval = Some("365d".into());
        world.key.metadata.generation = Some(3);
        let plan = world.plan(later());
        assert!(
            !matches!(plan, Plan::CreateKey(_)),
            "a key that existed is minted again under a new key id"
        );
        assert_eq!(
            reported,
            Some(aes_metadata()),
            "the key's identity must stay in status while its store is missing"
        );
        let converge = expect_converge(plan);
        assert_eq!(converge.consumer, None);
        assert_eq!(
            converge.notes,
            vec![],
            "the same rejection is not announced again"
        );
        let status = converge.status.expect("the new generation is reported");
        assert_eq!(ready(&status).reason, Code::MaterialStoreMissing.reason());
        assert_eq!(status.key_metadata.map(|m| m.key_id), Some(KEY_ID.into()));
    }

    // ---- Consumer Secret name conflicts -------------------------------------------------------

    fn foreign_secrets() -> Vec<(&'static str, Secret)> {
        let ours = World::settled(key(|_| {})).consumer.unwrap();
        let mut opaque = Secret::default();
        opaque.metadata.name = Some(NAME.into());
        opaque.metadata.namespace = Some(NS.into());
        opaque.type_ = Some("Opaque".into());
        opaque.data = Some(BTreeMap::from([(
            "password".to_string(),
            ByteString(b"hunter2".to_vec()),
        )]));
        let mut other_key = ours.clone();
        other_key
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(labels::KEY.into(), "other".into());
        let mut other_type = ours.clone();
        other_type.type_ = Some("Opaque".into());
        let mut not_managed = ours.clone();
        not_managed
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(labels::MANAGED_BY.into(), "helm".into());
        vec![
            ("an Opaque Secret", opaque),
            ("another Key's consumer Secret", other_key),
            ("a Secret of another type", other_type),
            ("a Secret managed by another tool", not_managed),
        ]
    }

    fn conflict_message(secret_name: &str) -> String {
        format!(
            "SecretNameConflict: Secret {secret_name} already exists and was not created by \
             keyward for this Key; keyward never takes over or overwrites it: set \
             spec.secretName to an unused name, or remove that Secret"
        )
    }

    #[test]
    fn consumer_name_taken_by_a_foreign_secret_is_a_conflict_and_no_key_is_created() {
        for (what, foreign) in foreign_secrets() {
            let key = key(|_| {});
            let converge = expect_converge(plan_at(&key, None, Some(&foreign), t0()));
            let status = assert_rejected(&converge, Code::SecretNameConflict);
            assert_eq!(ready(&status).message, conflict_message(NAME), "{what}");
            assert_eq!(status.key_metadata, None, "{what}");
        }
        // The name checked is spec.secretName when set.
        let key = key(|r| r.secret_name = Some("payments-key".into()));
        let (_, foreign) = foreign_secrets().remove(0);
        let converge = expect_converge(plan_at(&key, None, Some(&foreign), t0()));
        let status = assert_rejected(&converge, Code::SecretNameConflict);
        assert_eq!(ready(&status).message, conflict_message("payments-key"));
    }

    #[test]
    fn consumer_name_taken_with_a_store_is_a_conflict_and_the_key_is_still_reported() {
        for (what, foreign) in foreign_secrets() {
            let mut world = World::created(key(|_| {}));
            world.consumer = Some(foreign);
            let converge = world.converge(t0());
            let status = assert_rejected(&converge, Code::SecretNameConflict);
            assert_eq!(ready(&status).message, conflict_message(NAME), "{what}");
            assert_eq!(status.key_metadata, Some(aes_metadata()), "{what}");
        }
    }

    // ---- Publishing the consumer Secret -----------------------------------------------------

    #[test]
    fn existing_store_without_consumer_creates_the_consumer_secret_from_the_store() {
        let vid = VERSION_ID;
        let symmetric = |spec: &str| {
            (
                key(|r| r.key_spec = Some(spec.into())),
                vec![
                    ("key".to_string(), format!("{vid}.key")),
                    (format!("{vid}.key"), format!("{vid}.key")),
                ],
            )
        };
        let asymmetric = |spec: &str, usage: &str| {
            (
                spec_usage(spec, usage),
                vec![
                    ("private.pem".to_string(), format!("{vid}.private.pem")),
                    ("public.pem".to_string(), format!("{vid}.public.pem")),
                    (format!("{vid}.private.pem"), format!("{vid}.private.pem")),
                    (format!("{vid}.public.pem"), format!("{vid}.public.pem")),
                ],
            )
        };
        let cases = [
            symmetric("Aliyun_AES_256"),
            symmetric("Aliyun_SM4"),
            asymmetric("RSA_2048", "ENCRYPT/DECRYPT"),
            asymmetric("EC_P256", "SIGN/VERIFY"),
            asymmetric("EC_P256K", "SIGN/VERIFY"),
            asymmetric("EC_SM2", "SIGN/VERIFY"),
        ];
        for (key, material_entries) in cases {
            let spec = key.spec.key_spec.clone().unwrap();
            let world = World::created(key);
            let store = world.store.as_ref().unwrap();
            let converge = world.converge(t0());
            let Some(SecretWrite::Create(secret)) = &converge.consumer else {
                panic!("{spec}: expected a Create, got {:?}", converge.consumer);
            };
            assert_eq!(secret.metadata.name.as_deref(), Some(NAME), "{spec}");
            assert_eq!(secret.metadata.namespace.as_deref(), Some(NS), "{spec}");
            assert_eq!(secret.metadata.resource_version, None, "{spec}");
            assert_eq!(secret.type_.as_deref(), Some("keyward.dev/key"), "{spec}");
            assert_eq!(
                secret.metadata.labels,
                Some(string_map(&[
                    ("app.kubernetes.io/managed-by", "keyward"),
                    ("keyward.dev/key", NAME),
                    ("keyward.dev/role", "consumer"),
                ])),
                "{spec}"
            );
            assert_eq!(
                secret.metadata.annotations,
                Some(string_map(&[
                    ("keyward.dev/key", NAME),
                    ("keyward.dev/key-id", KEY_ID)
                ])),
                "{spec}"
            );
            let mut expected_names: Vec<&str> = material_entries
                .iter()
                .map(|(name, _)| name.as_str())
                .chain(["keyId", "keyVersionId"])
                .collect();
            expected_names.sort();
            assert_eq!(entry_names(secret), expected_names, "{spec}");
            for (name, from) in &material_entries {
                assert!(
                    same_bytes(secret, name, store, from),
                    "{spec}: entry {name} does not hold the store's {from}"
                );
            }
            assert_eq!(data(secret)["keyId"].0, KEY_ID.as_bytes(), "{spec}");
            assert_eq!(
                data(secret)["keyVersionId"].0,
                VERSION_ID.as_bytes(),
                "{spec}"
            );

            let status = converge.status.clone().expect("a status write");
            let condition = ready(&status);
            assert_eq!(
                (condition.status.as_str(), condition.reason.as_str()),
                ("True", "KeyReady")
            );
            assert_eq!(condition.message, ready_message(), "{spec}");
            assert_eq!(status.secret_name.as_deref(), Some(NAME));
            assert_eq!(
                converge.notes,
                vec![
                    Note {
                        warning: false,
                        reason: "SecretCreated",
                        message: format!("published key material in Secret {NAME}"),
                    },
                    Note {
                        warning: false,
                        reason: "KeyReady",
                        message: ready_message(),
                    },
                ],
                "{spec}"
            );
        }
    }

    #[test]
    fn consumer_secret_takes_spec_secret_name() {
        let world = World::created(key(|r| r.secret_name = Some("payments-key".into())));
        let converge = world.converge(t0());
        let Some(SecretWrite::Create(secret)) = &converge.consumer else {
            panic!("expected a Create, got {:?}", converge.consumer);
        };
        assert_eq!(secret.metadata.name.as_deref(), Some("payments-key"));
        assert_eq!(
            secret.metadata.annotations.as_ref().unwrap()[labels::KEY],
            NAME
        );
        let status = converge.status.unwrap();
        assert_eq!(status.secret_name.as_deref(), Some("payments-key"));
        assert_eq!(
            ready(&status).message,
            format!("key {KEY_ID} is Enabled; Secret payments-key serves version {VERSION_ID}")
        );
    }

    // ---- Idempotence --------------------------------------------------------------------------

    #[test]
    fn nothing_is_written_when_nothing_changed() {
        for key in [
            key(|_| {}),
            spec_usage("EC_P256", "SIGN/VERIFY"),
            key(|r| {
                r.enable_automatic_rotation = Some(true);
                r.rotation_interval = Some("7d".into());
                r.description = Some("key description example".into());
            }),
            key(|r| r.origin = Some("EXTERNAL".into())),
        ] {
            let mut world = World::created(key);
            let first = world.converge(t0());
            assert!(first.status.is_some(), "the first plan writes the status");
            world.apply(&first);
            if first.consumer.is_some() {
                assert_eq!(
                    world.converge(t0()),
                    Converge::default(),
                    "the second plan writes nothing"
                );
            }
            assert_eq!(world.converge(t0()), Converge::default());
            // Later, the same plan: lastTransitionTime is kept, so the status is unchanged.
            assert_eq!(world.converge(later()), Converge::default());
        }
    }

    #[test]
    fn ready_transition_time_is_kept_until_readiness_changes() {
        let mut world = World::settled(key(|_| {}));
        assert_eq!(
            ready(world.status()).last_transition_time,
            Time(at(CREATED))
        );
        // A new message with the same readiness keeps the time.
        world.key.spec.secret_name = Some("payments-key".into());
        world.settle(later());
        assert_eq!(ready(world.status()).status, "True");
        assert_eq!(
            ready(world.status()).last_transition_time,
            Time(at(CREATED))
        );
    }

    #[test]
    fn conditions_of_other_types_are_kept() {
        let mut world = World::settled(key(|_| {}));
        let other = Condition {
            type_: "Audited".into(),
            status: "True".into(),
            reason: "Reviewed".into(),
            message: "reviewed by the security team".into(),
            observed_generation: Some(1),
            last_transition_time: Time(at(CREATED)),
        };
        let conditions = &mut world.key.status.as_mut().unwrap().conditions;
        conditions.push(other.clone());
        // The Ready condition moves after the others once; then nothing changes.
        world.settle(later());
        assert_eq!(world.status().conditions.len(), 2);
        assert_eq!(world.status().conditions[0], other);
        assert_eq!(world.converge(later()), Converge::default());
    }

    // ---- Restoring the consumer Secret ----------------------------------------------------------

    fn restored_note() -> Note {
        Note {
            warning: true,
            reason: "SecretRestored",
            message: format!(
                "Secret {NAME} differed from the material store (changed outside keyward); \
                 rebuilt it with all 1 version(s)"
            ),
        }
    }

    #[test]
    fn hand_edited_consumer_secret_is_restored() {
        type Edit = fn(&mut Secret);
        let cases: [(&str, Edit); 11] = [
            ("default key changed", |s| {
                s.data
                    .as_mut()
                    .unwrap()
                    .insert("key".into(), ByteString(vec![0; 32]));
            }),
            ("versioned key removed", |s| {
                s.data
                    .as_mut()
                    .unwrap()
                    .remove(&format!("{VERSION_ID}.key"));
            }),
            ("keyVersionId removed", |s| {
                s.data.as_mut().unwrap().remove("keyVersionId");
            }),
            ("keyId changed", |s| {
                s.data
                    .as_mut()
                    .unwrap()
                    .insert("keyId".into(), ByteString(b"other".to_vec()));
            }),
            ("entry added", |s| {
                s.data
                    .as_mut()
                    .unwrap()
                    .insert("extra".into(), ByteString(b"x".to_vec()));
            }),
            ("all data removed", |s| s.data = None),
            ("key label removed", |s| {
                s.metadata.labels.as_mut().unwrap().remove(labels::KEY);
            }),
            ("role label removed", |s| {
                s.metadata.labels.as_mut().unwrap().remove(labels::ROLE);
            }),
            ("key label changed", |s| {
                s.metadata
                    .labels
                    .as_mut()
                    .unwrap()
                    .insert(labels::KEY.into(), "other".into());
            }),
            ("key-id annotation removed", |s| {
                s.metadata
                    .annotations
                    .as_mut()
                    .unwrap()
                    .remove(labels::KEY_ID);
            }),
            ("key-id annotation changed", |s| {
                s.metadata
                    .annotations
                    .as_mut()
                    .unwrap()
                    .insert(labels::KEY_ID.into(), "other".into());
            }),
        ];
        for (what, edit) in cases {
            let mut world = World::settled(key(|_| {}));
            let published = world.consumer.clone().unwrap();
            edit(world.consumer_mut());
            world.consumer_mut().metadata.resource_version = Some("7".into());
            let converge = world.converge(later());
            let Some(SecretWrite::Replace(secret)) = &converge.consumer else {
                panic!("{what}: expected a Replace, got {:?}", converge.consumer);
            };
            assert_eq!(
                secret.metadata.resource_version.as_deref(),
                Some("7"),
                "{what}: the Replace is conditional on the observed resourceVersion"
            );
            assert!(
                secret.data == published.data,
                "{what}: the data is rebuilt from the store"
            );
            assert_eq!(secret.type_, published.type_, "{what}");
            assert_eq!(secret.metadata.labels, published.metadata.labels, "{what}");
            assert_eq!(
                secret.metadata.annotations, published.metadata.annotations,
                "{what}"
            );
            assert_eq!(converge.notes, vec![restored_note()], "{what}");
            assert_eq!(converge.status, None, "{what}: readiness did not change");
            world.apply(&converge);
            assert_eq!(world.converge(later()), Converge::default(), "{what}");
        }
    }

    #[test]
    fn consumer_secret_without_the_managed_by_label_is_restored() {
        let mut world = World::settled(key(|_| {}));
        world
            .consumer_mut()
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(labels::MANAGED_BY);
        let converge = world.converge(later());
        assert!(
            matches!(converge.consumer, Some(SecretWrite::Replace(_))),
            "expected a Replace, got {:?}",
            converge.consumer
        );
        assert_eq!(converge.notes, vec![restored_note()]);
    }

    #[test]
    fn labels_and_annotations_added_by_others_are_kept() {
        let mut world = World::settled(key(|_| {}));
        let consumer = world.consumer_mut();
        let theirs = [
            ("team", "payments"),
            ("reloader.stakater.com/match", "true"),
        ];
        for (k, v) in theirs {
            consumer
                .metadata
                .labels
                .as_mut()
                .unwrap()
                .insert(k.into(), v.into());
            consumer
                .metadata
                .annotations
                .as_mut()
                .unwrap()
                .insert(k.into(), v.into());
        }
        // Additions alone are not a difference.
        assert_eq!(world.converge(later()), Converge::default());

        world.consumer_mut().data.as_mut().unwrap().remove("keyId");
        let converge = world.converge(later());
        let Some(SecretWrite::Replace(secret)) = &converge.consumer else {
            panic!("expected a Replace, got {:?}", converge.consumer);
        };
        for (k, v) in theirs {
            assert_eq!(secret.metadata.labels.as_ref().unwrap()[k], v, "label {k}");
            assert_eq!(
                secret.metadata.annotations.as_ref().unwrap()[k],
                v,
                "annotation {k}"
            );
        }
        assert_eq!(
            secret.metadata.labels.as_ref().unwrap()[labels::MANAGED_BY],
            "keyward"
        );
    }

    #[test]
    fn deleted_consumer_secret_is_created_again() {
        let mut world = World::settled(key(|_| {}));
        let published = world.consumer.take().unwrap();
        let converge = world.converge(later());
        let Some(SecretWrite::Create(secret)) = &converge.consumer else {
            panic!("expected a Create, got {:?}", converge.consumer);
        };
        assert!(
            secret.data == published.data,
            "the same material is published"
        );
        assert_eq!(converge.status, None);
        assert_eq!(converge.notes[0].reason, "SecretCreated");
    }

    // ---- Immutable fields ---------------------------------------------------------------------

    #[test]
    fn immutable_field_change_is_rejected_and_the_key_is_reported_as_created() {
        type Edit = fn(&mut KeyRequest);
        type Base = fn() -> Key;
        let aes: Base = || key(|_| {});
        let sm2: Base = || spec_usage("EC_SM2", "ENCRYPT/DECRYPT");
        let cases: [(Base, Edit, &str, &str, &str); 5] = [
            (
                aes,
                |r| r.key_spec = Some("Aliyun_SM4".into()),
                "keySpec",
                "Aliyun_AES_256",
                "Aliyun_SM4",
            ),
            (
                sm2,
                |r| r.key_spec = Some("RSA_2048".into()),
                "keySpec",
                "EC_SM2",
                "RSA_2048",
            ),
            (
                sm2,
                |r| r.key_usage = Some("SIGN/VERIFY".into()),
                "keyUsage",
                "ENCRYPT/DECRYPT",
                "SIGN/VERIFY",
            ),
            (
                aes,
                |r| r.origin = Some("EXTERNAL".into()),
                "origin",
                "Aliyun_KMS",
                "EXTERNAL",
            ),
            // Omitting the field means the default, which is a change too.
            (
                sm2,
                |r| r.key_spec = None,
                "keySpec",
                "EC_SM2",
                "Aliyun_AES_256",
            ),
        ];
        for (base, edit, field, then, now) in cases {
            let mut world = World::settled(base());
            let before = world.metadata().clone();
            // The consumer Secret is gone too: it is not published for a rejected spec.
            world.consumer = None;
            edit(&mut world.key.spec);
            world.key.spec.description = Some("not taken either".into());
            world.key.metadata.generation = Some(2);
            let converge = world.converge(later());
            let status = assert_rejected(&converge, Code::ImmutableField);
            assert_eq!(
                ready(&status).message,
                format!(
                    "ImmutableField: spec.{field} is immutable once the key exists: key \
                     {KEY_ID} was created with {then}, the spec now asks for {now}; set \
                     spec.{field}: {then}, or create a Key with another name for {now}"
                )
            );
            assert_eq!(status.key_metadata, Some(before), "{field}");
            assert_eq!(status.observed_generation, Some(2), "{field}");
            assert_eq!(ready(&status).observed_generation, Some(2), "{field}");
        }
    }

    #[test]
    fn invalid_mutable_field_of_an_existing_key_keeps_reporting_the_key() {
        let mut world = World::settled(key(|r| r.description = Some("first".into())));
        let before = world.metadata().clone();
        world.key.spec.description = Some("second".into());
        world.key.spec.enable_automatic_rotation = Some(true);
        world.key.spec.rotation_interval = Some("731d".into());
        world.key.metadata.generation = Some(2);
        let converge = world.converge(later());
        // Current behaviour: nothing of the spec is taken, and the consumer Secret is not
        // written while the spec is rejected (not even to restore it).
        let status = assert_rejected(&converge, Code::InvalidParameter);
        assert!(
            ready(&status)
                .message
                .starts_with("InvalidParameter: spec.rotationInterval \"731d\" is out of range"),
            "{}",
            ready(&status).message
        );
        assert_eq!(status.key_metadata, Some(before));
        assert_eq!(status.secret_name.as_deref(), Some(NAME));
        world.apply(&converge);
        assert_eq!(world.converge(later()), Converge::default());
        // Fixing the spec takes the changes and makes the key Ready again.
        world.key.spec.rotation_interval = Some("730d".into());
        world.key.metadata.generation = Some(3);
        let converge = world.converge(later());
        let status = converge.status.expect("a status write");
        assert_eq!(ready(&status).status, "True");
        let metadata = status.key_metadata.unwrap();
        assert_eq!(metadata.description, "second");
        assert_eq!(metadata.rotation_interval.as_deref(), Some("63072000s"));
    }

    #[test]
    fn protection_level_change_is_rejected_against_the_stores_record() {
        // HSM is refused by the rules, so only a store written with HSM can show the change.
        let record = NewKeyRecord {
            key_id: KEY_ID,
            region: REGION,
            account_id: ACCOUNT,
            created: at(CREATED),
            key_spec: KeySpec::AliyunAes256,
            key_usage: KeyUsage::EncryptDecrypt,
            origin: Origin::AliyunKms,
            protection_level: ProtectionLevel::Hsm,
            initial_version_id: Some(VERSION_ID),
        }
        .build();
        let material = material::generate(KeySpec::AliyunAes256).unwrap();
        let store = store::new_store(NS, NAME, &record, Some(&material));
        let world = World {
            key: key(|_| {}),
            store: Some(store),
            consumer: None,
        };
        let converge = world.converge(t0());
        let status = assert_rejected(&converge, Code::ImmutableField);
        assert!(
            ready(&status).message.starts_with(
                "ImmutableField: spec.protectionLevel is immutable once the key exists"
            ),
            "{}",
            ready(&status).message
        );
        // No KeyMetadata was reported before: it is built from the record.
        let metadata = status.key_metadata.expect("keyMetadata");
        assert_eq!(metadata.protection_level, ProtectionLevel::Hsm);
        assert_eq!(metadata.key_id, KEY_ID);
    }

    #[test]
    fn writing_out_the_effective_value_of_an_immutable_field_is_no_change() {
        let mut world = World::settled(key(|_| {}));
        world.key.spec = KeyRequest {
            key_spec: Some("Aliyun_AES_256".into()),
            key_usage: Some("ENCRYPT/DECRYPT".into()),
            origin: Some("Aliyun_KMS".into()),
            protection_level: Some("SOFTWARE".into()),
            ..KeyRequest::default()
        };
        assert_eq!(world.converge(later()), Converge::default());
    }

    // ---- KeyMetadata ----------------------------------------------------------------------

    #[test]
    fn symmetric_key_with_rotation_reports_the_seeds_sample_metadata() {
        let world = World::settled(key(|r| {
            r.description = Some("key description example".into());
            r.enable_automatic_rotation = Some(true);
            r.rotation_interval = Some("365d".into());
        }));
        let expected = KeyMetadata {
            automatic_rotation: AutomaticRotation::Enabled,
            description: "key description example".into(),
            rotation_interval: Some("31536000s".into()),
            next_rotation_date: Some("2017-03-25T10:42:40Z".into()),
            ..aes_metadata()
        };
        assert_eq!(world.metadata(), &expected);
        let json = serde_json::to_value(world.metadata()).unwrap();
        let fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            [
                "arn",
                "automaticRotation",
                "creationDate",
                "creator",
                "description",
                "keyId",
                "keySpec",
                "keyState",
                "keyUsage",
                "lastRotationDate",
                "nextRotationDate",
                "origin",
                "primaryKeyVersion",
                "protectionLevel",
                "rotationInterval",
            ]
        );
        assert_eq!(json["keySpec"], "Aliyun_AES_256");
        assert_eq!(json["keyUsage"], "ENCRYPT/DECRYPT");
        assert_eq!(json["origin"], "Aliyun_KMS");
        assert_eq!(json["protectionLevel"], "SOFTWARE");
        assert_eq!(json["keyState"], "Enabled");
        assert_eq!(json["automaticRotation"], "Enabled");
    }

    #[test]
    fn next_rotation_date_is_the_last_rotation_plus_the_interval() {
        for (interval, seconds, next) in [
            ("7d", "604800s", "2016-04-01T10:42:40Z"),
            ("604800s", "604800s", "2016-04-01T10:42:40Z"),
            ("168h", "604800s", "2016-04-01T10:42:40Z"),
            ("20160m", "1209600s", "2016-04-08T10:42:40Z"),
            ("730d", "63072000s", "2018-03-25T10:42:40Z"),
        ] {
            let world = World::settled(key(|r| {
                r.key_spec = Some("Aliyun_SM4".into());
                r.enable_automatic_rotation = Some(true);
                r.rotation_interval = Some(interval.into());
            }));
            let metadata = world.metadata();
            assert_eq!(metadata.automatic_rotation, AutomaticRotation::Enabled);
            assert_eq!(metadata.last_rotation_date.as_deref(), Some(CREATED));
            assert_eq!(
                metadata.rotation_interval.as_deref(),
                Some(seconds),
                "{interval}"
            );
            assert_eq!(
                metadata.next_rotation_date.as_deref(),
                Some(next),
                "{interval}"
            );
        }
    }

    #[test]
    fn rotation_fields_are_absent_unless_rotation_is_enabled() {
        for enabled in [None, Some(false)] {
            let world = World::settled(key(|r| {
                r.enable_automatic_rotation = enabled;
                r.rotation_interval = Some("30d".into());
            }));
            assert_eq!(world.metadata(), &aes_metadata(), "{enabled:?}");
        }
    }

    #[test]
    fn enabling_rotation_later_schedules_from_the_initial_version() {
        let mut world = World::settled(key(|_| {}));
        world.key.spec.enable_automatic_rotation = Some(true);
        world.key.spec.rotation_interval = Some("30d".into());
        world.key.metadata.generation = Some(2);
        let converge = world.converge(later());
        assert_eq!(converge.consumer, None);
        assert_eq!(converge.notes, Vec::new());
        let metadata = converge.status.unwrap().key_metadata.unwrap();
        assert_eq!(metadata.automatic_rotation, AutomaticRotation::Enabled);
        assert_eq!(
            metadata.next_rotation_date.as_deref(),
            Some("2016-04-24T10:42:40Z")
        );
    }

    #[test]
    fn asymmetric_key_has_no_primary_version_and_no_rotation() {
        for (spec, usage, key_spec) in [
            ("RSA_2048", "SIGN/VERIFY", KeySpec::Rsa2048),
            ("EC_P256", "SIGN/VERIFY", KeySpec::EcP256),
            ("EC_SM2", "ENCRYPT/DECRYPT", KeySpec::EcSm2),
        ] {
            let world = World::settled(spec_usage(spec, usage));
            let expected = KeyMetadata {
                key_spec,
                key_usage: KeyUsage::parse(usage).unwrap(),
                primary_key_version: None,
                ..aes_metadata()
            };
            assert_eq!(world.metadata(), &expected, "{spec}");
            assert_eq!(ready(world.status()).message, ready_message(), "{spec}");
        }
    }

    #[test]
    fn external_key_without_material_is_pending_import() {
        let world = World::created(key(|r| r.origin = Some("EXTERNAL".into())));
        let converge = world.converge(t0());
        assert_eq!(converge.consumer, None, "there is no material to publish");
        let message = format!(
            "key {KEY_ID} has origin EXTERNAL and no material yet: import key material to \
             enable it"
        );
        assert_eq!(
            converge.notes,
            vec![Note {
                warning: false,
                reason: "PendingImport",
                message: message.clone(),
            }]
        );
        let status = converge.status.unwrap();
        let condition = ready(&status);
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("False", "PendingImport")
        );
        assert_eq!(condition.message, message);
        assert_eq!(status.secret_name, None);
        assert_eq!(
            status.key_metadata,
            Some(KeyMetadata {
                key_state: KeyState::PendingImport,
                origin: Origin::External,
                automatic_rotation: AutomaticRotation::Disabled,
                primary_key_version: None,
                last_rotation_date: None,
                ..aes_metadata()
            })
        );
    }

    #[test]
    fn description_changes_are_reported_and_an_empty_one_is_omitted() {
        let mut world = World::settled(key(|r| r.description = Some("first".into())));
        assert_eq!(world.metadata().description, "first");
        for (description, reported) in [
            (Some("second"), "second"),
            (Some(""), ""),
            (None, ""),
            (Some("third"), "third"),
        ] {
            world.key.spec.description = description.map(str::to_string);
            *world.key.metadata.generation.as_mut().unwrap() += 1;
            let converge = world.converge(later());
            assert_eq!(converge.consumer, None, "{description:?}");
            assert_eq!(converge.notes, Vec::new(), "{description:?}");
            let status = converge.status.clone().expect("a status write");
            let metadata = status.key_metadata.as_ref().unwrap();
            assert_eq!(metadata.description, reported, "{description:?}");
            let json = serde_json::to_value(metadata).unwrap();
            assert_eq!(
                json.get("description").is_some(),
                !reported.is_empty(),
                "{description:?}"
            );
            world.apply(&converge);
        }
    }

    #[test]
    fn ready_condition_and_status_carry_the_observed_generation() {
        let mut world = World::settled(key(|_| {}));
        assert_eq!(world.status().observed_generation, Some(1));
        assert_eq!(ready(world.status()).observed_generation, Some(1));
        let before = world.status().clone();

        world.key.metadata.generation = Some(5);
        let converge = world.converge(later());
        assert_eq!(converge.consumer, None);
        assert_eq!(converge.notes, Vec::new());
        let status = converge
            .status
            .clone()
            .expect("a generation alone is a status write");
        let mut expected = before;
        expected.observed_generation = Some(5);
        expected.conditions[0].observed_generation = Some(5);
        assert_eq!(status, expected);
        world.apply(&converge);
        assert_eq!(world.converge(later()), Converge::default());
    }

    // ---- A store that is not whole ----------------------------------------------------------

    fn store_invalid_message(what: &str) -> String {
        format!(
            "MaterialStoreInvalid: the material store Secret {STORE} {what}; keyward will not \
             mint replacement material: restore the Secret from a backup, or delete it and the \
             Key to start a new key"
        )
    }

    #[test]
    fn store_that_is_not_whole_is_invalid_and_never_replaced() {
        type Edit = fn(&mut Secret);
        let version_entry = format!("entry {VERSION_ID}.key");
        let lacks = format!("lacks the material of version {VERSION_ID} ({version_entry})");
        let cases: [(&str, Edit, &str); 8] = [
            (
                "version entry removed",
                |s| {
                    s.data
                        .as_mut()
                        .unwrap()
                        .remove(&format!("{VERSION_ID}.key"));
                },
                &lacks,
            ),
            (
                "version entry emptied",
                |s| {
                    s.data
                        .as_mut()
                        .unwrap()
                        .insert(format!("{VERSION_ID}.key"), ByteString(Vec::new()));
                },
                &lacks,
            ),
            (
                "key.json removed",
                |s| {
                    s.data.as_mut().unwrap().remove(RECORD_ENTRY);
                },
                "has no readable key.json entry",
            ),
            (
                "key.json garbled",
                |s| {
                    s.data
                        .as_mut()
                        .unwrap()
                        .insert(RECORD_ENTRY.into(), ByteString(b"{\"keyId\":".to_vec()));
                },
                "has no readable key.json entry",
            ),
            (
                "data removed",
                |s| s.data = None,
                "has no readable key.json entry",
            ),
            (
                "wrong type",
                |s| s.type_ = Some("Opaque".into()),
                "is not of type keyward.dev/key-material",
            ),
            (
                "annotation for another Key",
                |s| {
                    s.metadata
                        .annotations
                        .as_mut()
                        .unwrap()
                        .insert(labels::KEY.into(), "other".into());
                },
                "does not belong to Key payments",
            ),
            (
                "no annotations",
                |s| s.metadata.annotations = None,
                "does not belong to Key payments",
            ),
        ];
        for (what, edit, detail) in cases {
            // A key that was reported before keeps its KeyMetadata.
            let mut world = World::settled(key(|_| {}));
            edit(world.store_mut());
            world.consumer = None;
            let converge = world.converge(later());
            let status = assert_rejected(&converge, Code::MaterialStoreInvalid);
            assert_eq!(
                ready(&status).message,
                store_invalid_message(detail),
                "{what}"
            );
            assert_eq!(status.key_metadata, Some(aes_metadata()), "{what}");

            // A key never reported has none.
            let mut world = World::created(key(|_| {}));
            edit(world.store_mut());
            let converge = world.converge(t0());
            let status = assert_rejected(&converge, Code::MaterialStoreInvalid);
            assert_eq!(status.key_metadata, None, "{what}");
        }
    }

    #[test]
    fn asymmetric_store_missing_a_public_key_is_invalid() {
        let mut world = World::created(spec_usage("EC_P256", "SIGN/VERIFY"));
        world
            .store_mut()
            .data
            .as_mut()
            .unwrap()
            .remove(&format!("{VERSION_ID}.public.pem"));
        let converge = world.converge(t0());
        let status = assert_rejected(&converge, Code::MaterialStoreInvalid);
        assert_eq!(
            ready(&status).message,
            store_invalid_message(&format!(
                "lacks the material of version {VERSION_ID} (entry {VERSION_ID}.public.pem)"
            ))
        );
    }

    // ---- Hygiene ------------------------------------------------------------------------------

    #[test]
    fn secret_write_debug_names_the_secret_only() {
        let world = World::created(key(|_| {}));
        let converge = world.converge(t0());
        let write = converge.consumer.as_ref().unwrap();
        assert_eq!(format!("{write:?}"), "Create(Secret payments)");
        assert_eq!(format!("{write:#?}"), "Create(Secret payments)");
        let debug = format!("{converge:?}");
        let SecretWrite::Create(secret) = write else {
            unreachable!()
        };
        let key = &data(secret)["key"].0;
        assert!(!debug.contains(&format!("{key:?}")), "Debug leaks the key");
        assert!(!debug.contains("ByteString"), "Debug shows Secret data");
    }
}
