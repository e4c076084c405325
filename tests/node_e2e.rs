//! `helm install` as users run it (issue 14): the chart's pods from an image built here, on
//! the real node of the local cluster (`hack/local-cluster.sh up DIR --node`), through the
//! real kubelet's probes, with the chart's own ServiceAccount and RBAC and no impersonation.
//!
//! The cluster's directory comes from `KEYWARD_TEST_CLUSTER_DIR`. Without a node there (no
//! `DIR/node/containerd.sock`) the tests print a SKIPPED line on stderr, past the harness's
//! capture, and pass. The image is `KEYWARD_TEST_IMAGE` (repository:tag, already loaded into
//! the node) or else built and loaded here with `hack/image.sh DIR` (a release build of the
//! musl binary, minutes the first time).
//!
//! Each test installs a release into its TestEnv's store namespace (where the chart's operator
//! keeps material, as `keyward-system` would) and applies Keys in the test namespace, which the
//! operator is confined to, so that it never reconciles another test's Keys on the shared
//! cluster: with the chart's cluster-wide RBAC through `extraArgs: [--watch-namespace=...]`,
//! and in namespaced mode through `watchNamespace`.

#[path = "common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use common::TestEnv;
use common::helm::Release;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Pods start in seconds, but an image pull or a probe period may add some.
const POD_CONVERGE: Duration = Duration::from_secs(120);
/// The in-cluster client for /metrics: busybox, imported into the node by local-cluster.sh.
const CLIENT_IMAGE: &str = "keyward.local/busybox:1.35";

// --- the node and the image ------------------------------------------------------------------

/// The cluster directory, if its cluster has a node; otherwise prints SKIPPED and gives None.
fn node_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("KEYWARD_TEST_CLUSTER_DIR").map(PathBuf::from);
    let why = match &dir {
        None => "KEYWARD_TEST_CLUSTER_DIR is not set".to_string(),
        Some(d) if !d.join("node/containerd.sock").exists() => format!(
            "the cluster in {} has no node (start it with hack/local-cluster.sh up DIR --node)",
            d.display()
        ),
        Some(_) => return dir,
    };
    // Straight to stderr: the test harness captures eprintln! of passing tests.
    let _ = writeln!(std::io::stderr(), "SKIPPED (not passed): {test}: {why}");
    None
}

/// The operator image on the node, built and loaded once per test binary.
fn image(dir: &Path) -> (String, String) {
    static IMAGE: OnceLock<String> = OnceLock::new();
    let reference = IMAGE.get_or_init(|| {
        if let Ok(reference) = std::env::var("KEYWARD_TEST_IMAGE") {
            return reference;
        }
        let out = Command::new(Path::new(ROOT).join("hack/image.sh"))
            .arg(dir)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("running hack/image.sh");
        assert!(
            out.status.success(),
            "hack/image.sh {} failed",
            dir.display()
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        stdout
            .lines()
            .last()
            .expect("an image reference")
            .to_string()
    });
    let (repository, tag) = reference.rsplit_once(':').expect("repository:tag");
    (repository.to_string(), tag.to_string())
}

// --- what runs on the node ------------------------------------------------------------------

async fn within<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "not {what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The release's pods once the Deployment has rolled out: `replicas` Ready, all of the
/// current template, no old ones left. Their names.
async fn rolled_out(env: &TestEnv, release: &Release, replicas: i32) -> Vec<String> {
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &release.namespace);
    within(
        "rolled out with every replica Ready",
        POD_CONVERGE,
        || async {
            let d = deployments.get(&release.fullname()).await.ok()?;
            let status = d.status?;
            let done = d.metadata.generation == status.observed_generation
                && status.replicas == Some(replicas)
                && status.updated_replicas == Some(replicas)
                && status.ready_replicas == Some(replicas);
            if !done {
                return None;
            }
            let running = release_pods(env, release).await;
            (running.len() == replicas as usize).then_some(running)
        },
    )
    .await
}

/// The pod holding the release's Lease (identities are `<pod name>-<suffix>`).
async fn leader(env: &TestEnv, release: &Release, pods: &[String]) -> String {
    within("a leader among the pods", POD_CONVERGE, || {
        leader_now(env, release, pods)
    })
    .await
}

/// The pod of `pods` that holds the release's Lease now, if one does.
async fn leader_now(env: &TestEnv, release: &Release, pods: &[String]) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &release.namespace);
    let lease = leases.get_opt(&release.fullname()).await.ok()??;
    let holder = lease.spec?.holder_identity?;
    pods.iter()
        .find(|p| holder.starts_with(&format!("{p}-")))
        .cloned()
}

/// The names of the release's pods that are not being deleted.
async fn release_pods(env: &TestEnv, release: &Release) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &release.namespace);
    let selector = format!("app.kubernetes.io/instance={}", release.name);
    let listed = pods.list(&ListParams::default().labels(&selector)).await;
    listed.map_or_else(
        |_| Vec::new(),
        |l| {
            l.items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .map(|p| p.name_any())
                .collect()
        },
    )
}

/// GETs `url` from a pod (busybox wget) in the test namespace; its output.
async fn get_from_pod(env: &TestEnv, name: &str, url: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65534},
            "containers": [{
                "name": "get",
                "image": CLIENT_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                // Not -T: the timeout makes Debian's static busybox 1.35 wget segfault.
                "command": ["/bin/wget", "-O", "-", url],
            }],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create client pod");
    let phase = within("the client pod finished", POD_CONVERGE, || async {
        let phase = pods.get(name).await.ok()?.status?.phase?;
        matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
    })
    .await;
    let log = pods
        .logs(name, &LogParams::default())
        .await
        .unwrap_or_default();
    assert_eq!(phase, "Succeeded", "wget {url} from a pod failed:\n{log}");
    let _ = pods.delete(name, &DeleteParams::default()).await;
    log
}

fn key_from_example(name: &str) -> String {
    let text = std::fs::read_to_string(format!("{ROOT}/examples/aes-256.yaml")).unwrap();
    let mut key: Value = serde_yaml::from_str(&text).unwrap();
    key["metadata"]["name"] = json!(name);
    serde_yaml::to_string(&key).unwrap()
}

// --- the scenario ---------------------------------------------------------------------------

/// Install, a Key, /metrics through the Service from a pod, leader failover, upgrade,
/// uninstall: with `mode` values (how the operator is confined) on top of the image's.
async fn chart_on_the_node(test: &str, dir: &Path, mode: impl Fn(&TestEnv) -> Value) {
    let (repository, tag) = image(dir);
    let env = TestEnv::new(test).await;
    let mut values = json!({
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        // Scrape allowed from the test namespace (NetworkPolicies are not enforced on the
        // local node, but the values say what a user would set).
        "networkPolicy": {"metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": env.namespace}}}]},
    });
    merge(&mut values, mode(&env));
    let mut release = Release::install(&env.store_namespace, &values, true);

    // Two replicas Ready through the kubelet's probes, as the chart's ServiceAccount.
    let pods = rolled_out(&env, &release, 2).await;
    let pod_api: Api<Pod> = Api::namespaced(env.client.clone(), &release.namespace);
    for name in &pods {
        let pod = pod_api.get(name).await.unwrap();
        let spec = pod.spec.unwrap();
        assert_eq!(
            spec.service_account_name.as_deref(),
            Some(release.fullname().as_str())
        );
        assert_eq!(
            spec.containers[0].image.as_deref(),
            Some(format!("{repository}:{tag}").as_str())
        );
    }

    // A Key from examples/, made Ready by the pod that leads.
    env.apply_key(&key_from_example("first")).await;
    env.wait_ready("first").await;
    assert!(
        env.store("first").await.is_some(),
        "no material store for first"
    );

    // /metrics from a pod, through the Service's ClusterIP (kube-proxy).
    let services: Api<Service> = Api::namespaced(env.client.clone(), &release.namespace);
    let service = services
        .get(&format!("{}-metrics", release.fullname()))
        .await
        .unwrap();
    let ip = service.spec.unwrap().cluster_ip.unwrap();
    let metrics = get_from_pod(&env, "scrape", &format!("http://{ip}:8080/metrics")).await;
    assert!(
        metrics.contains("keyward_reconciles_total"),
        "no keyward metrics:\n{metrics}"
    );

    // The leader's pod deleted: the other replica takes the Lease and serves a new Key
    // within the Lease's duration (15 s), plus time to reconcile.
    let first_leader = leader(&env, &release, &pods).await;
    let started = Instant::now();
    pod_api
        .delete(&first_leader, &DeleteParams::default())
        .await
        .unwrap();
    env.apply_key(&key_from_example("after-failover")).await;
    env.wait_ready("after-failover").await;
    // The other replica, or the Deployment's replacement for the deleted pod if it started
    // first: either way a pod other than the deleted one, serving under the Lease.
    let next_leader = within("a new leader", POD_CONVERGE, || async {
        let others = release_pods(&env, &release).await;
        let others: Vec<String> = others.into_iter().filter(|p| *p != first_leader).collect();
        leader_now(&env, &release, &others).await
    })
    .await;
    assert_ne!(next_leader, first_leader);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(45),
        "failover and a new key took {took:?}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "{test}: failover to {next_leader}, new key Ready after {took:?}"
    );

    // helm upgrade with changed values rolls every pod.
    let before = rolled_out(&env, &release, 2).await;
    merge(&mut values, json!({"logLevel": "debug"}));
    let upgraded = release.upgrade(&values);
    assert_eq!(upgraded["status"], "deployed", "{upgraded:#}");
    let after = within("every pod replaced", POD_CONVERGE, || async {
        let now = rolled_out(&env, &release, 2).await;
        now.iter().all(|p| !before.contains(p)).then_some(now)
    })
    .await;
    let pod = pod_api.get(&after[0]).await.unwrap();
    let args = pod.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap_or_default();
    assert!(args.contains(&"--log-level=debug".to_string()), "{args:?}");
    env.apply_key(&key_from_example("after-upgrade")).await;
    env.wait_ready("after-upgrade").await;

    // helm uninstall: CRDs, Keys and material stay.
    release.uninstall();
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    assert!(
        crds.get_opt("keys.keyward.dev").await.unwrap().is_some(),
        "the Key CRD went"
    );
    for key in ["first", "after-failover", "after-upgrade"] {
        assert!(
            env.keys().get_opt(key).await.unwrap().is_some(),
            "Key {key} went"
        );
        assert!(env.store(key).await.is_some(), "the material of {key} went");
    }
}

fn merge(base: &mut Value, extra: Value) {
    if let (Value::Object(base), Value::Object(extra)) = (base, extra) {
        for (k, v) in extra {
            match base.get_mut(&k) {
                Some(existing @ Value::Object(_)) if v.is_object() => merge(existing, v),
                _ => {
                    base.insert(k, v);
                }
            }
        }
    }
}

#[tokio::test]
async fn chart_runs_on_the_node_with_cluster_wide_rbac() {
    let test = "chart_runs_on_the_node_with_cluster_wide_rbac";
    let Some(dir) = node_dir(test) else { return };
    chart_on_the_node(
        test,
        &dir,
        |env| json!({"extraArgs": [format!("--watch-namespace={}", env.namespace)]}),
    )
    .await;
}

#[tokio::test]
async fn chart_runs_on_the_node_in_namespaced_mode() {
    let test = "chart_runs_on_the_node_in_namespaced_mode";
    let Some(dir) = node_dir(test) else { return };
    chart_on_the_node(
        test,
        &dir,
        |env| json!({"watchNamespace": env.namespace, "crds": {"install": false}}),
    )
    .await;
}
