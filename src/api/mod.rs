//! The resources users write, and the KMS value sets they use.

pub mod key;
pub mod key_version;
pub mod kms;
pub mod labels;

pub use key::{Key, KeyMetadata, KeyRequest, KeyStatus};
pub use key_version::KeyVersion;
pub use kms::{AutomaticRotation, KeySpec, KeyState, KeyUsage, Origin, ProtectionLevel};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The CustomResourceDefinitions of every keyward resource.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![Key::crd(), KeyVersion::crd()]
}

/// One CRD as the YAML document kept in `crds/<name>.yaml`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    serde_yaml::to_string(crd).expect("a CRD always serializes")
}
