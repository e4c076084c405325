//! The keys a test works with: a fleet of every key spec and usage (or of rotating keys only),
//! applied all at once, and KeyVersion requests for them.

use std::collections::BTreeMap;

use futures::future::join_all;
use keyward::api::Key;

use crate::common::{TestEnv, key_manifest, key_version_manifest};
use crate::{RECOVER, retrying};

/// One Key of a test's fleet: its manifest's spec and, if it rotates, its interval in seconds.
#[derive(Clone, Debug)]
pub struct KeyDef {
    pub name: String,
    pub spec: &'static str,
    pub rotation: Option<i64>,
    pub symmetric: bool,
}

impl KeyDef {
    pub fn manifest(&self) -> String {
        key_manifest(&self.name, self.spec)
    }
}

/// Every key spec and usage, two of three symmetric kinds rotating.
pub const MIXED: &[(&str, Option<i64>, bool)] = &[
    (
        "{enableAutomaticRotation: true, rotationInterval: 2s}",
        Some(2),
        true,
    ),
    ("{keySpec: RSA_2048}", None, false),
    (
        "{keySpec: Aliyun_SM4, enableAutomaticRotation: true, rotationInterval: 2s}",
        Some(2),
        true,
    ),
    ("{keySpec: EC_P256, keyUsage: SIGN/VERIFY}", None, false),
    ("{}", None, true),
    ("{keySpec: EC_SM2, keyUsage: ENCRYPT/DECRYPT}", None, false),
    (
        "{enableAutomaticRotation: true, rotationInterval: 3s}",
        Some(3),
        true,
    ),
    ("{keySpec: EC_P256K, keyUsage: SIGN/VERIFY}", None, false),
    ("{keySpec: Aliyun_SM4}", None, true),
    ("{keySpec: RSA_2048, keyUsage: SIGN/VERIFY}", None, false),
];

/// Symmetric keys that all rotate every 2 s: created together, they rotate in bursts.
pub const ROTATING: &[(&str, Option<i64>, bool)] = &[
    (
        "{enableAutomaticRotation: true, rotationInterval: 2s}",
        Some(2),
        true,
    ),
    (
        "{keySpec: Aliyun_SM4, enableAutomaticRotation: true, rotationInterval: 2s}",
        Some(2),
        true,
    ),
];

/// The keys a test works with, by name.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    pub keys: BTreeMap<String, KeyDef>,
}

impl Fleet {
    pub fn new(prefix: &str, count: usize, mix: &[(&'static str, Option<i64>, bool)]) -> Fleet {
        let mut fleet = Fleet::default();
        for i in 0..count {
            let (spec, rotation, symmetric) = mix[i % mix.len()];
            fleet.add(KeyDef {
                name: format!("{prefix}-{i:02}"),
                spec,
                rotation,
                symmetric,
            });
        }
        fleet
    }

    pub fn add(&mut self, key: KeyDef) {
        self.keys.insert(key.name.clone(), key);
    }

    pub fn rotating(&self) -> Vec<&KeyDef> {
        self.keys
            .values()
            .filter(|k| k.rotation.is_some())
            .collect()
    }

    pub fn asymmetric(&self) -> Vec<&KeyDef> {
        self.keys.values().filter(|k| !k.symmetric).collect()
    }
}

/// A plain AES key applied after a fault: it only becomes Ready if the operator's watches
/// came back, so the time it takes is the recovery time.
pub fn probe(name: &str) -> KeyDef {
    KeyDef {
        name: name.to_string(),
        spec: "{}",
        rotation: None,
        symmetric: true,
    }
}

/// Applies keys all at once.
pub async fn apply_all(env: &TestEnv, keys: &[&KeyDef]) {
    let manifests: Vec<String> = keys.iter().map(|k| k.manifest()).collect();
    join_all(manifests.iter().map(|m| env.apply_key(m))).await;
}

/// Applies a key, retrying through transient failures (a client connection that died with
/// the API server).
pub async fn apply_retrying(env: &TestEnv, key: &KeyDef) {
    let mut manifest: Key = serde_yaml::from_str(&key.manifest()).expect("a Key manifest");
    manifest.metadata.namespace = Some(env.namespace.clone());
    let params = kube::api::PatchParams::apply("keyward-test").force();
    retrying(&format!("apply Key {}", key.name), RECOVER, || {
        let keys = env.keys();
        let (manifest, params) = (manifest.clone(), params.clone());
        async move {
            keys.patch(&key.name, &params, &kube::api::Patch::Apply(&manifest))
                .await
        }
    })
    .await;
}

/// KeyVersion requests, one for each of `keys`, named `<prefix>-<key>`.
pub async fn request_versions(env: &TestEnv, prefix: &str, keys: &[&KeyDef]) -> Vec<String> {
    let mut names = Vec::new();
    for key in keys {
        let name = format!("{prefix}-{}", key.name);
        env.apply_key_version(&key_version_manifest(&name, &key.name))
            .await;
        names.push(name);
    }
    names
}
