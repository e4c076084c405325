//! What an existing key reports: immutable fields, KeyMetadata, a store that is not whole,
//! and what a plan may print.

use super::*;

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
        consumer_secret: NAME,
    }
    .build();
    let material = material::generate(KeySpec::AliyunAes256).unwrap();
    let store = store::new_store(location(), &record, Some(&material));
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

/// A way to break a store, named for failure messages, and what the refusal then says.
type Breakage = (&'static str, fn(&mut Secret), String);

/// Every way a store can stop being whole: material, record, type or owner.
fn breakages() -> [Breakage; 9] {
    let version_entry = format!("entry {VERSION_ID}.key");
    let lacks = format!("lacks the material of version {VERSION_ID} ({version_entry})");
    [
        (
            "version entry removed",
            |s| {
                s.data
                    .as_mut()
                    .unwrap()
                    .remove(&format!("{VERSION_ID}.key"));
            },
            lacks.clone(),
        ),
        (
            "version entry emptied",
            |s| {
                s.data
                    .as_mut()
                    .unwrap()
                    .insert(format!("{VERSION_ID}.key"), ByteString(Vec::new()));
            },
            lacks.clone(),
        ),
        (
            "key.json removed",
            |s| {
                s.data.as_mut().unwrap().remove(RECORD_ENTRY);
            },
            "has no readable key.json entry".to_string(),
        ),
        (
            "key.json garbled",
            |s| {
                s.data
                    .as_mut()
                    .unwrap()
                    .insert(RECORD_ENTRY.into(), ByteString(b"{\"keyId\":".to_vec()));
            },
            "has no readable key.json entry".to_string(),
        ),
        (
            "data removed",
            |s| s.data = None,
            "has no readable key.json entry".to_string(),
        ),
        (
            "wrong type",
            |s| s.type_ = Some("Opaque".into()),
            "is not of type keyward.dev/key-material".to_string(),
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
            "does not belong to Key payments of namespace team-a".to_string(),
        ),
        (
            "annotation for another namespace",
            |s| {
                s.metadata
                    .annotations
                    .as_mut()
                    .unwrap()
                    .insert(labels::KEY_NAMESPACE.into(), "team-b".into());
            },
            "does not belong to Key payments of namespace team-a".to_string(),
        ),
        (
            "no annotations",
            |s| s.metadata.annotations = None,
            "does not belong to Key payments of namespace team-a".to_string(),
        ),
    ]
}

#[test]
fn store_that_is_not_whole_is_invalid_and_never_replaced() {
    for (what, edit, detail) in breakages() {
        // A key that was reported before keeps its KeyMetadata.
        let mut world = World::settled(key(|_| {}));
        edit(world.store_mut());
        world.consumer = None;
        let converge = world.converge(later());
        let status = assert_rejected(&converge, Code::MaterialStoreInvalid);
        assert_eq!(
            ready(&status).message,
            store_invalid_message(&detail),
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
