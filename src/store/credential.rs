//! How an AccessKey pair is kept (pure): keyward's own copy, the credential, in the store
//! namespace beside the key material (tenants can neither read nor forge it), and the issued
//! Secret in the AccessKey's namespace, which holds nothing the credential does not.
//!
//! The credential names the AccessKey it was issued for by namespace, name and uid: a pair is
//! valid only while that very AccessKey exists, so deleting the AccessKey (or its namespace)
//! revokes it at once, and an AccessKey created again under the same name gets a new pair.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::ObjectMeta;

use crate::api::AccessKey;
use crate::api::labels;
use crate::kms::material::SecretBytes;

/// The entries of both Secrets, as the issue pins them for workloads.
pub const ACCESS_KEY_ID_ENTRY: &str = "accessKeyId";
pub const ACCESS_KEY_SECRET_ENTRY: &str = "accessKeySecret";

/// AccessKeyIds look like Alibaba Cloud's (24 characters, a fixed prefix) so that tools that
/// check the shape accept them; the prefix says they are keyward's.
const ID_PREFIX: &str = "KWAK";
const ID_RANDOM_CHARS: usize = 20;
/// As long as Alibaba Cloud's AccessKey secrets: 30 characters of 62, about 178 bits.
const SECRET_CHARS: usize = 30;

/// The credential Secret's name for AccessKey `name` of `namespace` (distinct for every
/// AccessKey of every namespace, within 253 characters).
pub fn credential_name(namespace: &str, name: &str) -> String {
    super::name_in_store_namespace(namespace, name, ".keyward-accesskey")
}

/// An issued AccessKey pair and whom it acts as. `Debug` never shows the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub access_key_id: String,
    pub secret: SecretBytes,
    /// The AccessKey it was issued for.
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The ServiceAccount (of `namespace`) requests signed with it act as.
    pub service_account: String,
}

/// Why a credential Secret cannot be used: named, never showing its entries.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("credential Secret {name} is not usable: {why}")]
pub struct InvalidCredential {
    name: String,
    why: &'static str,
}

impl Credential {
    /// A new pair for `access_key`, from the OS CSPRNG.
    pub fn issue(access_key: &AccessKey) -> Result<Self, getrandom::Error> {
        Ok(Credential {
            access_key_id: format!("{ID_PREFIX}{}", random_alphanumeric(ID_RANDOM_CHARS)?),
            secret: SecretBytes::new(random_alphanumeric(SECRET_CHARS)?.into_bytes()),
            namespace: access_key.namespace().unwrap_or_default(),
            name: access_key.name_any(),
            uid: access_key.uid().unwrap_or_default(),
            service_account: access_key.spec.service_account_name.clone(),
        })
    }

    /// Whether this credential was issued for exactly this AccessKey (not an earlier one of
    /// the same name) and still acts as the ServiceAccount it names.
    pub fn belongs_to(&self, access_key: &AccessKey) -> bool {
        access_key.uid().as_deref() == Some(self.uid.as_str())
            && access_key.namespace().as_deref() == Some(self.namespace.as_str())
            && access_key.spec.service_account_name == self.service_account
    }

    /// The Kubernetes user requests signed with it act as.
    pub fn username(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }

    /// keyward's copy, in the store namespace.
    pub fn to_secret(&self, store_namespace: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(credential_name(&self.namespace, &self.name)),
                namespace: Some(store_namespace.to_string()),
                labels: Some(BTreeMap::from([
                    (
                        labels::MANAGED_BY.to_string(),
                        labels::MANAGED_BY_VALUE.to_string(),
                    ),
                    (
                        labels::ROLE.to_string(),
                        labels::ROLE_CREDENTIAL.to_string(),
                    ),
                    (labels::KEY_NAMESPACE.to_string(), self.namespace.clone()),
                    (
                        labels::ACCESS_KEY_ID.to_string(),
                        self.access_key_id.clone(),
                    ),
                ])),
                annotations: Some(BTreeMap::from([
                    (labels::KEY_NAMESPACE.to_string(), self.namespace.clone()),
                    (labels::ACCESS_KEY.to_string(), self.name.clone()),
                    (labels::ACCESS_KEY_UID.to_string(), self.uid.clone()),
                    (
                        labels::SERVICE_ACCOUNT.to_string(),
                        self.service_account.clone(),
                    ),
                ])),
                ..ObjectMeta::default()
            },
            type_: Some(labels::CREDENTIAL_SECRET_TYPE.to_string()),
            data: Some(self.entries()),
            immutable: Some(true),
            ..Secret::default()
        }
    }

    /// The Secret issued to the AccessKey's namespace.
    pub fn issued_secret(&self, secret_name: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(secret_name.to_string()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([
                    (
                        labels::MANAGED_BY.to_string(),
                        labels::MANAGED_BY_VALUE.to_string(),
                    ),
                    (
                        labels::ROLE.to_string(),
                        labels::ROLE_ACCESS_KEY_PAIR.to_string(),
                    ),
                    (
                        labels::ACCESS_KEY.to_string(),
                        labels::key_label_value(&self.name),
                    ),
                ])),
                annotations: Some(BTreeMap::from([
                    (labels::ACCESS_KEY.to_string(), self.name.clone()),
                    (
                        labels::ACCESS_KEY_ID.to_string(),
                        self.access_key_id.clone(),
                    ),
                ])),
                ..ObjectMeta::default()
            },
            type_: Some(labels::ACCESS_KEY_PAIR_SECRET_TYPE.to_string()),
            data: Some(self.entries()),
            ..Secret::default()
        }
    }

    fn entries(&self) -> BTreeMap<String, ByteString> {
        BTreeMap::from([
            (
                ACCESS_KEY_ID_ENTRY.to_string(),
                ByteString(self.access_key_id.clone().into_bytes()),
            ),
            (
                ACCESS_KEY_SECRET_ENTRY.to_string(),
                ByteString(self.secret.expose().to_vec()),
            ),
        ])
    }

    /// Whether `secret` holds exactly this pair.
    pub fn is_in(&self, secret: &Secret) -> bool {
        secret.data.as_ref() == Some(&self.entries())
    }

    /// Reads keyward's copy back: every field is checked, none is guessed.
    pub fn parse(secret: &Secret) -> Result<Self, InvalidCredential> {
        let invalid = |why| InvalidCredential {
            name: secret.name_any(),
            why,
        };
        if secret.type_.as_deref() != Some(labels::CREDENTIAL_SECRET_TYPE) {
            return Err(invalid("not of keyward's credential type"));
        }
        let annotations = secret.annotations();
        let annotation = |name: &str| {
            annotations
                .get(name)
                .cloned()
                .ok_or(invalid("an annotation is missing"))
        };
        let data = secret.data.as_ref().ok_or(invalid("no entries"))?;
        let entry = |name: &str| {
            data.get(name)
                .map(|b| b.0.clone())
                .ok_or(invalid("an entry is missing"))
        };
        let access_key_id = String::from_utf8(entry(ACCESS_KEY_ID_ENTRY)?)
            .map_err(|_| invalid("the AccessKeyId is not text"))?;
        if secret.labels().get(labels::ACCESS_KEY_ID) != Some(&access_key_id) {
            return Err(invalid("its AccessKeyId label and entry differ"));
        }
        Ok(Credential {
            access_key_id,
            secret: SecretBytes::new(entry(ACCESS_KEY_SECRET_ENTRY)?),
            namespace: annotation(labels::KEY_NAMESPACE)?,
            name: annotation(labels::ACCESS_KEY)?,
            uid: annotation(labels::ACCESS_KEY_UID)?,
            service_account: annotation(labels::SERVICE_ACCOUNT)?,
        })
    }
}

/// `len` characters drawn uniformly from [A-Za-z0-9] (rejection sampling: no modulo bias).
fn random_alphanumeric(len: usize) -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    let mut buffer = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buffer)?;
        for byte in buffer {
            // 248 = 4 * 62: bytes at or above it would favour the first characters.
            if byte < 248 && out.len() < len {
                out.push(ALPHABET[usize::from(byte % 62)] as char);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::access_key::AccessKeySpec;

    fn access_key(uid: &str) -> AccessKey {
        let mut key = AccessKey::new(
            "ci",
            AccessKeySpec {
                service_account_name: "deployer".into(),
                secret_name: None,
            },
        );
        key.metadata.namespace = Some("shop".into());
        key.metadata.uid = Some(uid.into());
        key
    }

    #[test]
    fn issued_pairs_have_the_alibaba_shape_and_differ() {
        let first = Credential::issue(&access_key("u1")).unwrap();
        let second = Credential::issue(&access_key("u1")).unwrap();
        assert_eq!(first.access_key_id.len(), 24);
        assert!(first.access_key_id.starts_with("KWAK"));
        assert!(
            first
                .access_key_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric())
        );
        assert_eq!(first.secret.len(), 30);
        assert!(first.secret.expose().iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(first.access_key_id, second.access_key_id);
        assert_ne!(first.secret, second.secret);
        assert_eq!(first.username(), "system:serviceaccount:shop:deployer");
    }

    #[test]
    fn the_credential_reads_back_whole_and_never_prints_its_secret() {
        let issued = Credential::issue(&access_key("u1")).unwrap();
        let stored = issued.to_secret("keyward");
        assert_eq!(stored.name_any(), "shop.ci.keyward-accesskey");
        assert_eq!(Credential::parse(&stored).unwrap(), issued);
        let secret = std::str::from_utf8(issued.secret.expose()).unwrap();
        assert!(!format!("{issued:?}").contains(secret));
        assert!(issued.is_in(&issued.issued_secret("ci")));
    }

    #[test]
    fn a_credential_acts_only_for_the_access_key_it_was_issued_for() {
        let issued = Credential::issue(&access_key("u1")).unwrap();
        assert!(issued.belongs_to(&access_key("u1")));
        assert!(
            !issued.belongs_to(&access_key("u2")),
            "same name, new object"
        );
        let mut other_account = access_key("u1");
        other_account.spec.service_account_name = "other".into();
        assert!(!issued.belongs_to(&other_account));
    }

    #[test]
    fn forged_or_damaged_credentials_are_refused() {
        let issued = Credential::issue(&access_key("u1")).unwrap();
        let mut wrong_type = issued.to_secret("keyward");
        wrong_type.type_ = Some("Opaque".into());
        assert!(Credential::parse(&wrong_type).is_err());
        let mut relabelled = issued.to_secret("keyward");
        relabelled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(labels::ACCESS_KEY_ID.into(), "KWAKother".into());
        assert!(Credential::parse(&relabelled).is_err());
        let mut no_uid = issued.to_secret("keyward");
        no_uid
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(labels::ACCESS_KEY_UID);
        let error = Credential::parse(&no_uid).unwrap_err().to_string();
        assert!(!error.contains(std::str::from_utf8(issued.secret.expose()).unwrap()));
    }

    #[test]
    fn long_names_fit_in_a_secret_name() {
        let name = credential_name(&"n".repeat(63), &"a".repeat(253));
        assert!(name.len() <= 253, "{}", name.len());
        assert_ne!(name, credential_name(&"n".repeat(63), &"a".repeat(252)));
    }
}
