//! Custody of key material on a real API server: what a tenant does in its own namespace
//! (deleting every Secret, or the namespace itself) loses no key, the move of the stores of the
//! former layout (in the tenant's namespace) to keyward's store namespace survives `kill -9`
//! anywhere, and a namespaced operator needs Secrets only in its namespace and the store
//! namespace.
//!
//! The tests by concern: [`namespace`] (the tenant's namespace deleted and re-created within
//! the pending window), [`secrets`] (every Secret of the tenant's namespace deleted),
//! [`migration`] (the former layout moved, the operator killed midway), [`rbac`] (the operator
//! confined by Roles); [`former`] builds an installation of the former layout, as the former
//! operator wrote it.

#[path = "../common/mod.rs"]
mod common;

mod former;
mod migration;
mod namespace;
mod rbac;
mod secrets;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use keyward::api::Key;
use keyward::store::RECORD_ENTRY;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use common::{TestEnv, data_digest, record_of};

/// The KeyId a Key's status reports.
fn key_id(key: &Key) -> String {
    key.status
        .as_ref()
        .and_then(|s| s.key_metadata.as_ref())
        .map(|m| m.key_id.clone())
        .unwrap_or_else(|| panic!("Key {} reports no KeyId", key.name_any()))
}

/// The version ids a Key's status lists, oldest first.
fn status_versions(key: &Key) -> Vec<String> {
    let status = key.status.as_ref().expect("status");
    status
        .key_versions
        .iter()
        .map(|v| v.key_version_id.clone())
        .collect()
}

/// One key as a tenant sees it and as keyward keeps it, never its bytes: digests only.
#[derive(Clone, Debug, PartialEq)]
struct Held {
    key_id: String,
    /// The versions the store's record lists, oldest first.
    versions: Vec<String>,
    /// Of the consumer Secret's data.
    consumer: String,
    /// Of the store's data (record and material).
    store: String,
    /// Of the store's material alone (every entry but the record).
    material: String,
}

impl Held {
    /// Key `name` once Ready: its KeyId, versions, and the digests of its two Secrets (the
    /// consumer Secret is the one its status names).
    async fn of(env: &TestEnv, name: &str) -> Held {
        let key = env.wait_ready(name).await;
        let store = env.store(name).await.expect("a store");
        let record = record_of(&store);
        let secret_name = key.status.as_ref().and_then(|s| s.secret_name.clone());
        let consumer = env
            .secret(secret_name.as_deref().unwrap_or(name))
            .await
            .expect("a consumer Secret");
        let held = Held {
            key_id: key_id(&key),
            versions: record
                .versions
                .iter()
                .map(|v| v.key_version_id.clone())
                .collect(),
            consumer: data_digest(&consumer),
            store: data_digest(&store),
            material: material_digest(&store),
        };
        assert_eq!(
            held.key_id, record.key_id,
            "{name}: status and store disagree"
        );
        assert_eq!(
            status_versions(&key),
            held.versions,
            "{name}: status versions"
        );
        held
    }
}

/// A digest of a store's material: every entry but the record (`key.json`), which a
/// scheduled or cancelled deletion rewrites.
fn material_digest(store: &Secret) -> String {
    let mut material = store.clone();
    if let Some(data) = material.data.as_mut() {
        data.remove(RECORD_ENTRY);
    }
    data_digest(&material)
}

/// The consumer Secret `name` once its data has `digest`.
async fn consumer_with(env: &TestEnv, name: &str, digest: &str) -> Secret {
    common::eventually(
        &format!("Secret {name} serving its bytes again"),
        || async { env.secret(name).await.filter(|s| data_digest(s) == digest) },
    )
    .await
}

/// The note of the event with `reason` keyward recorded on Key `name`'s store, in the store
/// namespace, once there is one.
async fn store_event(env: &TestEnv, name: &str, reason: &str) -> String {
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.store_namespace);
    let store = env.store_name(name);
    common::eventually(&format!("a {reason} event on {store}"), || async {
        let listed = events.list(&ListParams::default()).await.expect("events");
        listed.items.into_iter().find_map(|e| {
            let on = e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(&store);
            (on && e.reason.as_deref() == Some(reason)).then(|| e.note.unwrap_or_default())
        })
    })
    .await
}

/// Each Key's Ready conditions, (status, reason), in the order they were seen.
type ReadyStates = BTreeMap<String, Vec<(String, String)>>;

/// Every Ready condition the Keys of a namespace went through, as a watch saw them: the
/// proof that a Key never left Ready, which polling could miss.
struct ReadyHistory {
    seen: Arc<Mutex<ReadyStates>>,
    /// Errors of the watch: after one it may have listed anew, past changes it never saw.
    errors: Arc<Mutex<Vec<String>>>,
    watch: tokio::task::JoinHandle<()>,
}

impl ReadyHistory {
    /// Starts watching the Keys of `env`'s namespace, and returns once the watch has listed
    /// them: every later change is seen.
    async fn watch(env: &TestEnv) -> ReadyHistory {
        let seen: Arc<Mutex<ReadyStates>> = Arc::default();
        let (listed, on_listed) = tokio::sync::oneshot::channel();
        let mut listed = Some(listed);
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let (record, failed) = (seen.clone(), errors.clone());
        let stream = watcher(env.keys(), watcher::Config::default()).default_backoff();
        let watch = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(listed) = listed.take() {
                            let _ = listed.send(());
                        }
                    }
                    Ok(watcher::Event::Apply(key) | watcher::Event::InitApply(key)) => {
                        let ready = key.status.as_ref().and_then(|s| {
                            s.conditions.iter().find(|c| c.type_ == "Ready").cloned()
                        });
                        let state = ready.map(|c| (c.status, c.reason)).unwrap_or_default();
                        let mut seen = record.lock().unwrap();
                        let states = seen.entry(key.name_any()).or_default();
                        if states.last() != Some(&state) {
                            states.push(state);
                        }
                    }
                    Err(e) => failed.lock().unwrap().push(e.to_string()),
                    Ok(_) => {}
                }
            }
        });
        on_listed.await.expect("the Key watch listed the Keys");
        ReadyHistory {
            seen,
            errors,
            watch,
        }
    }

    /// Each Key's Ready states, (status, reason), in the order they were seen; panics if the
    /// watch failed, and so may have missed some.
    fn states(&self) -> ReadyStates {
        let errors = self.errors.lock().unwrap().clone();
        assert!(errors.is_empty(), "the Key watch failed: {errors:?}");
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for ReadyHistory {
    fn drop(&mut self) {
        self.watch.abort();
    }
}
