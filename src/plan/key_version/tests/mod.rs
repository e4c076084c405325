//! Table-driven tests of the KeyVersion planner: fixed inputs, exact plans.
//!
//! Keys and their stores are made the way the operator makes them (the Key planner's CreateKey,
//! `store::new_store` with real material), and every AddVersion is carried out the way the
//! reconciler does it (`store::with_new_version` with real material), so each plan's writes can
//! be fed back in as the next observation. No assertion message prints a Secret.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::*;
use crate::api::key_version::{KeyRef, KeyVersionRequest};
use crate::api::labels;
use crate::api::{KeyRequest, KeySpec, KeyUsage, Origin, ProtectionLevel};
use crate::kms::material;
use crate::kms::reason::{READY, Reason};
use crate::kms::rules::{self, RuleSettings};
use crate::kms::schedule::Interval;
use crate::plan::{FreshIds, Observed, Plan};
use crate::store::{self, NewKeyRecord, RECORD_ENTRY};

const NS: &str = "team-a";
const REGION: &str = "cn-hangzhou";
const ACCOUNT: &str = "123456";
const KEY_NAME: &str = "signing";

/// Where the reconciler keeps the store of the Key requests name.
fn location() -> store::StoreLocation<'static> {
    store::StoreLocation {
        store_namespace: "keyward",
        key_namespace: NS,
        key_name: KEY_NAME,
    }
}
const KEY_ID: &str = "0b30658a-ed1a-4922-b8f7-a673ca9c0de0";
const INITIAL_VERSION_ID: &str = "6b1e9fd4-1d2c-4d6f-8a4b-3c7e2f9a0de0";
const REQUEST_NAME: &str = "signing-next";
const UID: &str = "b96f250a-4b75-498c-91be-22c6928f85be";
/// The version id the planner is handed for this request.
const FRESH_ID: &str = "c0a3d5dc-0b47-4199-a050-b289349a0de0";
/// Another fresh id, drawn by a later reconcile.
const OTHER_FRESH_ID: &str = "d41e7a30-55c2-4d1e-9d7b-0c2f1a8b0de0";
/// The key's creation time: `t0()` truncated to the second.
const KEY_CREATED: &str = "2016-03-25T10:42:40Z";
/// When a new version is allowed after the key's initial one: KEY_CREATED + 7 days.
const KEY_CREATED_PLUS_7D: &str = "2016-04-01T10:42:40Z";
/// The seed's sample CreationDate: `now()` truncated to the second.
const NOW_KMS: &str = "2019-08-02T10:38:27Z";

const ASYMMETRIC: [KeySpec; 4] = [
    KeySpec::Rsa2048,
    KeySpec::EcP256,
    KeySpec::EcP256K,
    KeySpec::EcSm2,
];

fn settings() -> PlanSettings {
    PlanSettings {
        rules: RuleSettings::with_seed_bounds(REGION),
        account_id: ACCOUNT.into(),
        max_requeue: std::time::Duration::from_secs(600),
        key_version_min_interval: Interval::from_days(7),
        max_asymmetric_versions: 50,
        pending_window_unit: crate::kms::schedule::Interval::from_days(1),
    }
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// When the key was created: a fraction of a second past [`KEY_CREATED`].
fn t0() -> Timestamp {
    at("2016-03-25T10:42:40.987654321Z")
}

/// When the request is first planned: a fraction of a second past [`NOW_KMS`].
fn now() -> Timestamp {
    at("2019-08-02T10:38:27.123456789Z")
}

/// A month after [`now`]: beyond any interval the tests use.
fn later() -> Timestamp {
    at("2019-09-01T08:00:00.5Z")
}

// ---- Builders ---------------------------------------------------------------------------

/// A KeyVersion as the API server holds it: namespaced, with a uid and a generation.
fn request_named(name: &str, uid: &str) -> KeyVersion {
    let mut request = KeyVersion::new(
        name,
        KeyVersionRequest {
            key_ref: KeyRef {
                name: KEY_NAME.into(),
            },
        },
    );
    request.metadata.namespace = Some(NS.into());
    request.metadata.uid = Some(uid.into());
    request.metadata.generation = Some(1);
    request
}

fn request() -> KeyVersion {
    request_named(REQUEST_NAME, UID)
}

/// A Key of `spec` with the last usage its spec allows (SIGN/VERIFY for asymmetric specs).
fn key_of(spec: KeySpec, origin: Origin) -> Key {
    let usage = spec.supported_usages().last().expect("a usage per spec");
    let mut key = Key::new(
        KEY_NAME,
        KeyRequest {
            key_spec: Some(spec.as_str().into()),
            key_usage: Some(usage.as_str().into()),
            origin: Some(origin.as_str().into()),
            ..KeyRequest::default()
        },
    );
    key.metadata.namespace = Some(NS.into());
    key.metadata.generation = Some(1);
    key
}

/// The store the operator creates for `key` at `created`: the Key planner's CreateKey,
/// minted and written as the Key reconciler does.
fn store_for(key: &Key, created: Timestamp) -> Secret {
    let fresh = FreshIds {
        key_id: KEY_ID.into(),
        version_id: INITIAL_VERSION_ID.into(),
    };
    let observed = Observed {
        key,
        store: None,
        consumer: None,
        former_consumers: &Default::default(),
        asymmetric_versions: Some(0),
        import: None,
    };
    let new = match crate::plan::plan(&observed, &settings(), created, &fresh) {
        Plan::CreateKey(new) => new,
        // `Plan`'s Debug holds no material: `SecretWrite` prints only the Secret's name.
        other => panic!("expected CreateKey, got {other:?}"),
    };
    let material = new
        .mint
        .then(|| material::generate(new.record.key_spec).expect("minting works"));
    let mut store = store::new_store(location(), &new.record, material.as_ref());
    store.metadata.resource_version = Some("100".into());
    store
}

/// The store of an asymmetric key awaiting imported material. The rules refuse EXTERNAL for
/// asymmetric specs, so the record is built directly.
fn pending_import_store(spec: KeySpec) -> Secret {
    let record = NewKeyRecord {
        key_id: KEY_ID,
        region: REGION,
        account_id: ACCOUNT,
        created: truncate_to_second(t0()),
        key_spec: spec,
        key_usage: KeyUsage::SignVerify,
        origin: Origin::External,
        protection_level: ProtectionLevel::Software,
        initial_version_id: None,
        pending_window_days: 30,
        consumer_secret: KEY_NAME,
    }
    .build();
    let mut store = store::new_store(location(), &record, None);
    store.metadata.resource_version = Some("100".into());
    store
}

type Reported = (Option<KeyVersionStatus>, Vec<Note>);

/// A KeyVersion, its Key and the Key's store as the API server holds them, and the count of
/// asymmetric versions the reconciler would find.
struct World {
    request: KeyVersion,
    key: Option<Key>,
    store: Option<Secret>,
    asymmetric_versions: usize,
}

impl World {
    /// An unanswered request for a Key of `spec` created at `t0()`.
    fn with_key(spec: KeySpec) -> Self {
        World::with_key_created(spec, t0())
    }

    fn with_key_created(spec: KeySpec, created: Timestamp) -> Self {
        let key = key_of(spec, Origin::AliyunKms);
        let store = store_for(&key, created);
        World {
            request: request(),
            key: Some(key),
            store: Some(store),
            asymmetric_versions: usize::from(!spec.is_symmetric()),
        }
    }

    /// An unanswered request whose Key does not exist.
    fn without_key() -> Self {
        World {
            request: request(),
            key: None,
            store: None,
            asymmetric_versions: 0,
        }
    }

    fn plan(&self, now: Timestamp) -> RequestPlan {
        self.plan_with(now, FRESH_ID)
    }

    fn plan_with(&self, now: Timestamp, version_id: &str) -> RequestPlan {
        plan_for(self, &self.request, now, version_id)
    }

    fn report(&self, now: Timestamp) -> Reported {
        expect_report(self.plan(now))
    }

    /// The store's record, read as the planner reads it.
    fn record(&self) -> KeyRecord {
        let secret = self.store.as_ref().expect("a store Secret");
        Store::parse(secret.clone(), NS, KEY_NAME)
            .map(|s| s.record)
            .expect("a readable store")
    }

    fn record_if_readable(&self) -> Option<KeyRecord> {
        let secret = self.store.as_ref()?;
        Store::parse(secret.clone(), NS, KEY_NAME)
            .ok()
            .map(|s| s.record)
    }

    /// Carries out an AddVersion as the reconciler does: mint, grow the store, write it back
    /// conditionally on the resourceVersion it was read at.
    fn add_version(&mut self, new: &NewVersion) {
        let current = self.store.as_ref().expect("AddVersion without a store");
        let material = material::generate(new.record.key_spec).expect("minting works");
        let mut grown = store::with_new_version(current, &new.record, &new.version, &material)
            .expect("the fresh version id is not taken");
        assert_eq!(
            grown.metadata.resource_version, current.metadata.resource_version,
            "the write must be conditional on the store that was read"
        );
        let read_at: u64 = current
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or("0")
            .parse()
            .unwrap();
        grown.metadata.resource_version = Some((read_at + 1).to_string());
        self.store = Some(grown);
        if !new.record.key_spec.is_symmetric() {
            self.asymmetric_versions += 1;
        }
    }

    /// The reconciler: plan, carry out AddVersion and plan again until a Report, whose status
    /// is written. Returns that Report.
    fn reconcile(&mut self, now: Timestamp, version_id: &str) -> Reported {
        for _ in 0..4 {
            match self.plan_with(now, version_id) {
                RequestPlan::AddVersion(new) => self.add_version(&new),
                RequestPlan::Report { status, notes, .. } => {
                    if let Some(status) = &status {
                        self.request.status = Some(status.clone());
                    }
                    return (status, notes);
                }
            }
        }
        panic!("the plans did not settle");
    }

    /// Another KeyVersion for the same Key, accepted and carried out at `now`.
    fn accept_other_request(&mut self, name: &str, uid: &str, version_id: &str, now: Timestamp) {
        let other = request_named(name, uid);
        let new = expect_add(plan_for(self, &other, now, version_id));
        self.add_version(&new);
    }
}

fn plan_for(world: &World, request: &KeyVersion, now: Timestamp, version_id: &str) -> RequestPlan {
    let store = world
        .store
        .as_ref()
        .map(|s| Store::parse(s.clone(), NS, KEY_NAME));
    let observed = ObservedRequest {
        request,
        key: world.key.as_ref(),
        store: store.as_ref(),
        asymmetric_versions: world.asymmetric_versions,
    };
    plan_request(&observed, &settings(), now, version_id)
}

// `RequestPlan`'s Debug holds no material: records and statuses only.
fn expect_add(plan: RequestPlan) -> NewVersion {
    match plan {
        RequestPlan::AddVersion(new) => *new,
        other => panic!("expected AddVersion, got {other:?}"),
    }
}

fn expect_report(plan: RequestPlan) -> Reported {
    match plan {
        RequestPlan::Report { status, notes, .. } => (status, notes),
        other => panic!("expected Report, got {other:?}"),
    }
}

fn nothing_to_write() -> Reported {
    (None, Vec::new())
}

// ---- Expected statuses and notes -----------------------------------------------------------

fn ready_condition(status: &str, reason: &str, message: &str, since: &str) -> Condition {
    Condition {
        type_: READY.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: Some(1),
        last_transition_time: Time(at(since)),
    }
}

fn response(version_id: &str, creation_date: &str) -> KeyVersionMetadata {
    KeyVersionMetadata {
        key_id: KEY_ID.into(),
        key_version_id: version_id.into(),
        creation_date: creation_date.into(),
    }
}

fn created_message(version_id: &str, creation_date: &str) -> String {
    format!("version {version_id} of key {KEY_ID} was created at {creation_date}")
}

/// Ready=True Created for `version_id`, created at `creation_date`, since `since`.
fn created_status(version_id: &str, creation_date: &str, since: &str) -> KeyVersionStatus {
    KeyVersionStatus {
        key_version: Some(response(version_id, creation_date)),
        conditions: vec![ready_condition(
            "True",
            Reason::Created.as_str(),
            &created_message(version_id, creation_date),
            since,
        )],
        observed_generation: Some(1),
    }
}

fn created_note(version_id: &str, creation_date: &str) -> Note {
    Note {
        warning: false,
        reason: Reason::Created,
        message: created_message(version_id, creation_date),
    }
}

fn rejected_status(code: Code, message: &str, since: &str) -> KeyVersionStatus {
    KeyVersionStatus {
        key_version: None,
        conditions: vec![ready_condition("False", code.reason(), message, since)],
        observed_generation: Some(1),
    }
}

fn rejected_note(code: Code, message: &str) -> Note {
    Note {
        warning: true,
        reason: Reason::Refused(code),
        message: message.into(),
    }
}

/// What a fresh request rejected with `code` and `message` at `since` reports.
fn rejected(code: Code, message: &str, since: &str) -> Reported {
    (
        Some(rejected_status(code, message, since)),
        vec![rejected_note(code, message)],
    )
}

fn waiting_status(message: &str, since: &str) -> KeyVersionStatus {
    KeyVersionStatus {
        key_version: None,
        conditions: vec![ready_condition(
            "False",
            Reason::WaitingForKey.as_str(),
            message,
            since,
        )],
        observed_generation: Some(1),
    }
}

fn waiting_note(message: &str) -> Note {
    Note {
        warning: false,
        reason: Reason::WaitingForKey,
        message: message.into(),
    }
}

fn waiting_to_exist() -> String {
    format!("waiting for Key {KEY_NAME} to exist in this namespace")
}

fn waiting_to_be_created() -> String {
    format!("waiting for Key {KEY_NAME} to be created")
}

fn waiting_to_become_usable() -> String {
    format!("waiting for Key {KEY_NAME} to become usable")
}

fn symmetric_message(spec: KeySpec) -> String {
    format!(
        "Rejected.UnsupportedOperation: CreateKeyVersion is available only for asymmetric keys; \
         key {KEY_NAME} ({KEY_ID}) is {spec}: symmetric keys are rotated instead (automatic \
         rotation, for keys with origin Aliyun_KMS)"
    )
}

fn too_soon_message(last: &str, allowed_from: &str) -> String {
    format!(
        "Rejected.UnsupportedOperation: the last version of key {KEY_NAME} ({KEY_ID}) was \
         created at {last}; versions must be at least 7d apart: a new version is allowed from \
         {allowed_from}"
    )
}

fn limit_message(count: usize) -> String {
    format!(
        "Rejected.LimitExceeded: namespace {NS} already holds {count} asymmetric key versions, \
         the most a namespace may hold (--max-asymmetric-key-versions 50): delete asymmetric \
         keys it no longer needs, or ask the cluster's administrator to raise the limit; \
         checked again every 30 s"
    )
}

fn pending_import_message() -> String {
    format!(
        "Rejected.PendingImport: key {KEY_NAME} ({KEY_ID}) is PendingImport: new versions need \
         an Enabled key"
    )
}

fn initial_version(creation_date: &str) -> VersionRecord {
    VersionRecord {
        key_version_id: INITIAL_VERSION_ID.into(),
        creation_date: at(creation_date),
        requested_by: None,
    }
}

fn requested_version(version_id: &str, creation_date: &str, uid: &str) -> VersionRecord {
    VersionRecord {
        key_version_id: version_id.into(),
        creation_date: at(creation_date),
        requested_by: Some(uid.into()),
    }
}

fn data_names(secret: &Secret) -> Vec<&str> {
    let data = secret.data.as_ref().expect("Secret data");
    data.keys().map(String::as_str).collect()
}

mod accepted;
mod conditions;
mod final_rejection;
mod known_bugs;
mod seed_rules;
mod waiting;
