//! The Secrets around a Key: a foreign Secret with the consumer's name is never touched, a
//! deleted or edited consumer Secret is rebuilt with the same bytes, a lost material store is
//! reported and never replaced, and a deleted Key keeps its material for when it comes back.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};

use crate::common::{self, TestEnv, data_digest, entry, ready_message, symmetric_material};

/// A Secret that keyward did not create is never adopted, overwritten or deleted, and no
/// material is minted for a Key that cannot publish it.
#[tokio::test]
async fn a_foreign_secret_with_the_consumer_name_is_never_touched() {
    let env = TestEnv::with_operator("foreign-secret").await;
    let foreign = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("taken".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "password".into(),
            ByteString(b"hunter2".to_vec()),
        )])),
        ..Default::default()
    };
    let foreign = env
        .secrets()
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: clash}\nspec: {secretName: taken}\n").await;
    let key = env.wait_reason("clash", "SecretNameConflict").await;
    assert!(
        ready_message(&key).starts_with("SecretNameConflict: Secret taken already exists"),
        "{}",
        ready_message(&key)
    );
    env.wait_event("clash", "SecretNameConflict").await;
    env.reconciled_again("clash").await;
    let after = env.secret("taken").await.unwrap();
    assert_eq!(
        after.resource_version(),
        foreign.resource_version(),
        "the foreign Secret was written"
    );
    assert_eq!(entry(&after, "password"), b"hunter2");
    assert!(
        env.managed_secrets().await.is_empty(),
        "no material minted for a Key that cannot publish it"
    );

    // Pointing the Key elsewhere resolves it, and the foreign Secret still stands.
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: clash}\nspec: {secretName: clash-key}\n").await;
    env.wait_ready("clash").await;
    assert_eq!(
        env.secret("taken").await.unwrap().resource_version(),
        foreign.resource_version()
    );
}

/// A consumer Secret deleted or edited by hand is rebuilt from the store with the same bytes.
#[tokio::test]
async fn a_deleted_or_edited_consumer_secret_is_rebuilt_with_the_same_bytes() {
    let env = TestEnv::with_operator("rebuild").await;
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: rebuilt}\nspec: {keySpec: EC_P256, keyUsage: SIGN/VERIFY}\n").await;
    env.wait_ready("rebuilt").await;
    let original = data_digest(&env.secret("rebuilt").await.unwrap());

    env.secrets()
        .delete("rebuilt", &DeleteParams::default())
        .await
        .unwrap();
    let restored = wait_secret_digest(&env, "rebuilt", &original).await;
    let note = env.wait_event("rebuilt", "SecretRestored").await;
    assert!(
        note.starts_with("Secret rebuilt was deleted; rebuilt it"),
        "{note}"
    );
    assert_eq!(restored.type_.as_deref(), Some("keyward.dev/key"));

    let patch = serde_json::json!({"data": {"private.pem": "Z2FyYmFnZQ==", "extra": "eA=="}});
    env.secrets()
        .patch("rebuilt", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_secret_digest(&env, "rebuilt", &original).await;
    let note = env
        .wait_event_saying(
            "rebuilt",
            "SecretRestored",
            "differed from the material store",
        )
        .await;
    assert!(note.contains("rebuilt it with all 1 version(s)"), "{note}");

    // Labels others add are kept.
    let patch = serde_json::json!({"metadata": {"labels": {"team": "payments"}}});
    env.secrets()
        .patch("rebuilt", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.reconciled_again("rebuilt").await;
    let secret = env.secret("rebuilt").await.unwrap();
    assert_eq!(
        secret.labels().get("team").map(String::as_str),
        Some("payments")
    );
    assert_eq!(data_digest(&secret), original);
}

async fn wait_secret_digest(env: &TestEnv, name: &str, digest: &str) -> Secret {
    let deadline = std::time::Instant::now() + common::CONVERGE;
    loop {
        if let Some(secret) = env.secret(name).await
            && data_digest(&secret) == digest
        {
            return secret;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Secret {name} was not rebuilt"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// If the material store is lost, the key says so and keyward never mints replacement
/// material for it.
#[tokio::test]
async fn a_lost_material_store_is_reported_and_never_replaced() {
    let env = TestEnv::with_operator("lost-store").await;
    env.apply_key(
        "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: orphan}\nspec: {}\n",
    )
    .await;
    let key = env.wait_ready("orphan").await;
    let key_id = key.status.unwrap().key_metadata.unwrap().key_id;
    let consumer = env.secret("orphan").await.unwrap();

    // Only someone allowed into keyward's store namespace can do this: an administrator.
    env.stores()
        .delete(&env.store_name("orphan"), &DeleteParams::default())
        .await
        .unwrap();
    let key = env.wait_reason("orphan", "MaterialStoreMissing").await;
    let message = ready_message(&key);
    assert!(
        message.starts_with(&format!(
            "MaterialStoreMissing: the material store Secret {} (in keyward's store namespace) \
             of key",
            env.store_name("orphan")
        )),
        "{message}"
    );
    assert!(message.contains(&key_id), "{message}");
    assert_eq!(
        key.status.unwrap().key_metadata.unwrap().key_id,
        key_id,
        "the key is still reported"
    );
    env.wait_event("orphan", "MaterialStoreMissing").await;
    let key = env.reconciled_again("orphan").await;
    assert_eq!(
        common::ready_reason(&key).as_deref(),
        Some("MaterialStoreMissing")
    );
    assert!(
        env.store("orphan").await.is_none(),
        "replacement material was minted"
    );
    let after = env.secret("orphan").await.unwrap();
    assert_eq!(
        after.resource_version(),
        consumer.resource_version(),
        "the consumer Secret was written"
    );
}

/// Deleting a Key keeps its material; applying it again restores the same key.
#[tokio::test]
async fn deleting_a_key_keeps_its_material_and_reapplying_restores_it() {
    let env = TestEnv::with_operator("delete-keeps").await;
    let manifest = "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: kept}\nspec: {keySpec: Aliyun_SM4}\n";
    env.apply_key(manifest).await;
    let key_id = env
        .wait_ready("kept")
        .await
        .status
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;

    let material_before = symmetric_material(&env.store("kept").await.unwrap());
    let consumer = data_digest(&env.secret("kept").await.unwrap());

    delete_key(&env, "kept").await;
    // The operator saw the deletion: it scheduled the material's destruction in the store.
    common::eventually("the deletion scheduled in the store", || async {
        env.record("kept").await.and_then(|r| r.deletion)
    })
    .await;
    // The material is kept (the lifecycle issue adds the pending window it now waits in).
    let kept = env.store("kept").await.expect("store kept");
    assert_eq!(
        symmetric_material(&kept),
        material_before,
        "the material is unchanged"
    );
    assert!(env.secret("kept").await.is_some(), "consumer Secret kept");

    assert_eq!(
        reapply(&env, manifest).await,
        key_id,
        "the same key came back"
    );
    let deadline = std::time::Instant::now() + common::CONVERGE;
    while data_digest(&env.secret("kept").await.unwrap()) != consumer {
        assert!(
            std::time::Instant::now() < deadline,
            "the consumer Secret was not restored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Again, with the consumer Secret deleted too: nothing but the store tells that the key
    // existed (a Key with neither status nor consumer Secret is created without reading its
    // store first), and still the same key comes back, with the same bytes.
    delete_key(&env, "kept").await;
    env.secrets()
        .delete("kept", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        reapply(&env, manifest).await,
        key_id,
        "the same key came back"
    );
    assert_eq!(data_digest(&env.secret("kept").await.unwrap()), consumer);
    let store = env.store("kept").await.unwrap();
    assert_eq!(
        symmetric_material(&store),
        material_before,
        "nothing was minted"
    );
    let created = env
        .events_for("kept")
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("KeyCreated"))
        .count();
    assert_eq!(created, 1, "one KeyCreated event, for the first creation");
}

/// Deletes Key `name` and waits until it is gone (no finalizer holds it).
async fn delete_key(env: &TestEnv, name: &str) {
    env.keys()
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + common::CONVERGE;
    while env.keys().get_opt(name).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "Key {name} was not deleted promptly"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Applies `manifest` again and returns the KeyId the Key reports once Ready.
async fn reapply(env: &TestEnv, manifest: &str) -> String {
    let name = env.apply_key(manifest).await.name_any();
    let key = env.wait_ready(&name).await;
    key.status.unwrap().key_metadata.unwrap().key_id
}

/// The names of the Secrets of the test's namespace that hold any of `material`.
async fn holders_of(env: &TestEnv, material: &[Vec<u8>]) -> Vec<String> {
    let all = env.secrets().list(&Default::default()).await.unwrap().items;
    all.iter()
        .filter(|s| {
            let entries = s.data.iter().flatten();
            entries
                .into_iter()
                .any(|(_, bytes)| material.contains(&bytes.0))
        })
        .map(|s| s.name_any())
        .collect()
}

/// Changing spec.secretName moves the material: the Secret keyward wrote before is deleted,
/// and no Secret of the namespace but the current one holds the key, nor any once it is
/// Disabled.
#[tokio::test]
async fn a_secret_name_change_leaves_no_copy_of_the_material_behind() {
    let env = TestEnv::with_operator("secret-rename").await;
    let manifest = |spec: &str| {
        format!(
            "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: moving}}\nspec: {spec}\n"
        )
    };
    env.apply_key(&manifest("{}")).await;
    let key_id = env
        .wait_ready("moving")
        .await
        .status
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let material = symmetric_material(&env.store("moving").await.unwrap());
    assert_eq!(holders_of(&env, &material).await, ["moving"]);

    env.apply_key(&manifest("{secretName: moved}")).await;
    let message = env.wait_event("moving", "SecretRetired").await;
    assert!(
        message.contains("moving") && message.contains("moved"),
        "{message}"
    );
    let key = env
        .wait_key("moving", "published in Secret moved", |k| {
            let status = k.status.as_ref();
            status.and_then(|s| s.secret_name.as_deref()) == Some("moved")
                && common::ready_reason(k).as_deref() == Some("KeyReady")
        })
        .await;
    assert_eq!(key.status.unwrap().key_metadata.unwrap().key_id, key_id);
    assert!(
        env.secret("moving").await.is_none(),
        "the former Secret is left"
    );
    assert_eq!(holders_of(&env, &material).await, ["moved"]);
    let record = env.record("moving").await.unwrap();
    assert_eq!(
        record.consumer_secrets.into_iter().collect::<Vec<_>>(),
        ["moved"],
        "the record still names the former Secret"
    );

    env.apply_key(&manifest("{secretName: moved, keyState: Disabled}"))
        .await;
    env.wait_reason("moving", "KeyDisabled").await;
    assert!(
        holders_of(&env, &material).await.is_empty(),
        "a Disabled key's material is served"
    );
    assert_eq!(
        symmetric_material(&env.store("moving").await.unwrap()),
        material,
        "the store lost material"
    );
}
