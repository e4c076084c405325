//! Helm on the API server: releases installed in a test's namespace (and uninstalled if the
//! test does not), what a ServiceAccount may do, and the operator run as the chart's Deployment
//! would run it; and what the tests check of the result.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use keyward::api::Key;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};

use crate::common::operator::OwnOperator;
use crate::common::{CONVERGE, TestEnv, http_get};

pub use crate::common::helm::Release;

pub use crate::common::cluster::impersonating_kubeconfig;

pub async fn client_from(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Whether the client's user may `verb` `resource` (`group/resource[/subresource]`) in
/// `namespace` ("" for all namespaces or cluster-scoped), per a SelfSubjectAccessReview.
pub async fn can(client: &Client, verb: &str, resource: &str, namespace: &str, name: &str) -> bool {
    let (group, resource) = resource.split_once('/').unwrap();
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.to_string()),
                resource: Some(resource.to_string()),
                subresource,
                verb: Some(verb.to_string()),
                namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
                name: (!name.is_empty()).then(|| name.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .expect("SelfSubjectAccessReview");
    answer.status.expect("review status").allowed
}

/// The operator binary run as the chart's Deployment would run it: the Deployment's own
/// arguments (HTTP on a free loopback port instead of 0.0.0.0:8080, and, when `confine` is
/// given, watching that namespace only), the downward-API environment, and the chart's
/// ServiceAccount through an impersonating kubeconfig.
pub async fn start_chart_operator(
    env: &TestEnv,
    release: &Release,
    kubeconfig: &Path,
    confine: Option<&str>,
) -> OwnOperator {
    start_chart_operator_with(env, release, kubeconfig, confine, |a| a).await
}

/// [`start_chart_operator`], each argument first passed through `adapt` (a file the pod would
/// have mounted, an address it would listen on).
pub async fn start_chart_operator_with(
    env: &TestEnv,
    release: &Release,
    kubeconfig: &Path,
    confine: Option<&str>,
    adapt: impl Fn(String) -> String,
) -> OwnOperator {
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    let deployment = deployments.get(&release.fullname()).await.unwrap();
    let container = &deployment.spec.template.spec.unwrap().containers[0];
    let mut args: Vec<String> = container
        .args
        .clone()
        .unwrap()
        .into_iter()
        .map(|a| {
            if a.starts_with("--http-addr=") {
                "--http-addr=127.0.0.1:0".to_string()
            } else {
                adapt(a)
            }
        })
        .collect();
    if let Some(namespace) = confine {
        args.push(format!("--watch-namespace={namespace}"));
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
    command
        .args(&args)
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", format!("{}-0", release.fullname()))
        .env("POD_NAMESPACE", &env.namespace)
        .env_remove("KEYWARD_WATCH_NAMESPACE");
    // In the harness's log directory: printed when the test fails.
    OwnOperator::start(env, "operator-helm.log", command)
}

/// The probes' paths answer 200 (readiness once the operator has synced).
pub async fn assert_probes_answer(operator: &mut OwnOperator) {
    let addr = operator.http_addr().await;
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    let deadline = Instant::now() + CONVERGE;
    while http_get(addr, "/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "/readyz never answered 200");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(http_get(addr, "/metrics").await.0, 200);
}

/// Applies examples/ and waits until every Key is Ready and every KeyVersion Created;
/// returns the Keys.
pub async fn reconcile_examples(env: &TestEnv) -> Vec<Key> {
    let names = env.apply_examples("Key").await;
    let requests = env.apply_examples("KeyVersion").await;
    assert!(names.len() >= 5 && !requests.is_empty());
    let mut keys = Vec::new();
    for name in &names {
        keys.push(env.wait_ready(name).await);
    }
    for name in &requests {
        env.wait_key_version(name, "Created", |reason| reason == "Created")
            .await;
    }
    keys
}

pub fn arn_account(key: &Key) -> String {
    let arn = &key
        .status
        .as_ref()
        .unwrap()
        .key_metadata
        .as_ref()
        .unwrap()
        .arn;
    arn.split(':').nth(3).unwrap().to_string()
}

/// Every Key's material store and consumer Secret exist.
pub async fn assert_material_present(env: &TestEnv, keys: &[Key]) {
    for key in keys {
        // The chart's operator keeps stores in the release namespace.
        let store = keyward::store::store_name(&key.namespace().unwrap(), &key.name_any());
        let store = env
            .secret(&store)
            .await
            .unwrap_or_else(|| panic!("material store {store} is gone"));
        assert_eq!(store.type_.as_deref(), Some("keyward.dev/key-material"));
        let consumer = key.status.as_ref().unwrap().secret_name.clone().unwrap();
        assert!(
            env.secret(&consumer).await.is_some(),
            "Secret {consumer} is gone"
        );
    }
}

pub async fn wait_lease_held_by(env: &TestEnv, lease: &str, pod: &str) {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.namespace);
    let deadline = Instant::now() + CONVERGE;
    loop {
        let holder = leases
            .get_opt(lease)
            .await
            .unwrap()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity);
        if holder.as_deref().is_some_and(|h| h.starts_with(pod)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Lease {lease} not held by {pod}: {holder:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn crds_kept(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in keyward::api::crds() {
        let live = crds
            .get_opt(&crd.name_any())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("CRD {} was deleted", crd.name_any()));
        assert!(live.metadata.deletion_timestamp.is_none());
    }
}
