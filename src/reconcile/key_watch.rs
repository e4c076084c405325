//! The one watch of the Keys, shared by the controllers.

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use super::{Context, slim, watch_config};
use crate::api::Key;

/// How many Key events a slow controller may lag behind the shared Key watch before the watch
/// waits for it.
const KEY_EVENT_BUFFER: usize = 1024;

/// The one watch of the Keys: it fills the cache the Key controller reads, hands every Key
/// that changed to the Key controller and to the KeyVersion controller (a change to a Key
/// wakes the requests naming it), and names the store of every Key deleted. One watch, one
/// cache: each Key is received and held once.
pub(super) struct KeyWatch {
    pub(super) cache: reflector::Store<Key>,
    pub(super) for_keys: reflector::ReflectHandle<Key>,
    pub(super) for_requests: reflector::ReflectHandle<Key>,
    /// The material store of each Key deleted, named once the cache has dropped the Key.
    pub(super) deleted: mpsc::UnboundedReceiver<ObjectRef<PartialObjectMeta<Secret>>>,
    /// Each time the watch listed the Keys anew after the first time (its resourceVersion was
    /// too old, or the API server restarted): Keys deleted meanwhile sent no deletion event.
    pub(super) relisted: mpsc::UnboundedReceiver<()>,
    /// Drives the watch; the subscribers see nothing until it is polled.
    pub(super) watch: futures::future::BoxFuture<'static, ()>,
}

impl KeyWatch {
    pub(super) fn new(ctx: &Context) -> Self {
        let keys: Api<Key> = ctx.scope.api(ctx.kube.client().clone());
        let (cache, writer) = reflector::store_shared(KEY_EVENT_BUFFER);
        let subscribe = || writer.subscribe().expect("a shared store has subscribers");
        let (for_keys, for_requests) = (subscribe(), subscribe());
        let (deletions, deleted) = mpsc::unbounded();
        let (relists, relisted) = mpsc::unbounded();
        let store_namespace = ctx.scope.store_namespace.clone();
        let mut lists = 0u64;
        let watch = watcher(keys, watch_config())
            .default_backoff()
            .modify(slim::<Key>)
            .reflect_shared(writer)
            .for_each(move |event| {
                match event {
                    // The receivers are closed only once the store controller has stopped.
                    Ok(watcher::Event::Delete(key)) => {
                        if let Some(store) = store_of_key(&store_namespace, &key) {
                            let _ = deletions.unbounded_send(store);
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        lists += 1;
                        if lists > 1 {
                            let _ = relists.unbounded_send(());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "watching Keys failed; retrying"),
                }
                futures::future::ready(())
            })
            .boxed();
        KeyWatch {
            cache,
            for_keys,
            for_requests,
            deleted,
            relisted,
            watch,
        }
    }
}

/// The material store of a Key.
fn store_of_key(store_namespace: &str, key: &Key) -> Option<ObjectRef<PartialObjectMeta<Secret>>> {
    let name = crate::store::store_name(&key.namespace()?, &key.name_any());
    Some(ObjectRef::new(&name).within(store_namespace))
}
