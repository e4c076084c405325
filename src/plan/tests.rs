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
const STORE: &str = "payments.keyward-material";

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
    store.map(|s| Store::parse(s.clone(), NAME))
}

fn plan_at(key: &Key, store: Option<&Secret>, consumer: Option<&Secret>, now: Timestamp) -> Plan {
    plan(
        &Observed {
            key,
            store: parsed(store).as_ref(),
            consumer,
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
    let mut store = store::new_store(NS, NAME, &new.record, material.as_ref());
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

// ---- CreateKey ----------------------------------------------------------------------

#[test]
fn valid_new_key_is_created_with_the_fresh_ids_and_the_kms_defaults() {
    let new = expect_create(plan_at(&key(|_| {}), None, None, t0()));
    assert_eq!(
        new,
        NewKey {
            record: KeyRecord {
                key_id: KEY_ID.into(),
                arn: "acs:kms:cn-hangzhou:123456:key/08c33a6f-4e0a-4a1b-a3fa-7ddfa1d4c0de".into(),
                creator: "123456".into(),
                creation_date: "2016-03-25T10:42:40Z".into(),
                key_spec: KeySpec::AliyunAes256,
                key_usage: KeyUsage::EncryptDecrypt,
                origin: Origin::AliyunKms,
                protection_level: ProtectionLevel::Software,
                versions: vec![VersionRecord {
                    key_version_id: VERSION_ID.into(),
                    creation_date: "2016-03-25T10:42:40Z".into(),
                    requested_by: None,
                }],
                pending_window_days: Some(30),
                deletion: None,
                import_parameters: None,
                imported: None,
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
                key_versions: Vec::new(),
                import_parameters: None,
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
        drawn: 0,
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
        drawn: 0,
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
                ("keyward.dev/key-id", KEY_ID),
                ("keyward.dev/key-state", "Enabled"),
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
            vec![],
            "{spec}: a new key's one event is KeyCreated, recorded with its store"
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
        format!("key {KEY_ID} is Enabled; its material is in Secret payments-key")
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
            r.rotation_interval = Some("730d".into());
            r.description = Some("key description example".into());
        }),
        key(|r| r.origin = Some("EXTERNAL".into())),
    ] {
        let mut world = World::created(key);
        let first = world.converge(t0());
        assert!(first.status.is_some(), "the first plan writes the status");
        world.apply(&first);
        if first.consumer.is_some() {
            assert!(
                world.converge(t0()).is_noop(),
                "the second plan writes nothing"
            );
        }
        assert!(world.converge(t0()).is_noop());
        // Later, the same plan: lastTransitionTime is kept, so the status is unchanged; only
        // an EXTERNAL key's import token, valid for a day, is issued anew.
        if world.key.spec.origin.as_deref() == Some("EXTERNAL") {
            assert!(matches!(world.plan(later()), Plan::IssueImportParameters));
        } else {
            assert!(world.converge(later()).is_noop());
        }
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
        reason: Reason::SecretRestored,
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
    assert_eq!(
        converge.notes,
        vec![Note {
            warning: true,
            reason: Reason::SecretRestored,
            message: format!(
                "Secret {NAME} was deleted; rebuilt it from the material store with all 1 version(s)"
            ),
        }],
        "a deletion of a published Secret is reported as such"
    );
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
        pending_window_days: 30,
    }
    .build();
    let material = material::generate(KeySpec::AliyunAes256).unwrap();
    let store = store::new_store(NS, NAME, &record, Some(&material));
    let world = World {
        key: key(|_| {}),
        store: Some(store),
        consumer: None,
        drawn: 0,
    };
    let converge = world.converge(t0());
    let status = assert_rejected(&converge, Code::ImmutableField);
    assert!(
        ready(&status)
            .message
            .starts_with("ImmutableField: spec.protectionLevel is immutable once the key exists"),
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
    world.key.spec.rotation_interval = Some("730d".into());
    world.key.metadata.generation = Some(2);
    let converge = world.converge(later());
    assert_eq!(converge.consumer, None);
    assert_eq!(converge.notes, Vec::new());
    let metadata = converge.status.unwrap().key_metadata.unwrap();
    assert_eq!(metadata.automatic_rotation, AutomaticRotation::Enabled);
    assert_eq!(
        metadata.next_rotation_date.as_deref(),
        Some("2018-03-25T10:42:40Z")
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
        "key {KEY_ID} has origin EXTERNAL and no material: import key material \
         (spec.keyMaterial, wrapped with status.importParameters.publicKey) to enable it"
    );
    assert_eq!(
        converge.notes,
        vec![Note {
            warning: false,
            reason: Reason::PendingImport,
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

// --- Automatic rotation, with an injected clock ---

impl World {
    /// Carries out plans as the reconciler does (minting real material for new versions) until
    /// one writes nothing; returns the versions added and the last plan.
    fn run(&mut self, now: Timestamp) -> (Vec<String>, Converge) {
        let mut added = Vec::new();
        for _ in 0..6 {
            // A fresh version id per plan, as the reconciler draws one.
            let version_id = format!("00000000-0000-4000-8000-{:012}", self.drawn);
            self.drawn += 1;
            let ids = FreshIds {
                key_id: KEY_ID.into(),
                version_id,
            };
            let store = parsed(self.store.as_ref());
            let observed = Observed {
                key: &self.key,
                store: store.as_ref(),
                consumer: self.consumer.as_ref(),
                import: None,
            };
            match super::plan(&observed, &settings(), now, &ids) {
                Plan::AddVersion(new) => {
                    let material = material::generate(new.record.key_spec).unwrap();
                    let store = self.store.as_ref().expect("a store");
                    let mut grown =
                        store::with_new_version(store, &new.record, &new.version, &material)
                            .expect("a fresh version id");
                    let rv: u64 = store
                        .metadata
                        .resource_version
                        .as_deref()
                        .unwrap()
                        .parse()
                        .unwrap();
                    grown.metadata.resource_version = Some((rv + 1).to_string());
                    self.store = Some(grown);
                    added.push(new.version.key_version_id);
                }
                Plan::Converge(converge) if converge.is_noop() => return (added, *converge),
                Plan::Converge(converge) => self.apply(&converge),
                Plan::UpdateRecord(record, _) => {
                    let store = self.store.as_ref().expect("a store");
                    let mut updated = store::with_record(store, &record);
                    let rv: u64 = store
                        .metadata
                        .resource_version
                        .as_deref()
                        .unwrap()
                        .parse()
                        .unwrap();
                    updated.metadata.resource_version = Some((rv + 1).to_string());
                    self.store = Some(updated);
                }
                Plan::Destroy => {
                    self.store = None;
                    self.consumer = None;
                }
                Plan::IssueImportParameters | Plan::ImportMaterial(_) | Plan::RemoveMaterial(_) => {
                    panic!("no EXTERNAL keys here")
                }
                Plan::CreateKey(_) => panic!("an existing key is never created again"),
            }
        }
        panic!("the plans did not settle");
    }
}

fn rotating(interval: &str) -> World {
    World::settled(key(|r| {
        r.enable_automatic_rotation = Some(true);
        r.rotation_interval = Some(interval.into());
    }))
}

/// `CREATED` plus whole days, plus extra seconds (may be fractional).
fn after_days(days: i64, extra_secs: f64) -> Timestamp {
    let base = at(CREATED);
    let nanos = (extra_secs * 1e9) as i64;
    base.checked_add(jiff::SignedDuration::from_hours(days * 24))
        .unwrap()
        .checked_add(jiff::SignedDuration::from_nanos(nanos))
        .unwrap()
}

#[test]
fn rotation_waits_until_next_rotation_date_and_requeues_for_it() {
    let world = rotating("7d");
    let converge = world.converge(after_days(7, -1.0));
    assert!(
        converge.is_noop(),
        "nothing to write a second before the due time"
    );
    assert_eq!(
        converge.requeue_after,
        Some(std::time::Duration::from_secs(1))
    );
    let converge = world.converge(after_days(7, -0.3));
    assert_eq!(
        converge.requeue_after,
        Some(std::time::Duration::from_millis(300)),
        "to the due second: the timer never fires before it, nor a second after"
    );
    let far = world.converge(after_days(1, 0.0));
    assert_eq!(
        far.requeue_after,
        Some(std::time::Duration::from_secs(600)),
        "capped: a wall-clock jump delays a rotation by at most one requeue period"
    );
}

#[test]
fn rotation_mints_a_version_at_next_rotation_date_truncated_to_the_second() {
    let world = rotating("7d");
    let Plan::AddVersion(new) = world.plan(after_days(7, 0.75)) else {
        panic!("the rotation is due");
    };
    assert_eq!(new.version.key_version_id, VERSION_ID, "the fresh id");
    assert_eq!(new.version.creation_date, "2016-04-01T10:42:40Z");
    assert_eq!(new.version.requested_by, None);
    assert_eq!(
        new.record,
        store::Store::parse(world.store.clone().unwrap(), NAME)
            .unwrap()
            .record
    );
}

#[test]
fn rotation_moves_primary_and_dates_and_keeps_every_version_for_consumers() {
    let mut world = rotating("7d");
    let first = world.metadata().primary_key_version.clone().unwrap();
    let first_bytes = data(world.consumer.as_ref().unwrap())["key"].clone();
    let mut fresh_world_ids = fresh();
    fresh_world_ids.version_id = "7a4f4d21-2b1e-4d5c-9a47-1d2f3c4b5a69".into();
    let now = after_days(7, 0.0);
    // The reconciler draws a fresh id per plan; use a second one for the rotation.
    let Plan::AddVersion(new) = super::plan(
        &Observed {
            key: &world.key,
            store: parsed(world.store.as_ref()).as_ref(),
            consumer: world.consumer.as_ref(),
            import: None,
        },
        &settings(),
        now,
        &fresh_world_ids,
    ) else {
        panic!("due");
    };
    let second = new.version.key_version_id.clone();
    let material = material::generate(KeySpec::AliyunAes256).unwrap();
    let grown = store::with_new_version(
        world.store.as_ref().unwrap(),
        &new.record,
        &new.version,
        &material,
    )
    .unwrap();
    world.store = Some(grown);
    let converge = world.converge(now);
    assert_eq!(
        converge.notes,
        vec![],
        "a rotation is not a repair (KeyRotated tells of it), and readiness did not change"
    );
    world.apply(&converge);
    let m = world.metadata().clone();
    assert_eq!(m.primary_key_version.as_deref(), Some(second.as_str()));
    assert_eq!(
        m.last_rotation_date.as_deref(),
        Some("2016-04-01T10:42:40Z")
    );
    assert_eq!(
        m.next_rotation_date.as_deref(),
        Some("2016-04-08T10:42:40Z")
    );
    assert_eq!(m.creation_date, CREATED, "the key's creation date stays");
    let versions: Vec<&str> = world
        .status()
        .key_versions
        .iter()
        .map(|v| v.key_version_id.as_str())
        .collect();
    assert_eq!(versions, [first.as_str(), second.as_str()]);

    let consumer = world.consumer.as_ref().unwrap();
    assert_eq!(data(consumer)["keyVersionId"].0, second.as_bytes());
    let material::Material::Symmetric { key: minted } = &material else {
        panic!("AES material is symmetric");
    };
    assert!(
        data(consumer)["key"].0 == minted.expose(),
        "the default entry is the new version"
    );
    assert_eq!(
        data(consumer)[&format!("{first}.key")],
        first_bytes,
        "the old version stays"
    );
    assert!(world.converge(now).is_noop());
}

#[test]
fn an_operator_down_for_several_intervals_rotates_once_on_return() {
    let mut world = rotating("7d");
    let now = after_days(30, 0.0);
    let (added, last) = world.run(now);
    assert_eq!(added.len(), 1, "one rotation, not one per missed interval");
    assert_eq!(
        world.metadata().last_rotation_date.as_deref(),
        Some("2016-04-24T10:42:40Z")
    );
    assert_eq!(
        world.metadata().next_rotation_date.as_deref(),
        Some("2016-05-01T10:42:40Z")
    );
    assert_eq!(
        last.requeue_after,
        Some(std::time::Duration::from_secs(600))
    );
}

#[test]
fn the_schedule_holds_across_many_intervals_without_drift() {
    let mut world = rotating("7d");
    for week in 1..=10 {
        let (added, _) = world.run(after_days(7 * week, 0.4));
        assert_eq!(added.len(), 1, "week {week}");
        assert_eq!(
            world.metadata().next_rotation_date.as_deref().map(at),
            Some(after_days(7 * (week + 1), 0.0)),
            "week {week}: due times stay on whole seconds of the original schedule"
        );
    }
    assert_eq!(world.status().key_versions.len(), 11);
}

#[test]
fn changing_the_interval_recomputes_from_the_last_rotation() {
    let mut world = rotating("7d");
    world.key.spec.rotation_interval = Some("14d".into());
    world.key.metadata.generation = Some(2);
    let (added, _) = world.run(after_days(8, 0.0));
    assert!(added.is_empty(), "the 7-day due time no longer holds");
    assert_eq!(
        world.metadata().next_rotation_date.as_deref(),
        Some("2016-04-08T10:42:40Z")
    );
    assert_eq!(
        world.metadata().rotation_interval.as_deref(),
        Some("1209600s")
    );
    // Shortening it past the time already elapsed rotates at once.
    world.key.spec.rotation_interval = Some("7d".into());
    world.key.metadata.generation = Some(3);
    let (added, _) = world.run(after_days(8, 0.0));
    assert_eq!(added.len(), 1);
}

#[test]
fn disabling_rotation_removes_the_schedule_and_stops_requeueing() {
    let mut world = rotating("7d");
    world.key.spec.enable_automatic_rotation = Some(false);
    world.key.metadata.generation = Some(2);
    let (added, last) = world.run(after_days(30, 0.0));
    assert!(added.is_empty());
    let m = world.metadata();
    assert_eq!(m.automatic_rotation, AutomaticRotation::Disabled);
    assert_eq!(
        (m.next_rotation_date.as_ref(), m.rotation_interval.as_ref()),
        (None, None)
    );
    assert_eq!(last.requeue_after, None, "nothing to wait for");
}

#[test]
fn a_store_that_grew_meanwhile_is_not_rotated_again() {
    // Another writer rotated the key: re-reading its store, the plan finds nothing due.
    let mut world = rotating("7d");
    let now = after_days(7, 0.0);
    let (added, _) = world.run(now);
    assert_eq!(added.len(), 1);
    assert!(matches!(world.plan(now), Plan::Converge(_)));
}

/// Plans an EXTERNAL key's store with `import` observed as the material its Secret holds.
fn plan_import(world: &World, import: Option<Result<SecretBytes, Rejection>>) -> Plan {
    plan(
        &Observed {
            key: &world.key,
            store: parsed(world.store.as_ref()).as_ref(),
            consumer: world.consumer.as_ref(),
            import: import.as_ref(),
        },
        &settings(),
        t0(),
        &fresh(),
    )
}

#[test]
fn an_imported_key_refuses_other_material_and_keeps_its_own() {
    let mut world = World::created(key(|r| {
        r.origin = Some("EXTERNAL".into());
        r.key_material = Some(crate::api::key::KeyMaterialSource {
            secret_ref: crate::api::key::SecretReference {
                name: "byok".into(),
            },
            expire_time: None,
        });
    }));
    let imported = SecretBytes::new(vec![7; 32]);
    let Plan::ImportMaterial(record) = plan_import(&world, Some(Ok(imported.clone()))) else {
        panic!("expected ImportMaterial");
    };
    let store = world.store.as_ref().unwrap();
    world.store = store::with_imported_material(store, &record, &imported);
    let version = record.imported.as_ref().unwrap().key_version_id.clone();
    for _ in 0..4 {
        let converge = expect_converge(plan_import(&world, Some(Ok(imported.clone()))));
        if converge.status.is_none() && converge.consumer.is_none() {
            break;
        }
        world.apply(&converge);
    }
    assert_eq!(ready(world.status()).reason, "KeyReady");

    // Other material in the named Secret: refused, and nothing else is planned.
    let converge = expect_converge(plan_import(&world, Some(Ok(SecretBytes::new(vec![8; 32])))));
    assert_eq!(converge.consumer, None, "the served material stays");
    let status = converge.status.expect("a status write");
    let condition = ready(&status);
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "InvalidKeyMaterial")
    );
    assert_eq!(
        condition.message,
        format!(
            "InvalidKeyMaterial: key {KEY_ID} was imported with other material (version \
             {version}): only that material can be imported into it again; import it into a new \
             EXTERNAL Key instead"
        )
    );
    assert_eq!(
        status.key_metadata.as_ref().unwrap().primary_key_version,
        Some(version)
    );

    // Material that cannot be read any more (its Secret deleted, its token expired) changes
    // nothing.
    let gone = Rejection::new(Code::InvalidParameter, "no such Secret");
    let converge = expect_converge(plan_import(&world, Some(Err(gone))));
    assert_eq!((converge.status, converge.consumer), (None, None));
}
