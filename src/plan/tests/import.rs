//! EXTERNAL keys: imported material kept, other material refused, a Secret reference that
//! names no Secret refused.

use super::*;

/// Plans an EXTERNAL key's store with `import` observed as the material its Secret holds.
fn plan_import(world: &World, import: Option<Result<SecretBytes, Rejection>>) -> Plan {
    plan(
        &Observed {
            key: &world.key,
            store: parsed(world.store.as_ref()).as_ref(),
            consumer: world.consumer.as_ref(),
            former_consumers: &Default::default(),
            asymmetric_versions: Some(0),
            import: import.as_ref(),
        },
        &settings(),
        t0(),
        &fresh(),
    )
}

/// An EXTERNAL key importing from the Secret `secret_name`.
fn importing_from(secret_name: &str) -> Key {
    key(|r| {
        r.origin = Some("EXTERNAL".into());
        r.key_material = Some(crate::api::key::KeyMaterialSource {
            secret_ref: crate::api::key::SecretReference {
                name: secret_name.into(),
            },
            expire_time: None,
        });
    })
}

#[test]
fn an_imported_key_refuses_other_material_and_keeps_its_own() {
    let mut world = World::created(importing_from("byok"));
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

#[test]
fn a_secret_ref_that_names_no_secret_is_refused_and_nothing_is_created_or_imported() {
    let key = importing_from("../kube-system/byok");
    // A new key: refused with an event, and no store is made.
    let converge = expect_converge(plan_at(&key, None, None, t0()));
    let status = assert_rejected(&converge, Code::InvalidParameter);
    assert!(
        ready(&status).message.starts_with(
            "InvalidParameter: spec.keyMaterial.secretRef.name \"../kube-system/byok\""
        ),
        "{}",
        ready(&status).message
    );
    assert_eq!(status.key_metadata, None);

    // An existing key awaiting material (the spec changed since): the material is not taken,
    // whatever was read.
    let mut world = World::created(importing_from("byok"));
    world.key = key;
    let material = SecretBytes::new(vec![7; 32]);
    let converge = expect_converge(plan_import(&world, Some(Ok(material))));
    assert_rejected(&converge, Code::InvalidParameter);
}
