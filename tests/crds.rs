//! The CRD YAML in crds/ is generated from the Rust types and must never drift from them.

use kube::ResourceExt;

#[test]
fn crds_directory_matches_the_rust_types() {
    assert_generated_crds("crds");
}

/// The Helm chart renders its CRDs from a copy under the chart (templates cannot read outside
/// it), which must be byte-identical to crds/.
#[test]
fn helm_chart_copy_of_the_crds_matches_the_rust_types() {
    assert_generated_crds("charts/keyward/files/crds");
}

/// `dir` (relative to the repository) holds exactly one file per CRD, as `keyward crd
/// --out-dir` writes them.
fn assert_generated_crds(dir: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    for crd in keyward::api::crds() {
        let file = path.join(format!("{}.yaml", crd.name_any()));
        let on_disk = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            on_disk == keyward::api::crd_yaml(&crd),
            "{} is stale or missing: regenerate with `cargo run -- crd --out-dir {dir}`",
            file.display()
        );
    }
    let files = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .count();
    assert_eq!(
        files,
        keyward::api::crds().len(),
        "{dir}/ holds a file for no CRD"
    );
}

#[test]
fn key_crd_is_namespaced_with_short_name_cmk_and_the_printer_columns() {
    let crd = keyward::api::crds().remove(0);
    assert_eq!(crd.spec.group, "keyward.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["cmk".to_string()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version.subresources.as_ref().unwrap().status.is_some(),
        "status subresource"
    );
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        ["KeySpec", "Usage", "State", "Rotation", "Ready", "Age"]
    );
}

#[test]
fn every_spec_and_status_field_is_documented_for_kubectl_explain() {
    let crd = keyward::api::crds().remove(0);
    let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
    let mut undocumented = Vec::new();
    walk(
        &schema["openAPIV3Schema"]["properties"]["spec"],
        "spec",
        &mut undocumented,
    );
    walk(
        &schema["openAPIV3Schema"]["properties"]["status"],
        "status",
        &mut undocumented,
    );
    assert!(
        undocumented.is_empty(),
        "fields without a description: {undocumented:?}"
    );
}

fn walk(schema: &serde_json::Value, path: &str, undocumented: &mut Vec<String>) {
    let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) else {
        return;
    };
    for (name, field) in properties {
        let field_path = format!("{path}.{name}");
        if field
            .get("description")
            .and_then(|d| d.as_str())
            .is_none_or(str::is_empty)
        {
            undocumented.push(field_path.clone());
        }
        walk(field, &field_path, undocumented);
        if let Some(items) = field.get("items") {
            walk(items, &field_path, undocumented);
        }
    }
}
