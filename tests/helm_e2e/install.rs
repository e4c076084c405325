//! The chart on the API server: installed, upgraded and uninstalled cluster-wide and
//! namespaced; what its ServiceAccount may do; and the operator, run with the Deployment's
//! arguments as that ServiceAccount, reconciling every example.

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use keyward::api::Key;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::cluster::{
    Release, arn_account, assert_material_present, assert_probes_answer, can, client_from,
    crds_kept, impersonating_kubeconfig, reconcile_examples, start_chart_operator,
    wait_lease_held_by,
};
use crate::common::TestEnv;
use crate::common::scratch::Scratch;

#[tokio::test]
async fn helm_install_upgrade_uninstall_cluster_wide_and_the_chart_rbac_reconciles_examples() {
    let env = TestEnv::new("helm-cluster-wide").await;
    // The harness has installed the CRDs already (every test shares them), so Helm adopts
    // them, as `helm install --take-ownership` does on a cluster whose CRDs were applied by
    // hand. keyVersionMinInterval 0s lets the example KeyVersion be created together with
    // its Key.
    let values = json!({"keyVersionMinInterval": "0s", "logLevel": "info"});
    let mut release = Release::install(&env.namespace, &values, true);
    let fullname = release.fullname();
    let sa = format!("system:serviceaccount:{}:{fullname}", env.namespace);

    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    let deployment = deployments.get(&fullname).await.unwrap();
    assert_eq!(deployment.spec.replicas, Some(2));
    let cluster_role = format!("{}-{fullname}", env.namespace);
    let cluster_roles: Api<ClusterRole> = Api::all(env.client.clone());
    assert!(
        cluster_roles
            .get_opt(&cluster_role)
            .await
            .unwrap()
            .is_some()
    );
    // The release holds the CRDs, with the keep policy. (Checked in the release's manifest,
    // which is what `helm uninstall` consults: other tests' harness replaces the live CRDs at
    // any time, dropping Helm's annotations.)
    let released_crds = crds_in_release(&release);
    assert_eq!(
        released_crds,
        [
            "accesskeys.keyward.dev",
            "keys.keyward.dev",
            "keyversions.keyward.dev"
        ]
    );

    // Upgrade: a changed value reaches the Deployment.
    assert_upgrade_reaches_deployment(&release, &deployments, &fullname).await;

    // What the ServiceAccount may do, cluster-wide.
    let scratch = Scratch::new(&env.namespace);
    let kubeconfig = impersonating_kubeconfig(&sa, &scratch);
    let as_sa = client_from(&kubeconfig).await;
    let ns = env.namespace.as_str();
    assert_cluster_wide_permissions(&as_sa, ns).await;

    // The operator as the ServiceAccount, with the Deployment's arguments; confined to this
    // test's namespace so it cannot touch other tests' Keys on the shared cluster (the RBAC
    // is still the ClusterRole's). No --account-id: it reads kube-system.
    let keys = reconcile_examples_as_the_chart(&env, &release, &kubeconfig, ns).await;

    // Uninstall: the chart's objects go, the CRDs, the Keys and their material stay.
    let uninstalled = release.uninstall();
    let info = uninstalled["info"].as_str().unwrap_or_default();
    assert!(info.contains("kept due to the resource policy"), "{info}");
    for crd in &released_crds {
        assert!(
            info.contains(&format!("[CustomResourceDefinition] {crd}")),
            "{info}"
        );
    }
    assert!(deployments.get_opt(&fullname).await.unwrap().is_none());
    assert!(
        cluster_roles
            .get_opt(&cluster_role)
            .await
            .unwrap()
            .is_none()
    );
    let service_accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), &env.namespace);
    assert!(service_accounts.get_opt(&fullname).await.unwrap().is_none());
    crds_kept(&env.client).await;
    assert_eq!(
        env.keys()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        keys.len()
    );
    assert_material_present(&env, &keys).await;
}

/// The operator as the release's ServiceAccount, with the Deployment's arguments, confined to
/// `ns`: its probes answer, it takes the release's Lease, and it reconciles every example
/// (their ARNs carry the kube-system namespace's uid as the account); returns the Keys.
async fn reconcile_examples_as_the_chart(
    env: &TestEnv,
    release: &Release,
    kubeconfig: &Path,
    ns: &str,
) -> Vec<Key> {
    let fullname = release.fullname();
    let mut operator = start_chart_operator(env, release, kubeconfig, Some(ns)).await;
    assert_probes_answer(&mut operator).await;
    wait_lease_held_by(env, &fullname, &format!("{fullname}-0")).await;
    let keys = reconcile_examples(env).await;
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let kube_system = namespaces.get("kube-system").await.unwrap();
    for key in &keys {
        assert_eq!(arn_account(key), kube_system.uid().unwrap());
    }
    drop(operator);
    keys
}

/// The CRDs the release holds (in its manifest), sorted; each has the keep policy.
fn crds_in_release(release: &Release) -> Vec<String> {
    let mut released_crds = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&release.manifest) {
        let object: Value = serde::Deserialize::deserialize(document).unwrap();
        if object["kind"] == "CustomResourceDefinition" {
            assert_eq!(
                object["metadata"]["annotations"]["helm.sh/resource-policy"],
                "keep"
            );
            released_crds.push(object["metadata"]["name"].as_str().unwrap().to_string());
        }
    }
    released_crds.sort();
    released_crds
}

/// An upgrade with a changed value reaches the Deployment.
async fn assert_upgrade_reaches_deployment(
    release: &Release,
    deployments: &Api<Deployment>,
    fullname: &str,
) {
    let upgraded =
        release.upgrade(&json!({"keyVersionMinInterval": "0s", "logLevel": "keyward=debug,info"}));
    assert_eq!(upgraded["status"], "deployed", "{upgraded:#}");
    assert_eq!(upgraded["revision"], 2);
    let deployment = deployments.get(fullname).await.unwrap();
    let args = deployment.spec.template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(
        args.contains(&"--log-level=keyward=debug,info".to_string()),
        "{args:?}"
    );
}

/// What the ServiceAccount of a cluster-wide release may do: everything the operator needs in
/// every namespace, Leases in its own (`ns`), and nothing more.
async fn assert_cluster_wide_permissions(as_sa: &Client, ns: &str) {
    for (verbs, resource) in [
        (&["get", "list", "watch", "patch"][..], "keyward.dev/keys"),
        (&["get", "list", "watch"][..], "keyward.dev/keyversions"),
        (&["get", "list", "watch"][..], "keyward.dev/accesskeys"),
        (&["patch"][..], "keyward.dev/keys/status"),
        (&["patch"][..], "keyward.dev/keyversions/status"),
        (&["patch"][..], "keyward.dev/accesskeys/status"),
        (
            &["get", "list", "watch", "create", "update", "delete"][..],
            "/secrets",
        ),
        (&["create"][..], "events.k8s.io/events"),
    ] {
        for verb in verbs {
            // In every namespace at once (the operator's list and watch) and in any one.
            for namespace in ["", "default"] {
                assert!(
                    can(as_sa, verb, resource, namespace, "").await,
                    "the ServiceAccount may not {verb} {resource} in {namespace:?}"
                );
            }
        }
    }
    assert!(can(as_sa, "get", "/namespaces", "", "kube-system").await);
    for verb in ["get", "create", "update"] {
        assert!(can(as_sa, verb, "coordination.k8s.io/leases", ns, "").await);
    }
    for (verb, resource, namespace, name) in [
        ("patch", "/secrets", ns, ""),
        ("update", "keyward.dev/keys", ns, ""),
        ("delete", "keyward.dev/keys", ns, ""),
        ("get", "/namespaces", "", "default"),
        ("list", "/namespaces", "", ""),
        ("get", "coordination.k8s.io/leases", "default", ""),
        ("create", "/configmaps", ns, ""),
    ] {
        assert!(
            !can(as_sa, verb, resource, namespace, name).await,
            "the ServiceAccount may {verb} {resource} in {namespace:?} {name}"
        );
    }
}

#[tokio::test]
async fn helm_namespaced_install_confines_the_service_account_to_its_namespace() {
    let env = TestEnv::new("helm-namespaced").await;
    let elsewhere = TestEnv::new("helm-elsewhere").await;
    // A team's install: the CRDs are the cluster admin's (crds.install=false), and an account
    // id is given, so the release creates nothing cluster-scoped.
    let values = json!({
        "watchNamespace": env.namespace,
        "crds": {"install": false},
        "accountId": "1234567890123456",
        "keyVersionMinInterval": "0s",
    });
    let mut release = Release::install(&env.namespace, &values, false);
    let fullname = release.fullname();
    let roles: Api<Role> = Api::namespaced(env.client.clone(), &env.namespace);
    assert!(roles.get_opt(&fullname).await.unwrap().is_some());
    let cluster_roles: Api<ClusterRole> = Api::all(env.client.clone());
    let cluster_scoped = cluster_roles
        .list(
            &ListParams::default().labels(&format!("app.kubernetes.io/instance={}", release.name)),
        )
        .await
        .unwrap();
    assert!(cluster_scoped.items.is_empty());

    let scratch = Scratch::new(&env.namespace);
    let sa = format!("system:serviceaccount:{}:{fullname}", env.namespace);
    let kubeconfig = impersonating_kubeconfig(&sa, &scratch);
    let as_sa = client_from(&kubeconfig).await;

    // Secrets in its own namespace, and nowhere else.
    let own = env.namespace.as_str();
    let other = elsewhere.namespace.as_str();
    assert_confined_permissions(&as_sa, own, other).await;

    // The same through the API, as the ServiceAccount: a Secret elsewhere cannot be read.
    let planted = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("not-yours".into()),
            ..Default::default()
        },
        string_data: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    };
    elsewhere
        .secrets()
        .create(&PostParams::default(), &planted)
        .await
        .unwrap();
    let foreign: Api<Secret> = Api::namespaced(as_sa.clone(), other);
    match foreign.get("not-yours").await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("reading another namespace's Secret: {other:?}"),
    }
    let own_secrets: Api<Secret> = Api::namespaced(as_sa.clone(), own);
    own_secrets.list(&ListParams::default()).await.unwrap();

    // The operator as the ServiceAccount, exactly with the Deployment's arguments.
    let mut operator = start_chart_operator(&env, &release, &kubeconfig, None).await;
    assert_probes_answer(&mut operator).await;
    wait_lease_held_by(&env, &fullname, &format!("{fullname}-0")).await;
    let keys = reconcile_examples(&env).await;
    for key in &keys {
        assert_eq!(arn_account(key), "1234567890123456");
    }
    drop(operator);

    release.uninstall();
    assert!(roles.get_opt(&fullname).await.unwrap().is_none());
    crds_kept(&env.client).await;
    assert_material_present(&env, &keys).await;
}

/// What the ServiceAccount of a namespaced release may do: Secrets, events and Keys in its own
/// namespace, and nowhere else.
async fn assert_confined_permissions(as_sa: &Client, own: &str, other: &str) {
    for verb in ["get", "list", "watch", "create", "update", "delete"] {
        assert!(
            can(as_sa, verb, "/secrets", own, "").await,
            "{verb} secrets in {own}"
        );
        assert!(
            !can(as_sa, verb, "/secrets", other, "").await,
            "{verb} secrets in {other}"
        );
        assert!(
            !can(as_sa, verb, "/secrets", "", "").await,
            "{verb} secrets in every namespace"
        );
    }
    assert!(can(as_sa, "create", "events.k8s.io/events", own, "").await);
    assert!(!can(as_sa, "create", "events.k8s.io/events", other, "").await);
    assert!(can(as_sa, "watch", "keyward.dev/keys", own, "").await);
    assert!(!can(as_sa, "list", "keyward.dev/keys", other, "").await);
    assert!(!can(as_sa, "list", "keyward.dev/keys", "", "").await);
    assert!(!can(as_sa, "get", "/namespaces", "", "kube-system").await);
}
