//! An HSM key's versions and its end: a new token object per rotation and per KeyVersion, and
//! the objects destroyed with the store when the pending window ends, never before.

use std::time::{Duration, Instant};

use keyward::api::KeyState;
use kube::api::DeleteParams;

use super::{
    assert_published_public_keys_are_the_tokens, assert_token_holds_exactly_the_recorded_versions,
    hsm_env, record,
};
use crate::common::{CONVERGE, TestEnv, key_manifest, key_version_manifest};

/// Waits until Key `name`'s store lists at least `count` versions.
async fn wait_versions(env: &TestEnv, name: &str, count: usize) -> keyward::store::KeyRecord {
    let deadline = Instant::now() + CONVERGE;
    loop {
        if env.store(name).await.is_some() {
            let record = record(env, name).await;
            if record.versions.len() >= count {
                return record;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not reach {count} versions"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn rotation_and_key_versions_make_one_token_object_per_version() {
    let (mut env, hsm) = hsm_env("hsm-versions").await;
    env.start_operator(&[
        "--min-rotation-interval",
        "1s",
        "--key-version-min-interval",
        "1s",
    ]);
    env.apply_key(&key_manifest(
        "rotor",
        "{protectionLevel: HSM, enableAutomaticRotation: true, rotationInterval: 2s}",
    ))
    .await;
    env.apply_key(&key_manifest(
        "signer",
        "{protectionLevel: HSM, keySpec: EC_P256, keyUsage: SIGN/VERIFY}",
    ))
    .await;
    env.wait_ready("rotor").await;
    env.wait_ready("signer").await;
    wait_versions(&env, "rotor", 3).await;
    // Stopped, so that what the token holds can be compared with a store that holds still.
    super::stop_rotation(&env, "rotor").await;
    let rotated = record(&env, "rotor").await;
    assert!(rotated.versions.len() >= 3);
    assert_token_holds_exactly_the_recorded_versions(&hsm, &rotated);

    tokio::time::sleep(Duration::from_secs(1)).await; // --key-version-min-interval
    env.apply_key_version(&key_version_manifest("second", "signer"))
        .await;
    env.wait_key_version("second", "Created", |r| r == "Created")
        .await;
    let versioned = record(&env, "signer").await;
    assert_eq!(versioned.versions.len(), 2);
    assert_token_holds_exactly_the_recorded_versions(&hsm, &versioned);
    let store = env.store("signer").await.unwrap();
    assert_published_public_keys_are_the_tokens(&hsm, &versioned, &store);
    assert_ne!(
        store.data.as_ref().unwrap()
            [&format!("{}.public.pem", versioned.versions[0].key_version_id)],
        store.data.as_ref().unwrap()
            [&format!("{}.public.pem", versioned.versions[1].key_version_id)],
        "two versions, two key pairs"
    );
}

/// Waits until the status shows `name` PendingDeletion; its DeleteDate.
async fn pending_until(env: &TestEnv, name: &str) -> jiff::Timestamp {
    let key = env
        .wait_key(name, "PendingDeletion", |k| {
            k.status
                .as_ref()
                .and_then(|s| s.key_metadata.as_ref())
                .is_some_and(|m| m.key_state == KeyState::PendingDeletion)
        })
        .await;
    key.status
        .unwrap()
        .key_metadata
        .unwrap()
        .delete_date
        .expect("a DeleteDate")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn token_objects_are_destroyed_with_the_store_when_the_window_ends_and_not_before() {
    let (mut env, hsm) = hsm_env("hsm-destroy").await;
    env.start_operator(&["--pending-window-unit", "1s"]);
    let spec = "protectionLevel: HSM, keySpec: RSA_2048, keyUsage: ENCRYPT/DECRYPT, \
                pendingWindowInDays: 7";
    for name in ["scheduled", "deleted"] {
        env.apply_key(&key_manifest(name, &format!("{{{spec}}}")))
            .await;
    }
    let mut key_ids = Vec::new();
    for name in ["scheduled", "deleted"] {
        env.wait_ready(name).await;
        let record = record(&env, name).await;
        assert_token_holds_exactly_the_recorded_versions(&hsm, &record);
        key_ids.push((name, record.key_id));
    }
    // One by keyState, one by deleting the Key object: both wait out the window.
    env.apply_key(&key_manifest(
        "scheduled",
        &format!("{{{spec}, keyState: PendingDeletion}}"),
    ))
    .await;
    let due = pending_until(&env, "scheduled").await;
    env.keys()
        .delete("deleted", &DeleteParams::default())
        .await
        .expect("delete Key");

    for (name, key_id) in &key_ids {
        loop {
            let now = jiff::Timestamp::now();
            let objects = hsm.key_objects(key_id).len();
            let store = env.store(name).await.is_some();
            if now.as_second() < due.as_second() - 1 {
                // Well inside the window (the deleted Key's began a moment later).
                assert_eq!(
                    (store, objects),
                    (true, 2),
                    "{name}: destroyed before the window ended"
                );
            } else if !store {
                assert_eq!(
                    hsm.key_objects(key_id).len(),
                    0,
                    "{name}: objects outlived the store"
                );
                break;
            }
            assert!(
                now.as_second() < due.as_second() + 30,
                "{name}: not destroyed long after {due}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(hsm.objects(), vec![], "the token holds nothing more");
}

#[tokio::test]
async fn encryption_through_the_api_survives_rotation_each_version_in_the_token() {
    use serde_json::json;

    let (mut env, hsm) = hsm_env("hsm-rotate-api").await;
    let kms = crate::common::kms::kms_with_keys_and_flags(
        &mut env,
        &[(
            "rotor",
            "{protectionLevel: HSM, enableAutomaticRotation: true, rotationInterval: 2s}",
        )],
        &["--min-rotation-interval", "1s"],
    )
    .await;
    let call = |action: &str, params: serde_json::Value| {
        let (kms, action) = (kms.clone(), action.to_string());
        async move {
            tokio::task::spawn_blocking(move || kms.call("tea", &action, params))
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{e:?}"))
        }
    };
    kms.watch("plaintext", b"sealed before the rotation");
    let before = call(
        "Encrypt",
        json!({"KeyId": "alias/rotor", "Plaintext": "sealed before the rotation"}),
    )
    .await;
    let first = before["KeyVersionId"].as_str().unwrap().to_string();
    // Encrypt again until a rotation shows: the newest version seals.
    let after = crate::common::eventually("Encrypt under a rotated version", || async {
        let sealed = call(
            "Encrypt",
            json!({"KeyId": "alias/rotor", "Plaintext": "sealed after the rotation"}),
        )
        .await;
        (sealed["KeyVersionId"] != first.as_str()).then_some(sealed)
    })
    .await;
    for (sealed, plaintext) in [
        (&before, "sealed before the rotation"),
        (&after, "sealed after the rotation"),
    ] {
        let opened = call(
            "Decrypt",
            json!({"CiphertextBlob": sealed["CiphertextBlob"]}),
        )
        .await;
        assert_eq!(opened["Plaintext"], plaintext);
        assert_eq!(opened["KeyVersionId"], sealed["KeyVersionId"]);
    }
    // ReEncrypt moves the old blob to the newest version, in the module (a caller granted
    // `reencrypt` as well).
    use crate::common::kms::{access_key, create_service_account, grant};
    create_service_account(&env, "mover").await;
    grant(&env, "mover", &["reencrypt", "decrypt"]).await;
    let mover = kms.with_pair(access_key(&env, "mover-key", "mover").await);
    let moved = tokio::task::spawn_blocking(move || {
        let moved = mover
            .call(
                "tea",
                "ReEncrypt",
                json!({"CiphertextBlob": before["CiphertextBlob"], "DestinationKeyId": "alias/rotor"}),
            )
            .unwrap_or_else(|e| panic!("ReEncrypt: {e:?}"));
        let opened = mover
            .call("tea", "Decrypt", json!({"CiphertextBlob": moved["CiphertextBlob"]}))
            .unwrap_or_else(|e| panic!("Decrypt of the moved blob: {e:?}"));
        (moved, opened)
    })
    .await
    .unwrap();
    assert_ne!(moved.0["KeyVersionId"], first.as_str());
    assert_eq!(moved.1["Plaintext"], "sealed before the rotation");
    // Every version the blobs name has its own secret key in the token.
    let record = record(&env, "rotor").await;
    for version in [&first, &after["KeyVersionId"].as_str().unwrap().to_string()] {
        let objects = hsm.version_objects(&record.key_id, version);
        assert_eq!(objects.len(), 1, "{version}: {objects:?}");
        assert!(objects[0].kept_in_token(), "{objects:?}");
    }
}
