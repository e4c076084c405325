//! Table-driven tests of the KeyVersion planner: fixed inputs, exact plans.
//!
//! Keys and their stores are made the way the operator makes them (the Key planner's CreateKey,
//! `store::new_store` with real material), and every AddVersion is carried out the way the
//! reconciler does it (`store::with_new_version` with real material), so each plan's writes can
//! be fed back in as the next observation. No assertion message prints a Secret.

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
    let mut store = store::new_store(NS, KEY_NAME, &new.record, material.as_ref());
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
    }
    .build();
    let mut store = store::new_store(NS, KEY_NAME, &record, None);
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
        Store::parse(secret.clone(), KEY_NAME)
            .map(|s| s.record)
            .expect("a readable store")
    }

    fn record_if_readable(&self) -> Option<KeyRecord> {
        let secret = self.store.as_ref()?;
        Store::parse(secret.clone(), KEY_NAME)
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
                RequestPlan::Report { status, notes } => {
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
    let observed = ObservedRequest {
        request,
        key: world.key.as_ref(),
        store: world.store.as_ref(),
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
        RequestPlan::Report { status, notes } => (status, notes),
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
        "Rejected.LimitExceeded: the operator already holds {count} asymmetric key versions, \
         the limit is 50 (--max-asymmetric-key-versions): delete unneeded asymmetric keys or \
         raise the limit"
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
        creation_date: creation_date.into(),
        requested_by: None,
    }
}

fn requested_version(version_id: &str, creation_date: &str, uid: &str) -> VersionRecord {
    VersionRecord {
        key_version_id: version_id.into(),
        creation_date: creation_date.into(),
        requested_by: Some(uid.into()),
    }
}

fn data_names(secret: &Secret) -> Vec<&str> {
    let data = secret.data.as_ref().expect("Secret data");
    data.keys().map(String::as_str).collect()
}

// ---- Accepted -------------------------------------------------------------------------------

#[test]
fn enabled_asymmetric_key_past_the_interval_gets_the_requested_version() {
    for spec in ASYMMETRIC {
        let world = World::with_key(spec);
        let new = expect_add(world.plan(now()));
        assert_eq!(
            new,
            NewVersion {
                record: world.record(),
                version: requested_version(FRESH_ID, NOW_KMS, UID),
            },
            "{spec}"
        );
        assert_eq!(new.record.key_id, KEY_ID, "{spec}");
        assert_eq!(new.record.key_spec, spec);
        assert_eq!(
            new.record.versions,
            vec![initial_version(KEY_CREATED)],
            "{spec}: the record is the store's, without the new version"
        );
    }
}

#[test]
fn accepted_version_is_reported_created_once_then_nothing_is_written() {
    for spec in ASYMMETRIC {
        let mut world = World::with_key(spec);
        let new = expect_add(world.plan(now()));
        world.add_version(&new);

        // The store now holds both versions, the new one for this request.
        assert_eq!(
            world.record().versions,
            vec![
                initial_version(KEY_CREATED),
                requested_version(FRESH_ID, NOW_KMS, UID),
            ],
            "{spec}"
        );
        let store = world.store.as_ref().unwrap();
        let mut expected_entries = vec![
            format!("{FRESH_ID}.private.pem"),
            format!("{FRESH_ID}.public.pem"),
            format!("{INITIAL_VERSION_ID}.private.pem"),
            format!("{INITIAL_VERSION_ID}.public.pem"),
            RECORD_ENTRY.to_string(),
        ];
        expected_entries.sort();
        assert_eq!(data_names(store), expected_entries, "{spec}");
        assert_eq!(world.asymmetric_versions, 2);

        // Planned again (same reconcile, a fresh id drawn): the request is reported.
        let report = expect_report(world.plan_with(now(), OTHER_FRESH_ID));
        assert_eq!(
            report,
            (
                Some(created_status(FRESH_ID, NOW_KMS, NOW_KMS)),
                vec![created_note(FRESH_ID, NOW_KMS)],
            ),
            "{spec}"
        );
        world.request.status = report.0;

        // With that status fed back, nothing is left to write, now or much later.
        assert_eq!(world.report(now()), nothing_to_write(), "{spec}");
        assert_eq!(
            expect_report(world.plan_with(later(), OTHER_FRESH_ID)),
            nothing_to_write(),
            "{spec}"
        );
    }
}

#[test]
fn reconciling_an_accepted_request_adds_exactly_one_version() {
    let mut world = World::with_key(KeySpec::EcP256);
    let reported = world.reconcile(now(), FRESH_ID);
    assert_eq!(
        reported,
        (
            Some(created_status(FRESH_ID, NOW_KMS, NOW_KMS)),
            vec![created_note(FRESH_ID, NOW_KMS)],
        )
    );
    assert_eq!(world.record().versions.len(), 2);
    // Every later reconcile, whatever id it draws, writes nothing and adds nothing.
    for when in [now(), later()] {
        assert_eq!(world.reconcile(when, OTHER_FRESH_ID), nothing_to_write());
    }
    assert_eq!(world.record().versions.len(), 2);
    assert_eq!(world.asymmetric_versions, 2);
}

// ---- Crash safety ---------------------------------------------------------------------------

#[test]
fn version_in_the_store_for_this_request_is_reported_never_minted_again() {
    // The operator stopped after writing the store, before writing the request's status.
    let mut crashed = World::with_key(KeySpec::EcP256);
    let new = expect_add(crashed.plan(now()));
    crashed.add_version(&new);
    assert_eq!(crashed.request.status, None);

    let restart = "2019-08-02T10:38:28Z";
    type Edit = fn(&mut World);
    let cases: [(&str, Edit); 3] = [
        // A second later the rules would refuse a new version: the request is still done.
        ("as it was, too soon for another version", |_| {}),
        ("at the limit of asymmetric versions", |w| {
            w.asymmetric_versions = 50;
        }),
        ("with the Key deleted meanwhile", |w| w.key = None),
    ];
    for (what, edit) in cases {
        let mut world = World {
            request: crashed.request.clone(),
            key: crashed.key.clone(),
            store: crashed.store.clone(),
            asymmetric_versions: crashed.asymmetric_versions,
        };
        edit(&mut world);
        let plan = world.plan_with(at(restart), OTHER_FRESH_ID);
        assert_eq!(
            expect_report(plan),
            (
                Some(created_status(FRESH_ID, NOW_KMS, restart)),
                vec![created_note(FRESH_ID, NOW_KMS)],
            ),
            "{what}"
        );
    }
    assert_eq!(
        crashed.reconcile(at(restart), OTHER_FRESH_ID).0,
        Some(created_status(FRESH_ID, NOW_KMS, restart))
    );
    assert_eq!(
        crashed.record().versions,
        vec![
            initial_version(KEY_CREATED),
            requested_version(FRESH_ID, NOW_KMS, UID),
        ],
        "no second version"
    );
}

#[test]
fn created_request_stays_created_when_its_key_or_store_is_gone() {
    let mut settled = World::with_key(KeySpec::EcP256);
    settled.reconcile(now(), FRESH_ID);
    let created = Some(created_status(FRESH_ID, NOW_KMS, NOW_KMS));
    assert_eq!(settled.request.status, created);

    let mut unreadable = settled.store.clone().unwrap();
    unreadable.data.as_mut().unwrap().remove(RECORD_ENTRY);
    let cases = [
        ("store gone", settled.key.clone(), None),
        ("Key and store gone", None, None),
        ("store unreadable", settled.key.clone(), Some(unreadable)),
        ("Key gone, store kept", None, settled.store.clone()),
    ];
    for (what, key, store) in cases {
        let world = World {
            request: settled.request.clone(),
            key,
            store,
            asymmetric_versions: 50,
        };
        assert_eq!(
            expect_report(world.plan_with(later(), OTHER_FRESH_ID)),
            nothing_to_write(),
            "{what}"
        );
    }

    // A status that lost its condition (say, edited by hand) gets Created back, with the
    // version it names, even without a store.
    let mut world = World {
        request: settled.request.clone(),
        key: None,
        store: None,
        asymmetric_versions: 0,
    };
    world.request.status.as_mut().unwrap().conditions.clear();
    let later_kms = "2019-09-01T08:00:00Z";
    assert_eq!(
        world.report(later()),
        (
            Some(created_status(FRESH_ID, NOW_KMS, later_kms)),
            vec![created_note(FRESH_ID, NOW_KMS)],
        )
    );
}

// ---- Asymmetric keys only -------------------------------------------------------------------

#[test]
fn symmetric_key_is_rejected_as_unsupported_operation() {
    let cases = [
        (
            key_of(KeySpec::AliyunAes256, Origin::AliyunKms),
            KeySpec::AliyunAes256,
        ),
        (
            key_of(KeySpec::AliyunSm4, Origin::AliyunKms),
            KeySpec::AliyunSm4,
        ),
        // A symmetric key awaiting its import is refused for being symmetric first.
        (
            key_of(KeySpec::AliyunAes256, Origin::External),
            KeySpec::AliyunAes256,
        ),
    ];
    for (key, spec) in cases {
        let origin = key.spec.origin.clone().unwrap();
        let store = store_for(&key, t0());
        let world = World {
            request: request(),
            key: Some(key),
            store: Some(store),
            asymmetric_versions: 0,
        };
        let message = symmetric_message(spec);
        assert!(
            message.starts_with(
                "Rejected.UnsupportedOperation: CreateKeyVersion is available only for \
                 asymmetric keys"
            ),
            "{message}"
        );
        assert_eq!(
            world.report(now()),
            rejected(Code::RejectedUnsupportedOperation, &message, NOW_KMS),
            "{spec} {origin}"
        );
    }
}

#[test]
fn asymmetric_key_awaiting_import_is_rejected_pending_import() {
    // The rules never let such a key be created; a hand-made store can still describe one.
    let key = key_of(KeySpec::EcP256, Origin::External);
    let refused = rules::validate(&key.spec, &settings().rules).unwrap_err();
    assert_eq!(refused.code, Code::UnsupportedOperation);
    assert_eq!(
        crate::plan::lifecycle::key_state(
            &Store::parse(pending_import_store(KeySpec::EcP256), KEY_NAME)
                .unwrap()
                .record,
            Some(KeyState::Enabled)
        ),
        KeyState::PendingImport
    );

    for spec in ASYMMETRIC {
        let world = World {
            request: request(),
            key: Some(key_of(spec, Origin::External)),
            store: Some(pending_import_store(spec)),
            asymmetric_versions: 0,
        };
        assert_eq!(
            world.report(now()),
            rejected(
                Code::RejectedPendingImport,
                &pending_import_message(),
                NOW_KMS
            ),
            "{spec}"
        );
    }
}

// ---- The minimum interval -------------------------------------------------------------------

#[test]
fn version_too_soon_after_the_last_is_rejected_naming_when_it_is_allowed() {
    let message = too_soon_message(KEY_CREATED, KEY_CREATED_PLUS_7D);
    // (now, Some(creation date) if accepted)
    let cases = [
        ("2016-03-25T10:42:40.987654321Z", None),
        ("2016-03-26T00:00:00Z", None),
        ("2016-04-01T10:42:39Z", None),
        ("2016-04-01T10:42:39.999999999Z", None),
        ("2016-04-01T10:42:40Z", Some("2016-04-01T10:42:40Z")),
        ("2016-04-01T10:42:40.5Z", Some("2016-04-01T10:42:40Z")),
        ("2016-04-01T10:42:41Z", Some("2016-04-01T10:42:41Z")),
    ];
    for spec in [KeySpec::EcP256, KeySpec::EcSm2] {
        let world = World::with_key(spec);
        for (when, accepted) in cases {
            let plan = world.plan(at(when));
            match accepted {
                None => {
                    let since = format_kms_time(at(when));
                    assert_eq!(
                        expect_report(plan),
                        rejected(Code::RejectedUnsupportedOperation, &message, &since),
                        "{spec} at {when}"
                    );
                }
                Some(creation_date) => assert_eq!(
                    expect_add(plan).version,
                    requested_version(FRESH_ID, creation_date, UID),
                    "{spec} at {when}"
                ),
            }
        }
    }
}

#[test]
fn interval_counts_from_the_newest_version_not_the_key_creation() {
    const PREVIOUS_UID: &str = "7a9c3f14-2b6e-4f0a-9d1c-5e8b2a4f0de0";
    const PREVIOUS_ID: &str = "3e5b7d91-8c4a-4e2f-b6d0-1a9c7e5f0de0";
    let mut world = World::with_key(KeySpec::EcP256);
    // An earlier KeyVersion got its version at now().
    world.accept_other_request("signing-previous", PREVIOUS_UID, PREVIOUS_ID, now());
    assert_eq!(
        world.record().newest_version(),
        Some(&requested_version(PREVIOUS_ID, NOW_KMS, PREVIOUS_UID))
    );

    // This request, a day later: too soon after the previous version, and that version is
    // not taken for this request's.
    let message = too_soon_message(NOW_KMS, "2019-08-09T10:38:27Z");
    assert_eq!(
        world.report(at("2019-08-03T10:38:27Z")),
        rejected(
            Code::RejectedUnsupportedOperation,
            &message,
            "2019-08-03T10:38:27Z"
        )
    );
    assert_eq!(
        world.report(at("2019-08-09T10:38:26Z")),
        rejected(
            Code::RejectedUnsupportedOperation,
            &message,
            "2019-08-09T10:38:26Z"
        )
    );

    // Exactly seven days after it: accepted, on top of both versions.
    let new = expect_add(world.plan(at("2019-08-09T10:38:27Z")));
    assert_eq!(
        new,
        NewVersion {
            record: world.record(),
            version: requested_version(FRESH_ID, "2019-08-09T10:38:27Z", UID),
        }
    );
    assert_eq!(new.record.versions.len(), 2);

    // Both requests find their own version afterwards, not the newest.
    world.add_version(&new);
    let previous = request_named("signing-previous", PREVIOUS_UID);
    let reported = expect_report(plan_for(&world, &previous, later(), OTHER_FRESH_ID));
    assert_eq!(
        reported.0.and_then(|s| s.key_version),
        Some(response(PREVIOUS_ID, NOW_KMS))
    );
    assert_eq!(
        world.report(later()).0.and_then(|s| s.key_version),
        Some(response(FRESH_ID, "2019-08-09T10:38:27Z"))
    );
}

// ---- The limit of asymmetric versions -------------------------------------------------------

#[test]
fn limit_of_asymmetric_versions_is_enforced_from_the_maximum_on() {
    let mut world = World::with_key(KeySpec::EcP256);
    for count in [50, 51, 1000] {
        world.asymmetric_versions = count;
        assert_eq!(
            world.report(now()),
            rejected(Code::RejectedLimitExceeded, &limit_message(count), NOW_KMS),
            "{count}"
        );
    }
    for count in [49, 1, 0] {
        world.asymmetric_versions = count;
        assert_eq!(
            expect_add(world.plan(now())).version,
            requested_version(FRESH_ID, NOW_KMS, UID),
            "{count}"
        );
    }
}

#[test]
fn rules_are_checked_in_the_kms_order() {
    // Symmetric before the interval and the limit; the interval before the limit.
    let mut world = World::with_key(KeySpec::AliyunAes256);
    world.asymmetric_versions = 50;
    assert_eq!(
        world
            .report(t0())
            .0
            .map(|s| s.conditions[0].message.clone()),
        Some(symmetric_message(KeySpec::AliyunAes256))
    );
    let mut world = World::with_key(KeySpec::EcP256);
    world.asymmetric_versions = 50;
    assert_eq!(
        world
            .report(t0())
            .0
            .map(|s| s.conditions[0].message.clone()),
        Some(too_soon_message(KEY_CREATED, KEY_CREATED_PLUS_7D))
    );
}

// ---- Final rejections ----------------------------------------------------------------------

#[test]
fn rejection_stays_final_when_the_request_would_now_be_accepted() {
    type Edit = fn(&mut World);
    // (what, world, when refused, what changes, when planned again, whether a new request
    // would be accepted in the changed world)
    let cases: [(&str, World, Timestamp, Edit, Timestamp, bool); 4] = [
        (
            "too soon, then the interval passes",
            World::with_key(KeySpec::EcP256),
            at("2016-03-26T00:00:00Z"),
            |_| {},
            later(),
            true,
        ),
        (
            "at the limit, then versions are deleted",
            {
                let mut w = World::with_key(KeySpec::EcP256);
                w.asymmetric_versions = 50;
                w
            },
            now(),
            |w| w.asymmetric_versions = 10,
            now(),
            true,
        ),
        // Refused is not turned into waiting either.
        (
            "too soon, then the Key and its store are gone",
            World::with_key(KeySpec::EcP256),
            at("2016-03-26T00:00:00Z"),
            |w| {
                w.key = None;
                w.store = None;
            },
            later(),
            false,
        ),
        (
            "symmetric, then the store becomes unreadable",
            World::with_key(KeySpec::AliyunSm4),
            now(),
            |w| w.store.as_mut().unwrap().type_ = Some("Opaque".into()),
            later(),
            false,
        ),
    ];
    for (what, mut world, refused_at, edit, replanned_at, acceptable) in cases {
        let (status, notes) = world.reconcile(refused_at, FRESH_ID);
        let reason = status.map(|s| s.conditions[0].reason.clone());
        assert!(
            reason.as_deref().is_some_and(|r| r.starts_with("Rejected")),
            "{what}: {reason:?}"
        );
        assert_eq!(notes.len(), 1, "{what}");

        edit(&mut world);
        let unanswered = World {
            request: request(),
            key: world.key.clone(),
            store: world.store.clone(),
            asymmetric_versions: world.asymmetric_versions,
        };
        assert_eq!(
            matches!(unanswered.plan(replanned_at), RequestPlan::AddVersion(_)),
            acceptable,
            "{what}: would a new request be accepted?"
        );
        // A refused request stays refused: nothing written, nothing announced, no version.
        let versions_before = world.record_if_readable().map(|r| r.versions);
        assert_eq!(
            world.reconcile(replanned_at, OTHER_FRESH_ID),
            nothing_to_write(),
            "{what}"
        );
        assert_eq!(
            world.record_if_readable().map(|r| r.versions),
            versions_before,
            "{what}: no surprise version"
        );
    }
}

#[test]
fn every_final_rejection_reason_is_final() {
    let finals: Vec<Code> = Code::ALL
        .iter()
        .copied()
        .filter(|c| c.is_final_rejection())
        .collect();
    assert_eq!(
        finals,
        vec![
            Code::RejectedUnsupportedOperation,
            Code::RejectedDisabled,
            Code::RejectedPendingDeletion,
            Code::RejectedPendingImport,
            Code::RejectedLimitExceeded,
        ]
    );
    for code in finals {
        // A world in which the request would be accepted.
        let mut world = World::with_key(KeySpec::EcP256);
        let message = format!("{}: refused earlier", code.as_str());
        world.request.status = Some(rejected_status(code, &message, KEY_CREATED));
        assert_eq!(world.report(later()), nothing_to_write(), "{code:?}");
    }
    // Waiting is not an answer: the same world accepts a request that was waiting.
    let mut world = World::with_key(KeySpec::EcP256);
    world.request.status = Some(waiting_status(&waiting_to_exist(), KEY_CREATED));
    assert_eq!(
        expect_add(world.plan(later())).version,
        requested_version(FRESH_ID, "2019-09-01T08:00:00Z", UID)
    );
}

// ---- Waiting for the Key ---------------------------------------------------------------------

#[test]
fn request_waits_for_its_key_and_is_accepted_once_the_key_is_usable() {
    let mut world = World::without_key();

    // No Key.
    assert_eq!(
        world.reconcile(now(), FRESH_ID),
        (
            Some(waiting_status(&waiting_to_exist(), NOW_KMS)),
            vec![waiting_note(&waiting_to_exist())],
        )
    );
    // Time alone changes nothing.
    assert_eq!(world.reconcile(later(), FRESH_ID), nothing_to_write());

    // The Key exists, its store not yet.
    let key = key_of(KeySpec::EcP256, Origin::AliyunKms);
    world.key = Some(key.clone());
    let t2 = "2019-08-02T11:00:00Z";
    assert_eq!(
        world.reconcile(at(t2), FRESH_ID),
        (
            Some(waiting_status(&waiting_to_be_created(), NOW_KMS)),
            vec![waiting_note(&waiting_to_be_created())],
        ),
        "still not ready: the transition time stays"
    );

    // The store exists but cannot be read. (A Key whose store was kept when it was deleted,
    // or restored from a backup: its last version is old.)
    let good = store_for(&key, t0());
    let mut unreadable = good.clone();
    unreadable.data.as_mut().unwrap().remove(RECORD_ENTRY);
    world.store = Some(unreadable);
    assert_eq!(
        world.reconcile(at("2019-08-02T11:00:01Z"), FRESH_ID),
        (
            Some(waiting_status(&waiting_to_become_usable(), NOW_KMS)),
            vec![waiting_note(&waiting_to_become_usable())],
        )
    );
    assert_eq!(world.record_if_readable(), None);

    // The store is whole: the same request is accepted.
    world.store = Some(good);
    let t4 = "2019-08-02T11:00:02.5Z";
    let new = expect_add(world.plan(at(t4)));
    assert_eq!(
        new.version,
        requested_version(FRESH_ID, "2019-08-02T11:00:02Z", UID)
    );
    world.add_version(&new);
    assert_eq!(
        world.reconcile(at(t4), OTHER_FRESH_ID),
        (
            Some(created_status(
                FRESH_ID,
                "2019-08-02T11:00:02Z",
                "2019-08-02T11:00:02Z"
            )),
            vec![created_note(FRESH_ID, "2019-08-02T11:00:02Z")],
        )
    );
}

#[test]
fn unreadable_store_is_waited_for_and_never_grown() {
    let key = key_of(KeySpec::EcP256, Origin::AliyunKms);
    let good = store_for(&key, t0());
    type Edit = fn(&mut Secret);
    let cases: [(&str, Edit); 5] = [
        ("key.json missing", |s| {
            s.data.as_mut().unwrap().remove(RECORD_ENTRY);
        }),
        ("key.json not JSON", |s| {
            s.data.as_mut().unwrap().insert(
                RECORD_ENTRY.into(),
                k8s_openapi::ByteString(b"{not json".to_vec()),
            );
        }),
        ("a version's private key missing", |s| {
            s.data
                .as_mut()
                .unwrap()
                .remove(&format!("{INITIAL_VERSION_ID}.private.pem"));
        }),
        ("not a material store", |s| s.type_ = Some("Opaque".into())),
        ("no data", |s| s.data = None),
    ];
    for (what, edit) in cases {
        let mut store = good.clone();
        edit(&mut store);
        let world = World {
            request: request(),
            key: Some(key.clone()),
            store: Some(store),
            asymmetric_versions: 1,
        };
        assert_eq!(
            world.report(now()),
            (
                Some(waiting_status(&waiting_to_become_usable(), NOW_KMS)),
                vec![waiting_note(&waiting_to_become_usable())],
            ),
            "{what}"
        );
    }
}

#[test]
fn store_of_another_key_is_not_used() {
    let mut world = World::with_key(KeySpec::EcP256);
    // Even one that lists a version for this very request.
    world.reconcile(now(), FRESH_ID);
    world.request.status = None;
    let annotations = world
        .store
        .as_mut()
        .unwrap()
        .metadata
        .annotations
        .as_mut()
        .unwrap();
    assert_eq!(annotations[labels::KEY], KEY_NAME);
    annotations.insert(labels::KEY.into(), "other".into());

    assert_eq!(
        world.report(later()),
        (
            Some(waiting_status(
                &waiting_to_become_usable(),
                "2019-09-01T08:00:00Z"
            )),
            vec![waiting_note(&waiting_to_become_usable())],
        )
    );
}

// ---- Ready's transition time -----------------------------------------------------------------

#[test]
fn ready_transition_time_moves_only_when_its_status_changes() {
    // Waiting, then refused: Ready stays False, so its transition time stays.
    let mut world = World::without_key();
    world.reconcile(now(), FRESH_ID);
    let created = at("2019-08-05T09:00:00.25Z");
    let fresh_key = World::with_key_created(KeySpec::EcP256, created);
    world.key = fresh_key.key;
    world.store = fresh_key.store;
    world.asymmetric_versions = 1;
    // GitOps applied the Key and the request together: the Key's initial version was just
    // created, so a new version is too soon.
    let message = too_soon_message("2019-08-05T09:00:00Z", "2019-08-12T09:00:00Z");
    assert_eq!(
        world.reconcile(at("2019-08-05T09:00:01Z"), FRESH_ID),
        (
            Some(rejected_status(
                Code::RejectedUnsupportedOperation,
                &message,
                NOW_KMS
            )),
            vec![rejected_note(Code::RejectedUnsupportedOperation, &message)],
        )
    );

    // Waiting, then created: Ready becomes True, a new transition time, kept afterwards.
    let mut world = World::without_key();
    world.reconcile(now(), FRESH_ID);
    let existing = World::with_key(KeySpec::EcP256);
    world.key = existing.key;
    world.store = existing.store;
    world.asymmetric_versions = 1;
    let created_at = "2019-08-06T12:00:00Z";
    let (status, _) = world.reconcile(at("2019-08-06T12:00:00.75Z"), FRESH_ID);
    assert_eq!(
        status,
        Some(created_status(FRESH_ID, created_at, created_at))
    );
    assert_eq!(world.reconcile(later(), OTHER_FRESH_ID), nothing_to_write());
    // The store lost (Ready stays True, no new time).
    world.store = None;
    assert_eq!(world.reconcile(later(), OTHER_FRESH_ID), nothing_to_write());
    assert_eq!(
        world.request.status,
        Some(created_status(FRESH_ID, created_at, created_at))
    );
}

#[test]
fn conditions_of_other_types_are_kept() {
    let mut world = World::without_key();
    let other = Condition {
        type_: "Audited".into(),
        status: "True".into(),
        reason: "Reviewed".into(),
        message: "reviewed by the security team".into(),
        observed_generation: Some(1),
        last_transition_time: Time(at(KEY_CREATED)),
    };
    world.request.status = Some(KeyVersionStatus {
        conditions: vec![other.clone()],
        ..KeyVersionStatus::default()
    });
    let (status, _) = world.reconcile(now(), FRESH_ID);
    let status = status.expect("a status write");
    assert_eq!(
        status.conditions,
        vec![
            other,
            ready_condition(
                "False",
                Reason::WaitingForKey.as_str(),
                &waiting_to_exist(),
                NOW_KMS
            ),
        ]
    );
    assert_eq!(world.reconcile(later(), FRESH_ID), nothing_to_write());
}

// ---- Known bugs ------------------------------------------------------------------------------

#[test]
fn store_left_behind_by_a_deleted_key_gets_no_new_version() {
    let mut world = World::with_key(KeySpec::EcP256);
    // The Key was deleted; its store carries no owner reference and stays.
    world.key = None;
    assert_eq!(
        world.plan(now()),
        RequestPlan::Report {
            status: Some(waiting_status(&waiting_to_exist(), NOW_KMS)),
            notes: vec![waiting_note(&waiting_to_exist())],
        }
    );
}

#[test]
fn key_ref_no_key_could_have_is_refused_with_invalid_parameter_once() {
    for name in [".", "..", "no such key", "a<b>", "Upper"] {
        let mut world = World::without_key();
        world.request.spec.key_ref.name = name.into();
        let message = format!(
            "InvalidParameter: spec.keyRef.name {name:?} cannot name a Key: Key names are lowercase letters, \
             digits, '-' and '.', at most 253 characters; create a KeyVersion naming an \
             existing Key"
        );
        assert_eq!(
            world.reconcile(now(), FRESH_ID),
            rejected(Code::InvalidParameter, &message, NOW_KMS),
            "{name:?}"
        );
        assert_eq!(world.reconcile(later(), FRESH_ID), nothing_to_write());
    }
}
