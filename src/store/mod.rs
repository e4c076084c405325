//! How key material is kept (pure): one material store Secret per key, and the consumer Secret
//! that is derived from it. See docs/design.md for why.
//!
//! The store is named after the Key (so a second mint for the same Key is an "already exists"
//! from the API server, never a second key), created once, and only ever grows by new
//! versions under fresh ids: no entry is rewritten. It carries no owner reference, so
//! deleting the Key never cascades to the material. The consumer Secret holds nothing that
//! is not in the store, so it can always be rebuilt from it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::api::ImportParameters;
use crate::api::labels::{self, key_label_value, prefix_chars, short_hash};
use crate::api::{KeySpec, KeyState, KeyUsage, Origin, ProtectionLevel};
use crate::kms::error::{Code, Rejection};
use crate::kms::material::{Material, SecretBytes};
use crate::kms::schedule::{format_kms_time, kms_time, truncate_to_second};

/// The store's entry holding the [`KeyRecord`] (no material in it).
pub const RECORD_ENTRY: &str = "key.json";

/// What the store records about a key: its identity and creation facts, fixed when the key is
/// created, and its versions, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    pub key_id: String,
    pub arn: String,
    pub creator: String,
    #[serde(with = "kms_time")]
    pub creation_date: Timestamp,
    pub key_spec: KeySpec,
    pub key_usage: KeyUsage,
    pub origin: Origin,
    pub protection_level: ProtectionLevel,
    #[serde(default)]
    pub versions: Vec<VersionRecord>,
    /// The pending window the spec last asked for, in days: used if the Key object is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_window_days: Option<u32>,
    /// A scheduled deletion, kept with the material so that no restart, downtime or deleted
    /// Key object can lose or shorten it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion: Option<ScheduledDeletion>,
    /// An EXTERNAL key's current import parameters; the wrapping private key is the store's
    /// `import.private.pem` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_parameters: Option<ImportParameters>,
    /// An EXTERNAL key's imported material: its version and fingerprint stay after it expires,
    /// so that importing the same material again restores it and other material is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<ImportedMaterial>,
}

/// What is known of an EXTERNAL key's material (never the material itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportedMaterial {
    pub key_version_id: String,
    #[serde(with = "kms_time")]
    pub creation_date: Timestamp,
    /// SHA-256 of the material, to recognise a re-import of the same material.
    pub fingerprint: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "kms_time::option"
    )]
    pub expire_time: Option<Timestamp>,
}

/// The store entry holding an EXTERNAL key's wrapping private key.
pub const WRAPPING_KEY_ENTRY: &str = "import.private.pem";

/// When the material will be destroyed, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledDeletion {
    #[serde(with = "kms_time")]
    pub delete_date: Timestamp,
    #[serde(with = "kms_time")]
    pub scheduled_at: Timestamp,
    pub cause: DeletionCause,
}

/// What scheduled a deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeletionCause {
    /// `spec.keyState: PendingDeletion`.
    KeyState,
    /// The Key object was deleted.
    KeyDeleted,
}

/// One key version (KMS DescribeKeyVersion).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionRecord {
    pub key_version_id: String,
    #[serde(with = "kms_time")]
    pub creation_date: Timestamp,
    /// The UID of the KeyVersion that asked for this version, so that a request whose status
    /// was never written (a crash) finds its version instead of minting another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

impl KeyRecord {
    /// The newest version: the primary version of a symmetric key, the default entries of an
    /// asymmetric one.
    pub fn newest_version(&self) -> Option<&VersionRecord> {
        self.versions.last()
    }

    /// When the newest version was generated (KMS LastRotationDate).
    pub fn last_rotation(&self) -> Option<Timestamp> {
        self.newest_version().map(|v| v.creation_date)
    }
}

/// The data entries of one version's material, named by version id.
fn version_entries(key_spec: KeySpec, version_id: &str) -> Vec<String> {
    if key_spec.is_symmetric() {
        vec![format!("{version_id}.key")]
    } else {
        vec![
            format!("{version_id}.private.pem"),
            format!("{version_id}.public.pem"),
        ]
    }
}

/// The store's Secret name for a Key: readable, deterministic, and within the 253-character
/// limit of Secret names however long the Key's name is.
pub fn store_name(key_name: &str) -> String {
    const SUFFIX: &str = ".keyward-material";
    if key_name.len() + SUFFIX.len() <= 253 {
        format!("{key_name}{SUFFIX}")
    } else {
        format!(
            "{}.{}{SUFFIX}",
            prefix_chars(key_name, 200).trim_end_matches(['-', '.']),
            short_hash(key_name)
        )
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
    namespace: &str,
    key_name: &str,
    record: &KeyRecord,
    initial: Option<&Material>,
) -> Secret {
    let mut data = BTreeMap::from([(RECORD_ENTRY.to_string(), record_bytes(record))]);
    if let (Some(material), Some(version)) = (initial, record.newest_version()) {
        data.extend(material_entries(&version.key_version_id, material));
    }
    let mut metadata = managed_meta(
        store_name(key_name),
        namespace,
        key_name,
        labels::ROLE_MATERIAL,
        &record.key_id,
    );
    let annotations = metadata.annotations.get_or_insert_default();
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
        format!("{}.key", version.key_version_id),
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
        .flat_map(|v| version_entries(record.key_spec, &v.key_version_id))
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
                format!("{version_id}.key"),
                ByteString(key.expose().to_vec()),
            )]
        }
        Material::Asymmetric {
            private_pem,
            public_pem,
        } => vec![
            (
                format!("{version_id}.private.pem"),
                ByteString(private_pem.expose().to_vec()),
            ),
            (
                format!("{version_id}.public.pem"),
                ByteString(public_pem.as_bytes().to_vec()),
            ),
        ],
    }
}

/// A store read back from the cluster, checked to be whole and its record parsed: once per
/// read, and handed on as this typed value.
pub struct Store {
    pub record: KeyRecord,
    secret: Secret,
}

/// Checks that `secret` is the store of Key `key_name` and that every version it lists has its
/// material, and reads its record.
fn read_record(secret: &Secret, key_name: &str) -> Result<KeyRecord, Rejection> {
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
    let annotations = secret.metadata.annotations.as_ref();
    if annotations
        .and_then(|a| a.get(labels::KEY))
        .map(String::as_str)
        != Some(key_name)
    {
        return Err(invalid(format!("does not belong to Key {key_name}")));
    }
    let data = secret.data.as_ref();
    let record: KeyRecord = data
        .and_then(|d| d.get(RECORD_ENTRY))
        .and_then(|bytes| serde_json::from_slice(&bytes.0).ok())
        .ok_or_else(|| invalid(format!("has no readable {RECORD_ENTRY} entry")))?;
    for version in &record.versions {
        for entry in version_entries(record.key_spec, &version.key_version_id) {
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
    /// Parses the store of Key `key_name`; a store that is not whole is a rejection, never a
    /// reason to mint again.
    pub fn parse(secret: Secret, key_name: &str) -> Result<Self, Rejection> {
        Ok(Store {
            record: read_record(&secret, key_name)?,
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
            for entry in version_entries(record.key_spec, &version.key_version_id) {
                if let Some(bytes) = self.entry(&entry) {
                    data.insert(entry, bytes.clone());
                }
            }
        }
        for entry in version_entries(record.key_spec, &newest.key_version_id) {
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

/// Whether `secret` is a consumer Secret keyward created for Key `key_name`: its type (which
/// cannot change after creation) and the annotation naming the Key, unless another manager
/// claims it. A Secret whose labels were merely edited away is restored, not disowned.
pub fn is_consumer_of(secret: &Secret, key_name: &str) -> bool {
    let annotations = secret.metadata.annotations.as_ref();
    let manager = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY));
    secret.type_.as_deref() == Some(labels::CONSUMER_SECRET_TYPE)
        && annotations
            .and_then(|a| a.get(labels::KEY))
            .map(String::as_str)
            == Some(key_name)
        && manager.is_none_or(|m| m == labels::MANAGED_BY_VALUE)
}

/// The consumer Secret as it should be. When one exists, its metadata is kept (labels and
/// annotations that others added survive) with keyward's own labels and annotations set.
pub fn desired_consumer(
    existing: Option<&Secret>,
    namespace: &str,
    secret_name: &str,
    key_name: &str,
    store: &Store,
    state: KeyState,
) -> Secret {
    let ours = managed_meta(
        secret_name.to_string(),
        namespace,
        key_name,
        labels::ROLE_CONSUMER,
        &store.record.key_id,
    );
    let mut metadata = existing.map(|s| s.metadata.clone()).unwrap_or_default();
    metadata.name = ours.name;
    metadata.namespace = ours.namespace;
    metadata
        .labels
        .get_or_insert_default()
        .extend(ours.labels.unwrap_or_default());
    let annotations = metadata.annotations.get_or_insert_default();
    annotations.extend(ours.annotations.unwrap_or_default());
    annotations.insert(labels::KEY_STATE.into(), state.as_str().into());
    // Only an Enabled key's material is served; otherwise the Secret stays, saying why, and
    // gets every version back, unchanged, when the key is enabled again.
    let data = if state == KeyState::Enabled {
        store.consumer_data()
    } else {
        BTreeMap::from([(
            "keyId".to_string(),
            ByteString(store.record.key_id.clone().into_bytes()),
        )])
    };
    Secret {
        metadata,
        type_: Some(labels::CONSUMER_SECRET_TYPE.to_string()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The record of a new key.
pub struct NewKeyRecord<'a> {
    pub key_id: &'a str,
    pub region: &'a str,
    pub account_id: &'a str,
    pub created: Timestamp,
    pub key_spec: KeySpec,
    pub key_usage: KeyUsage,
    pub origin: Origin,
    pub protection_level: ProtectionLevel,
    /// The initial version's id; `None` for a key that awaits imported material.
    pub initial_version_id: Option<&'a str>,
    pub pending_window_days: u32,
}

impl NewKeyRecord<'_> {
    pub fn build(&self) -> KeyRecord {
        let creation_date = truncate_to_second(self.created);
        KeyRecord {
            key_id: self.key_id.to_string(),
            arn: format!(
                "acs:kms:{}:{}:key/{}",
                self.region, self.account_id, self.key_id
            ),
            creator: self.account_id.to_string(),
            creation_date,
            key_spec: self.key_spec,
            key_usage: self.key_usage,
            origin: self.origin,
            protection_level: self.protection_level,
            versions: self
                .initial_version_id
                .map(|id| VersionRecord {
                    key_version_id: id.to_string(),
                    creation_date,
                    requested_by: None,
                })
                .into_iter()
                .collect(),
            pending_window_days: Some(self.pending_window_days),
            deletion: None,
            import_parameters: None,
            imported: None,
        }
    }
}
