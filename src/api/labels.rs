//! Every label, annotation, finalizer and Secret type keyward puts on objects, named once, and
//! how names too long for a label value are shortened.

use sha2::{Digest, Sha256};

/// Set on every Secret keyward creates; the operator's Secret watch selects on it.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "keyward";

/// Label: the owning Key's name, or a stable hash of it when the name is longer than a label
/// value may be (63 characters). Annotation: always the full Key name.
pub const KEY: &str = "keyward.dev/key";

/// On a store: the namespace of its Key. Label, so that a namespaced operator watches and counts
/// only its own namespace's stores; annotation, the value that is checked when the store is read.
pub const KEY_NAMESPACE: &str = "keyward.dev/key-namespace";

/// Annotation: the KMS KeyId the Secret belongs to.
pub const KEY_ID: &str = "keyward.dev/key-id";

/// Label: what the Secret is for, `material` (the store) or `consumer` (what workloads mount).
pub const ROLE: &str = "keyward.dev/role";
pub const ROLE_MATERIAL: &str = "material";
pub const ROLE_CONSUMER: &str = "consumer";

/// Annotation on the store: the key spec, so versions can be counted from metadata alone (the
/// limit on asymmetric versions), without reading any material.
pub const KEY_SPEC: &str = "keyward.dev/key-spec";
/// Annotation on the store: how many versions it holds.
pub const VERSIONS: &str = "keyward.dev/versions";
/// Annotation on the store: when its material will be destroyed, for `kubectl get -o yaml`.
pub const DELETE_DATE: &str = "keyward.dev/delete-date";
/// Annotation on the consumer Secret: the key's state (its material is there only if Enabled).
pub const KEY_STATE: &str = "keyward.dev/key-state";

/// Role of keyward's copy of an AccessKey pair (in the store namespace), and of the Secret the
/// pair is issued into (in the AccessKey's namespace).
pub const ROLE_CREDENTIAL: &str = "access-key";
pub const ROLE_ACCESS_KEY_PAIR: &str = "access-key-pair";
/// Label on a credential (looked up by it) and annotation on an issued pair: the AccessKeyId.
pub const ACCESS_KEY_ID: &str = "keyward.dev/access-key-id";
/// Annotation: the AccessKey's name (label: its name or a hash, as for [`KEY`]).
pub const ACCESS_KEY: &str = "keyward.dev/access-key";
/// Annotation on a credential: the uid of the AccessKey it was issued for.
pub const ACCESS_KEY_UID: &str = "keyward.dev/access-key-uid";
/// Annotation on a credential: the ServiceAccount requests signed with it act as.
pub const SERVICE_ACCOUNT: &str = "keyward.dev/service-account";
/// Annotation on a Key or KeyVersion the KMS API created: the user who asked for it.
pub const CREATED_BY: &str = "keyward.dev/created-by";

/// The finalizer that holds a protected Key's deletion.
pub const DELETION_PROTECTION_FINALIZER: &str = "keyward.dev/deletion-protection";

/// Secret type of the Secret workloads mount.
pub const CONSUMER_SECRET_TYPE: &str = "keyward.dev/key";
/// Secret type of the material store, the record every consumer Secret is rebuilt from.
pub const MATERIAL_SECRET_TYPE: &str = "keyward.dev/key-material";
/// Secret type of keyward's copy of an AccessKey pair.
pub const CREDENTIAL_SECRET_TYPE: &str = "keyward.dev/access-key-credential";
/// Secret type of the Secret an AccessKey pair is issued into.
pub const ACCESS_KEY_PAIR_SECRET_TYPE: &str = "keyward.dev/access-key";
/// Secret type of the marker that says the stores of the former layout were moved.
pub const LAYOUT_MARKER_SECRET_TYPE: &str = "keyward.dev/layout-marker";

/// The selector of every Secret keyward manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGED_BY_VALUE}")
}

/// A label value naming the Key: the name itself when it fits in a label value, otherwise a
/// readable prefix and a hash of the full name (Key names may be up to 253 characters).
pub fn key_label_value(key_name: &str) -> String {
    const MAX: usize = 63;
    if key_name.len() <= MAX {
        return key_name.to_string();
    }
    let digest = short_hash(key_name);
    let prefix = prefix_chars(key_name, MAX - digest.len() - 1).trim_end_matches(['-', '.']);
    format!("{prefix}-{digest}")
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary (names
/// from user input may hold any characters).
pub fn prefix_chars(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A short, stable hash for names and labels (not a security boundary).
pub fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..5].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_key_names_are_their_own_label_value() {
        assert_eq!(key_label_value("payments"), "payments");
        assert_eq!(key_label_value(&"a".repeat(63)), "a".repeat(63));
    }

    #[test]
    fn long_key_names_become_a_stable_valid_label_value() {
        let name = format!("{}.{}", "a".repeat(200), "b".repeat(52));
        let value = key_label_value(&name);
        assert!(value.len() <= 63, "{value}");
        assert!(
            value.starts_with("aaaa") && !value.contains(".-"),
            "{value}"
        );
        assert_eq!(value, key_label_value(&name));
        assert_ne!(
            value,
            key_label_value(&format!("{}c", &name[..name.len() - 1]))
        );
    }
}
