//! The resources users write, and the KMS value sets they use.

pub mod key;
pub mod kms;
pub mod labels;

pub use key::{Key, KeyMetadata, KeyRequest, KeyStatus};
pub use kms::{AutomaticRotation, KeySpec, KeyState, KeyUsage, Origin, ProtectionLevel};

use kube::CustomResourceExt;

/// The CRD manifests of every keyward resource, as the YAML documents in `crds/`.
pub fn crd_yaml() -> String {
    let crds = [Key::crd()];
    crds.iter()
        .map(|crd| serde_yaml::to_string(crd).expect("a CRD always serializes"))
        .collect::<Vec<_>>()
        .join("---\n")
}
