//! Nothing written when nothing changed: converged keys cause no writes, even across a
//! restart; and two operators at once still mint one key each.

use std::time::Duration;

use kube::ResourceExt;

use crate::common::{TestEnv, data_digest, entry};

/// After convergence nothing is written: not the Key, not its Secrets, not even across an
/// operator restart; and a restart never mints new material.
#[tokio::test]
async fn converged_keys_cause_no_writes_and_restarts_mint_nothing() {
    let mut env = TestEnv::with_operator("idempotence").await;
    let names = ["idle-aes", "idle-rsa", "idle-sm2"];
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: idle-aes}\nspec: {enableAutomaticRotation: true, rotationInterval: 30d}\n").await;
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: idle-rsa}\nspec: {keySpec: RSA_2048}\n").await;
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: idle-sm2}\nspec: {keySpec: EC_SM2, keyUsage: SIGN/VERIFY}\n").await;
    for name in names {
        env.wait_ready(name).await;
    }
    // Let the operator see its own writes come back before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = snapshot(&env, &names).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        snapshot(&env, &names).await,
        before,
        "a converged key was written to"
    );

    env.kill_operators();
    env.start_operator(&[]);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        snapshot(&env, &names).await,
        before,
        "a restarted operator wrote to converged keys"
    );
    assert!(
        env.operator_log(1).contains("keyward starting"),
        "the second operator ran"
    );
}

/// Resource versions and data digests of each Key and its two Secrets.
async fn snapshot(env: &TestEnv, names: &[&str]) -> Vec<[String; 5]> {
    let mut state = Vec::new();
    for name in names {
        let key = env.key(name).await;
        let store = env.store(name).await.unwrap();
        let consumer = env.secret(name).await.unwrap();
        state.push([
            key.resource_version().unwrap(),
            store.resource_version().unwrap(),
            consumer.resource_version().unwrap(),
            data_digest(&store),
            data_digest(&consumer),
        ]);
    }
    state
}

/// Two operators at once (no leader election): the write path alone keeps one key per Key.
#[tokio::test]
async fn two_operators_at_once_still_mint_exactly_one_key_each() {
    let mut env = TestEnv::new("two-operators").await;
    env.start_operator(&[]);
    env.start_operator(&[]);
    let names: Vec<String> = (0..8).map(|i| format!("race-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let spec = if i % 2 == 0 {
            "{keySpec: RSA_2048}"
        } else {
            "{}"
        };
        env.apply_key(&format!("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: {name}}}\nspec: {spec}\n")).await;
    }
    for name in &names {
        let key = env.wait_ready(name).await;
        let key_id = key.status.unwrap().key_metadata.unwrap().key_id;
        let store = env.store(name).await.unwrap();
        assert_eq!(store.annotations().get("keyward.dev/key-id"), Some(&key_id));
        let record: serde_json::Value = serde_json::from_slice(entry(&store, "key.json")).unwrap();
        assert_eq!(
            record["versions"].as_array().unwrap().len(),
            1,
            "{name}: one version"
        );
        let consumer = env.secret(name).await.unwrap();
        assert_eq!(entry(&consumer, "keyId"), key_id.as_bytes());
    }
    assert_eq!(env.managed_secrets().await.len(), 16);
}
