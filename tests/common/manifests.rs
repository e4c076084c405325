//! Manifests: Keys and KeyVersions written as a user would (flow YAML), and the example files
//! of examples/.

use std::path::{Path, PathBuf};

/// A Key manifest: `spec` is flow YAML, e.g. `{keySpec: RSA_2048}`.
pub fn key_manifest(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

/// A KeyVersion manifest asking Key `key` for a new version.
pub fn key_version_manifest(name: &str, key: &str) -> String {
    format!(
        "apiVersion: keyward.dev/v1alpha1\nkind: KeyVersion\nmetadata: {{name: {name}}}\nspec: {{keyRef: {{name: {key}}}}}\n"
    )
}

pub fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}
