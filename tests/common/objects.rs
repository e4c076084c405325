//! Applying, reading and waiting for what a test's namespace holds: Keys, KeyVersions, the
//! Secrets keyward writes, and events; and reading a Key's status and a Secret's entries.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use keyward::api::{Key, KeyVersion};
use keyward::store::KeyRecord;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::env::{CONVERGE, TestEnv};
use super::manifests::example_files;

impl TestEnv {
    pub fn keys(&self) -> Api<Key> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Server-side applies a Key manifest (YAML) into this namespace, as `kubectl apply
    /// --server-side` would.
    pub async fn apply_key(&self, manifest: &str) -> Key {
        let mut key: Key = serde_yaml::from_str(manifest).expect("a Key manifest");
        key.metadata.namespace = Some(self.namespace.clone());
        self.keys()
            .patch(
                &key.name_any(),
                &PatchParams::apply("keyward-test").force(),
                &Patch::Apply(&key),
            )
            .await
            .unwrap_or_else(|e| panic!("applying Key {}: {e}", key.name_any()))
    }

    /// Server-side applies a KeyVersion manifest (YAML) into this namespace.
    pub async fn apply_key_version(&self, manifest: &str) -> KeyVersion {
        let mut request: KeyVersion =
            serde_yaml::from_str(manifest).expect("a KeyVersion manifest");
        request.metadata.namespace = Some(self.namespace.clone());
        let api: Api<KeyVersion> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = PatchParams::apply("keyward-test").force();
        api.patch(&request.name_any(), &params, &Patch::Apply(&request))
            .await
            .unwrap_or_else(|e| panic!("applying KeyVersion {}: {e}", request.name_any()))
    }

    /// Applies every manifest of `kind` (Key or KeyVersion) in examples/, returning names.
    pub async fn apply_examples(&self, kind: &str) -> Vec<String> {
        let mut names = Vec::new();
        for path in example_files() {
            let text = std::fs::read_to_string(&path).expect("example");
            for doc in text.split("\n---\n") {
                match doc.lines().find(|l| l.starts_with("kind: ")) {
                    Some(line) if line != format!("kind: {kind}") => {}
                    Some("kind: Key") => names.push(self.apply_key(doc).await.name_any()),
                    Some("kind: KeyVersion") => {
                        names.push(self.apply_key_version(doc).await.name_any())
                    }
                    other => panic!("{}: unexpected document {other:?}", path.display()),
                }
            }
        }
        names
    }

    pub async fn key(&self, name: &str) -> Key {
        self.keys()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("get Key {name}: {e}"))
    }

    pub async fn secret(&self, name: &str) -> Option<Secret> {
        self.secrets().get_opt(name).await.expect("get Secret")
    }

    /// Waits until `done` holds for the Key, returning it; panics with the last state if not.
    pub async fn wait_key(&self, name: &str, what: &str, done: impl Fn(&Key) -> bool) -> Key {
        let deadline = Instant::now() + CONVERGE;
        loop {
            if let Some(key) = self.keys().get_opt(name).await.expect("get Key")
                && done(&key)
            {
                return key;
            }
            if Instant::now() > deadline {
                panic!("Key {name} did not become {what} within {CONVERGE:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Proof that the operator reconciled Key `name` after everything the test did so far: a
    /// new description (a new generation, which needs a reconcile of its own) and its Ready
    /// condition written for that generation. What a test checks next was seen by that pass.
    pub async fn reconciled_again(&self, name: &str) -> Key {
        let marker = format!("reconciled again at {}", jiff::Timestamp::now());
        let patch = serde_json::json!({"spec": {"description": marker}});
        let key = self
            .keys()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch the Key's description");
        let generation = key.metadata.generation;
        self.wait_key(name, "reconciled at its new generation", |k| {
            k.metadata.generation == generation && ready_reason(k).is_some()
        })
        .await
    }

    /// Waits for Ready=True at the Key's current generation.
    pub async fn wait_ready(&self, name: &str) -> Key {
        self.wait_key(name, "Ready", |k| {
            ready_reason(k).as_deref() == Some("KeyReady")
        })
        .await
    }

    /// Waits for the Ready condition to carry `reason` at the Key's current generation.
    pub async fn wait_reason(&self, name: &str, reason: &str) -> Key {
        self.wait_key(name, reason, |k| ready_reason(k).as_deref() == Some(reason))
            .await
    }

    /// The events recorded on an object of this namespace.
    pub async fn events_for(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = events
            .list(&ListParams::default())
            .await
            .expect("list events");
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect()
    }

    /// Waits for an event with `reason` on `name`, returning its note.
    pub async fn wait_event(&self, name: &str, reason: &str) -> String {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let events = self.events_for(name).await;
            if let Some(e) = events.iter().find(|e| e.reason.as_deref() == Some(reason)) {
                return e.note.clone().unwrap_or_default();
            }
            if Instant::now() > deadline {
                panic!("no {reason} event on {name} within {CONVERGE:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for an event with `reason` on `name` whose note contains `text`.
    pub async fn wait_event_saying(&self, name: &str, reason: &str, text: &str) -> String {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let events = self.events_for(name).await;
            let found = events.iter().find(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.note.as_deref().is_some_and(|n| n.contains(text))
            });
            if let Some(e) = found {
                return e.note.clone().unwrap_or_default();
            }
            if Instant::now() > deadline {
                panic!("no {reason} event on {name} saying {text:?} within {CONVERGE:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the Ready reason of KeyVersion `name` satisfies `done`, returning the
    /// KeyVersion; panics naming `what` and the last reason and message if it does not.
    pub async fn wait_key_version(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> KeyVersion {
        let api: Api<KeyVersion> = Api::namespaced(self.client.clone(), &self.namespace);
        let deadline = Instant::now() + CONVERGE;
        loop {
            let request = api.get(name).await.unwrap();
            let ready = request
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
            if ready.is_some_and(|c| done(&c.reason)) {
                return request;
            }
            assert!(
                Instant::now() < deadline,
                "KeyVersion {name} did not become {what}: {:?}",
                ready.map(|c| (&c.reason, &c.message))
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The record (`key.json`) of Key `name`'s material store, if the store exists.
    pub async fn record(&self, name: &str) -> Option<KeyRecord> {
        let store = self.store(name).await?;
        Some(record_of(&store))
    }

    /// The material store of Key `name`, in the store namespace, if it exists.
    pub async fn store(&self, name: &str) -> Option<Secret> {
        let store_name = self.store_name(name);
        self.stores().get_opt(&store_name).await.expect("get store")
    }

    /// The name of Key `name`'s store in the store namespace.
    pub fn store_name(&self, name: &str) -> String {
        keyward::store::store_name(&self.namespace, name)
    }

    /// The Secrets of the store namespace.
    pub fn stores(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.store_namespace)
    }

    /// The Secrets keyward manages for this test: consumers in its namespace, stores in its
    /// store namespace.
    pub async fn managed_secrets(&self) -> Vec<Secret> {
        let lp = ListParams::default().labels("app.kubernetes.io/managed-by=keyward");
        let mut secrets = self.secrets().list(&lp).await.expect("list Secrets").items;
        secrets.extend(self.stores().list(&lp).await.expect("list stores").items);
        secrets
    }
}

/// The reason of the Ready condition, if it describes the Key's current generation.
pub fn ready_reason(key: &Key) -> Option<String> {
    let status = key.status.as_ref()?;
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    (ready.observed_generation == key.metadata.generation).then(|| ready.reason.clone())
}

pub fn ready_message(key: &Key) -> String {
    let status = key.status.as_ref().expect("status");
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    ready.message.clone()
}

/// A Secret data entry's bytes.
pub fn entry<'a>(secret: &'a Secret, name: &str) -> &'a [u8] {
    match secret.data.as_ref().and_then(|d| d.get(name)) {
        Some(bytes) => &bytes.0,
        None => panic!("Secret {} has no entry {name}", secret.name_any()),
    }
}

/// The names of a Secret's data entries, sorted.
pub fn entry_names(secret: &Secret) -> Vec<String> {
    secret.data.iter().flat_map(|d| d.keys().cloned()).collect()
}

/// A digest of all of a Secret's data, to compare material before and after without
/// printing it.
pub fn data_digest(secret: &Secret) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (name, bytes) in secret.data.iter().flatten() {
        hasher.update(name.as_bytes());
        hasher.update((bytes.0.len() as u64).to_be_bytes());
        hasher.update(&bytes.0);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The record (`key.json`) of a material store.
pub fn record_of(store: &Secret) -> KeyRecord {
    serde_json::from_slice(entry(store, "key.json")).expect("a readable key.json")
}

/// The symmetric key material of a material store: its `<versionId>.key` entries, in order.
pub fn symmetric_material(store: &Secret) -> Vec<Vec<u8>> {
    store
        .data
        .iter()
        .flatten()
        .filter(|(n, _)| n.ends_with(".key"))
        .map(|(_, b)| b.0.clone())
        .collect()
}
