//! The one watch of the material stores (metadata only), shared by the controllers.

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use super::{Context, slim, watch_config};
use crate::api::{Key, labels};

/// How many store events a slow controller may lag behind the watch before it waits.
const STORE_EVENT_BUFFER: usize = 1024;

/// The stores in keyward's store namespace of the Keys in scope: their cache, read by the
/// store controller, and every store that changed, for the store controller and for the Key
/// controller (a store changed by another writer wakes its Key). Only metadata: key bytes never
/// enter the cache.
pub(super) struct StoreWatch {
    pub(super) cache: reflector::Store<PartialObjectMeta<Secret>>,
    pub(super) for_stores: reflector::ReflectHandle<PartialObjectMeta<Secret>>,
    pub(super) for_keys: reflector::ReflectHandle<PartialObjectMeta<Secret>>,
    /// The Key of each store deleted (the subscribers hear only of stores that exist).
    pub(super) deleted: mpsc::UnboundedReceiver<ObjectRef<Key>>,
    /// True once the cache holds every store. Any number of tasks may wait for it, unlike
    /// the cache's own `wait_until_ready`, which wakes only the last task that polled it.
    pub(super) synced: watch::Receiver<bool>,
    /// Drives the watch; the subscribers see nothing until it is polled.
    pub(super) watch: futures::future::BoxFuture<'static, ()>,
}

impl StoreWatch {
    pub(super) fn new(ctx: &Context) -> Self {
        let scope = &ctx.scope;
        let stores: Api<PartialObjectMeta<Secret>> =
            crate::cluster::api(ctx.kube.client().clone(), Some(&scope.store_namespace));
        let (cache, writer) = reflector::store_shared(STORE_EVENT_BUFFER);
        let subscribe = || writer.subscribe().expect("a shared store has subscribers");
        let (for_stores, for_keys) = (subscribe(), subscribe());
        let (deletions, deleted) = mpsc::unbounded();
        let (listed, synced) = watch::channel(false);
        let watch = watcher(stores, watch_config().labels(&scope.stores_selector()))
            .default_backoff()
            .modify(slim)
            .reflect_shared(writer)
            .for_each(move |event| {
                match event {
                    // Closed only once the Key controller has stopped.
                    Ok(watcher::Event::Delete(store)) => {
                        if let Some(key) = key_of_store(&store) {
                            let _ = deletions.unbounded_send(key);
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        listed.send_replace(true);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "watching material stores failed; retrying")
                    }
                }
                futures::future::ready(())
            })
            .boxed();
        StoreWatch {
            cache,
            for_stores,
            for_keys,
            deleted,
            synced,
            watch,
        }
    }
}

/// The Key a store belongs to, from the annotations that name it in full.
pub(super) fn key_of_store(store: &PartialObjectMeta<Secret>) -> Option<ObjectRef<Key>> {
    let annotations = store.annotations();
    let name = annotations.get(labels::KEY)?;
    let namespace = annotations.get(labels::KEY_NAMESPACE)?;
    Some(ObjectRef::new(name).within(namespace))
}
