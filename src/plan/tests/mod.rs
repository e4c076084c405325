//! Table-driven tests of the Key planner: fixed inputs, exact plans.
//! The planner, table-driven, with fixed `now` and fresh ids. Stores are built the way the
//! reconciler builds them (`store::new_store` with real material), and every plan's writes
//! can be fed back in as the next observation. No assertion message prints a Secret.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::*;
use crate::api::labels;
use crate::api::{
    AutomaticRotation, Key, KeyMetadata, KeyRequest, KeySpec, KeyState, KeyStatus, KeyUsage,
    Origin, ProtectionLevel,
};
use crate::kms::error::{Code, Rejection};
use crate::kms::material::{self, SecretBytes};
use crate::kms::reason::{READY, Reason};
use crate::kms::rules::RuleSettings;

use crate::store::{self, NewKeyRecord, RECORD_ENTRY, Store, VersionRecord};

const NS: &str = "team-a";
const NAME: &str = "payments";
const REGION: &str = "cn-hangzhou";
const ACCOUNT: &str = "123456";
const KEY_ID: &str = "08c33a6f-4e0a-4a1b-a3fa-7ddfa1d4c0de";
const VERSION_ID: &str = "0ec2d249-9f64-4d8f-9587-1215525ec0de";
/// The creation time the seed's sample shows: `t0()` truncated to the second.
const CREATED: &str = "2016-03-25T10:42:40Z";
const STORE: &str = "team-a.payments.keyward-store";

/// Where the reconciler keeps the store of the Key under test.
fn location() -> store::StoreLocation<'static> {
    store::StoreLocation {
        store_namespace: "keyward",
        key_namespace: NS,
        key_name: NAME,
    }
}

fn settings() -> PlanSettings {
    PlanSettings {
        rules: RuleSettings::with_seed_bounds(REGION),
        account_id: ACCOUNT.into(),
        max_requeue: std::time::Duration::from_secs(600),
        key_version_min_interval: crate::kms::schedule::Interval::from_days(7),
        max_asymmetric_versions: 50,
        pending_window_unit: crate::kms::schedule::Interval::from_days(1),
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

/// A store as the reconciler hands it to the planner: parsed once.
fn parsed(store: Option<&Secret>) -> Option<Result<Store, Rejection>> {
    store.map(|s| Store::parse(s.clone(), NS, NAME))
}

fn plan_at(key: &Key, store: Option<&Secret>, consumer: Option<&Secret>, now: Timestamp) -> Plan {
    plan(
        &Observed {
            key,
            store: parsed(store).as_ref(),
            consumer,
            former_consumers: &Default::default(),
            asymmetric_versions: Some(0),
            import: None,
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
        other => panic!("expected CreateKey, got {other:?}"),
    }
}

fn expect_converge(plan: Plan) -> Converge {
    match plan {
        Plan::Converge(c) => *c,
        other => panic!("expected Converge, got {other:?}"),
    }
}

/// What the reconciler does with a CreateKey plan: mint, and build the store Secret.
fn store_for(key: &Key) -> Secret {
    let new = expect_create(plan_at(key, None, None, t0()));
    let material = new
        .mint
        .then(|| material::generate(new.record.key_spec).expect("minting works"));
    let mut store = store::new_store(location(), &new.record, material.as_ref());
    if !new.mint {
        // As the reconciler does next for an EXTERNAL key: issue import parameters.
        let (parameters, wrapping_key) = crate::kms::import::issue_parameters(t0()).unwrap();
        let mut record = new.record.clone();
        record.import_parameters = Some(parameters);
        store = store::with_import_parameters(&store, &record, &wrapping_key);
    }
    store.metadata.resource_version = Some("100".into());
    store
}

/// A Key, its store and its consumer Secret as the API server holds them.
struct World {
    key: Key,
    store: Option<Secret>,
    consumer: Option<Secret>,
    /// Fresh version ids drawn so far by `run`.
    drawn: u64,
}

impl World {
    /// A Key whose store has just been created; nothing else written yet.
    fn created(key: Key) -> Self {
        let store = Some(store_for(&key));
        World {
            key,
            store,
            consumer: None,
            drawn: 0,
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

    /// Carries out record updates and Converges until there is nothing left to write.
    fn settle(&mut self, now: Timestamp) {
        for _ in 0..6 {
            let converge = match self.plan(now) {
                Plan::UpdateRecord(record, _) => {
                    let store = self.store.as_ref().expect("a store");
                    self.store = Some(store::with_record(store, &record));
                    continue;
                }
                plan => expect_converge(plan),
            };
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
    format!("key {KEY_ID} is Enabled; its material is in Secret {NAME}")
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
            reason: Reason::Refused(code),
            message: condition.message.clone(),
        }]
    );
    status
}

mod consumer;
mod create;
mod import;
mod report;
mod rotation;
