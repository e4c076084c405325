//! The key lifecycle on a real API server: disable and enable, scheduled deletion and cancel,
//! GitOps-style delete and re-apply, destruction after the window, deletion protection. The
//! operator runs with `--pending-window-unit 1s`, so a "day" of a pending window is a second.

mod common;

use std::time::{Duration, Instant};

use common::{TestEnv, data_digest, entry, key_manifest, ready_message, symmetric_material};
use keyward::api::{AutomaticRotation, KeyState, KeyVersion};
use keyward::store::KeyRecord;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

const SECOND_DAYS: &[&str] = &[
    "--pending-window-unit",
    "1s",
    "--min-rotation-interval",
    "1s",
];

async fn wait_state(env: &TestEnv, name: &str, state: KeyState) -> keyward::api::Key {
    env.wait_key(name, state.as_str(), |k| {
        common::ready_reason(k).is_some()
            && k.status
                .as_ref()
                .and_then(|s| s.key_metadata.as_ref())
                .map(|m| m.key_state)
                == Some(state)
    })
    .await
}

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
    let store_before = data_digest(&env.secret("flip.keyward-material").await.unwrap());
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
    assert_eq!(
        data_digest(&env.secret("flip.keyward-material").await.unwrap()),
        store_before
    );
    env.apply_key_version("apiVersion: keyward.dev/v1alpha1\nkind: KeyVersion\nmetadata: {name: v2}\nspec: {keyRef: {name: flip-ec}}\n").await;
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

    // Enabled again: every version back, byte for byte.
    env.apply_key(&key_manifest(
        "flip",
        "{enableAutomaticRotation: true, rotationInterval: 2s}",
    ))
    .await;
    wait_state(&env, "flip", KeyState::Enabled).await;
    let deadline = Instant::now() + common::CONVERGE;
    loop {
        let consumer = env.secret("flip").await.unwrap();
        if consumer
            .annotations()
            .get("keyward.dev/key-state")
            .map(String::as_str)
            == Some("Enabled")
        {
            let store = env.secret("flip.keyward-material").await.unwrap();
            let record: KeyRecord = serde_json::from_slice(entry(&store, "key.json")).unwrap();
            for version in &record.versions {
                let name = format!("{}.key", version.key_version_id);
                assert_eq!(
                    entry(&consumer, &name),
                    entry(&store, &name),
                    "{name} restored unchanged"
                );
            }
            break;
        }
        assert!(Instant::now() < deadline, "the material was not restored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.wait_event("flip", "MaterialRestored").await;
}

#[tokio::test]
async fn scheduled_deletion_can_be_cancelled_and_destroys_the_material_when_due() {
    let mut env = TestEnv::new("schedule").await;
    env.start_operator(SECOND_DAYS);
    env.apply_key(&key_manifest("doomed", "{}")).await;
    env.apply_key(&key_manifest("spared", "{}")).await;
    env.wait_ready("doomed").await;
    let spared = env
        .wait_ready("spared")
        .await
        .status
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let spared_store = data_digest(&env.secret("spared.keyward-material").await.unwrap());
    let spared_material = symmetric_material(&env.secret("spared.keyward-material").await.unwrap());

    // Cancel before the date: nothing lost, nothing changed.
    env.apply_key(&key_manifest(
        "spared",
        "{keyState: PendingDeletion, pendingWindowInDays: 30}",
    ))
    .await;
    let pending = wait_state(&env, "spared", KeyState::PendingDeletion).await;
    assert!(
        pending
            .status
            .unwrap()
            .key_metadata
            .unwrap()
            .delete_date
            .is_some()
    );
    env.apply_key(&key_manifest("spared", "{keyState: Enabled}"))
        .await;
    let back = wait_state(&env, "spared", KeyState::Enabled)
        .await
        .status
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!((back.key_id, back.delete_date), (spared, None));
    assert!(
        env.wait_event("spared", "KeyDeletionCancelled")
            .await
            .contains("cancelled the deletion")
    );
    let store = env.secret("spared.keyward-material").await.unwrap();
    assert_eq!(env.record("spared").await.unwrap().deletion, None);
    assert_eq!(store.annotations().get("keyward.dev/delete-date"), None);
    let material = symmetric_material(&store);
    assert_eq!(material, spared_material, "cancelling changed the material");
    assert_eq!(
        data_digest(&store),
        spared_store,
        "cancelled: the store is as it was"
    );

    // Not cancelled: destroyed at the recorded date, never before.
    env.apply_key(&key_manifest(
        "doomed",
        "{keyState: PendingDeletion, pendingWindowInDays: 7}",
    ))
    .await;
    let pending = wait_state(&env, "doomed", KeyState::PendingDeletion).await;
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
        let exists = env.secret("doomed.keyward-material").await.is_some();
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
    assert!(env.secret("doomed.keyward-material").await.is_none());
    assert_eq!(
        common::ready_reason(&env.key("doomed").await).as_deref(),
        Some("KeyDeleted")
    );
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
    let store = env.secret("pruned.keyward-material").await.unwrap();
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
    env.apply_key(&manifest).await;
    let back = env
        .wait_ready("pruned")
        .await
        .status
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(back.key_id, key_id);
    assert_eq!(back.delete_date, None);
    let store = env.secret("pruned.keyward-material").await.unwrap();
    for (name, bytes) in &material {
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

    // Deleted again and left alone: destroyed after the window; then a Key of that name is new.
    env.keys()
        .delete("pruned", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    while env.secret("pruned.keyward-material").await.is_some() {
        assert!(Instant::now() < deadline, "not destroyed after the window");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(env.secret("pruned").await.is_none());
    env.apply_key(&manifest).await;
    let fresh = env
        .wait_ready("pruned")
        .await
        .status
        .unwrap()
        .key_metadata
        .unwrap();
    assert_ne!(fresh.key_id, key_id, "after the window, a new key");
}

#[tokio::test]
async fn deletion_protection_refuses_scheduling_and_holds_the_keys_deletion() {
    let mut env = TestEnv::new("protection").await;
    env.start_operator(SECOND_DAYS);
    env.apply_key(&key_manifest("guarded", "{deletionProtection: true}"))
        .await;
    env.wait_key("guarded", "holding the finalizer", |k| {
        k.finalizers()
            .iter()
            .any(|f| f == "keyward.dev/deletion-protection")
    })
    .await;

    env.apply_key(&key_manifest(
        "guarded",
        "{deletionProtection: true, keyState: PendingDeletion}",
    ))
    .await;
    let refused = env
        .wait_reason("guarded", "ForbiddenDeletionProtection")
        .await;
    assert!(
        ready_message(&refused)
            .starts_with("Forbidden.DeletionProtection: spec.keyState PendingDeletion is refused")
    );
    assert!(env.record("guarded").await.unwrap().deletion.is_none());

    env.apply_key(&key_manifest("guarded", "{deletionProtection: true}"))
        .await;
    env.wait_ready("guarded").await;
    env.keys()
        .delete("guarded", &DeleteParams::default())
        .await
        .unwrap();
    let held = env
        .wait_key("guarded", "held", |k| {
            k.metadata.deletion_timestamp.is_some()
                && common::ready_reason(k).as_deref() == Some("ForbiddenDeletionProtection")
        })
        .await;
    assert!(
        ready_message(&held).contains("deleting this Key is held"),
        "{}",
        ready_message(&held)
    );
    assert!(
        env.record("guarded").await.unwrap().deletion.is_none(),
        "held means nothing scheduled"
    );

    // Protection off: the deletion proceeds and becomes a scheduled deletion of the material.
    let patch = serde_json::json!({"spec": {"deletionProtection": false}});
    env.keys()
        .patch("guarded", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let deadline = Instant::now() + common::CONVERGE;
    while env.keys().get_opt("guarded").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the deletion stayed held");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + common::CONVERGE;
    while env
        .record("guarded")
        .await
        .and_then(|r| r.deletion)
        .is_none()
    {
        assert!(Instant::now() < deadline, "the deletion was not scheduled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The examples of examples/lifecycle/ reach the states they describe.
#[tokio::test]
async fn lifecycle_examples_reach_their_states() {
    let mut env = TestEnv::new("lifecycle-examples").await;
    env.start_operator(SECOND_DAYS);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/lifecycle");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let manifest = std::fs::read_to_string(entry.path()).unwrap();
        names.push(env.apply_key(&manifest).await.name_any());
    }
    names.sort();
    assert_eq!(names, ["archive-key", "byok-key", "root-signing"]);
    wait_state(&env, "archive-key", KeyState::Disabled).await;
    assert_eq!(
        common::entry_names(&env.secret("archive-key").await.unwrap()),
        ["keyId"]
    );
    let byok = wait_state(&env, "byok-key", KeyState::PendingImport).await;
    let deadline = Instant::now() + common::CONVERGE;
    while env
        .key("byok-key")
        .await
        .status
        .and_then(|s| s.import_parameters)
        .is_none()
    {
        assert!(Instant::now() < deadline, "no import parameters");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        byok.status
            .unwrap()
            .key_metadata
            .unwrap()
            .primary_key_version
            .is_none()
    );
    env.wait_ready("root-signing").await;
    env.wait_key("root-signing", "protected", |k| {
        k.finalizers()
            .iter()
            .any(|f| f == "keyward.dev/deletion-protection")
    })
    .await;
    // Turn protection off so that the test namespace can be deleted.
    let patch = serde_json::json!({"spec": {"deletionProtection": false}});
    env.keys()
        .patch(
            "root-signing",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    env.wait_key("root-signing", "unprotected", |k| k.finalizers().is_empty())
        .await;
}
