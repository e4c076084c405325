//! Deleting a key: a scheduled deletion can be cancelled (nothing lost) or destroys the
//! material when due, never before; a Key deleted GitOps-style and re-applied within the
//! window is the same key, and a restart never shortens the window.

use std::time::{Duration, Instant};

use keyward::api::KeyState;
use kube::ResourceExt;
use kube::api::DeleteParams;

use crate::common::{
    self, TestEnv, data_digest, entry, key_manifest, ready_message, symmetric_material,
};
use crate::{SECOND_DAYS, wait_state};

#[tokio::test]
async fn scheduled_deletion_can_be_cancelled_and_destroys_the_material_when_due() {
    let mut env = TestEnv::new("schedule").await;
    env.start_operator(SECOND_DAYS);
    env.apply_key(&key_manifest("doomed", "{}")).await;
    env.apply_key(&key_manifest("spared", "{}")).await;
    env.wait_ready("doomed").await;

    // Cancel before the date: nothing lost, nothing changed.
    assert_cancelled_deletion_changes_nothing(&env, "spared").await;

    // Not cancelled: destroyed at the recorded date, never before.
    assert_destroyed_when_due(&env, "doomed").await;
    let deleted = env.wait_reason("doomed", "KeyDeleted").await;
    assert!(
        ready_message(&deleted).contains("its material is destroyed"),
        "{}",
        ready_message(&deleted)
    );
    assert!(
        env.secret("doomed").await.is_none(),
        "the consumer Secret outlived the material"
    );
    env.wait_event("doomed", "KeyMaterialDestroyed").await;
    // A destroyed key stays destroyed: nothing is minted for this Key object again.
    env.apply_key(&key_manifest("doomed", "{keyState: Enabled}"))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(env.store("doomed").await.is_none());
    assert_eq!(
        common::ready_reason(&env.key("doomed").await).as_deref(),
        Some("KeyDeleted")
    );
}

/// Scheduling the deletion of Key `name` and cancelling it before the date loses and changes
/// nothing: the same key, store and material.
async fn assert_cancelled_deletion_changes_nothing(env: &TestEnv, name: &str) {
    let spared = env
        .wait_ready(name)
        .await
        .status
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let spared_store = data_digest(&env.store(name).await.unwrap());
    let spared_material = symmetric_material(&env.store(name).await.unwrap());
    env.apply_key(&key_manifest(
        name,
        "{keyState: PendingDeletion, pendingWindowInDays: 30}",
    ))
    .await;
    let pending = wait_state(env, name, KeyState::PendingDeletion).await;
    assert!(
        pending
            .status
            .unwrap()
            .key_metadata
            .unwrap()
            .delete_date
            .is_some()
    );
    env.apply_key(&key_manifest(name, "{keyState: Enabled}"))
        .await;
    let back = wait_state(env, name, KeyState::Enabled)
        .await
        .status
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!((back.key_id, back.delete_date), (spared, None));
    assert!(
        env.wait_event(name, "KeyDeletionCancelled")
            .await
            .contains("cancelled the deletion")
    );
    let store = env.store(name).await.unwrap();
    assert_eq!(env.record(name).await.unwrap().deletion, None);
    assert_eq!(store.annotations().get("keyward.dev/delete-date"), None);
    let material = symmetric_material(&store);
    assert_eq!(material, spared_material, "cancelling changed the material");
    assert_eq!(
        data_digest(&store),
        spared_store,
        "cancelled: the store is as it was"
    );
}

/// Scheduled for deletion in 7 "days" (seconds), Key `name`'s material store is destroyed at
/// the recorded date, never before.
async fn assert_destroyed_when_due(env: &TestEnv, name: &str) {
    env.apply_key(&key_manifest(
        name,
        "{keyState: PendingDeletion, pendingWindowInDays: 7}",
    ))
    .await;
    let pending = wait_state(env, name, KeyState::PendingDeletion).await;
    let delete_date: jiff::Timestamp = pending
        .status
        .unwrap()
        .key_metadata
        .unwrap()
        .delete_date
        .unwrap()
        .parse()
        .unwrap();
    loop {
        let now = jiff::Timestamp::now();
        let exists = env.store(name).await.is_some();
        if now.as_second() < delete_date.as_second() {
            assert!(exists, "destroyed before {delete_date}");
        } else if !exists {
            break;
        }
        assert!(
            now.as_second() < delete_date.as_second() + 30,
            "not destroyed long after {delete_date}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn deleting_and_reapplying_a_key_within_the_window_restores_it_and_a_restart_never_shortens_it()
 {
    let mut env = TestEnv::new("gitops-delete").await;
    env.start_operator(SECOND_DAYS);
    let manifest = key_manifest(
        "pruned",
        "{pendingWindowInDays: 12, keySpec: EC_SM2, keyUsage: SIGN/VERIFY}",
    );
    env.apply_key(&manifest).await;
    let key_id = env
        .wait_ready("pruned")
        .await
        .status
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let consumer = data_digest(&env.secret("pruned").await.unwrap());
    let store = env.store("pruned").await.unwrap();
    let material: Vec<(String, Vec<u8>)> = store
        .data
        .iter()
        .flatten()
        .filter(|(n, _)| n.ends_with(".pem"))
        .map(|(n, b)| (n.clone(), b.0.clone()))
        .collect();

    // The delete completes at once (no finalizer) and schedules the deletion with the material.
    env.keys()
        .delete("pruned", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.keys().get_opt("pruned").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the Key's deletion was held");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scheduled = loop {
        if let Some(deletion) = env.record("pruned").await.and_then(|r| r.deletion) {
            break deletion;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let withdrawn = env.secret("pruned").await.unwrap();
    assert_eq!(
        common::entry_names(&withdrawn),
        ["keyId"],
        "withdrawn while pending deletion"
    );

    // A restart during the window neither shortens nor loses it.
    env.kill_operators();
    env.start_operator(SECOND_DAYS);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.record("pruned").await.unwrap().deletion,
        Some(scheduled.clone())
    );

    // Re-applied before the date: the same key, versions, bytes and consumer Secret.
    assert_same_key_restored(&env, &manifest, &key_id, &material, &consumer).await;

    // Deleted again and left alone: destroyed after the window; then a Key of that name is new.
    assert_new_key_after_the_window(&env, &manifest, &key_id).await;
}

/// Key pruned, re-applied as `manifest`: the same key (`key_id`), the same bytes of its
/// `material` (PEM entries), its consumer Secret restored to the `consumer` digest.
async fn assert_same_key_restored(
    env: &TestEnv,
    manifest: &str,
    key_id: &str,
    material: &[(String, Vec<u8>)],
    consumer: &str,
) {
    env.apply_key(manifest).await;
    let back = env
        .wait_ready("pruned")
        .await
        .status
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(back.key_id, key_id);
    assert_eq!(back.delete_date, None);
    let store = env.store("pruned").await.unwrap();
    for (name, bytes) in material {
        assert_eq!(entry(&store, name), bytes.as_slice(), "{name} changed");
    }
    let deadline = Instant::now() + common::CONVERGE;
    while data_digest(&env.secret("pruned").await.unwrap()) != consumer {
        assert!(
            Instant::now() < deadline,
            "the consumer Secret was not restored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Key pruned, deleted again and left alone: its material is destroyed after the window, and
/// `manifest` applied then makes a new key (not `key_id`).
async fn assert_new_key_after_the_window(env: &TestEnv, manifest: &str, key_id: &str) {
    env.keys()
        .delete("pruned", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    while env.store("pruned").await.is_some() {
        assert!(Instant::now() < deadline, "not destroyed after the window");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(env.secret("pruned").await.is_none());
    env.apply_key(manifest).await;
    let fresh = env
        .wait_ready("pruned")
        .await
        .status
        .unwrap()
        .key_metadata
        .unwrap();
    assert_ne!(fresh.key_id, key_id, "after the window, a new key");
}
