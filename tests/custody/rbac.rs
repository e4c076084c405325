//! A namespaced operator confined by Roles, as the chart's namespaced mode grants them
//! (charts/keyward/templates/rbac.yaml): Keys, KeyVersions, Secrets and events in the namespace
//! it watches, Secrets and events in the store namespace, and nothing cluster-wide. That is
//! enough for it to create a key (its store in the store namespace), to schedule the deletion
//! of a deleted Key's material, and to restore it.

use std::process::Command;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use keyward::store::DeletionCause;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::common::cluster::impersonating_kubeconfig;
use crate::common::operator::OwnOperator;
use crate::common::scratch::Scratch;
use crate::common::{OPERATOR_LOG_LEVEL, TestEnv, eventually, key_manifest};
use crate::{Held, consumer_with, store_event};

/// The operator's ServiceAccount, in the store namespace (the chart's release namespace).
const SERVICE_ACCOUNT: &str = "keyward";

#[tokio::test]
async fn a_namespaced_operator_needs_secrets_only_in_its_namespace_and_the_store_namespace() {
    let env = TestEnv::new("namespaced-rbac").await;
    let user = grant_namespaced_roles(&env).await;
    let scratch = Scratch::new(&env.namespace);
    let kubeconfig = impersonating_kubeconfig(&user, &scratch);
    assert_confined(&kubeconfig, &env).await;
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
    command
        .args(["run", "--watch-namespace", &env.namespace])
        .args(["--store-namespace", &env.store_namespace])
        .args(["--log-level", OPERATOR_LOG_LEVEL])
        .args(["--http-addr", "127.0.0.1:0"])
        // The chart's accountId: the default would read kube-system, a cluster-wide grant.
        .args(["--account-id", "1234567890"])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KEYWARD_WATCH_NAMESPACE")
        .env_remove("KEYWARD_STORE_NAMESPACE");
    let mut operator = OwnOperator::start(&env, "namespaced-operator.log", command);

    let manifest = key_manifest("confined", "{keySpec: RSA_2048, pendingWindowInDays: 7}");
    env.apply_key(&manifest).await;
    let held = Held::of(&env, "confined").await;
    assert!(
        env.store("confined").await.is_some(),
        "no store in the store namespace"
    );
    assert!(
        env.secret(&crate::former::former_store_name("confined"))
            .await
            .is_none()
    );

    // Deleted: the deletion is recorded in the store (written in the store namespace).
    env.keys()
        .delete("confined", &DeleteParams::default())
        .await
        .unwrap();
    let deletion = eventually("the deletion scheduled", || async {
        env.record("confined").await.and_then(|r| r.deletion)
    })
    .await;
    assert_eq!(deletion.cause, DeletionCause::KeyDeleted);
    store_event(&env, "confined", "KeyDeletionScheduled").await;
    // Applied again: the same key.
    env.apply_key(&manifest).await;
    consumer_with(&env, "confined", &held.consumer).await;
    assert_eq!(Held::of(&env, "confined").await, held);

    assert!(operator.running(), "the operator exited");
    let log = operator.log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(
        refused.is_empty(),
        "the operator was refused something: {refused:#?}"
    );
}

/// Creates the operator's ServiceAccount and binds it with Roles only: the chart's operator
/// rules in the watched namespace, Secrets and events in the store namespace. Returns the
/// user name the ServiceAccount authenticates as.
async fn grant_namespaced_roles(env: &TestEnv) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), &env.store_namespace);
    let account = ServiceAccount {
        metadata: meta(SERVICE_ACCOUNT),
        ..ServiceAccount::default()
    };
    accounts
        .create(&PostParams::default(), &account)
        .await
        .expect("create ServiceAccount");
    let secrets = rule(
        "",
        &["secrets"],
        &["get", "list", "watch", "create", "update", "delete"],
    );
    let events = rule("events.k8s.io", &["events"], &["create"]);
    // keyward.operatorRules of charts/keyward/templates/_helpers.tpl.
    let operator_rules = vec![
        rule(
            "keyward.dev",
            &["keys", "keyversions", "accesskeys"],
            &["get", "list", "watch"],
        ),
        rule("keyward.dev", &["keys"], &["patch"]),
        rule(
            "keyward.dev",
            &["keys/status", "keyversions/status", "accesskeys/status"],
            &["patch"],
        ),
        secrets.clone(),
        events.clone(),
    ];
    bind(env, &env.namespace, "keyward", operator_rules).await;
    bind(
        env,
        &env.store_namespace,
        "keyward-stores",
        vec![secrets, events],
    )
    .await;
    format!(
        "system:serviceaccount:{}:{SERVICE_ACCOUNT}",
        env.store_namespace
    )
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    }
}

/// A Role `name` with `rules` in `namespace`, bound to the operator's ServiceAccount.
async fn bind(env: &TestEnv, namespace: &str, name: &str, rules: Vec<PolicyRule>) {
    let role = Role {
        metadata: meta(name),
        rules: Some(rules),
    };
    let binding = RoleBinding {
        metadata: meta(name),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: name.into(),
        },
        subjects: Some(vec![Subject {
            api_group: None,
            kind: "ServiceAccount".into(),
            name: SERVICE_ACCOUNT.into(),
            namespace: Some(env.store_namespace.clone()),
        }]),
    };
    let create = PostParams::default();
    let roles: Api<Role> = Api::namespaced(env.client.clone(), namespace);
    roles.create(&create, &role).await.expect("create Role");
    let bindings: Api<RoleBinding> = Api::namespaced(env.client.clone(), namespace);
    bindings
        .create(&create, &binding)
        .await
        .expect("create RoleBinding");
}

/// The impersonated user reads Secrets in the two namespaces, and in no other: the test
/// proves what it says only if the grant is that narrow.
async fn assert_confined(kubeconfig: &std::path::Path, env: &TestEnv) {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let lp = kube::api::ListParams::default();
    for namespace in [&env.namespace, &env.store_namespace] {
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(client.clone(), namespace);
        // RBAC takes a moment to see new bindings.
        eventually(&format!("Secrets of {namespace} readable"), || async {
            secrets.list_metadata(&lp).await.ok()
        })
        .await;
    }
    let everywhere: Api<k8s_openapi::api::core::v1::Secret> = Api::all(client.clone());
    let refused = everywhere.list_metadata(&lp).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 403),
        "the operator's user may list Secrets cluster-wide: {:?}",
        refused.map(|l| l.items.len())
    );
    let elsewhere: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client, "kube-system");
    assert!(elsewhere.list_metadata(&lp).await.is_err());
}
