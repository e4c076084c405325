//! Helm through hack/helm.py (the real Helm v4 SDK, see tests/helm_e2e/main.rs), and a release
//! of the chart that a test installs and that is uninstalled if the test does not.

use std::process::{Command, Stdio};

use serde_json::Value;

use super::kubeconfig_path;

pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/keyward");
const HELM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hack/helm.py");

// --- Helm through hack/helm.py ---------------------------------------------------------

/// Runs hack/helm.py; its JSON answer, or its stderr.
pub fn helm_result(args: &[&str]) -> Result<Value, String> {
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

pub fn helm(args: &[&str]) -> Value {
    helm_result(args).unwrap_or_else(|e| panic!("helm.py {args:?} failed:\n{e}"))
}

/// `kw` and the random suffix of the test's namespace (its store namespace's too): releases of
/// tests running at once differ, and so do the cluster-wide objects named after them.
fn release_name(namespace: &str) -> String {
    let namespace = namespace.strip_suffix("-kw").unwrap_or(namespace);
    format!("kw{}", &namespace[namespace.len() - 8..])
}

/// A Helm release in a test's namespace; uninstalled on drop if the test did not, so that no
/// ClusterRole outlives a failed test.
pub struct Release {
    pub name: String,
    pub namespace: String,
    installed: bool,
    /// What the install applied, as Helm recorded it.
    pub manifest: String,
}

impl Release {
    /// Installs the chart (client-side apply: see the module comment).
    pub fn install(namespace: &str, values: &Value, take_ownership: bool) -> Release {
        // The guard first: a failed install may leave objects (ClusterRoles among them).
        let mut release = Release {
            name: release_name(namespace),
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

    pub fn fullname(&self) -> String {
        format!("{}-keyward", self.name)
    }

    pub fn upgrade(&self, values: &Value) -> Value {
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

    pub fn uninstall(&mut self) -> Value {
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
