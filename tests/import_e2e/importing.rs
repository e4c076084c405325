//! ImportKeyMaterial: material wrapped with the public key (RSAES-OAEP, SHA-256) or raw imports
//! and enables the key, also when its Secret appears only after the Key named it.

use std::time::{Duration, Instant};

use keyward::api::KeySpec;

use crate::checks::{assert_imported, assert_refused, assert_unchanged, untouched};
use crate::common::{self, TestEnv, data_digest};
use crate::keys::{
    count_events, external, material_in, metadata, put_secret, status, store, wait_parameters,
};
use crate::material::{put_entries, random, wrapped_entries};

/// ImportKeyMaterial with `encryptedKeyMaterial` + `importToken`, wrapped by OpenSSL.
#[tokio::test]
async fn material_wrapped_with_the_public_key_imports_and_enables_the_key() {
    let env = TestEnv::with_operator("import-wrapped").await;
    env.apply_key(&external("wrapped", "")).await;
    let parameters = wait_parameters(&env, "wrapped").await;
    let material = random(32);
    put_entries(
        &env,
        "wrapped-import",
        &wrapped_entries(&parameters, &material),
    )
    .await;

    env.apply_key(&external("wrapped", &material_in("wrapped-import")))
        .await;
    let version = assert_imported(&env, "wrapped", &material).await;
    let note = env.wait_event("wrapped", "KeyMaterialImported").await;
    assert!(note.contains(&version), "{note}");
    assert_eq!(
        count_events(&env, "wrapped", "KeyMaterialImported").await,
        1
    );
    assert!(
        env.events_for("wrapped")
            .await
            .iter()
            .all(|e| e.type_.as_deref() == Some("Normal")),
        "a good import raises no warning"
    );
    let key = env.key("wrapped").await;
    assert_eq!(
        metadata(&key).material_expire_time,
        None,
        "it does not expire"
    );

    // Deleting the import Secret (as one should, once imported) changes nothing.
    let consumer = data_digest(&env.secret("wrapped").await.unwrap());
    let stored = data_digest(&store(&env, "wrapped").await);
    env.secrets()
        .delete("wrapped-import", &Default::default())
        .await
        .unwrap();
    env.apply_key(&external(
        "wrapped",
        &format!("description: imported, {}", material_in("wrapped-import")),
    ))
    .await;
    let key = env.wait_ready("wrapped").await;
    assert_eq!(metadata(&key).description, "imported");
    assert_eq!(status(&key).key_versions[0].key_version_id, version);
    assert_eq!(data_digest(&env.secret("wrapped").await.unwrap()), consumer);
    assert_eq!(data_digest(&store(&env, "wrapped").await), stored);
}

/// ImportKeyMaterial with raw `keyMaterial` into an SM4 key, named when the Key is created.
#[tokio::test]
async fn raw_material_imports_into_an_sm4_key() {
    let env = TestEnv::with_operator("import-sm4").await;
    let material = random(16);
    put_secret(&env, "sm4-material", &[("keyMaterial", &material)]).await;
    env.apply_key(&external(
        "sm4",
        &format!("keySpec: Aliyun_SM4, {}", material_in("sm4-material")),
    ))
    .await;
    assert_imported(&env, "sm4", &material).await;
    let key = env.key("sm4").await;
    assert_eq!(metadata(&key).key_spec, KeySpec::AliyunSm4);
    env.wait_event("sm4", "ImportParametersIssued").await;
    env.wait_event("sm4", "KeyMaterialImported").await;
}

/// A Secret that does not exist yet is InvalidParameter; it is not watched, but the operator
/// looks again every 15 s, so creating it completes the import within about 30 s.
#[tokio::test]
async fn an_import_secret_that_appears_later_is_imported_by_the_retry() {
    let env = TestEnv::with_operator("import-late").await;
    env.apply_key(&external("late", "")).await;
    let parameters = wait_parameters(&env, "late").await;
    let before = untouched(&env, "late").await;
    env.apply_key(&external("late", &material_in("late-material")))
        .await;
    assert_refused(
        &env,
        "late",
        "InvalidParameter",
        "spec.keyMaterial.secretRef names Secret late-material, which does not exist",
    )
    .await;
    assert_unchanged(&env, "late", &before).await;

    let material = random(32);
    put_entries(
        &env,
        "late-material",
        &wrapped_entries(&parameters, &material),
    )
    .await;
    let created = Instant::now();
    env.wait_key("late", "imported", |k| {
        common::ready_reason(k).as_deref() == Some("KeyReady")
    })
    .await;
    let took = created.elapsed();
    eprintln!("the import Secret was found {took:?} after it was created");
    assert!(
        took < Duration::from_secs(30),
        "the import took {took:?} after its Secret appeared"
    );
    assert_imported(&env, "late", &material).await;
    env.wait_event("late", "KeyMaterialImported").await;
}
