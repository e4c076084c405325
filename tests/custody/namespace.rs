//! The tenant's namespace deleted and re-created: its Keys go with it (a ScheduleKeyDeletion of
//! each), their material waits out the pending window in the store namespace, and the same
//! Keys applied in the re-created namespace before then are the same keys.

use std::collections::BTreeMap;

use keyward::api::labels;
use keyward::store::{DeletionCause, ScheduledDeletion};
use kube::ResourceExt;

use crate::common::env::{create_namespace, delete_namespace};
use crate::common::{TestEnv, eventually, key_manifest, record_of};
use crate::{Held, consumer_with, material_digest, store_event};

/// An AES and an RSA key that a namespace's deletion may delete (no deletion protection).
const KEYS: [(&str, &str); 2] = [
    (
        "payments",
        "{pendingWindowInDays: 7, deletionProtection: false}",
    ),
    (
        "signing",
        "{keySpec: RSA_2048, keyUsage: SIGN/VERIFY, pendingWindowInDays: 7, \
         deletionProtection: false}",
    ),
];

#[tokio::test]
async fn namespace_deleted_and_recreated_within_the_window_restores_the_same_key() {
    let mut env = TestEnv::new("namespace-recreated").await;
    let operator = env.start_operator(&[]);
    let manifests: Vec<String> = KEYS.iter().map(|(n, s)| key_manifest(n, s)).collect();
    for manifest in &manifests {
        env.apply_key(manifest).await;
    }
    let mut before = BTreeMap::new();
    for (name, _) in KEYS {
        before.insert(name, Held::of(&env, name).await);
    }

    // The namespace controller deletes the Keys and their consumer Secrets; the stores, in
    // keyward's namespace, stay, each with its deletion scheduled for the pending window.
    delete_namespace(&env.client, &env.namespace).await;
    for (name, _) in KEYS {
        let deletion = scheduled_deletion(&env, name).await;
        assert_eq!(deletion.cause, DeletionCause::KeyDeleted, "{name}");
        let window = deletion.delete_date.as_second() - deletion.scheduled_at.as_second();
        assert_eq!(window, 7 * 86_400, "{name}: the Key's 7-day pending window");
        let store = env.store(name).await.unwrap();
        assert_eq!(material_digest(&store), before[name].material, "{name}");
        let note = store_event(&env, name, "KeyDeletionScheduled").await;
        assert!(
            note.starts_with(&format!(
                "Key {name} was deleted: key {}",
                before[name].key_id
            )),
            "{note}"
        );
    }
    assert!(
        env.operator_running(operator),
        "the operator exited when its namespace was deleted"
    );

    // Re-created, and the same Keys applied before the date: the same keys.
    create_namespace(&env.client, &env.namespace).await;
    for manifest in &manifests {
        env.apply_key(manifest).await;
    }
    for (name, _) in KEYS {
        let held = &before[name];
        consumer_with(&env, name, &held.consumer).await;
        assert_eq!(
            &Held::of(&env, name).await,
            held,
            "{name}: not the same key"
        );
        let store = env.store(name).await.unwrap();
        assert_eq!(
            record_of(&store).deletion,
            None,
            "{name}: deletion not cancelled"
        );
        assert_eq!(store.annotations().get(labels::DELETE_DATE), None, "{name}");
        let note = env.wait_event(name, "KeyDeletionCancelled").await;
        assert!(note.contains(&held.key_id), "{note}");
    }
    let stores = env.managed_secrets().await;
    assert_eq!(
        stores.len(),
        2 * KEYS.len(),
        "one store and one consumer Secret per key, nothing minted"
    );
    assert!(
        env.operator_running(operator),
        "the operator did not keep running"
    );
}

/// The deletion recorded in Key `name`'s store, once recorded.
async fn scheduled_deletion(env: &TestEnv, name: &str) -> ScheduledDeletion {
    eventually(&format!("{name}'s deletion scheduled"), || async {
        env.record(name).await.and_then(|r| r.deletion)
    })
    .await
}
