//! The chart as files and as rendered objects: `helm template` and `helm lint` through
//! hack/helm.py, finding rendered objects, the RBAC rules the operator needs, and the chart's
//! values (schema, values.yaml, README).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::{CHART, helm, helm_result};

/// One rendered object, with where it came from.
#[derive(Debug)]
pub struct Rendered {
    template: String,
    object: Value,
}

/// `helm template` (values checked against values.schema.json first): every object, in
/// template order; NOTES.txt is returned apart.
pub fn render(values: Value, namespace: &str) -> Result<(Vec<Rendered>, String), String> {
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

pub fn kinds(objects: &[Rendered]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|r| r.object["kind"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    kinds
}

/// Every object's name, in template order.
pub fn names(objects: &[Rendered]) -> Vec<String> {
    objects
        .iter()
        .map(|r| r.object["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

pub fn find<'a>(objects: &'a [Rendered], kind: &str, name: &str) -> &'a Value {
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

/// The rules the operator needs on Keys, KeyVersions, AccessKeys, Secrets and Events: exactly the calls
/// it makes, whether granted by a ClusterRole or a Role.
pub fn operator_rules() -> Value {
    json!([
        {"apiGroups": ["keyward.dev"], "resources": ["keys", "keyversions", "accesskeys"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["keyward.dev"], "resources": ["keys"], "verbs": ["patch"]},
        {"apiGroups": ["keyward.dev"], "resources": ["keys/status", "keyversions/status", "accesskeys/status"],
         "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["secrets"],
         "verbs": ["get", "list", "watch", "create", "update", "delete"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
    ])
}

pub fn lease_rules() -> Value {
    json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
            "verbs": ["get", "create", "update"]}])
}

pub fn account_id_rules() -> Value {
    json!([{"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["kube-system"],
            "verbs": ["get"]}])
}

pub fn assert_binding(binding: &Value, role_kind: &str, role: &str, sa: &str, sa_namespace: &str) {
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

pub fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);
    &containers[0]
}

pub fn args(deployment: &Value) -> Vec<String> {
    serde_json::from_value(container(deployment)["args"].clone()).unwrap()
}

pub fn chart_yaml() -> Value {
    let text = std::fs::read_to_string(Path::new(CHART).join("Chart.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// Lint findings of severity warning (2) or error (3), and the errors.
pub fn lint_problems(values: Option<Value>) -> Vec<String> {
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

pub fn namespaced_values() -> Value {
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
pub fn schema_leaves(schema: &Value, prefix: &str, out: &mut Vec<String>) {
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
pub fn values_yaml_comments() -> BTreeMap<String, bool> {
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

/// The value with every whole-number float written as an integer.
pub fn integral(value: Value) -> Value {
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
