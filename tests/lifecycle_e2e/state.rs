//! Disable and enable: a disabled key's material is withdrawn from its consumer Secret, its
//! rotation suspended and its requests refused; enabled again, every version comes back.

use std::time::{Duration, Instant};

use keyward::api::{AutomaticRotation, KeyState, KeyVersion};
use keyward::store::KeyRecord;
use kube::{Api, ResourceExt};

use crate::common::{self, TestEnv, data_digest, entry, key_manifest, key_version_manifest};
use crate::{SECOND_DAYS, wait_state};

#[tokio::test]
async fn disable_and_enable_withdraw_and_restore_the_same_material() {
    let mut env = TestEnv::new("disable").await;
    env.start_operator(SECOND_DAYS);
    env.apply_key(&key_manifest(
        "flip",
        "{enableAutomaticRotation: true, rotationInterval: 2s}",
    ))
    .await;
    env.apply_key(&key_manifest(
        "flip-ec",
        "{keySpec: EC_P256, keyUsage: SIGN/VERIFY}",
    ))
    .await;
    env.wait_ready("flip").await;
    env.wait_ready("flip-ec").await;

    env.apply_key(&key_manifest(
        "flip",
        "{enableAutomaticRotation: true, rotationInterval: 2s, keyState: Disabled}",
    ))
    .await;
    env.apply_key(&key_manifest(
        "flip-ec",
        "{keySpec: EC_P256, keyUsage: SIGN/VERIFY, keyState: Disabled}",
    ))
    .await;
    let disabled = wait_state(&env, "flip", KeyState::Disabled).await;
    assert_eq!(
        disabled
            .status
            .as_ref()
            .unwrap()
            .key_metadata
            .as_ref()
            .unwrap()
            .automatic_rotation,
        AutomaticRotation::Suspended
    );
    wait_state(&env, "flip-ec", KeyState::Disabled).await;
    let store_before = data_digest(&env.store("flip").await.unwrap());
    let versions = env.record("flip").await.unwrap().versions.len();

    // Withdrawn: the Secret stays, says why, and holds no material.
    let consumer = env.secret("flip").await.unwrap();
    assert_eq!(
        consumer
            .annotations()
            .get("keyward.dev/key-state")
            .map(String::as_str),
        Some("Disabled")
    );
    assert_eq!(common::entry_names(&consumer), ["keyId"]);
    env.wait_event("flip", "MaterialWithdrawn").await;

    // Suspended rotation does not fire; requests are refused with Rejected.Disabled.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        env.record("flip").await.unwrap().versions.len(),
        versions,
        "a disabled key rotated"
    );
    assert_eq!(data_digest(&env.store("flip").await.unwrap()), store_before);
    assert_request_refused_while_disabled(&env).await;

    // Enabled again: every version back, byte for byte.
    env.apply_key(&key_manifest(
        "flip",
        "{enableAutomaticRotation: true, rotationInterval: 2s}",
    ))
    .await;
    wait_state(&env, "flip", KeyState::Enabled).await;
    wait_every_version_restored(&env, "flip").await;
    env.wait_event("flip", "MaterialRestored").await;
}

/// A KeyVersion request for the disabled key flip-ec is refused with Rejected.Disabled.
async fn assert_request_refused_while_disabled(env: &TestEnv) {
    env.apply_key_version(&key_version_manifest("v2", "flip-ec"))
        .await;
    let api: Api<KeyVersion> = Api::namespaced(env.client.clone(), &env.namespace);
    let deadline = Instant::now() + common::CONVERGE;
    loop {
        let request = api.get("v2").await.unwrap();
        let ready = request
            .status
            .as_ref()
            .and_then(|s| s.conditions.first().cloned());
        if let Some(c) = ready.filter(|c| c.reason == "RejectedDisabled") {
            assert!(
                c.message.starts_with("Rejected.Disabled: key flip-ec"),
                "{}",
                c.message
            );
            break;
        }
        assert!(Instant::now() < deadline, "the request was not refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the consumer Secret of `name` says Enabled, then finds every version of the
/// store in it, byte for byte.
async fn wait_every_version_restored(env: &TestEnv, name: &str) {
    let deadline = Instant::now() + common::CONVERGE;
    loop {
        let consumer = env.secret(name).await.unwrap();
        if consumer
            .annotations()
            .get("keyward.dev/key-state")
            .map(String::as_str)
            == Some("Enabled")
        {
            let store = env.store(name).await.unwrap();
            let record: KeyRecord = serde_json::from_slice(entry(&store, "key.json")).unwrap();
            for version in &record.versions {
                let entry_name = format!("{}.key", version.key_version_id);
                assert_eq!(
                    entry(&consumer, &entry_name),
                    entry(&store, &entry_name),
                    "{entry_name} restored unchanged"
                );
            }
            break;
        }
        assert!(Instant::now() < deadline, "the material was not restored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
