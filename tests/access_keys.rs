//! AccessKeys on a real API server: a pair issued once into the named Secret, with keyward's
//! own copy in the store namespace; the Secret kept in step (rebuilt, restored, moved with
//! `secretName`); a foreign Secret never touched; deletion revokes the pair everywhere.

mod common;

use std::collections::BTreeMap;

use common::{TestEnv, eventually};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use keyward::api::AccessKey;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

fn access_keys(env: &TestEnv) -> Api<AccessKey> {
    Api::namespaced(env.client.clone(), &env.namespace)
}

async fn apply(env: &TestEnv, manifest: &str) -> AccessKey {
    let mut access_key: AccessKey = serde_yaml::from_str(manifest).expect("an AccessKey manifest");
    access_key.metadata.namespace = Some(env.namespace.clone());
    let params = PatchParams::apply("keyward-tests").force();
    access_keys(env)
        .patch(&access_key.name_any(), &params, &Patch::Apply(&access_key))
        .await
        .expect("apply the AccessKey")
}

/// Waits for the Ready condition at the AccessKey's current generation to have `status`.
async fn wait_ready(env: &TestEnv, name: &str, status: &str) -> AccessKey {
    eventually(&format!("AccessKey {name} Ready={status}"), || async {
        let access_key = access_keys(env)
            .get_opt(name)
            .await
            .expect("get AccessKey")?;
        let ready = access_key
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")?;
        (ready.status == status && ready.observed_generation == access_key.metadata.generation)
            .then_some(access_key.clone())
    })
    .await
}

fn entry(secret: &Secret, name: &str) -> String {
    let bytes = &secret.data.as_ref().expect("data")[name].0;
    String::from_utf8(bytes.clone()).expect("text")
}

fn pair(secret: &Secret) -> (String, String) {
    (
        entry(secret, "accessKeyId"),
        entry(secret, "accessKeySecret"),
    )
}

fn credential_name(env: &TestEnv, name: &str) -> String {
    keyward::store::credential::credential_name(&env.namespace, name)
}

#[tokio::test]
async fn a_pair_is_issued_once_and_its_secret_kept_in_step() {
    let env = TestEnv::with_operator("access-issue").await;
    let manifest = "apiVersion: keyward.dev/v1alpha1\nkind: AccessKey\nmetadata: {name: ci}\nspec: {serviceAccountName: deployer}\n";
    apply(&env, manifest).await;
    let access_key = wait_ready(&env, "ci", "True").await;
    let status = access_key.status.unwrap();
    let id = status.access_key_id.expect("status.accessKeyId");
    assert_eq!(status.secret_name.as_deref(), Some("ci"));
    assert!(id.starts_with("KWAK") && id.len() == 24, "{id}");

    let issued = env.secret("ci").await.expect("the issued Secret");
    let (issued_id, secret) = pair(&issued);
    assert_eq!(issued_id, id);
    assert_eq!(secret.len(), 30);
    let credential = env
        .stores()
        .get(&credential_name(&env, "ci"))
        .await
        .expect("keyward's copy in the store namespace");
    assert_eq!(pair(&credential), (id.clone(), secret.clone()));
    assert_eq!(credential.immutable, Some(true));
    let ready = &access_key_ready_message(&env, "ci").await;
    assert!(ready.contains("system:serviceaccount:"), "{ready}");
    assert!(
        !ready.contains(&secret),
        "the Ready message shows the secret"
    );

    // Deleted: rebuilt with the same pair.
    env.secrets()
        .delete("ci", &DeleteParams::default())
        .await
        .unwrap();
    let rebuilt = eventually("the Secret rebuilt", || async { env.secret("ci").await }).await;
    assert_eq!(pair(&rebuilt), (id.clone(), secret.clone()));

    // Edited: restored.
    let edit = serde_json::json!({"data": {"accessKeySecret": "Zm9yZ2Vk"}});
    let edited = env
        .secrets()
        .patch("ci", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    assert_eq!(entry(&edited, "accessKeySecret"), "forged");
    eventually("the Secret restored", || async {
        let now = env.secret("ci").await?;
        (pair(&now) == (id.clone(), secret.clone())).then_some(())
    })
    .await;

    // Moved: the new Secret holds the same pair, the old one is gone.
    apply(&env, "apiVersion: keyward.dev/v1alpha1\nkind: AccessKey\nmetadata: {name: ci}\nspec: {serviceAccountName: deployer, secretName: ci-moved}\n").await;
    wait_ready(&env, "ci", "True").await;
    let moved = env.secret("ci-moved").await.expect("the new Secret");
    assert_eq!(pair(&moved), (id.clone(), secret.clone()));
    eventually("the former Secret deleted", || async {
        env.secret("ci").await.is_none().then_some(())
    })
    .await;
    // Still the one pair: nothing was issued twice.
    let credential = env
        .stores()
        .get(&credential_name(&env, "ci"))
        .await
        .unwrap();
    assert_eq!(pair(&credential), (id, secret));
}

async fn access_key_ready_message(env: &TestEnv, name: &str) -> String {
    let access_key = access_keys(env).get(name).await.unwrap();
    let status = access_key.status.unwrap();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    ready.map(|c| c.message.clone()).unwrap_or_default()
}

#[tokio::test]
async fn deleting_an_access_key_revokes_its_pair_and_a_new_one_gets_a_new_pair() {
    let env = TestEnv::with_operator("access-revoke").await;
    let manifest = "apiVersion: keyward.dev/v1alpha1\nkind: AccessKey\nmetadata: {name: job}\nspec: {serviceAccountName: batch}\n";
    apply(&env, manifest).await;
    let first = wait_ready(&env, "job", "True").await;
    let first_id = first.status.unwrap().access_key_id.unwrap();

    access_keys(&env)
        .delete("job", &DeleteParams::default())
        .await
        .unwrap();
    let name = credential_name(&env, "job");
    eventually("keyward's copy revoked", || async {
        env.stores()
            .get_opt(&name)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    eventually("the issued Secret deleted", || async {
        env.secret("job").await.is_none().then_some(())
    })
    .await;

    apply(&env, manifest).await;
    let second = wait_ready(&env, "job", "True").await;
    let second_id = second.status.unwrap().access_key_id.unwrap();
    assert_ne!(first_id, second_id, "a new AccessKey gets a new pair");
    assert_eq!(
        entry(&env.secret("job").await.unwrap(), "accessKeyId"),
        second_id
    );
}

#[tokio::test]
async fn a_foreign_secret_with_the_name_is_never_touched() {
    let env = TestEnv::with_operator("access-foreign").await;
    let foreign = Secret {
        metadata: ObjectMeta {
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
    apply(&env, "apiVersion: keyward.dev/v1alpha1\nkind: AccessKey\nmetadata: {name: clash}\nspec: {serviceAccountName: app, secretName: taken}\n").await;
    let refused = wait_ready(&env, "clash", "False").await;
    let ready = refused.status.unwrap().conditions.remove(0);
    assert_eq!(ready.reason, "SecretNameConflict");
    assert!(
        ready.message.contains("Set spec.secretName"),
        "{}",
        ready.message
    );
    // The refusal at this generation was written by the pass that read the foreign Secret:
    // proof that the operator saw it, and a pass writes the Secret before its status.
    let after = env.secret("taken").await.unwrap();
    assert_eq!(after.resource_version(), foreign.resource_version());

    // Pointing it elsewhere resolves it.
    apply(&env, "apiVersion: keyward.dev/v1alpha1\nkind: AccessKey\nmetadata: {name: clash}\nspec: {serviceAccountName: app, secretName: clash-pair}\n").await;
    wait_ready(&env, "clash", "True").await;
    assert!(env.secret("clash-pair").await.is_some());
    assert_eq!(
        env.secret("taken").await.unwrap().resource_version(),
        foreign.resource_version()
    );
}
