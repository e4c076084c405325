//! Creating a key: the fresh ids and defaults, invalid requests, a lost store, and a
//! consumer Secret name that another Secret holds.

use super::*;

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
                creation_date: at("2016-03-25T10:42:40Z"),
                key_spec: KeySpec::AliyunAes256,
                key_usage: KeyUsage::EncryptDecrypt,
                origin: Origin::AliyunKms,
                protection_level: ProtectionLevel::Software,
                versions: vec![VersionRecord {
                    key_version_id: VERSION_ID.into(),
                    creation_date: at("2016-03-25T10:42:40Z"),
                    requested_by: None,
                }],
                pending_window_days: Some(30),
                deletion: None,
                import_parameters: None,
                imported: None,
                consumer_secrets: [NAME.to_string()].into(),
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
        assert_eq!(record.creation_date.to_string(), CREATED, "{spec}");
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
        assert_eq!(new.record.creation_date.to_string(), CREATED);
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
        "Unsupported.ProtectionLevel: spec.protectionLevel HSM is not available: this keyward \
         runs without a hardware security module (start it with --pkcs11-module, \
         --pkcs11-token-label and --pkcs11-pin-file; docs/hsm.md); or set \
         spec.protectionLevel: SOFTWARE (or omit it)"
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
    assert_eq!(new.record.creation_date.to_string(), "2017-06-01T08:00:00Z");
}

// ---- Lost store ------------------------------------------------------------------------

fn store_missing_message(key_id: &str) -> String {
    format!(
        "MaterialStoreMissing: the material store Secret {STORE} (in keyward's store namespace) \
         of key {key_id} is gone; keyward will not mint replacement material for an existing \
         key: restore the Secret from a backup, or delete the Key and its consumer Secret to \
         start a new key"
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

// ---- The limit on asymmetric versions ---------------------------------------------------

/// Plans a new Key in a namespace holding `held` asymmetric versions (`None`: not counted).
fn plan_new_with(key: &Key, held: Option<usize>) -> Plan {
    let observed = Observed {
        key,
        store: None,
        consumer: None,
        former_consumers: &Default::default(),
        asymmetric_versions: held,
        import: None,
    };
    plan(&observed, &settings(), t0(), &fresh())
}

#[test]
fn an_asymmetric_key_counts_against_the_namespaces_limit_from_its_initial_version() {
    let rsa = key(|r| r.key_spec = Some("RSA_2048".into()));
    for held in [Some(50), Some(51), Some(usize::MAX), None] {
        let converge = expect_converge(plan_new_with(&rsa, held));
        let status = assert_rejected(&converge, Code::RejectedLimitExceeded);
        assert!(
            ready(&status)
                .message
                .contains("--max-asymmetric-key-versions 50"),
            "{}",
            ready(&status).message
        );
        // Looked at again: other keys may be deleted meanwhile.
        assert_eq!(
            converge.requeue_after,
            Some(Duration::from_secs(30)),
            "{held:?}"
        );
    }
    assert!(matches!(plan_new_with(&rsa, Some(49)), Plan::CreateKey(_)));
    // Symmetric keys hold no asymmetric versions: the count does not matter to them.
    assert!(matches!(
        plan_new_with(&key(|_| {}), None),
        Plan::CreateKey(_)
    ));
}
