//! What the API reads, each its own watch: every replica serves the API, leader or not, so it
//! does not borrow the controllers' caches (which only the leader runs).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::api::{AccessKey, Key, labels};
use crate::reconcile::Scope;
use crate::service::materials::Materials;
use crate::store::credential::Credential;

pub struct Caches {
    /// The Keys in scope, by KeyId when addressed so (a scan: the cache has no index yet).
    pub keys: reflector::Store<Key>,
    pub access_keys: reflector::Store<AccessKey>,
    /// keyward's copies of AccessKey pairs (the store namespace; small, and whole: a signature
    /// is checked against the secret).
    credentials: reflector::Store<Secret>,
    /// Key material, read once per change of its store.
    pub materials: Materials,
    /// Set once every cache held its first full list: a filled cache stays filled.
    filled: AtomicBool,
}

impl Caches {
    /// The caches, and the watches that fill them (to be polled for as long as the API runs).
    pub fn start(
        client: Client,
        scope: &Scope,
    ) -> (Caches, futures::future::BoxFuture<'static, ()>) {
        let config = || watcher::Config::default().timeout(crate::cluster::WATCH_TIMEOUT_SECS);
        let (keys, keys_writer) = reflector::store();
        let (access_keys, access_keys_writer) = reflector::store();
        let (credentials, credentials_writer) = reflector::store();
        let key_api: Api<Key> = crate::cluster::api(client.clone(), scope.namespace.as_deref());
        let access_key_api: Api<AccessKey> =
            crate::cluster::api(client.clone(), scope.namespace.as_deref());
        let credential_api: Api<Secret> =
            crate::cluster::api(client.clone(), Some(&scope.store_namespace));
        let (materials, materials_watch) = Materials::start(client, scope);
        let selector = scope.role_selector(labels::ROLE_CREDENTIAL);
        let keys_watch = watcher(key_api, config())
            .default_backoff()
            .modify(crate::reconcile::slim::<Key>)
            .reflect(keys_writer)
            .for_each(|_| futures::future::ready(()));
        let access_keys_watch = watcher(access_key_api, config())
            .default_backoff()
            .reflect(access_keys_writer)
            .for_each(|_| futures::future::ready(()));
        let credentials_watch = watcher(credential_api, config().labels(&selector))
            .default_backoff()
            .modify(crate::reconcile::slim::<Secret>)
            .reflect(credentials_writer)
            .for_each(|_| futures::future::ready(()));
        let watches = async move {
            futures::join!(
                keys_watch,
                access_keys_watch,
                credentials_watch,
                materials_watch
            );
        }
        .boxed();
        (
            Caches {
                keys,
                access_keys,
                credentials,
                materials,
                filled: AtomicBool::new(false),
            },
            watches,
        )
    }

    /// Whether every cache holds its first full list: until then no answer can be trusted.
    pub fn synced(&self) -> bool {
        if self.filled.load(Ordering::Relaxed) {
            return true;
        }
        let ready = |wait: futures::future::BoxFuture<'_, bool>| wait.now_or_never() == Some(true);
        let filled = ready(self.keys.wait_until_ready().map(|r| r.is_ok()).boxed())
            && ready(
                self.access_keys
                    .wait_until_ready()
                    .map(|r| r.is_ok())
                    .boxed(),
            )
            && ready(
                self.credentials
                    .wait_until_ready()
                    .map(|r| r.is_ok())
                    .boxed(),
            )
            && self.materials.synced();
        self.filled.store(filled, Ordering::Relaxed);
        filled
    }

    /// The credential of `access_key_id`, if keyward issued it and its AccessKey still exists
    /// as the very object it was issued for.
    pub fn credential(&self, access_key_id: &str) -> Option<Credential> {
        let secret = self.credentials.state().into_iter().find(|s| {
            s.labels().get(labels::ACCESS_KEY_ID).map(String::as_str) == Some(access_key_id)
        })?;
        let credential = Credential::parse(&secret).ok()?;
        let owner = ObjectRef::new(&credential.name).within(&credential.namespace);
        let access_key = self.access_keys.get(&owner)?;
        (access_key.metadata.deletion_timestamp.is_none() && credential.belongs_to(&access_key))
            .then_some(credential)
    }

    /// Waits, at most `within`, for this replica's cached Key `namespace/name` to satisfy
    /// `done`: after a write, what the API answers next then agrees with what it just did.
    /// The cache is memory filled by its watch, so looking every few milliseconds is cheap.
    pub async fn wait_for_key(
        &self,
        namespace: &str,
        name: &str,
        within: Duration,
        done: impl Fn(&Key) -> bool,
    ) -> Option<Arc<Key>> {
        const LOOK_EVERY: Duration = Duration::from_millis(20);
        let reference = ObjectRef::new(name).within(namespace);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(key) = self.keys.get(&reference).filter(|k| done(k)) {
                return Some(key);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }
}
