//! One tenant cannot decide another's outcome: what a tenant writes in its own namespace
//! (Secrets forged with keyward's labels and annotations, its own asymmetric keys up to the
//! limit) changes nothing for another namespace. Needs an operator watching every namespace,
//! so this binary holds this one test and runs alone.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::env::create_namespace;
use common::operator::OwnOperator;
use common::{CONVERGE, TestEnv, kubeconfig_path};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use keyward::api::Key;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt};

/// A Secret dressed as a store of keyward's, claiming `versions` asymmetric versions.
fn forged_store(name: &str, versions: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/managed-by".into(), "keyward".into()),
                ("keyward.dev/role".into(), "material".into()),
                ("keyward.dev/key".into(), "victim-rsa".into()),
            ])),
            annotations: Some(BTreeMap::from([
                ("keyward.dev/key".into(), "victim-rsa".into()),
                ("keyward.dev/key-spec".into(), "RSA_2048".into()),
                ("keyward.dev/versions".into(), versions.into()),
            ])),
            ..Default::default()
        },
        type_: Some("keyward.dev/key-material".into()),
        data: Some(BTreeMap::from([(
            "key.json".into(),
            ByteString(b"{}".to_vec()),
        )])),
        ..Default::default()
    }
}

fn rsa_key(name: &str, namespace: &str) -> Key {
    let manifest = format!(
        "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: {name}, namespace: \
         {namespace}}}\nspec: {{keySpec: RSA_2048, keyUsage: SIGN/VERIFY}}\n"
    );
    serde_yaml::from_str(&manifest).expect("a Key manifest")
}

/// The Ready reasons of the `count` Keys of `keys`, once each has one.
async fn settled_reasons(keys: &Api<Key>, count: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + CONVERGE;
    loop {
        let listed = keys.list(&Default::default()).await.expect("list Keys");
        let reasons: Vec<String> = listed
            .items
            .iter()
            .filter_map(common::ready_reason)
            .collect();
        if reasons.len() == count {
            return reasons;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the Keys did not all settle: {reasons:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn forged_secrets_and_a_full_namespace_change_nothing_for_another_tenant() {
    let env = TestEnv::new("tenants").await;
    let attacker = format!("{}-a", env.namespace);
    create_namespace(&env.client, &attacker).await;
    let attacker_secrets: Api<Secret> = Api::namespaced(env.client.clone(), &attacker);
    let attacker_keys: Api<Key> = Api::namespaced(env.client.clone(), &attacker);

    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
    command
        .args(["run", "--store-namespace", &env.store_namespace])
        .args(["--max-asymmetric-key-versions", "3"])
        .args(["--key-version-min-interval", "0s"])
        .args(["--log-level", common::OPERATOR_LOG_LEVEL])
        .args(["--http-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", kubeconfig_path());
    let mut operator = OwnOperator::start(&env, "operator-cluster-wide.log", command);

    // Forged once the operator has moved the stores of the former layout (it leaves a marker),
    // as a tenant would at any time after an upgrade.
    let deadline = std::time::Instant::now() + CONVERGE;
    while env
        .stores()
        .get_opt("keyward-layout-moved")
        .await
        .unwrap()
        .is_none()
    {
        assert!(operator.running(), "the operator exited");
        assert!(
            std::time::Instant::now() < deadline,
            "the move never completed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Forgeries: a count that wraps any sum, one past any number, and the victim's store name.
    let mut forged = Vec::new();
    for (name, versions) in [
        ("wrap", u64::MAX.to_string()),
        ("huge", "9".repeat(40)),
        (
            &keyward::store::store_name(&env.namespace, "victim-rsa")[..],
            "49".to_string(),
        ),
    ] {
        let created = attacker_secrets
            .create(&PostParams::default(), &forged_store(name, &versions))
            .await
            .expect("forge a store");
        forged.push(created);
    }

    // The attacker fills its own namespace's share: three initial versions, the fourth refused.
    for name in ["a1", "a2", "a3", "a4"] {
        attacker_keys
            .create(&PostParams::default(), &rsa_key(name, &attacker))
            .await
            .expect("create the attacker's Key");
    }
    // Which three: whichever the operator took first.
    let reasons = settled_reasons(&attacker_keys, 4).await;
    let ready = reasons.iter().filter(|r| *r == "KeyReady").count();
    let refused = reasons
        .iter()
        .filter(|r| *r == "RejectedLimitExceeded")
        .count();
    assert_eq!((ready, refused), (3, 1), "{reasons:?}");

    // The victim's key and its new version are served as if the attacker were not there.
    env.apply_key(
        "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: victim-rsa}\nspec: \
         {keySpec: RSA_2048, keyUsage: SIGN/VERIFY}\n",
    )
    .await;
    env.wait_ready("victim-rsa").await;
    env.apply_key_version(
        "apiVersion: keyward.dev/v1alpha1\nkind: KeyVersion\nmetadata: {name: victim-next}\nspec: \
         {keyRef: {name: victim-rsa}}\n",
    )
    .await;
    let request = env
        .wait_key_version("victim-next", "Created", |reason| reason == "Created")
        .await;
    assert!(request.status.unwrap().key_version.is_some());
    assert!(operator.running(), "the operator died");

    // The forgeries are neither counted, nor touched, nor taken for a store.
    for before in &forged {
        let after = attacker_secrets.get(&before.name_any()).await.unwrap();
        assert_eq!(after.resource_version(), before.resource_version());
    }
    let record = env.record("victim-rsa").await.expect("the victim's store");
    assert_eq!(record.versions.len(), 2);

    let _ = Api::<Namespace>::all(env.client.clone())
        .delete(&attacker, &DeleteParams::default())
        .await;
}
