//! Rotation on schedule: keys rotate on time, never early, and their consumer Secrets keep
//! every version (also when rebuilt); a changed policy reschedules, a disabled one stops.

use std::collections::BTreeSet;
use std::time::Duration;

use keyward::store::KeyRecord;

use crate::common::{self, TestEnv, entry, key_manifest};
use crate::{
    FAST_ROTATION, assert_on_schedule, record, ts, version_digests, wait_consumer_serving,
    wait_versions,
};

#[tokio::test]
async fn keys_rotate_on_time_and_consumers_keep_every_version() {
    let mut env = TestEnv::new("rotation").await;
    env.start_operator(FAST_ROTATION);
    env.apply_key(&key_manifest(
        "spin",
        "{enableAutomaticRotation: true, rotationInterval: 3s}",
    ))
    .await;
    env.apply_key(&key_manifest(
        "spin-sm4",
        "{keySpec: Aliyun_SM4, enableAutomaticRotation: true, rotationInterval: 4s}",
    ))
    .await;
    env.wait_ready("spin").await;
    let first = version_digests(&env.store("spin").await.unwrap());

    let record = wait_versions(&env, "spin", 4).await;
    assert_on_schedule(&record, 3, 2);
    assert_on_schedule(&wait_versions(&env, "spin-sm4", 3).await, 4, 2);
    let ids: BTreeSet<&str> = record
        .versions
        .iter()
        .map(|v| v.key_version_id.as_str())
        .collect();
    assert_eq!(ids.len(), record.versions.len(), "version ids are unique");

    // Status follows the store; the consumer Secret serves the newest and keeps every version.
    let newest = record.versions.last().unwrap().key_version_id.clone();
    let key = env
        .wait_key("spin", "reporting its newest version", |k| {
            k.status
                .as_ref()
                .and_then(|s| s.key_metadata.as_ref())
                .and_then(|m| m.primary_key_version.clone())
                == Some(newest.clone())
        })
        .await;
    let m = key.status.as_ref().unwrap().key_metadata.clone().unwrap();
    let last = ts(m.last_rotation_date.as_deref().unwrap());
    assert_eq!(
        ts(m.next_rotation_date.as_deref().unwrap()).as_second(),
        last.as_second() + 3
    );
    assert_eq!(m.rotation_interval.as_deref(), Some("3s"));
    assert!(key.status.as_ref().unwrap().key_versions.len() >= 4);
    let store = env.store("spin").await.unwrap();
    let consumer = wait_consumer_serving(&env, "spin", &newest).await;
    assert_eq!(
        entry(&consumer, "key"),
        entry(&store, &format!("{newest}.key"))
    );
    for version in &record.versions {
        let name = format!("{}.key", version.key_version_id);
        assert_eq!(
            entry(&consumer, &name),
            entry(&store, &name),
            "version kept for consumers"
        );
    }
    // Versions never change once written.
    let now = version_digests(&store);
    for (id, digest) in &first {
        assert_eq!(now.get(id), Some(digest), "version {id} changed");
    }
    assert!(
        env.wait_event("spin", "KeyRotated")
            .await
            .contains("is now the primary version")
    );

    // Deleted by hand after several rotations: rebuilt with every version, bytes unchanged.
    assert_rebuilt_with_every_version(&env, "spin").await;
}

/// Consumer Secret `name`, deleted by hand, is rebuilt with every version of the store,
/// bytes unchanged.
async fn assert_rebuilt_with_every_version(env: &TestEnv, name: &str) {
    env.secrets()
        .delete(name, &Default::default())
        .await
        .unwrap();
    env.wait_event_saying(name, "SecretRestored", "was deleted")
        .await;
    let rebuilt = env.secret(name).await.expect("rebuilt");
    let store = env.store(name).await.unwrap();
    let listed: KeyRecord = serde_json::from_slice(entry(&store, "key.json")).unwrap();
    assert!(listed.versions.len() >= 4);
    for version in &listed.versions {
        let name = format!("{}.key", version.key_version_id);
        if rebuilt.data.as_ref().is_some_and(|d| d.contains_key(&name)) {
            assert_eq!(entry(&rebuilt, &name), entry(&store, &name), "{name}");
        } else {
            // Only a version minted after the rebuild may be missing from it.
            assert_eq!(
                &version.key_version_id,
                &listed.versions.last().unwrap().key_version_id
            );
        }
    }
}

#[tokio::test]
async fn changing_the_rotation_policy_reschedules_and_disabling_stops_it() {
    let mut env = TestEnv::new("rotation-policy").await;
    env.start_operator(FAST_ROTATION);
    env.apply_key(&key_manifest(
        "policy",
        "{enableAutomaticRotation: true, rotationInterval: 1h}",
    ))
    .await;
    let key = env.wait_ready("policy").await;
    let m = key.status.unwrap().key_metadata.unwrap();
    assert_eq!(m.rotation_interval.as_deref(), Some("3600s"));

    // Shorter than the time since the last rotation: due at once (UpdateRotationPolicy).
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.apply_key(&key_manifest(
        "policy",
        "{enableAutomaticRotation: true, rotationInterval: 2s}",
    ))
    .await;
    wait_versions(&env, "policy", 2).await;

    env.apply_key(&key_manifest(
        "policy",
        "{enableAutomaticRotation: false, rotationInterval: 2s}",
    ))
    .await;
    let key = env
        .wait_key("policy", "reporting rotation Disabled", |k| {
            common::ready_reason(k).as_deref() == Some("KeyReady")
                && k.status
                    .as_ref()
                    .and_then(|s| s.key_metadata.as_ref())
                    .is_some_and(|m| {
                        m.automatic_rotation == keyward::api::AutomaticRotation::Disabled
                    })
        })
        .await;
    let m = key.status.unwrap().key_metadata.unwrap();
    assert_eq!((m.next_rotation_date, m.rotation_interval), (None, None));
    let versions = record(&env, "policy").await.versions.len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        record(&env, "policy").await.versions.len(),
        versions,
        "rotated while disabled"
    );
}
