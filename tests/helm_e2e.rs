//! The Helm chart (charts/keyward), proven with the real Helm v4 SDK and the real API server.
//!
//! Helm runs through hack/helm.py (helm-python-sdk, which bundles Helm v4's Go SDK; the script
//! creates its own virtualenv on first use). The rendering tests check the objects the chart
//! makes; the cluster tests install, upgrade and uninstall it, and run the operator as a local
//! process with the Deployment's own arguments and the chart's ServiceAccount (impersonated),
//! so that every Key and KeyVersion of examples/ reconciling proves the chart's RBAC is enough.
//!
//! Server-side apply, on the 1.20 test server: Helm v4 installs with server-side apply by
//! default. That fails there for the CRDs: the server's typed patch refuses the CEL
//! `x-kubernetes-validations` ("failed to create typed patch object: ...
//! x-kubernetes-validations: field not declared in schema"), after every other object was
//! applied, leaving a failed release. Before that, Helm's client-side OpenAPI validation
//! refuses the same unknown field. So the tests install with `--server-side false
//! --disable-openapi-validation` (Helm CLI: `--server-side=false
//! --disable-openapi-validation`): client-side apply creates the CRDs, and the 1.20 server
//! drops the CEL rules as it does for `kubectl create`. Upgrades keep the release's apply
//! method (Helm's "auto"), so they are client-side too. docs/operations.md tells users the same.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{CONVERGE, TestEnv, kubeconfig_path};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use keyward::api::{Key, KeyVersion};
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::{Value, json};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/keyward");
const HELM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hack/helm.py");

// --- Helm through hack/helm.py ---------------------------------------------------------

/// Runs hack/helm.py; its JSON answer, or its stderr.
fn helm_result(args: &[&str]) -> Result<Value, String> {
    let out = Command::new(HELM)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {HELM}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(stderr);
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("helm.py {args:?} printed no JSON ({e}); stderr:\n{stderr}"))
}

fn helm(args: &[&str]) -> Value {
    helm_result(args).unwrap_or_else(|e| panic!("helm.py {args:?} failed:\n{e}"))
}

/// One rendered object, with where it came from.
#[derive(Debug)]
struct Rendered {
    template: String,
    object: Value,
}

/// `helm template` (values checked against values.schema.json first): every object, in
/// template order; NOTES.txt is returned apart.
fn render(values: Value, namespace: &str) -> Result<(Vec<Rendered>, String), String> {
    let values = values.to_string();
    let manifests = helm_result(&[
        "template",
        CHART,
        "--name",
        "kw",
        "--namespace",
        namespace,
        "--values-json",
        &values,
    ])?;
    let mut objects = Vec::new();
    let mut notes = String::new();
    let manifests: BTreeMap<String, String> = serde_json::from_value(manifests).unwrap();
    for (template, text) in manifests {
        if template.ends_with("NOTES.txt") {
            notes = text;
            continue;
        }
        for document in serde_yaml::Deserializer::from_str(&text) {
            let object: Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("{template} renders invalid YAML: {e}"));
            if !object.is_null() {
                objects.push(Rendered {
                    template: template.clone(),
                    object,
                });
            }
        }
    }
    Ok((objects, notes))
}

fn kinds(objects: &[Rendered]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|r| r.object["kind"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    kinds
}

fn find<'a>(objects: &'a [Rendered], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Rendered> = objects
        .iter()
        .filter(|r| r.object["kind"] == kind && r.object["metadata"]["name"] == name)
        .collect();
    match found.as_slice() {
        [one] => &one.object,
        _ => panic!(
            "expected one {kind} {name}, found {}; rendered: {:?}",
            found.len(),
            objects
                .iter()
                .map(|r| format!(
                    "{} {} ({})",
                    r.object["kind"], r.object["metadata"]["name"], r.template
                ))
                .collect::<Vec<_>>()
        ),
    }
}

/// The rules the operator needs on Keys, KeyVersions, Secrets and Events: exactly the calls
/// it makes, whether granted by a ClusterRole or a Role.
fn operator_rules() -> Value {
    json!([
        {"apiGroups": ["keyward.dev"], "resources": ["keys", "keyversions"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["keyward.dev"], "resources": ["keys"], "verbs": ["patch"]},
        {"apiGroups": ["keyward.dev"], "resources": ["keys/status", "keyversions/status"],
         "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["secrets"],
         "verbs": ["get", "list", "watch", "create", "update", "delete"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
    ])
}

fn lease_rules() -> Value {
    json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
            "verbs": ["get", "create", "update"]}])
}

fn account_id_rules() -> Value {
    json!([{"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["kube-system"],
            "verbs": ["get"]}])
}

fn assert_binding(binding: &Value, role_kind: &str, role: &str, sa: &str, sa_namespace: &str) {
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}),
        "{binding:#}"
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": sa, "namespace": sa_namespace}]),
        "{binding:#}"
    );
}

fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);
    &containers[0]
}

fn args(deployment: &Value) -> Vec<String> {
    serde_json::from_value(container(deployment)["args"].clone()).unwrap()
}

fn chart_yaml() -> Value {
    let text = std::fs::read_to_string(Path::new(CHART).join("Chart.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// Lint findings of severity warning (2) or error (3), and the errors.
fn lint_problems(values: Option<Value>) -> Vec<String> {
    let values = values.map(|v| v.to_string());
    let mut args = vec!["lint", CHART, "--strict"];
    if let Some(values) = &values {
        args.extend(["--values-json", values]);
    }
    let report = helm(&args);
    assert_eq!(report["total_charts_linted"], 1, "{report:#}");
    let mut problems: Vec<String> = report["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
        .map(|m| m.to_string())
        .collect();
    problems.extend(
        report["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.to_string()),
    );
    problems
}

fn namespaced_values() -> Value {
    json!({
        "watchNamespace": "team-a",
        "accountId": "1234567890123456",
        "crds": {"install": false},
        "serviceMonitor": {"enabled": true, "interval": "30s", "labels": {"release": "prom"}},
        "networkPolicy": {
            "enabled": true,
            "metricsFrom": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
            ],
            "apiServer": {"cidrs": ["10.0.0.1/32"]},
        },
    })
}

/// The dotted paths of the schema's leaf values (those it does not describe field by field).
fn schema_leaves(schema: &Value, prefix: &str, out: &mut Vec<String>) {
    for (name, property) in schema["properties"].as_object().unwrap() {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if property.get("properties").is_some() {
            schema_leaves(property, &path, out);
        } else {
            out.push(path);
        }
    }
}

/// Each key of values.yaml by dotted path: whether a comment stands right above it.
fn values_yaml_comments() -> BTreeMap<String, bool> {
    let text = std::fs::read_to_string(Path::new(CHART).join("values.yaml")).unwrap();
    let mut commented = BTreeMap::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut after_comment = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let key = trimmed
            .split_once(':')
            .map(|(k, _)| k)
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric()));
        match key {
            _ if trimmed.starts_with('#') => {
                after_comment = true;
                continue;
            }
            Some(key) => {
                while stack.last().is_some_and(|(i, _)| *i >= indent) {
                    stack.pop();
                }
                let mut path: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
                path.push(key);
                commented.insert(path.join("."), after_comment);
                stack.push((indent, key.to_string()));
            }
            None => {}
        }
        after_comment = false;
    }
    commented
}

// --- rendering and linting -------------------------------------------------------------

#[test]
fn chart_lints_clean_in_strict_mode_and_its_schema_refuses_bad_values() {
    assert_eq!(lint_problems(None), Vec::<String>::new());
    assert_eq!(
        lint_problems(Some(namespaced_values())),
        Vec::<String>::new()
    );

    // Every value is in values.yaml with a comment, in the schema, and in the README's table.
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(CHART).join("values.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(schema["additionalProperties"], false);
    let mut leaves = Vec::new();
    schema_leaves(&schema, "", &mut leaves);
    let commented = values_yaml_comments();
    let readme = std::fs::read_to_string(Path::new(CHART).join("README.md")).unwrap();
    for path in leaves.iter().filter(|p| *p != "global") {
        assert_eq!(
            commented.get(path),
            Some(&true),
            "{path}: missing from values.yaml or not commented there"
        );
        assert!(
            readme.contains(&format!("| `{path}` |")),
            "{path} is missing from the README's table of values"
        );
    }

    // The chart deploys the keyward version it was made with.
    let chart = chart_yaml();
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));

    // values.schema.json is strict: types, enums, formats, and no unknown values.
    for (values, complaint) in [
        (json!({"logFormat": "xml"}), "/logFormat"),
        (json!({"replicas": "two"}), "/replicas"),
        (json!({"minRotationInterval": "7"}), "/minRotationInterval"),
        (
            json!({"keyVersionMinInterval": "1w"}),
            "/keyVersionMinInterval",
        ),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        (json!({"watchNamespace": "Team_A"}), "/watchNamespace"),
        (json!({"crds": {"install": "yes"}}), "/crds/install"),
        (json!({"regoin": "cn-hangzhou"}), "regoin"),
        (json!({"networkPolicy": {"enabeld": true}}), "enabeld"),
        // Two replicas without leader election would both reconcile.
        (json!({"leaderElection": {"enabled": false}}), "/replicas"),
    ] {
        match render(values.clone(), "keyward") {
            Ok(_) => panic!("values {values} were accepted"),
            Err(e) => assert!(
                e.contains(complaint),
                "values {values}: expected a complaint about {complaint}, got:\n{e}"
            ),
        }
    }
    render(
        json!({"leaderElection": {"enabled": false}, "replicas": 1}),
        "keyward",
    )
    .expect("one replica without leader election");
}

#[test]
fn default_render_is_cluster_wide_with_exact_rbac_restricted_pods_and_kept_crds() {
    let (objects, notes) = render(json!({}), "keyward-system").unwrap();
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
    );
    let sa = find(&objects, "ServiceAccount", "kw-keyward");
    assert_eq!(sa["metadata"]["namespace"], "keyward-system");

    // Cluster-wide: Keys, KeyVersions, Secrets and Events everywhere, nothing more. The
    // cluster-scoped names carry the release namespace, so releases of the same name in two
    // namespaces do not collide.
    let operator = find(&objects, "ClusterRole", "keyward-system-kw-keyward");
    assert_eq!(operator["rules"], operator_rules());
    assert_binding(
        find(&objects, "ClusterRoleBinding", "keyward-system-kw-keyward"),
        "ClusterRole",
        "keyward-system-kw-keyward",
        "kw-keyward",
        "keyward-system",
    );
    // No accountId: read the kube-system namespace, and no other.
    let account = find(
        &objects,
        "ClusterRole",
        "keyward-system-kw-keyward-account-id",
    );
    assert_eq!(account["rules"], account_id_rules());
    assert_binding(
        find(
            &objects,
            "ClusterRoleBinding",
            "keyward-system-kw-keyward-account-id",
        ),
        "ClusterRole",
        "keyward-system-kw-keyward-account-id",
        "kw-keyward",
        "keyward-system",
    );
    // Leader election: Leases in the release namespace only.
    let lease = find(&objects, "Role", "kw-keyward-leader-election");
    assert_eq!(lease["metadata"]["namespace"], "keyward-system");
    assert_eq!(lease["rules"], lease_rules());
    assert_binding(
        find(&objects, "RoleBinding", "kw-keyward-leader-election"),
        "Role",
        "kw-keyward-leader-election",
        "kw-keyward",
        "keyward-system",
    );

    // The Deployment: two replicas electing a leader, restricted pods, probes on port http.
    let deployment = find(&objects, "Deployment", "kw-keyward");
    assert_eq!(deployment["metadata"]["namespace"], "keyward-system");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "kw-keyward");
    assert_eq!(
        pod["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
               "seccompProfile": {"type": "RuntimeDefault"}})
    );
    let c = container(deployment);
    assert_eq!(
        c["image"],
        format!("ghcr.io/keyward/keyward:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        c["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
               "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
               "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!(
        c["ports"],
        json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "http"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "http"})
    );
    for (kind, resource) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "cpu"),
        ("limits", "memory"),
    ] {
        assert!(c["resources"][kind][resource].is_string(), "{c:#}");
    }
    assert_eq!(
        c["env"],
        json!([
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE",
             "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ])
    );
    assert_eq!(
        args(deployment),
        [
            "run",
            "--region=local",
            "--min-rotation-interval=7d",
            "--max-rotation-interval=730d",
            "--key-version-min-interval=7d",
            "--max-asymmetric-key-versions=50",
            "--log-level=info",
            "--log-format=text",
            "--http-addr=0.0.0.0:8080",
            "--leader-elect",
            "--leader-election-namespace=keyward-system",
            "--leader-election-lease=kw-keyward",
        ]
    );

    // The metrics Service selects the operator pods.
    let service = find(&objects, "Service", "kw-keyward-metrics");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "http-metrics", "port": 8080, "targetPort": "http", "protocol": "TCP"}])
    );
    let pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    let selector = service["spec"]["selector"].as_object().unwrap();
    assert!(!selector.is_empty());
    for (label, value) in selector {
        assert_eq!(
            pod_labels.get(label),
            Some(value),
            "Service selector {label}"
        );
    }
    assert_eq!(
        &deployment["spec"]["selector"]["matchLabels"],
        &service["spec"]["selector"]
    );

    // The CRDs are the generated ones, plus the keep policy (and the chart's labels).
    for crd in keyward::api::crds() {
        let name = crd.name_any();
        let mut rendered = find(&objects, "CustomResourceDefinition", &name).clone();
        let metadata = rendered["metadata"].as_object_mut().unwrap();
        let annotations = metadata.remove("annotations").unwrap();
        assert_eq!(annotations, json!({"helm.sh/resource-policy": "keep"}));
        let labels = metadata.remove("labels").unwrap();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
        let generated: Value = serde_yaml::from_str(&keyward::api::crd_yaml(&crd)).unwrap();
        // Helm's template round trip turns integers into floats (30 -> 30.0): compare values.
        assert_eq!(
            integral(rendered),
            integral(generated),
            "CRD {name} differs from the generated one"
        );
    }
    assert!(
        notes.contains("kept on uninstall"),
        "NOTES.txt says the CRDs are kept:\n{notes}"
    );
}

#[test]
fn namespaced_render_with_service_monitor_and_network_policy() {
    let (objects, _) = render(namespaced_values(), "keyward-system").unwrap();
    // No CRDs, and nothing cluster-scoped at all: accountId is set, so not even the
    // kube-system read.
    assert_eq!(
        kinds(&objects),
        [
            "Deployment",
            "NetworkPolicy",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]
    );
    // The operator's rules, as a Role in the watched namespace only.
    let role = find(&objects, "Role", "kw-keyward");
    assert_eq!(role["metadata"]["namespace"], "team-a");
    assert_eq!(role["rules"], operator_rules());
    let binding = find(&objects, "RoleBinding", "kw-keyward");
    assert_eq!(binding["metadata"]["namespace"], "team-a");
    assert_binding(
        binding,
        "Role",
        "kw-keyward",
        "kw-keyward",
        "keyward-system",
    );
    let lease = find(&objects, "Role", "kw-keyward-leader-election");
    assert_eq!(lease["metadata"]["namespace"], "keyward-system");
    assert_eq!(lease["rules"], lease_rules());

    let deployment = find(&objects, "Deployment", "kw-keyward");
    let args = args(deployment);
    assert!(
        args.contains(&"--watch-namespace=team-a".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--account-id=1234567890123456".to_string()),
        "{args:?}"
    );

    // The ServiceMonitor scrapes /metrics on the Service's http-metrics port.
    let monitor = find(&objects, "ServiceMonitor", "kw-keyward");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(
        monitor["spec"]["endpoints"],
        json!([{"port": "http-metrics", "path": "/metrics", "scheme": "http", "interval": "30s"}])
    );
    let service = find(&objects, "Service", "kw-keyward-metrics");
    for (label, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][label], value);
    }
    assert_eq!(
        monitor["spec"]["namespaceSelector"],
        json!({"matchNames": ["keyward-system"]})
    );

    // The NetworkPolicy: metrics from the given peers only; egress to the API server only.
    let policy = find(&objects, "NetworkPolicy", "kw-keyward");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        policy["spec"]["ingress"],
        json!([{
            "from": [{"namespaceSelector":
                      {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "ports": [{"port": "http", "protocol": "TCP"}],
        }])
    );
    assert_eq!(
        policy["spec"]["egress"],
        json!([{
            "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
            "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
        }])
    );

    // Without peers, no ingress at all.
    let (objects, _) = render(
        json!({"networkPolicy": {"enabled": true}}),
        "keyward-system",
    )
    .unwrap();
    let policy = find(&objects, "NetworkPolicy", "kw-keyward");
    assert_eq!(policy["spec"]["ingress"], json!([]));

    // One replica without leader election: no Lease rules, no --leader-elect.
    let (objects, _) = render(
        json!({"replicas": 1, "leaderElection": {"enabled": false}}),
        "keyward-system",
    )
    .unwrap();
    assert!(!kinds(&objects).contains(&"Role".to_string()));
    let args = self::args(find(&objects, "Deployment", "kw-keyward"));
    assert!(!args.iter().any(|a| a.starts_with("--leader")), "{args:?}");
}

// --- on the API server -----------------------------------------------------------------

/// A Helm release in a test's namespace; uninstalled on drop if the test did not, so that no
/// ClusterRole outlives a failed test.
struct Release {
    name: String,
    namespace: String,
    installed: bool,
    /// What the install applied, as Helm recorded it.
    manifest: String,
}

impl Release {
    /// Installs the chart (client-side apply: see the module comment).
    fn install(namespace: &str, values: &Value, take_ownership: bool) -> Release {
        // The guard first: a failed install may leave objects (ClusterRoles among them).
        let mut release = Release {
            name: format!("kw{}", &namespace[namespace.len() - 8..]),
            namespace: namespace.to_string(),
            installed: true,
            manifest: String::new(),
        };
        let values = values.to_string();
        let kubeconfig = kubeconfig_path();
        let mut args = vec![
            "install",
            CHART,
            &release.name,
            "--namespace",
            namespace,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--values-json",
            &values,
            "--server-side",
            "false",
            "--disable-openapi-validation",
        ];
        if take_ownership {
            args.push("--take-ownership");
        }
        let summary = helm(&args);
        assert_eq!(summary["status"], "deployed", "{summary:#}");
        assert_eq!(summary["revision"], 1);
        release.manifest = summary["manifest"].as_str().unwrap().to_string();
        release
    }

    fn fullname(&self) -> String {
        format!("{}-keyward", self.name)
    }

    fn upgrade(&self, values: &Value) -> Value {
        let values = values.to_string();
        let kubeconfig = kubeconfig_path();
        helm(&[
            "upgrade",
            CHART,
            &self.name,
            "--namespace",
            &self.namespace,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--values-json",
            &values,
            "--disable-openapi-validation",
        ])
    }

    fn uninstall(&mut self) -> Value {
        self.installed = false;
        let kubeconfig = kubeconfig_path();
        helm(&[
            "uninstall",
            &self.name,
            "--namespace",
            &self.namespace,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ])
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.installed {
            let kubeconfig = kubeconfig_path();
            let _ = helm_result(&[
                "uninstall",
                &self.name,
                "--namespace",
                &self.namespace,
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--ignore-not-found",
            ]);
        }
    }
}

/// A private directory for a test's kubeconfig copy, removed afterwards. Not the harness's
/// log directory: that one is printed when a test fails, and a kubeconfig holds a token.
struct Scratch(PathBuf);

impl Scratch {
    fn new(namespace: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("keyward-helm-{namespace}"));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A copy of the test kubeconfig whose user impersonates `user` (the admin may).
fn impersonating_kubeconfig(user: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(kubeconfig_path()).unwrap();
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    for entry in config["users"].as_sequence_mut().unwrap() {
        entry["user"]
            .as_mapping_mut()
            .unwrap()
            .insert("as".into(), user.into());
    }
    let path = dir.join("kubeconfig-impersonating");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    file.write_all(serde_yaml::to_string(&config).unwrap().as_bytes())
        .unwrap();
    path
}

async fn client_from(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Whether the client's user may `verb` `resource` (`group/resource[/subresource]`) in
/// `namespace` ("" for all namespaces or cluster-scoped), per a SelfSubjectAccessReview.
async fn can(client: &Client, verb: &str, resource: &str, namespace: &str, name: &str) -> bool {
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
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    async fn start(
        env: &TestEnv,
        release: &Release,
        kubeconfig: &Path,
        confine: Option<&str>,
    ) -> Operator {
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
                    a
                }
            })
            .collect();
        if let Some(namespace) = confine {
            args.push(format!("--watch-namespace={namespace}"));
        }
        let dir = std::env::temp_dir()
            .join("keyward-tests")
            .join(&env.namespace);
        std::fs::create_dir_all(&dir).unwrap();
        // In the harness's log directory: printed when the test fails.
        let log = dir.join("operator-helm.log");
        let child = Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(&args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", format!("{}-0", release.fullname()))
            .env("POD_NAMESPACE", &env.namespace)
            .env_remove("KEYWARD_WATCH_NAMESPACE")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start keyward");
        Operator { child, log }
    }

    /// Where it serves /healthz, /readyz and /metrics, from its log.
    async fn http_addr(&mut self) -> std::net::SocketAddr {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let found = log
                .lines()
                .find(|l| l.contains("serving /healthz"))
                .and_then(|l| l.split("http_addr=").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|addr| addr.parse().ok());
            if let Some(addr) = found {
                return addr;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the operator exited ({status}):\n{log}");
            }
            assert!(Instant::now() < deadline, "no HTTP endpoint:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET on loopback: the status code.
async fn http_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The probes' paths answer 200 (readiness once the operator has synced).
async fn assert_probes_answer(operator: &mut Operator) {
    let addr = operator.http_addr().await;
    assert_eq!(http_status(addr, "/healthz").await, 200);
    let deadline = Instant::now() + CONVERGE;
    while http_status(addr, "/readyz").await != 200 {
        assert!(Instant::now() < deadline, "/readyz never answered 200");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(http_status(addr, "/metrics").await, 200);
}

/// Applies examples/ and waits until every Key is Ready and every KeyVersion Created;
/// returns the Keys.
async fn reconcile_examples(env: &TestEnv) -> Vec<Key> {
    let names = env.apply_examples("Key").await;
    let requests = env.apply_examples("KeyVersion").await;
    assert!(names.len() >= 5 && !requests.is_empty());
    let mut keys = Vec::new();
    for name in &names {
        keys.push(env.wait_ready(name).await);
    }
    let api: Api<KeyVersion> = Api::namespaced(env.client.clone(), &env.namespace);
    for name in &requests {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let request = api.get(name).await.unwrap();
            let ready = request
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
            if ready.is_some_and(|c| c.reason == "Created") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "KeyVersion {name} was not Created: {:?}",
                ready.map(|c| (&c.reason, &c.message))
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    keys
}

fn arn_account(key: &Key) -> String {
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
async fn assert_material_present(env: &TestEnv, keys: &[Key]) {
    for key in keys {
        let store = keyward::store::store_name(&key.name_any());
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

async fn wait_lease_held_by(env: &TestEnv, lease: &str, pod: &str) {
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

async fn crds_kept(client: &Client) {
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
    assert_eq!(
        released_crds,
        ["keys.keyward.dev", "keyversions.keyward.dev"]
    );

    // Upgrade: a changed value reaches the Deployment.
    let upgraded =
        release.upgrade(&json!({"keyVersionMinInterval": "0s", "logLevel": "keyward=debug,info"}));
    assert_eq!(upgraded["status"], "deployed", "{upgraded:#}");
    assert_eq!(upgraded["revision"], 2);
    let deployment = deployments.get(&fullname).await.unwrap();
    let args = deployment.spec.template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(
        args.contains(&"--log-level=keyward=debug,info".to_string()),
        "{args:?}"
    );

    // What the ServiceAccount may do, cluster-wide.
    let scratch = Scratch::new(&env.namespace);
    let kubeconfig = impersonating_kubeconfig(&sa, &scratch.0);
    let as_sa = client_from(&kubeconfig).await;
    let ns = env.namespace.as_str();
    for (verbs, resource) in [
        (&["get", "list", "watch", "patch"][..], "keyward.dev/keys"),
        (&["get", "list", "watch"][..], "keyward.dev/keyversions"),
        (&["patch"][..], "keyward.dev/keys/status"),
        (&["patch"][..], "keyward.dev/keyversions/status"),
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
                    can(&as_sa, verb, resource, namespace, "").await,
                    "the ServiceAccount may not {verb} {resource} in {namespace:?}"
                );
            }
        }
    }
    assert!(can(&as_sa, "get", "/namespaces", "", "kube-system").await);
    for verb in ["get", "create", "update"] {
        assert!(can(&as_sa, verb, "coordination.k8s.io/leases", ns, "").await);
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
            !can(&as_sa, verb, resource, namespace, name).await,
            "the ServiceAccount may {verb} {resource} in {namespace:?} {name}"
        );
    }

    // The operator as the ServiceAccount, with the Deployment's arguments; confined to this
    // test's namespace so it cannot touch other tests' Keys on the shared cluster (the RBAC
    // is still the ClusterRole's). No --account-id: it reads kube-system.
    let mut operator = Operator::start(&env, &release, &kubeconfig, Some(ns)).await;
    assert_probes_answer(&mut operator).await;
    wait_lease_held_by(&env, &fullname, &format!("{fullname}-0")).await;
    let keys = reconcile_examples(&env).await;
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let kube_system = namespaces.get("kube-system").await.unwrap();
    for key in &keys {
        assert_eq!(arn_account(key), kube_system.uid().unwrap());
    }
    drop(operator);

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
    let kubeconfig = impersonating_kubeconfig(&sa, &scratch.0);
    let as_sa = client_from(&kubeconfig).await;

    // Secrets in its own namespace, and nowhere else.
    let own = env.namespace.as_str();
    let other = elsewhere.namespace.as_str();
    for verb in ["get", "list", "watch", "create", "update", "delete"] {
        assert!(
            can(&as_sa, verb, "/secrets", own, "").await,
            "{verb} secrets in {own}"
        );
        assert!(
            !can(&as_sa, verb, "/secrets", other, "").await,
            "{verb} secrets in {other}"
        );
        assert!(
            !can(&as_sa, verb, "/secrets", "", "").await,
            "{verb} secrets in every namespace"
        );
    }
    assert!(can(&as_sa, "create", "events.k8s.io/events", own, "").await);
    assert!(!can(&as_sa, "create", "events.k8s.io/events", other, "").await);
    assert!(can(&as_sa, "watch", "keyward.dev/keys", own, "").await);
    assert!(!can(&as_sa, "list", "keyward.dev/keys", other, "").await);
    assert!(!can(&as_sa, "list", "keyward.dev/keys", "", "").await);
    assert!(!can(&as_sa, "get", "/namespaces", "", "kube-system").await);

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
    let mut operator = Operator::start(&env, &release, &kubeconfig, None).await;
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

/// The value with every whole-number float written as an integer.
fn integral(value: Value) -> Value {
    match value {
        Value::Number(n)
            if n.as_f64()
                .is_some_and(|f| f.fract() == 0.0 && f.abs() < 1e15) =>
        {
            json!(n.as_f64().unwrap() as i64)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(integral).collect()),
        Value::Object(fields) => {
            Value::Object(fields.into_iter().map(|(k, v)| (k, integral(v))).collect())
        }
        other => other,
    }
}
