//! The resources users write, and the KMS value sets they use.

pub mod access_key;
pub mod key;
pub mod key_version;
pub mod kms;
pub mod labels;

pub use access_key::AccessKey;
pub use key::{ImportParameters, Key, KeyMetadata, KeyRequest, KeyStatus};
pub use key_version::KeyVersion;
pub use kms::{AutomaticRotation, KeySpec, KeyState, KeyUsage, Origin, ProtectionLevel};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// An object name as the API server requires of Keys and Secrets (a DNS-1123 subdomain; at
/// most 253 characters, checked separately). A reference that does not match can never name one.
pub const OBJECT_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Whether `name` matches [`OBJECT_NAME_PATTERN`] and fits in 253 characters: whether a Key
/// could have it as its name.
pub fn is_object_name(name: &str) -> bool {
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        bytes.first().is_some_and(alphanumeric)
            && bytes.last().is_some_and(alphanumeric)
            && bytes.iter().all(|b| alphanumeric(b) || *b == b'-')
    };
    name.len() <= 253 && name.split('.').all(label_ok)
}

/// The CustomResourceDefinitions of every keyward resource.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![Key::crd(), KeyVersion::crd(), AccessKey::crd()]
}

/// One CRD as the YAML document kept in `crds/<name>.yaml`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    serde_yaml::to_string(crd).expect("a CRD always serializes")
}

#[cfg(test)]
mod tests {
    use super::is_object_name;

    #[test]
    fn object_names_are_dns_subdomains() {
        for name in ["a", "payments-data-key", "a.b-c.0", "0", &"a".repeat(253)] {
            assert!(is_object_name(name), "{name:?} is an object name");
        }
        let too_long = "a".repeat(254);
        for name in [
            "", ".", "..", "a..b", ".a", "a.", "-a", "a-", "A", "a b", "a\t", "a\u{7f}", "é",
            "%2e%2e", "a<b>", "a_b", &too_long,
        ] {
            assert!(!is_object_name(name), "{name:?} is not an object name");
        }
    }
}
