//! The limit on asymmetric key versions, per namespace: the seed allows each user 50 per
//! region, and a namespace is keyward's user (the cluster its region). Counted only from the
//! stores keyward wrote in its store namespace, so nothing a tenant writes in its own
//! namespace changes another's count; and taken by reservation, so two requests cannot both
//! take the last place while their writes still run in parallel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector;
use tokio::sync::watch;

use crate::api::{KeySpec, labels};

/// Asymmetric versions per namespace: the store cache, raised by this process's own writes
/// that the cache may not show yet.
#[derive(Default)]
pub struct Quota {
    /// The store cache, and whether it is filled, once the controllers run.
    stores: OnceLock<(
        reflector::Store<PartialObjectMeta<Secret>>,
        watch::Receiver<bool>,
    )>,
    /// Versions of the stores this process wrote, by store name, until the cache shows them
    /// (or a while has passed: the store may be gone since).
    written: Mutex<HashMap<String, (StoreCount, Instant)>>,
    /// Places taken but not yet written, by namespace.
    reserved: Arc<Mutex<HashMap<String, usize>>>,
}

/// One place taken in a namespace's share, until the write it was taken for is noted with
/// [`Quota::wrote`] (or given up): then dropped.
pub struct Reservation {
    reserved: Arc<Mutex<HashMap<String, usize>>>,
    namespace: String,
    /// The versions the namespace held besides this place.
    pub held: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self.reserved.lock().expect("quota reservations");
        if let Some(taken) = reserved.get_mut(&self.namespace) {
            *taken = taken.saturating_sub(1);
        }
    }
}

/// What a store counts for: whose it is and how many asymmetric versions it holds.
#[derive(Clone, Debug, PartialEq)]
struct StoreCount {
    namespace: String,
    versions: usize,
}

/// How long a write of this process counts on its own: far longer than the cache lags.
const WRITE_MEMORY: Duration = Duration::from_secs(60);

impl Quota {
    /// Counts from `stores`, the cache of the store watch, from now on: once `synced` says
    /// it holds every store.
    pub fn attach(
        &self,
        stores: reflector::Store<PartialObjectMeta<Secret>>,
        synced: watch::Receiver<bool>,
    ) {
        let _ = self.stores.set((stores, synced));
    }

    /// Takes one place in `namespace`'s share of `max`, or says how many it holds (all taken).
    /// Counting and taking are one step, so no two callers get the last place; the write the
    /// place is for must be noted with [`Quota::wrote`] before the reservation is dropped.
    pub async fn reserve(&self, namespace: &str, max: usize) -> Result<Reservation, usize> {
        if !self.synced().await {
            return Err(usize::MAX);
        }
        let mut reserved = self.reserved.lock().expect("quota reservations");
        let taken = reserved.entry(namespace.to_string()).or_insert(0);
        let held = self.count_now(namespace).saturating_add(*taken);
        if held >= max {
            return Err(held);
        }
        *taken += 1;
        Ok(Reservation {
            reserved: self.reserved.clone(),
            namespace: namespace.to_string(),
            held,
        })
    }

    /// The asymmetric versions held in `namespace`, initial versions included, places taken
    /// included. Waits for the store cache to fill: an empty cache would count nothing.
    pub async fn asymmetric_versions(&self, namespace: &str) -> usize {
        if !self.synced().await {
            // Not counted is not room.
            return usize::MAX;
        }
        let reserved = self.reserved.lock().expect("quota reservations");
        let taken = reserved.get(namespace).copied().unwrap_or(0);
        self.count_now(namespace).saturating_add(taken)
    }

    /// Whether the store cache holds every store (waiting until it does).
    async fn synced(&self) -> bool {
        match self.stores.get() {
            Some((_, synced)) => synced.clone().wait_for(|listed| *listed).await.is_ok(),
            None => false,
        }
    }

    /// The versions the stores of `namespace` hold, from the cache and this process's writes.
    fn count_now(&self, namespace: &str) -> usize {
        let Some((stores, _)) = self.stores.get() else {
            return usize::MAX;
        };
        let cached = stores.state();
        let mut written = self.written.lock().expect("quota writes");
        let mut counts: HashMap<String, StoreCount> = cached
            .iter()
            .filter_map(|store| Some((store.name_any(), count_of(store.as_ref())?)))
            .collect();
        // What the cache already shows needs no raising any more.
        written.retain(|name, (count, at)| {
            counts.get(name) != Some(count) && at.elapsed() < WRITE_MEMORY
        });
        for (name, (count, _)) in written.iter() {
            let known = counts.entry(name.clone()).or_insert_with(|| count.clone());
            known.versions = known.versions.max(count.versions);
        }
        total_in(counts.values(), namespace)
    }

    /// Notes a store this process just wrote (created or grown).
    pub fn wrote(&self, store: &Secret) {
        if let Some(count) = count_of(store) {
            let mut written = self.written.lock().expect("quota writes");
            written.insert(store.name_any(), (count, Instant::now()));
        }
    }

    /// Notes a store this process just destroyed.
    pub fn destroyed(&self, store: &Secret) {
        self.written
            .lock()
            .expect("quota writes")
            .remove(&store.name_any());
    }
}

/// What a store counts for, from its annotations: symmetric keys count for nothing.
fn count_of<K: ResourceExt>(store: &K) -> Option<StoreCount> {
    let annotations = store.annotations();
    let spec = KeySpec::parse(annotations.get(labels::KEY_SPEC)?)?;
    let versions = annotations.get(labels::VERSIONS)?.parse::<usize>().ok()?;
    let namespace = annotations.get(labels::KEY_NAMESPACE)?.clone();
    (!spec.is_symmetric()).then_some(StoreCount {
        namespace,
        versions,
    })
}

/// The versions `namespace` holds; a sum too large for a `usize` is as full as can be.
fn total_in<'a>(counts: impl Iterator<Item = &'a StoreCount>, namespace: &str) -> usize {
    counts
        .filter(|c| c.namespace == namespace)
        .fold(0usize, |total, c| total.saturating_add(c.versions))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kube::api::ObjectMeta;

    use super::*;

    fn store(namespace: &str, spec: &str, versions: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(format!("{namespace}.k.keyward-store")),
                annotations: Some(BTreeMap::from([
                    (labels::KEY_NAMESPACE.into(), namespace.into()),
                    (labels::KEY_SPEC.into(), spec.into()),
                    (labels::VERSIONS.into(), versions.into()),
                ])),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        }
    }

    fn counts(stores: &[Secret]) -> Vec<StoreCount> {
        stores.iter().filter_map(count_of).collect()
    }

    #[test]
    fn only_asymmetric_versions_of_the_namespace_count() {
        let stores = [
            store("team-a", "RSA_2048", "3"),
            store("team-a", "Aliyun_AES_256", "40"),
            store("team-a", "EC_P256", "2"),
            store("team-b", "RSA_2048", "49"),
        ];
        assert_eq!(total_in(counts(&stores).iter(), "team-a"), 5);
        assert_eq!(total_in(counts(&stores).iter(), "team-b"), 49);
        assert_eq!(total_in(counts(&stores).iter(), "team-c"), 0);
    }

    #[test]
    fn a_count_too_large_to_add_is_full_not_a_panic() {
        let huge = usize::MAX.to_string();
        let stores = [
            store("team-a", "RSA_2048", &huge),
            store("team-a", "RSA_2048", &huge),
        ];
        assert_eq!(total_in(counts(&stores).iter(), "team-a"), usize::MAX);
        // Not a number: not counted, never a panic.
        let unreadable = [store("team-a", "RSA_2048", "1e400")];
        assert_eq!(total_in(counts(&unreadable).iter(), "team-a"), 0);
    }
}
