//! Linting and rendering the chart (no cluster needed): strict lint, a strict values schema,
//! and what the default and the namespaced renders make, object by object.

use std::path::Path;

use kube::ResourceExt;
use serde_json::{Value, json};

use crate::CHART;
use crate::chart::{
    Rendered, account_id_rules, args, assert_binding, chart_yaml, container, find, integral, kinds,
    lease_rules, lint_problems, namespaced_values, operator_rules, render, schema_leaves,
    values_yaml_comments,
};

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
        // The development aids are set under `development` only, never by accident.
        (
            json!({"extraArgs": ["--pending-window-unit=1s"]}),
            "/extraArgs/0",
        ),
        (
            json!({"extraArgs": ["--log-level=debug", "--pending-window-unit", "1s"]}),
            "/extraArgs/1",
        ),
        (json!({"pendingWindowUnit": "1s"}), "pendingWindowUnit"),
        (
            json!({"development": {"pendingWindowUnit": "1 second"}}),
            "/development/pendingWindowUnit",
        ),
        // An empty peer is no restriction anyone meant.
        (
            json!({"networkPolicy": {"metricsFrom": [{}]}}),
            "/networkPolicy/metricsFrom/0",
        ),
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
fn the_pending_window_unit_is_set_under_development_only_and_warned_about() {
    let flag = "--pending-window-unit";
    let (objects, notes) = render(json!({}), "keyward").unwrap();
    let deployment = find(&objects, "Deployment", "kw-keyward");
    let rendered = serde_json::to_string(deployment).unwrap();
    assert!(!rendered.contains(flag), "{rendered}");
    assert!(
        !rendered.contains("KEYWARD_PENDING_WINDOW_UNIT"),
        "{rendered}"
    );
    assert!(!notes.contains("WARNING"), "{notes}");

    let values = json!({"development": {"pendingWindowUnit": "1s"}});
    let (objects, notes) = render(values, "keyward").unwrap();
    let args = args(find(&objects, "Deployment", "kw-keyward"));
    assert_eq!(
        args.iter()
            .filter(|a| a.starts_with(flag))
            .collect::<Vec<_>>(),
        [&format!("{flag}=1s")]
    );
    assert!(
        notes.contains("WARNING: development.pendingWindowUnit is 1s"),
        "{notes}"
    );
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
            "CustomResourceDefinition",
            "Deployment",
            "NetworkPolicy",
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
    assert_cluster_wide_rbac(&objects);

    // The Deployment: two replicas electing a leader, restricted pods, probes on port http.
    let deployment = find(&objects, "Deployment", "kw-keyward");
    assert_restricted_deployment(deployment);

    // The metrics Service selects the operator pods.
    assert_service_selects_pods(&objects, deployment);

    // /metrics is for monitoring only: a NetworkPolicy lets in the monitoring namespace alone.
    assert_default_network_policy(&objects, deployment);

    // The CRDs are the generated ones, plus the keep policy (and the chart's labels).
    assert_kept_crds(&objects, &notes);
}

/// The operator's ClusterRole and its binding, the kube-system read (no accountId), and the
/// leader election Role in the release namespace.
fn assert_cluster_wide_rbac(objects: &[Rendered]) {
    let operator = find(objects, "ClusterRole", "keyward-system-kw-keyward");
    assert_eq!(operator["rules"], operator_rules());
    assert_binding(
        find(objects, "ClusterRoleBinding", "keyward-system-kw-keyward"),
        "ClusterRole",
        "keyward-system-kw-keyward",
        "kw-keyward",
        "keyward-system",
    );
    // No accountId: read the kube-system namespace, and no other.
    let account = find(
        objects,
        "ClusterRole",
        "keyward-system-kw-keyward-account-id",
    );
    assert_eq!(account["rules"], account_id_rules());
    assert_binding(
        find(
            objects,
            "ClusterRoleBinding",
            "keyward-system-kw-keyward-account-id",
        ),
        "ClusterRole",
        "keyward-system-kw-keyward-account-id",
        "kw-keyward",
        "keyward-system",
    );
    // Leader election: Leases in the release namespace only.
    let lease = find(objects, "Role", "kw-keyward-leader-election");
    assert_eq!(lease["metadata"]["namespace"], "keyward-system");
    assert_eq!(lease["rules"], lease_rules());
    assert_binding(
        find(objects, "RoleBinding", "kw-keyward-leader-election"),
        "Role",
        "kw-keyward-leader-election",
        "kw-keyward",
        "keyward-system",
    );
}

/// Two replicas electing a leader, restricted pods, probes on port http, the default
/// arguments.
fn assert_restricted_deployment(deployment: &Value) {
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
}

/// The default NetworkPolicy: the operator pods' port http from the namespace `monitoring`
/// only (the probes come from the kubelet, which NetworkPolicy does not filter), and egress to
/// the API server's ports only.
fn assert_default_network_policy(objects: &[Rendered], deployment: &Value) {
    let policy = find(objects, "NetworkPolicy", "kw-keyward");
    assert_eq!(policy["metadata"]["namespace"], "keyward-system");
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
        json!([{"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}])
    );
}

/// The metrics Service selects the operator pods, as the Deployment does.
fn assert_service_selects_pods(objects: &[Rendered], deployment: &Value) {
    let service = find(objects, "Service", "kw-keyward-metrics");
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
}

/// The CRDs are the generated ones, plus the keep policy (and the chart's labels); NOTES.txt
/// says they are kept.
fn assert_kept_crds(objects: &[Rendered], notes: &str) {
    for crd in keyward::api::crds() {
        let name = crd.name_any();
        let mut rendered = find(objects, "CustomResourceDefinition", &name).clone();
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
            "Role",
            "RoleBinding",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]
    );
    // The material stores: Secrets (and their events) in the release namespace, the
    // operator's store namespace.
    let stores = find(&objects, "Role", "kw-keyward-stores");
    assert_eq!(stores["metadata"]["namespace"], "keyward-system");
    assert_eq!(
        stores["rules"],
        json!([
            {"apiGroups": [""], "resources": ["secrets"],
             "verbs": ["get", "list", "watch", "create", "update", "delete"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
        ])
    );
    assert_binding(
        find(&objects, "RoleBinding", "kw-keyward-stores"),
        "Role",
        "kw-keyward-stores",
        "kw-keyward",
        "keyward-system",
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
    assert_service_monitor(&objects);

    // The NetworkPolicy: metrics from the given peers only; egress to the API server only.
    assert_network_policy(&objects, deployment);

    // Without peers, no ingress at all; disabled, no policy.
    let (objects, _) = render(
        json!({"networkPolicy": {"metricsFrom": []}}),
        "keyward-system",
    )
    .unwrap();
    let policy = find(&objects, "NetworkPolicy", "kw-keyward");
    assert_eq!(policy["spec"]["ingress"], json!([]));
    let (objects, _) = render(
        json!({"networkPolicy": {"enabled": false}}),
        "keyward-system",
    )
    .unwrap();
    assert!(!kinds(&objects).contains(&"NetworkPolicy".to_string()));

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

/// The ServiceMonitor scrapes /metrics on the Service's http-metrics port, with the values'
/// interval and labels.
fn assert_service_monitor(objects: &[Rendered]) {
    let monitor = find(objects, "ServiceMonitor", "kw-keyward");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(
        monitor["spec"]["endpoints"],
        json!([{"port": "http-metrics", "path": "/metrics", "scheme": "http", "interval": "30s"}])
    );
    let service = find(objects, "Service", "kw-keyward-metrics");
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
}

/// The NetworkPolicy of [`namespaced_values`]: metrics from the given peers only; egress to
/// the API server only.
fn assert_network_policy(objects: &[Rendered], deployment: &Value) {
    let policy = find(objects, "NetworkPolicy", "kw-keyward");
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
}
