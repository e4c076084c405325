//! How key material is kept (pure): one material store Secret per key, and the consumer Secret
//! that is derived from it. See docs/design.md for why.
//!
//! Stores live in keyward's own namespace (`--store-namespace`), never in a tenant's: nothing
//! a tenant does in its namespace (deleting Secrets, or the namespace itself) can lose material
//! before its pending window ends. A store is named after its Key's namespace and name (so a
//! second mint for the same Key is an "already exists" from the API server, never a second
//! key), created once, and only ever grows by new versions under fresh ids: no entry is
//! rewritten. The consumer Secret in the Key's namespace holds nothing that is not in the
//! store, so it can always be rebuilt from it.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;

use crate::api::labels::{self, key_label_value, prefix_chars, short_hash};
use crate::api::{KeySpec, ProtectionLevel};
use crate::kms::error::{Code, Rejection};
use crate::kms::material::{Material, SecretBytes};
use crate::kms::schedule::format_kms_time;

mod consumer;
pub mod credential;
pub mod migration;
mod record;

pub use consumer::{desired_consumer, is_consumer_of};
pub use record::{
    DeletionCause, ImportedMaterial, KeyRecord, NewKeyRecord, ScheduledDeletion, VersionRecord,
};

/// The most versions one key holds. A key's store and its consumer Secret each hold every
/// version, and a Secret holds at most 1 MiB: 100 versions of an RSA_4096 key take about
/// 410 KiB; 1,000 of a symmetric key, under 100 KiB of material and 90 KiB of record (with a
/// 7-day rotation, 19 years). A key at the limit rotates no more and takes no new version: a
/// new key does.
pub fn max_versions(key_spec: KeySpec) -> usize {
    if key_spec.is_symmetric() { 1000 } else { 100 }
}

/// The store's entry holding the [`KeyRecord`] (no material in it).
pub const RECORD_ENTRY: &str = "key.json";

/// The store entry holding an EXTERNAL key's wrapping private key.
pub const WRAPPING_KEY_ENTRY: &str = "import.private.pem";

/// The entry of a symmetric version's key bytes.
fn symmetric_entry(version_id: &str) -> String {
    format!("{version_id}.key")
}

/// The entry of an asymmetric version's private key (PKCS#8 PEM).
fn private_entry(version_id: &str) -> String {
    format!("{version_id}.private.pem")
}

/// The entry of an asymmetric version's public key (SPKI PEM).
fn public_entry(version_id: &str) -> String {
    format!("{version_id}.public.pem")
}

/// The data entries of one version's material, named by version id. An HSM key's secret or
/// private key is in the token, never here: only an asymmetric key's public key is.
fn version_entries(record: &KeyRecord, version_id: &str) -> Vec<String> {
    match (record.protection_level, record.key_spec.is_symmetric()) {
        (ProtectionLevel::Software, true) => vec![symmetric_entry(version_id)],
        (ProtectionLevel::Software, false) => {
            vec![private_entry(version_id), public_entry(version_id)]
        }
        (ProtectionLevel::Hsm, true) => vec![],
        (ProtectionLevel::Hsm, false) => vec![public_entry(version_id)],
    }
}

/// The store's Secret name for Key `key_name` of `namespace`: readable, deterministic, distinct
/// for every Key of every namespace (namespace names hold no dot), and within the 253-character
/// limit of Secret names however long the names are. The suffix sets stores apart from the
/// stores of the former layout (`<key>.keyward-material`, in the Key's namespace).
pub fn store_name(namespace: &str, key_name: &str) -> String {
    name_in_store_namespace(namespace, key_name, ".keyward-store")
}

/// `<namespace>.<name><suffix>`: the name in the store namespace of what keyward keeps for
/// object `name` of `namespace`, distinct for every object of every namespace (namespace names
/// hold no dot), shortened to a prefix and a hash of both names past 253 characters.
fn name_in_store_namespace(namespace: &str, name: &str, suffix: &str) -> String {
    let full = format!("{namespace}.{name}");
    if full.len() + suffix.len() <= 253 {
        format!("{full}{suffix}")
    } else {
        format!(
            "{}.{}{suffix}",
            prefix_chars(&full, 200).trim_end_matches(['-', '.']),
            short_hash(&format!("{namespace}/{name}"))
        )
    }
}

/// Where a Key's store is: keyward's store namespace, and the Key it belongs to.
#[derive(Clone, Copy, Debug)]
pub struct StoreLocation<'a> {
    pub store_namespace: &'a str,
    pub key_namespace: &'a str,
    pub key_name: &'a str,
}

impl StoreLocation<'_> {
    pub fn name(&self) -> String {
        store_name(self.key_namespace, self.key_name)
    }
}

fn managed_meta(
    name: String,
    namespace: &str,
    key_name: &str,
    role: &str,
    key_id: &str,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_string()),
        labels: Some(BTreeMap::from([
            (
                labels::MANAGED_BY.to_string(),
                labels::MANAGED_BY_VALUE.to_string(),
            ),
            (labels::KEY.to_string(), key_label_value(key_name)),
            (labels::ROLE.to_string(), role.to_string()),
        ])),
        annotations: Some(BTreeMap::from([
            (labels::KEY.to_string(), key_name.to_string()),
            (labels::KEY_ID.to_string(), key_id.to_string()),
        ])),
        ..ObjectMeta::default()
    }
}

/// A new store for a key with its initial version (none for a key awaiting imported material).
pub fn new_store(
    location: StoreLocation<'_>,
    record: &KeyRecord,
    initial: Option<&Material>,
) -> Secret {
    let mut data = BTreeMap::from([(RECORD_ENTRY.to_string(), record_bytes(record))]);
    if let (Some(material), Some(version)) = (initial, record.newest_version()) {
        data.extend(material_entries(&version.key_version_id, material));
    }
    let mut metadata = managed_meta(
        location.name(),
        location.store_namespace,
        location.key_name,
        labels::ROLE_MATERIAL,
        &record.key_id,
    );
    let namespace = location.key_namespace.to_string();
    let labels = metadata.labels.get_or_insert_default();
    labels.insert(labels::KEY_NAMESPACE.into(), namespace.clone());
    let annotations = metadata.annotations.get_or_insert_default();
    annotations.insert(labels::KEY_NAMESPACE.into(), namespace);
    annotations.insert(labels::KEY_SPEC.into(), record.key_spec.as_str().into());
    annotations.insert(labels::VERSIONS.into(), record.versions.len().to_string());
    Secret {
        metadata,
        type_: Some(labels::MATERIAL_SECRET_TYPE.to_string()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The store grown by one version: the record lists it, its material is added under its id,
/// and nothing else changes. The Secret keeps the resourceVersion it was read at, so writing
/// it back fails if anyone changed the store meanwhile. `None` if the version id is taken.
pub fn with_new_version(
    store: &Secret,
    record: &KeyRecord,
    version: &VersionRecord,
    material: &Material,
) -> Option<Secret> {
    if record.has_version(&version.key_version_id) {
        return None;
    }
    let mut grown = store.clone();
    let data = grown.data.get_or_insert_default();
    let entries = material_entries(&version.key_version_id, material);
    if entries.iter().any(|(name, _)| data.contains_key(name)) {
        return None;
    }
    data.extend(entries);
    let mut record = record.clone();
    record.versions.push(version.clone());
    data.insert(RECORD_ENTRY.to_string(), record_bytes(&record));
    grown
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(labels::VERSIONS.into(), record.versions.len().to_string());
    Some(grown)
}

/// The store with `record` in place of its record, and nothing else changed. Keeps the
/// resourceVersion it was read at, so writing it back fails if the store changed meanwhile.
pub fn with_record(store: &Secret, record: &KeyRecord) -> Secret {
    let mut updated = store.clone();
    updated
        .data
        .get_or_insert_default()
        .insert(RECORD_ENTRY.to_string(), record_bytes(record));
    let annotations = updated.metadata.annotations.get_or_insert_default();
    match &record.deletion {
        Some(deletion) => {
            annotations.insert(
                labels::DELETE_DATE.into(),
                format_kms_time(deletion.delete_date),
            );
        }
        None => {
            annotations.remove(labels::DELETE_DATE);
        }
    }
    updated
}

/// The store with new import parameters: the record lists them, the wrapping private key
/// replaces the previous one (parameters are re-issued only while no material is imported).
pub fn with_import_parameters(
    store: &Secret,
    record: &KeyRecord,
    wrapping_key: &SecretBytes,
) -> Secret {
    let mut updated = with_record(store, record);
    updated.data.get_or_insert_default().insert(
        WRAPPING_KEY_ENTRY.to_string(),
        ByteString(wrapping_key.expose().to_vec()),
    );
    updated
}

/// The store with imported material as the key's only version, under `record.imported`'s id.
pub fn with_imported_material(
    store: &Secret,
    record: &KeyRecord,
    material: &SecretBytes,
) -> Option<Secret> {
    let version = record.imported.as_ref()?;
    let mut updated = with_record(store, record);
    updated.data.get_or_insert_default().insert(
        symmetric_entry(&version.key_version_id),
        ByteString(material.expose().to_vec()),
    );
    updated
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(labels::VERSIONS.into(), record.versions.len().to_string());
    Some(updated)
}

/// The store without the material of versions `record` no longer lists: imported material
/// that expired (DeleteKeyMaterial). The only way material leaves a store short of destroying
/// the key.
pub fn without_unlisted_material(store: &Secret, record: &KeyRecord) -> Secret {
    let mut updated = with_record(store, record);
    let listed: Vec<String> = record
        .versions
        .iter()
        .flat_map(|v| version_entries(record, &v.key_version_id))
        .collect();
    if let Some(data) = updated.data.as_mut() {
        data.retain(|name, _| {
            name == RECORD_ENTRY || name == WRAPPING_KEY_ENTRY || listed.contains(name)
        });
    }
    updated
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(labels::VERSIONS.into(), record.versions.len().to_string());
    updated
}

fn record_bytes(record: &KeyRecord) -> ByteString {
    ByteString(serde_json::to_vec(record).expect("a KeyRecord always serializes"))
}

/// The entries that hold one version's material in the store and in the consumer Secret.
fn material_entries(version_id: &str, material: &Material) -> Vec<(String, ByteString)> {
    match material {
        Material::Symmetric { key } => {
            vec![(
                symmetric_entry(version_id),
                ByteString(key.expose().to_vec()),
            )]
        }
        Material::Asymmetric {
            private_pem,
            public_pem,
        } => vec![
            (
                private_entry(version_id),
                ByteString(private_pem.expose().to_vec()),
            ),
            (
                public_entry(version_id),
                ByteString(public_pem.as_bytes().to_vec()),
            ),
        ],
        Material::InToken { public_pem } => public_pem
            .iter()
            .map(|pem| {
                (
                    public_entry(version_id),
                    ByteString(pem.as_bytes().to_vec()),
                )
            })
            .collect(),
    }
}

/// A store read back from the cluster, checked to be whole and its record parsed: once per
/// read, and handed on as this typed value.
pub struct Store {
    pub record: KeyRecord,
    secret: Secret,
}

/// Checks that `secret` is the store of Key `key_name` of `namespace` and that every version it
/// lists has its material, and reads its record.
fn read_record(secret: &Secret, namespace: &str, key_name: &str) -> Result<KeyRecord, Rejection> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let invalid = |what: String| {
        Rejection::new(
            Code::MaterialStoreInvalid,
            format!(
                "the material store Secret {name} {what}; keyward will not mint replacement \
                 material: restore the Secret from a backup, or delete it and the Key to start \
                 a new key"
            ),
        )
    };
    if secret.type_.as_deref() != Some(labels::MATERIAL_SECRET_TYPE) {
        return Err(invalid(format!(
            "is not of type {}",
            labels::MATERIAL_SECRET_TYPE
        )));
    }
    let annotation = |name| {
        let annotations = secret.metadata.annotations.as_ref();
        annotations.and_then(|a| a.get(name)).map(String::as_str)
    };
    if annotation(labels::KEY) != Some(key_name)
        || annotation(labels::KEY_NAMESPACE) != Some(namespace)
    {
        return Err(invalid(format!(
            "does not belong to Key {key_name} of namespace {namespace}"
        )));
    }
    let data = secret.data.as_ref();
    let record: KeyRecord = data
        .and_then(|d| d.get(RECORD_ENTRY))
        .and_then(|bytes| serde_json::from_slice(&bytes.0).ok())
        .ok_or_else(|| invalid(format!("has no readable {RECORD_ENTRY} entry")))?;
    for version in &record.versions {
        for entry in version_entries(&record, &version.key_version_id) {
            let present = data
                .and_then(|d| d.get(&entry))
                .is_some_and(|b| !b.0.is_empty());
            if !present {
                return Err(invalid(format!(
                    "lacks the material of version {} (entry {entry})",
                    version.key_version_id
                )));
            }
        }
    }
    Ok(record)
}

impl Store {
    /// Parses the store of Key `key_name` of `namespace`; a store that is not whole is a
    /// rejection, never a reason to mint again.
    pub fn parse(secret: Secret, namespace: &str, key_name: &str) -> Result<Self, Rejection> {
        Ok(Store {
            record: read_record(&secret, namespace, key_name)?,
            secret,
        })
    }

    /// The Secret as read: what a write of the store is made from (its resourceVersion is the
    /// write's precondition).
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// An EXTERNAL key's wrapping private key (PKCS#8 PEM), once import parameters were issued.
    pub fn wrapping_key(&self) -> Option<&[u8]> {
        self.entry(WRAPPING_KEY_ENTRY).map(|b| b.0.as_slice())
    }

    /// The material of version `version_id` of a symmetric key (raw key bytes).
    pub fn symmetric_key(&self, version_id: &str) -> Option<SecretBytes> {
        let entry = self.entry(&symmetric_entry(version_id))?;
        Some(SecretBytes::new(entry.0.clone()))
    }

    /// The private key (PKCS#8 PEM) of version `version_id` of an asymmetric key.
    pub fn private_pem(&self, version_id: &str) -> Option<SecretBytes> {
        let entry = self.entry(&private_entry(version_id))?;
        Some(SecretBytes::new(entry.0.clone()))
    }

    /// The public key (SPKI PEM) of version `version_id` of an asymmetric key.
    pub fn public_pem(&self, version_id: &str) -> Option<String> {
        let entry = self.entry(&public_entry(version_id))?;
        String::from_utf8(entry.0.clone()).ok()
    }

    fn entry(&self, name: &str) -> Option<&ByteString> {
        self.secret.data.as_ref().and_then(|d| d.get(name))
    }

    /// The consumer Secret's data: the newest version under the default entries, every version
    /// under its own id. Built only from the store, so it can always be rebuilt.
    pub fn consumer_data(&self) -> BTreeMap<String, ByteString> {
        let record = &self.record;
        let mut data = BTreeMap::new();
        let Some(newest) = record.newest_version() else {
            return data;
        };
        for version in &record.versions {
            for entry in version_entries(record, &version.key_version_id) {
                if let Some(bytes) = self.entry(&entry) {
                    data.insert(entry, bytes.clone());
                }
            }
        }
        for entry in version_entries(record, &newest.key_version_id) {
            let default_name = entry
                .strip_prefix(&format!("{}.", newest.key_version_id))
                .expect("entries start with the version id")
                .to_string();
            if let Some(bytes) = self.entry(&entry) {
                data.insert(default_name, bytes.clone());
            }
        }
        data.insert(
            "keyId".into(),
            ByteString(record.key_id.clone().into_bytes()),
        );
        data.insert(
            "keyVersionId".into(),
            ByteString(newest.key_version_id.clone().into_bytes()),
        );
        data
    }
}
