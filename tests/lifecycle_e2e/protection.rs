//! Deletion protection holds a key's deletion and refuses scheduling it; and the lifecycle
//! examples of examples/ reach their states.

use std::time::{Duration, Instant};

use keyward::api::KeyState;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};

use crate::common::{self, TestEnv, key_manifest, ready_message};
use crate::{SECOND_DAYS, wait_state};

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
