//! An installation of the former layout, as the former operator wrote it: each key's material
//! store `<key>.keyward-material` in the Key's own namespace (keyward's labels and
//! annotations, no `keyward.dev/key-namespace`), consumer Secrets for some keys, and Key
//! objects (without status) for a subset. Material is real: fresh random bytes and key pairs.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use keyward::api::labels;
use keyward::api::{KeySpec, KeyUsage, Origin, ProtectionLevel};
use keyward::kms::material::{self, Material};
use keyward::store::{KeyRecord, NewKeyRecord, RECORD_ENTRY};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, ResourceExt};

use crate::common::{TestEnv, key_manifest};

/// The pending window every former key recorded, and its Key asks for.
const PENDING_WINDOW_DAYS: u32 = 14;

/// One key of the former installation, as created.
pub struct FormerKey {
    pub name: String,
    pub record: KeyRecord,
    /// The store, in the Key's namespace.
    pub store: Secret,
    /// The consumer Secret (named after the Key), if the former operator had written one.
    pub consumer: Option<Secret>,
    /// Whether a Key object was applied for it.
    pub applied: bool,
}

impl FormerKey {
    /// The store's data as created: what its copy must hold.
    pub fn data(&self) -> &BTreeMap<String, ByteString> {
        self.store.data.as_ref().expect("store data")
    }

    /// The consumer Secret's data the key must be served with: the former consumer's, or
    /// the same built from the store.
    pub fn consumer_data(&self) -> BTreeMap<String, ByteString> {
        match &self.consumer {
            Some(consumer) => consumer.data.clone().expect("consumer data"),
            None => consumer_data(&self.record, self.data()),
        }
    }
}

/// `count` keys, `key-000` onwards: mostly Aliyun_AES_256, some Aliyun_SM4, two RSA_2048 and
/// an EC_P256. Every fifth key (and each asymmetric one) has a Key object; every other key
/// with a Key object has a consumer Secret.
pub async fn build(env: &TestEnv, count: usize) -> BTreeMap<String, FormerKey> {
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let account_id = namespaces.get("kube-system").await.unwrap().uid().unwrap();
    let specs = |i: usize| match i {
        0 => (KeySpec::Rsa2048, KeyUsage::EncryptDecrypt),
        1 => (KeySpec::Rsa2048, KeyUsage::SignVerify),
        2 => (KeySpec::EcP256, KeyUsage::SignVerify),
        i if i % 10 == 3 => (KeySpec::AliyunSm4, KeyUsage::EncryptDecrypt),
        _ => (KeySpec::AliyunAes256, KeyUsage::EncryptDecrypt),
    };
    let mut keys = BTreeMap::new();
    for i in 0..count {
        let name = format!("key-{i:03}");
        let (key_spec, key_usage) = specs(i);
        let key_id = uuid::Uuid::new_v4().to_string();
        let version_id = uuid::Uuid::new_v4().to_string();
        let mut record = NewKeyRecord {
            key_id: &key_id,
            region: "local",
            account_id: &account_id,
            created: Timestamp::now() - SignedDuration::from_hours(24 * (i as i64 + 1)),
            key_spec,
            key_usage,
            origin: Origin::AliyunKms,
            protection_level: ProtectionLevel::Software,
            initial_version_id: Some(&version_id),
            pending_window_days: PENDING_WINDOW_DAYS,
            consumer_secret: &name,
        }
        .build();
        // The former operator kept no list of consumer Secrets.
        record.consumer_secrets.clear();
        let material = material::generate(key_spec).expect("material");
        let entries = material_entries(&version_id, &material);
        drop(material);
        let store = former_store(&env.namespace, &name, &record, entries);
        let applied = i % 5 == 0 || !key_spec.is_symmetric();
        let consumer =
            (applied && i % 2 == 0).then(|| former_consumer(env, &name, &record, &store));
        keys.insert(
            name.clone(),
            FormerKey {
                name,
                record,
                store,
                consumer,
                applied,
            },
        );
    }
    keys
}

/// Creates the installation: every store and consumer Secret, then the Key objects.
pub async fn install(env: &TestEnv, keys: &BTreeMap<String, FormerKey>) {
    let secrets: Vec<&Secret> = keys
        .values()
        .flat_map(|k| std::iter::once(&k.store).chain(&k.consumer))
        .collect();
    create_all(env, &env.namespace, secrets).await;
    for key in keys.values().filter(|k| k.applied) {
        let spec = format!(
            "{{keySpec: {}, keyUsage: {}, pendingWindowInDays: {PENDING_WINDOW_DAYS}}}",
            key.record.key_spec, key.record.key_usage
        );
        env.apply_key(&key_manifest(&key.name, &spec)).await;
    }
}

/// Creates `secrets` in `namespace`, several at a time.
pub async fn create_all(env: &TestEnv, namespace: &str, secrets: Vec<&Secret>) {
    let api: Api<Secret> = Api::namespaced(env.client.clone(), namespace);
    futures::stream::iter(secrets)
        .map(|secret| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), secret).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("create the former installation's Secrets");
}

/// The name of Key `key_name`'s store in the former layout.
pub fn former_store_name(key_name: &str) -> String {
    format!("{key_name}.keyward-material")
}

/// One version's entries: `<versionId>.key`, or `<versionId>.private.pem` and `.public.pem`.
fn material_entries(version_id: &str, material: &Material) -> BTreeMap<String, ByteString> {
    match material {
        Material::Symmetric { key } => BTreeMap::from([(
            format!("{version_id}.key"),
            ByteString(key.expose().to_vec()),
        )]),
        Material::Asymmetric {
            private_pem,
            public_pem,
        } => BTreeMap::from([
            (
                format!("{version_id}.private.pem"),
                ByteString(private_pem.expose().to_vec()),
            ),
            (
                format!("{version_id}.public.pem"),
                ByteString(public_pem.as_bytes().to_vec()),
            ),
        ]),
        Material::InToken { .. } => unreachable!("the former layout predates HSM keys"),
    }
}

/// keyward's labels and annotations on a Secret of Key `key_name`, as the former operator
/// set them.
fn former_meta(
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
            (labels::MANAGED_BY.into(), labels::MANAGED_BY_VALUE.into()),
            (labels::KEY.into(), labels::key_label_value(key_name)),
            (labels::ROLE.into(), role.into()),
        ])),
        annotations: Some(BTreeMap::from([
            (labels::KEY.into(), key_name.into()),
            (labels::KEY_ID.into(), key_id.into()),
        ])),
        ..ObjectMeta::default()
    }
}

/// The store as the former operator created it, in the Key's namespace.
fn former_store(
    namespace: &str,
    key_name: &str,
    record: &KeyRecord,
    mut data: BTreeMap<String, ByteString>,
) -> Secret {
    let record_bytes = serde_json::to_vec(record).expect("a record serializes");
    data.insert(RECORD_ENTRY.into(), ByteString(record_bytes));
    let mut metadata = former_meta(
        former_store_name(key_name),
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
        type_: Some(labels::MATERIAL_SECRET_TYPE.into()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The consumer Secret as the former operator wrote it for an Enabled key.
fn former_consumer(env: &TestEnv, key_name: &str, record: &KeyRecord, store: &Secret) -> Secret {
    let mut metadata = former_meta(
        key_name.to_string(),
        &env.namespace,
        key_name,
        labels::ROLE_CONSUMER,
        &record.key_id,
    );
    let annotations = metadata.annotations.get_or_insert_default();
    annotations.insert(labels::KEY_STATE.into(), "Enabled".into());
    Secret {
        metadata,
        type_: Some(labels::CONSUMER_SECRET_TYPE.into()),
        data: Some(consumer_data(record, store.data.as_ref().unwrap())),
        ..Secret::default()
    }
}

/// A consumer Secret's data: every version under its id, the newest under the default names,
/// `keyId` and `keyVersionId`.
fn consumer_data(
    record: &KeyRecord,
    store: &BTreeMap<String, ByteString>,
) -> BTreeMap<String, ByteString> {
    let newest = &record.newest_version().expect("a version").key_version_id;
    let mut data: BTreeMap<String, ByteString> = store
        .iter()
        .filter(|(name, _)| *name != RECORD_ENTRY)
        .map(|(name, bytes)| (name.clone(), bytes.clone()))
        .collect();
    for (name, bytes) in store {
        if let Some(default) = name.strip_prefix(&format!("{newest}.")) {
            data.insert(default.to_string(), bytes.clone());
        }
    }
    data.insert(
        "keyId".into(),
        ByteString(record.key_id.clone().into_bytes()),
    );
    data.insert(
        "keyVersionId".into(),
        ByteString(newest.clone().into_bytes()),
    );
    data
}

/// The copy a move interrupted between its two steps leaves: created in the store namespace
/// (the original's type, data, labels and annotations, and the Key's namespace), the
/// original not yet deleted.
pub fn interrupted_copy(env: &TestEnv, key: &FormerKey) -> Secret {
    let mut copy = key.store.clone();
    copy.metadata.name = Some(keyward::store::store_name(&env.namespace, &key.name));
    copy.metadata.namespace = Some(env.store_namespace.clone());
    copy.labels_mut()
        .insert(labels::KEY_NAMESPACE.into(), env.namespace.clone());
    copy.annotations_mut()
        .insert(labels::KEY_NAMESPACE.into(), env.namespace.clone());
    copy
}
