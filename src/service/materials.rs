//! Key material for the API's calls, read once per change of its store rather than once per
//! call: a hot key would otherwise cost a GET of its store Secret on every Encrypt.
//!
//! A metadata-only watch of the store Secrets says which resourceVersion each store is at (no
//! material crosses that watch). A parsed store is kept while the watch still shows its
//! resourceVersion; any other answer (a rotation, a restore, a store not yet seen) reads the
//! Secret live again. So the API never uses material older than what its watch has seen, and
//! holds in memory only the stores of keys that are being used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::cluster::Kube;
use crate::error::Error;
use crate::kms::error::{Code, Rejection};
use crate::reconcile::Scope;
use crate::store::{Store, store_name};

/// How many parsed stores one replica keeps; past it, one is dropped at random (it is read
/// again on its next call). Far more keys than this in steady use would mean a GET per call.
const CAPACITY: usize = 4096;

pub struct Materials {
    store_namespace: String,
    /// The store Secrets' metadata: their resourceVersions, never their data.
    versions: reflector::Store<PartialObjectMeta<Secret>>,
    /// Parsed stores by Secret name, each as read at its resourceVersion.
    parsed: Mutex<HashMap<String, Arc<Store>>>,
    /// Calls served from a kept store, and live reads (for the metrics).
    kept: AtomicU64,
    read: AtomicU64,
}

/// Why a key's store could not be had.
pub enum Unreadable {
    /// The cluster could not be asked.
    Cluster(Error),
    /// The store is missing or not whole.
    Store(Rejection),
}

impl Materials {
    /// The material cache, and the watch that keeps it honest (polled as long as the API runs).
    pub fn start(
        client: Client,
        scope: &Scope,
    ) -> (Materials, impl std::future::Future<Output = ()> + use<>) {
        let (versions, writer) = reflector::store();
        // Metadata only: no material crosses this watch.
        let api: Api<PartialObjectMeta<Secret>> = Api::namespaced(client, &scope.store_namespace);
        let config = watcher::Config::default()
            .timeout(crate::cluster::WATCH_TIMEOUT_SECS)
            .labels(&scope.stores_selector());
        let watch = watcher(api, config)
            .default_backoff()
            .reflect(writer)
            .for_each(|_| futures::future::ready(()));
        let materials = Materials {
            store_namespace: scope.store_namespace.clone(),
            versions,
            parsed: Mutex::new(HashMap::new()),
            kept: AtomicU64::new(0),
            read: AtomicU64::new(0),
        };
        (materials, watch)
    }

    /// Whether the watch holds its first full list.
    pub fn synced(&self) -> bool {
        use futures::FutureExt;
        matches!(
            self.versions.wait_until_ready().now_or_never(),
            Some(Ok(()))
        )
    }

    /// The store of Key `namespace/name`: the one kept if the watch still shows its
    /// resourceVersion and it holds every version in `needed`, else read live (and kept). The
    /// Key's cache can be ahead of the store's watch (a rotation is seen on the Key first), and
    /// a CiphertextBlob can come from a replica that saw it sooner: what the call needs, it
    /// reads.
    pub async fn store(
        &self,
        kube: &Kube,
        namespace: &str,
        name: &str,
        needed: &[&str],
    ) -> Result<Arc<Store>, Unreadable> {
        let secret_name = store_name(namespace, name);
        let kept = self.kept(&secret_name);
        if let Some(kept) = kept.filter(|s| needed.iter().all(|v| s.record.has_version(v))) {
            self.kept.fetch_add(1, Ordering::Relaxed);
            return Ok(kept);
        }
        self.read.fetch_add(1, Ordering::Relaxed);
        let read = kube
            .get_secret(&self.store_namespace, &secret_name)
            .await
            .map_err(Unreadable::Cluster)?;
        let Some(secret) = read else {
            self.parsed().remove(&secret_name);
            return Err(Unreadable::Store(Rejection::new(
                Code::MaterialStoreMissing,
                "store missing",
            )));
        };
        let store = Arc::new(Store::parse(secret, namespace, name).map_err(Unreadable::Store)?);
        let mut parsed = self.parsed();
        if parsed.len() >= CAPACITY && !parsed.contains_key(&secret_name) {
            let evicted = parsed.keys().next().cloned();
            evicted.map(|name| parsed.remove(&name));
        }
        parsed.insert(secret_name, store.clone());
        Ok(store)
    }

    /// Calls served from a kept store, and live reads of a store.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.kept.load(Ordering::Relaxed),
            self.read.load(Ordering::Relaxed),
        )
    }

    /// The parsed store named `secret_name`, if it is at the resourceVersion the watch shows.
    fn kept(&self, secret_name: &str) -> Option<Arc<Store>> {
        let reference = ObjectRef::new(secret_name).within(&self.store_namespace);
        let watched = self.versions.get(&reference)?;
        let kept = self.parsed().get(secret_name).cloned()?;
        let current = watched.resource_version().is_some()
            && watched.resource_version() == kept.secret().resource_version();
        current.then_some(kept)
    }

    fn parsed(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Store>>> {
        // A panic while holding the lock leaves a map of whole entries: keep using it.
        self.parsed.lock().unwrap_or_else(|e| e.into_inner())
    }
}
