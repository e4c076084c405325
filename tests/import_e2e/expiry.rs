//! Material imported with an expiry: removed when it expires (DeleteKeyMaterial), the key
//! awaiting its import again and its consumer Secret withdrawn; the same material restores the
//! same version, other material is refused.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use keyward::api::{ImportParameters, KeyState};

use crate::checks::{Untouched, assert_imported, assert_refused, assert_unchanged, untouched};
use crate::common::{TestEnv, entry_names, record_of};
use crate::keys::{
    AWAITING, count_events, external, key_state_annotation, kms_time, material_in, material_until,
    metadata, ready, seconds_from_now, status, store, wait_consumer, wait_parameters,
};
use crate::material::{put_entries, random, wrapped_entries};

/// Material imported with an expiry is removed when it expires (DeleteKeyMaterial): the key
/// awaits its import again and its consumer Secret is withdrawn. The same material restores
/// the same version; other material is refused.
#[tokio::test]
async fn expired_material_is_removed_and_only_the_same_material_restores_it() {
    let env = TestEnv::with_operator("import-expiry").await;
    // "same" gets its own material back; "other" is offered other material first.
    let names = ["same", "other"];
    let (materials, parameters) = await_and_wrap(&env, &names).await;

    let expire = seconds_from_now(15);
    let expire_text = kms_time(expire);
    for name in names {
        env.apply_key(&external(
            name,
            &material_until(&format!("{name}-material"), &expire_text),
        ))
        .await;
    }
    let mut versions = BTreeMap::new();
    for name in names {
        let version = assert_imported(&env, name, &materials[name]).await;
        let key = env.key(name).await;
        assert_eq!(
            metadata(&key).material_expire_time.as_deref(),
            Some(expire_text.as_str()),
            "{name}"
        );
        versions.insert(name, version);
    }

    // Removed when due, never before.
    wait_removed_when_due(&env, &names, expire, &expire_text).await;
    let mut after_expiry = BTreeMap::new();
    for name in names {
        let untouched =
            assert_expired(&env, name, &versions[name], &expire_text, &parameters[name]).await;
        after_expiry.insert(name, untouched);
    }

    // The same material with a later expiry: the same version and bytes, published again.
    assert_same_material_restores(&env, "same", &materials["same"], &versions["same"]).await;

    // Other material, even wrapped for the same parameters, is refused and changes nothing.
    let different = random(32);
    put_entries(
        &env,
        "other-different",
        &wrapped_entries(&parameters["other"], &different),
    )
    .await;
    env.apply_key(&external("other", &material_in("other-different")))
        .await;
    assert_refused(
        &env,
        "other",
        "InvalidKeyMaterial",
        "was imported with other material",
    )
    .await;
    assert_unchanged(&env, "other", &after_expiry["other"]).await;
    // Its own material, without an expiry, is taken back.
    env.apply_key(&external("other", &material_in("other-material")))
        .await;
    let version = assert_imported(&env, "other", &materials["other"]).await;
    assert_eq!(version, versions["other"]);
    assert_eq!(metadata(&env.key("other").await).material_expire_time, None);
}

/// Applies each of `names` as an EXTERNAL key and puts its own material, wrapped for its
/// import parameters, into Secret `<name>-material`; returns each one's material and
/// parameters.
async fn await_and_wrap<'a>(
    env: &TestEnv,
    names: &[&'a str],
) -> (
    BTreeMap<&'a str, Vec<u8>>,
    BTreeMap<&'a str, ImportParameters>,
) {
    let mut materials = BTreeMap::new();
    let mut parameters = BTreeMap::new();
    for &name in names {
        env.apply_key(&external(name, "")).await;
    }
    for &name in names {
        let p = wait_parameters(env, name).await;
        let material = random(32);
        put_entries(
            env,
            &format!("{name}-material"),
            &wrapped_entries(&p, &material),
        )
        .await;
        materials.insert(name, material);
        parameters.insert(name, p);
    }
    (materials, parameters)
}

/// The imported material is removed once `expire` has passed, and never before.
async fn wait_removed_when_due(
    env: &TestEnv,
    names: &[&str],
    expire: Timestamp,
    expire_text: &str,
) {
    let deadline = expire.as_second() + 30;
    loop {
        let mut present = 0;
        for name in names {
            let stored = store(env, name).await;
            if entry_names(&stored).len() > AWAITING.len() {
                present += 1;
            }
        }
        // Read back before the expiry second began: the material must still be there.
        let now = Timestamp::now().as_second();
        if now < expire.as_second() {
            assert_eq!(
                present,
                names.len(),
                "material removed before {expire_text}"
            );
        } else if present == 0 {
            break;
        }
        assert!(
            now < deadline,
            "material not removed long after {expire_text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Once its material expired, Key `name` remembers what was imported (`version`, expiring at
/// `expire_text`), has its consumer Secret withdrawn, awaits its import again with the same
/// `parameters`, says so in events, and refuses its spec; returns what it then holds.
async fn assert_expired(
    env: &TestEnv,
    name: &str,
    version: &str,
    expire_text: &str,
    parameters: &ImportParameters,
) -> Untouched {
    let stored = store(env, name).await;
    assert_eq!(entry_names(&stored), AWAITING, "{name}");
    let record = record_of(&stored);
    assert!(record.versions.is_empty(), "{name}");
    let imported = record.imported.expect("what was imported is remembered");
    assert_eq!(imported.key_version_id, version, "{name}");
    assert_eq!(
        imported.expire_time.map(|t| t.to_string()).as_deref(),
        Some(expire_text)
    );

    wait_consumer(env, name, "withdrawn", |s| {
        key_state_annotation(s) == Some("PendingImport")
    })
    .await;
    let consumer = env.secret(name).await.unwrap();
    assert_eq!(entry_names(&consumer), ["keyId"], "{name}: withdrawn");

    let key = env
        .wait_key(name, "PendingImport again", |k| {
            k.status
                .as_ref()
                .and_then(|s| s.key_metadata.as_ref())
                .is_some_and(|m| m.key_state == KeyState::PendingImport)
        })
        .await;
    let m = metadata(&key);
    assert_eq!(
        (
            m.material_expire_time.as_ref(),
            m.primary_key_version.as_ref()
        ),
        (None, None)
    );
    assert!(status(&key).key_versions.is_empty(), "{name}");
    assert_eq!(
        status(&key).import_parameters.as_ref(),
        Some(parameters),
        "{name}: the same parameters are shown again"
    );
    assert_eq!(ready(&key).status, "False");
    let note = env.wait_event(name, "KeyMaterialExpired").await;
    assert!(note.contains(&m.key_id), "{note}");
    env.wait_event(name, "MaterialWithdrawn").await;
    // The spec still names the expired import: the condition says to move its expiry.
    assert_refused(env, name, "InvalidParameter", "has passed").await;
    untouched(env, name).await
}

/// The same material with a later expiry: the same version and bytes, published again; and
/// removing the expiry keeps the material for good.
async fn assert_same_material_restores(env: &TestEnv, name: &str, material: &[u8], version: &str) {
    let secret = format!("{name}-material");
    let later = kms_time(seconds_from_now(3600));
    env.apply_key(&external(name, &material_until(&secret, &later)))
        .await;
    let restored = assert_imported(env, name, material).await;
    assert_eq!(restored, version, "the same version comes back");
    let key = env.key(name).await;
    assert_eq!(
        metadata(&key).material_expire_time.as_deref(),
        Some(later.as_str())
    );
    env.wait_event(name, "MaterialRestored").await;
    assert_eq!(count_events(env, name, "KeyMaterialImported").await, 2);
    // Removing the expiry keeps the material for good.
    env.apply_key(&external(name, &material_in(&secret))).await;
    let key = env.wait_ready(name).await;
    assert_eq!(metadata(&key).material_expire_time, None);
    assert_eq!(
        record_of(&store(env, name).await)
            .imported
            .unwrap()
            .expire_time,
        None
    );
}
