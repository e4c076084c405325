//! The controllers: which objects trigger which reconciler, and how failures are retried.

mod access_key;
mod hsm_audit;
mod key;
mod key_version;
mod key_watch;
mod migrate;
mod orphan;
mod quota;
mod status_memo;
mod store_watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Resource, ResourceExt};

use crate::api::labels;
use crate::api::{AccessKey, Key, KeyVersion, ProtectionLevel};
use crate::cluster::Kube;
use crate::error::Error;
use crate::hsm::{Hsm, VersionObjects};
use crate::kms::material::{self, Material};
use crate::plan::PlanSettings;
use crate::runtime::metrics::Telemetry;
use crate::runtime::shutdown::Shutdown;
use crate::store::{KeyRecord, Store, StoreLocation};
use key_watch::KeyWatch;
use store_watch::{StoreWatch, key_of_store};

/// What every reconcile shares.
pub struct Context {
    pub kube: Kube,
    pub settings: PlanSettings,
    pub scope: Scope,
    pub telemetry: Arc<Telemetry>,
    /// The HSM that `protectionLevel: HSM` keys live in (`--pkcs11-module`), if any.
    pub hsm: Option<Hsm>,
    /// Consecutive failures per object, for exponential backoff; cleared on success.
    failures: Mutex<HashMap<String, u32>>,
    /// Key statuses written, so that a reconcile from a stale cache does not write them again.
    written_statuses: status_memo::StatusMemo,
    /// The limit on asymmetric versions, per namespace.
    quota: quota::Quota,
}

impl Context {
    pub fn new(
        kube: Kube,
        settings: PlanSettings,
        scope: Scope,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        Context {
            kube,
            settings,
            scope,
            telemetry,
            hsm: None,
            failures: Mutex::default(),
            written_statuses: Default::default(),
            quota: Default::default(),
        }
    }

    /// With `hsm` for HSM keys.
    pub fn with_hsm(mut self, hsm: Option<Hsm>) -> Self {
        self.hsm = hsm;
        self
    }

    /// The HSM, for a key that needs it.
    fn hsm_for(&self, record: &KeyRecord) -> Result<&Hsm, Error> {
        self.hsm
            .as_ref()
            .ok_or_else(|| Error::NoHsm(record.key_id.clone()))
    }

    fn failed(&self, object: String) -> u32 {
        let mut counts = self.failures.lock().expect("failure counts");
        let count = counts.entry(object).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    fn succeeded(&self, object: &str) {
        self.failures.lock().expect("failure counts").remove(object);
    }
}

/// Where the controllers look (Keys in one namespace, or in all of them), where material is
/// kept, and how many objects each controller reconciles at once.
#[derive(Clone, Debug)]
pub struct Scope {
    pub namespace: Option<String>,
    /// keyward's own namespace, which holds every key's material store.
    pub store_namespace: String,
    pub concurrency: u16,
}

impl Scope {
    /// Where the store of Key `key_name` of `key_namespace` is.
    pub fn store_of<'a>(&'a self, key_namespace: &'a str, key_name: &'a str) -> StoreLocation<'a> {
        StoreLocation {
            store_namespace: &self.store_namespace,
            key_namespace,
            key_name,
        }
    }

    /// The label selector of the stores of the Keys in scope: an operator watching one
    /// namespace never sees, counts or destroys the stores of another's.
    pub fn stores_selector(&self) -> String {
        self.role_selector(labels::ROLE_MATERIAL)
    }

    /// The label selector of the objects of `role` keyward keeps for the Keys (or AccessKeys)
    /// in scope.
    pub fn role_selector(&self, role: &str) -> String {
        let mut selector = format!("{},{}={role}", labels::managed_selector(), labels::ROLE);
        if let Some(namespace) = &self.namespace {
            selector.push_str(&format!(",{}={namespace}", labels::KEY_NAMESPACE));
        }
        selector
    }

    fn api<K>(&self, client: kube::Client) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        crate::cluster::api(client, self.namespace.as_deref())
    }
}

/// Runs the Key, KeyVersion and store controllers until `shutdown`, then lets the reconciles
/// in flight finish. Ready once the Key and KeyVersion caches are filled.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) {
    // Before any controller looks for a store where stores are now kept.
    tokio::select! {
        () = migrate::move_former_stores(&ctx) => {}
        () = shutdown.requested() => return,
    }
    // Before any controller generates an object that is not recorded yet.
    tokio::select! {
        result = hsm_audit::report_unrecorded(&ctx) => if let Err(e) = result {
            tracing::warn!(error = %e, "auditing the HSM's objects failed; going on without it");
        },
        () = shutdown.requested() => return,
    }
    // Each subscriber of the shared watches is handed to the one controller that reads it: an
    // unread subscriber would stall the watch once its buffer is full.
    let KeyWatch {
        cache: keys,
        for_keys,
        for_requests,
        deleted,
        relisted,
        watch: key_watch,
    } = KeyWatch::new(&ctx);
    let StoreWatch {
        cache: stores,
        for_stores,
        for_keys: store_changes,
        deleted: stores_deleted,
        synced: stores_synced,
        watch: store_watch,
    } = StoreWatch::new(&ctx);
    let key_controller =
        key_controller(&ctx, keys.clone(), for_keys, store_changes).reconcile_on(stores_deleted);
    let requests = key_version_controller(&ctx, for_requests);
    ctx.quota.attach(stores.clone(), stores_synced);
    let stores = store_controller(&ctx, stores, for_stores, deleted, relisted);
    let access_keys = access_key_controller(&ctx);
    let credentials = credential_controller(&ctx);
    let (cached_access_keys, cached_credentials) = (access_keys.store(), credentials.store());
    ctx.telemetry.watch_keys(keys.clone());
    let (key_cache, request_cache) = (keys.clone(), requests.store());
    // To end at once on shutdown a controller whose cache never filled.
    let (cached_requests, cached_stores) = (requests.store(), stores.store());
    let telemetry = ctx.telemetry.clone();
    let readiness = async move {
        if key_cache.wait_until_ready().await.is_ok()
            && request_cache.wait_until_ready().await.is_ok()
        {
            telemetry.set_ready(true);
        }
    };
    let key_controller = key_controller
        .graceful_shutdown_on(shutdown.requested())
        .run(
            |key, ctx| retried("key", key, ctx, key::reconcile),
            error_policy,
            ctx.clone(),
        )
        .take_until(unsynced_at(shutdown.requested(), keys.clone()))
        .for_each(log_outcome);
    let requests = requests
        .graceful_shutdown_on(shutdown.requested())
        .run(
            |request, ctx| retried("keyversion", request, ctx, key_version::reconcile),
            error_policy,
            ctx.clone(),
        )
        .take_until(unsynced_at(shutdown.requested(), cached_requests))
        .for_each(log_outcome);
    let stores = stores
        .graceful_shutdown_on(shutdown.requested())
        .run(
            move |store, ctx| {
                let keys = keys.clone();
                retried("store", store, ctx, |store, ctx| {
                    orphan::reconcile(store, ctx, keys)
                })
            },
            error_policy,
            ctx.clone(),
        )
        .take_until(unsynced_at(shutdown.requested(), cached_stores))
        .for_each(log_outcome);
    let access_keys = access_keys
        .graceful_shutdown_on(shutdown.requested())
        .run(
            |access_key, ctx| retried("accesskey", access_key, ctx, access_key::reconcile),
            error_policy,
            ctx.clone(),
        )
        .take_until(unsynced_at(
            shutdown.requested(),
            cached_access_keys.clone(),
        ))
        .for_each(log_outcome);
    let credentials = credentials
        .graceful_shutdown_on(shutdown.requested())
        .run(
            move |credential, ctx| {
                let access_keys = cached_access_keys.clone();
                retried("credential", credential, ctx, |credential, ctx| {
                    access_key::revoke_orphan(credential, ctx, access_keys)
                })
            },
            error_policy,
            ctx.clone(),
        )
        .take_until(unsynced_at(shutdown.requested(), cached_credentials))
        .for_each(log_outcome);
    // The watches feed the controllers and run until they have all stopped. Readiness only
    // reports: with the watches refused the caches never fill, and it must not hold the run
    // open after the controllers have stopped.
    let controllers = async {
        futures::join!(key_controller, requests, stores, access_keys, credentials);
    };
    tokio::select! {
        () = controllers => {}
        () = key_watch => {}
        () = store_watch => {}
        () = readiness.then(|()| futures::future::pending()) => {}
    }
}

/// Resolves at `shutdown` if `cache` has not filled yet, to end its controller at once: kube
/// starts reconciling, and so drains on shutdown, only once the cache is ready, so a
/// controller whose watch is refused would otherwise never stop; it has nothing in flight.
async fn unsynced_at<K: Resource + Clone>(
    shutdown: impl Future<Output = ()>,
    cache: reflector::Store<K>,
) where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    shutdown.await;
    if let Some(Ok(())) = cache.wait_until_ready().now_or_never() {
        futures::future::pending::<()>().await;
    }
}

fn key_controller(
    ctx: &Context,
    cache: reflector::Store<Key>,
    changes: reflector::ReflectHandle<Key>,
    store_changes: reflector::ReflectHandle<PartialObjectMeta<Secret>>,
) -> Controller<Key> {
    // Only keyward's consumer Secrets, and only their metadata: key bytes never enter the
    // operator, and the cluster's other Secrets cost nothing.
    let secrets: Api<PartialObjectMeta<Secret>> = ctx.scope.api(ctx.kube.client().clone());
    let consumers = format!(
        "{},{}={}",
        labels::managed_selector(),
        labels::ROLE,
        labels::ROLE_CONSUMER
    );
    // The events of this process's own writes wake nothing: the reconcile that wrote went on
    // from what the write returned. Without this, every key would be reconciled again, with
    // two live reads, once per Secret written and once for its status.
    let own = ctx.kube.own_writes.clone();
    let consumer_changes = watcher(secrets, watch_config().labels(&consumers))
        .touched_objects()
        .try_filter(move |secret| futures::future::ready(!own.is_echo(secret)));
    let own = ctx.kube.own_writes.clone();
    let store_changes =
        store_changes.filter(move |store| futures::future::ready(!own.is_echo(store.as_ref())));
    let own = ctx.kube.own_writes.clone();
    let key_changes = changes.filter(move |key| futures::future::ready(!own.is_echo(key.as_ref())));
    Controller::for_shared_stream(key_changes, cache)
        .watches_stream(consumer_changes, key_of_consumer)
        .watches_shared_stream(store_changes, |store| key_of_store(&store))
        .with_config(controller::Config::default().concurrency(ctx.scope.concurrency))
}

fn key_version_controller(
    ctx: &Context,
    key_changes: reflector::ReflectHandle<Key>,
) -> Controller<KeyVersion> {
    let requests: Api<KeyVersion> = ctx.scope.api(ctx.kube.client().clone());
    let controller = Controller::new(requests, watch_config());
    // A Key appearing or changing wakes the requests that name it.
    let cached_requests = controller.store();
    let requests_for_key = move |key: Arc<Key>| {
        let namespace = key.namespace();
        let name = key.name_any();
        cached_requests
            .state()
            .into_iter()
            .filter(|r| r.namespace() == namespace && r.spec.key_ref.name == name)
            .map(|r| ObjectRef::from(r.as_ref()))
            .collect::<Vec<_>>()
    };
    controller
        .watches_shared_stream(key_changes, requests_for_key)
        // One request at a time: the limit on asymmetric versions is checked and taken in one
        // step, so two requests cannot both take the last place.
        .with_config(controller::Config::default().concurrency(1))
}

/// AccessKeys, woken also by changes to the Secrets their pairs are issued into and to
/// keyward's copies of the pairs.
fn access_key_controller(ctx: &Context) -> Controller<AccessKey> {
    let client = ctx.kube.client().clone();
    let pairs: Api<PartialObjectMeta<Secret>> = ctx.scope.api(client.clone());
    let pair_selector = role_selector(labels::ROLE_ACCESS_KEY_PAIR);
    let credentials: Api<PartialObjectMeta<Secret>> =
        crate::cluster::api(client.clone(), Some(&ctx.scope.store_namespace));
    Controller::new(ctx.scope.api::<AccessKey>(client), watch_config())
        .watches_stream(
            watcher(pairs, watch_config().labels(&pair_selector)).touched_objects(),
            access_key::access_key_of_pair,
        )
        .watches_stream(
            watcher(
                credentials,
                watch_config().labels(&credential_selector(ctx)),
            )
            .touched_objects(),
            |credential| access_key::access_key_of(&credential),
        )
        .with_config(controller::Config::default().concurrency(ctx.scope.concurrency))
}

/// keyward's copies of AccessKey pairs, to revoke those whose AccessKey is gone: each when
/// it changes (and all at start-up) and when its AccessKey is deleted.
fn credential_controller(ctx: &Context) -> Controller<PartialObjectMeta<Secret>> {
    let client = ctx.kube.client().clone();
    let credentials: Api<PartialObjectMeta<Secret>> =
        crate::cluster::api(client.clone(), Some(&ctx.scope.store_namespace));
    let (cache, writer) = reflector::store();
    let changes = watcher(
        credentials,
        watch_config().labels(&credential_selector(ctx)),
    )
    .default_backoff()
    .modify(slim)
    .reflect(writer)
    .applied_objects();
    let store_namespace = ctx.scope.store_namespace.clone();
    Controller::for_stream(changes, cache)
        .watches(
            ctx.scope.api::<AccessKey>(client),
            watch_config(),
            move |access_key| {
                let name = crate::store::credential::credential_name(
                    &access_key.namespace()?,
                    &access_key.name_any(),
                );
                Some(ObjectRef::new(&name).within(&store_namespace))
            },
        )
        .with_config(controller::Config::default().concurrency(ctx.scope.concurrency))
}

/// keyward's Secrets of one role.
fn role_selector(role: &str) -> String {
    format!("{},{}={role}", labels::managed_selector(), labels::ROLE)
}

/// The credentials of the AccessKeys in scope (in namespaced mode, of its namespace only).
fn credential_selector(ctx: &Context) -> String {
    let mut selector = role_selector(labels::ROLE_CREDENTIAL);
    if let Some(namespace) = &ctx.scope.namespace {
        selector.push_str(&format!(",{}={namespace}", labels::KEY_NAMESPACE));
    }
    selector
}

/// Material stores, to catch those whose Key object was deleted: every store when it
/// changes, the store of each Key deleted, and every store again whenever the Key watch had to
/// list the Keys anew (Keys deleted meanwhile left no deletion event).
fn store_controller(
    ctx: &Context,
    cache: reflector::Store<PartialObjectMeta<Secret>>,
    changes: reflector::ReflectHandle<PartialObjectMeta<Secret>>,
    deleted_keys: mpsc::UnboundedReceiver<ObjectRef<PartialObjectMeta<Secret>>>,
    keys_relisted: mpsc::UnboundedReceiver<()>,
) -> Controller<PartialObjectMeta<Secret>> {
    Controller::for_shared_stream(changes, cache)
        .reconcile_on(deleted_keys)
        .reconcile_all_on(keys_relisted)
        .with_config(controller::Config::default().concurrency(ctx.scope.concurrency))
}

/// Every watch ends after [`crate::cluster::WATCH_TIMEOUT_SECS`] and is resumed from where it was,
/// so that one stalled on a silent connection is noticed and replaced.
pub(super) fn watch_config() -> watcher::Config {
    watcher::Config::default().timeout(crate::cluster::WATCH_TIMEOUT_SECS)
}

/// Drops what no reconciler reads from a cached object: its managedFields and kubectl's copy
/// of the last applied manifest are most of a Key's metadata, and a cache holds every Key.
pub fn slim<K: Resource>(object: &mut K) {
    let metadata = object.meta_mut();
    metadata.managed_fields = None;
    if let Some(annotations) = metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The Key a consumer Secret belongs to: of its namespace, named by its annotation.
fn key_of_consumer(secret: PartialObjectMeta<Secret>) -> Option<ObjectRef<Key>> {
    let name = secret.annotations().get(labels::KEY)?;
    let namespace = secret.namespace()?;
    Some(ObjectRef::new(name).within(&namespace))
}

/// Runs a reconciler, counting it in the metrics and clearing the object's failure count when
/// it succeeds.
async fn retried<K, F, Fut>(
    controller: &'static str,
    object: Arc<K>,
    ctx: Arc<Context>,
    reconcile: F,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action, Error>>,
{
    let id = object_id(object.as_ref());
    let started = std::time::Instant::now();
    let result = reconcile(object, ctx.clone()).await;
    let category = result.as_ref().err().map(Error::category);
    ctx.telemetry
        .reconciled(controller, started.elapsed(), category);
    if result.is_ok() {
        ctx.succeeded(&id);
    }
    result
}

/// Retries a failed reconcile with per-object exponential backoff, 1 s doubling to 5 minutes.
fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let id = object_id(object.as_ref());
    let delay = backoff(ctx.failed(id.clone()));
    tracing::warn!(object = %id, category = error.category(), error = %error, retry_in = ?delay,
        "reconcile failed");
    Action::requeue(delay)
}

fn object_id<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

fn backoff(failures: u32) -> Duration {
    const MAX: Duration = Duration::from_secs(300);
    let exponent = failures.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exponent).min(MAX)
}

async fn log_outcome<T, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "reconcile did not complete");
    }
}

/// Mints a new version's material and adds it to the store it was planned from: the store to
/// write back, conditional on the resourceVersion it was read at (so a store that changed
/// meanwhile refuses it, and the material minted here is dropped unused). `None` if the
/// version id is taken.
async fn grown_by_version(
    ctx: &Context,
    current: &Secret,
    new_version: &crate::plan::NewVersion,
) -> Result<Option<Secret>, Error> {
    let material = mint(
        ctx,
        &new_version.record,
        &new_version.version.key_version_id,
    )
    .await?;
    Ok(crate::store::with_new_version(
        current,
        &new_version.record,
        &new_version.version,
        &material,
    ))
}

/// Mints version `version_id` of the key `record` describes: an HSM key's in its token
/// (finding the objects an attempt that crashed before recording them left, never generating a
/// second set), else from the OS CSPRNG. Both off the async workers: RSA takes hundreds of
/// milliseconds of CPU.
async fn mint(ctx: &Context, record: &KeyRecord, version_id: &str) -> Result<Material, Error> {
    let (spec, usage) = (record.key_spec, record.key_usage);
    if record.protection_level == ProtectionLevel::Software {
        return Ok(tokio::task::spawn_blocking(move || material::generate(spec)).await??);
    }
    let objects = VersionObjects::new(&record.key_id, version_id);
    let label = objects.label();
    let generated = ctx
        .hsm_for(record)?
        .run(move |token| token.generate(spec, usage, &objects))
        .await?;
    if generated.adopted {
        tracing::info!(key_id = %record.key_id, key_version_id = %version_id, %label,
            "the HSM already holds this version's objects (generated before a restart): using them");
    }
    Ok(Material::InToken {
        public_pem: generated.public_pem,
    })
}

/// Deletes a store whose key is due for destruction, as it was read: an HSM key's token
/// objects first (nothing of a key may outlive its store, which is what lists them; destroying
/// objects already gone is no error, so a retry completes it), then the Secret. Whether the
/// store was deleted.
async fn destroy_store(ctx: &Context, store: &Store) -> Result<bool, Error> {
    let record = &store.record;
    if record.protection_level == ProtectionLevel::Hsm {
        let versions: Vec<VersionObjects> = record
            .versions
            .iter()
            .map(|v| VersionObjects::new(&record.key_id, &v.key_version_id))
            .collect();
        let destroyed = ctx
            .hsm_for(record)?
            .run(move |token| {
                versions
                    .iter()
                    .try_fold(0, |count, version| Ok(count + token.destroy(version)?))
            })
            .await?;
        tracing::info!(key_id = %record.key_id, objects = destroyed,
            "destroyed the key's objects in the HSM");
    }
    ctx.kube.delete_if_unchanged(store.secret()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        let delays: Vec<u64> = (1..=11).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(u32::MAX).as_secs(), 300);
    }
}
