//! The consumer Secret: published from the store, written only when something changed,
//! restored when it is edited or deleted.

use super::*;

// ---- Publishing the consumer Secret -----------------------------------------------------

/// A new consumer Secret's name, type, labels and annotations, for key spec `spec`.
fn assert_new_consumer_metadata(secret: &Secret, spec: &str) {
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
}

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
        assert_new_consumer_metadata(secret, &spec);
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

/// An edit of a published consumer Secret, named for failure messages.
type Edit = (&'static str, fn(&mut Secret));

/// Every kind of hand edit keyward undoes: data, labels and annotations it owns.
fn hand_edits() -> [Edit; 11] {
    [
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
    ]
}

#[test]
fn hand_edited_consumer_secret_is_restored() {
    for (what, edit) in hand_edits() {
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

// ---- A secretName change -------------------------------------------------------------

/// Plans `world`'s Key with the Secret of its current `secretName` absent and `former` as the
/// consumer Secrets of earlier names, as read.
fn plan_renamed(world: &World, former: &BTreeMap<String, Option<Secret>>) -> Plan {
    let store = parsed(world.store.as_ref());
    let observed = Observed {
        key: &world.key,
        store: store.as_ref(),
        consumer: None,
        former_consumers: former,
        asymmetric_versions: Some(0),
        import: None,
    };
    plan(&observed, &settings(), later(), &fresh())
}

fn recorded_consumers(world: &World) -> Vec<String> {
    let record = Store::parse(world.store.clone().unwrap(), NS, NAME)
        .unwrap()
        .record;
    record.consumer_secrets.into_iter().collect()
}

/// Plans as [`plan_renamed`] does and writes the record update the plan must be.
fn write_record(world: &mut World, former: &BTreeMap<String, Option<Secret>>) {
    let plan = plan_renamed(world, former);
    let Plan::UpdateRecord(record, None) = plan else {
        panic!("expected a silent record update, got {plan:?}");
    };
    let store = world.store.as_ref().unwrap();
    world.store = Some(store::with_record(store, &record));
}

#[test]
fn a_new_key_records_its_consumer_secret_before_writing_it() {
    let world = World::settled(key(|_| {}));
    assert_eq!(recorded_consumers(&world), [NAME]);
}

#[test]
fn a_secret_name_change_deletes_the_former_secret_then_forgets_it() {
    let mut world = World::settled(key(|_| {}));
    let former_secret = world.consumer.take().unwrap();
    world.key.spec.secret_name = Some("renamed".into());
    let mut former = BTreeMap::from([(NAME.to_string(), Some(former_secret.clone()))]);

    // The new name is recorded before anything is written under it.
    write_record(&mut world, &former);
    assert_eq!(recorded_consumers(&world), [NAME, "renamed"]);

    // The former Secret is deleted as it was read, and says so.
    let Plan::RetireConsumer(retired, note) = plan_renamed(&world, &former) else {
        panic!("expected the former Secret to be retired");
    };
    assert_eq!(*retired, former_secret);
    assert_eq!(note.reason, Reason::SecretRetired);
    assert!(note.message.contains("renamed") && note.message.contains(KEY_ID));

    // Once it is gone, the record forgets it, and the new Secret is written.
    former.insert(NAME.to_string(), None);
    write_record(&mut world, &former);
    assert_eq!(recorded_consumers(&world), ["renamed"]);
    let converge = expect_converge(plan_renamed(&world, &former));
    let Some(SecretWrite::Create(created)) = converge.consumer else {
        panic!("expected the Secret of the new name to be created");
    };
    assert_eq!(created.metadata.name.as_deref(), Some("renamed"));
}

#[test]
fn a_former_name_now_held_by_a_foreign_secret_is_forgotten_untouched() {
    let mut world = World::settled(key(|_| {}));
    world.consumer = None;
    world.key.spec.secret_name = Some("renamed".into());
    let foreign = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    let former = BTreeMap::from([(NAME.to_string(), Some(foreign))]);
    write_record(&mut world, &former);
    write_record(&mut world, &former);
    assert_eq!(recorded_consumers(&world), ["renamed"]);
}

#[test]
fn a_record_from_before_the_list_takes_the_secrets_found_for_the_key() {
    let mut world = World::settled(key(|_| {}));
    let mut record = Store::parse(world.store.clone().unwrap(), NS, NAME)
        .unwrap()
        .record;
    record.consumer_secrets.clear();
    world.store = Some(store::with_record(world.store.as_ref().unwrap(), &record));
    // The listing found the current Secret and one of an earlier name.
    let earlier = world.consumer.clone().map(|mut s| {
        s.metadata.name = Some("earlier".into());
        s
    });
    let former = BTreeMap::from([(NAME.to_string(), None), ("earlier".to_string(), earlier)]);
    write_record(&mut world, &former);
    assert_eq!(recorded_consumers(&world), ["earlier", NAME]);
    assert!(matches!(
        plan_renamed(&world, &former),
        Plan::RetireConsumer(..)
    ));
}
