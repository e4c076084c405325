//! Material stores whose Key object is gone. Deleting a Key (or its namespace) is a
//! ScheduleKeyDeletion: its deletion completes at once (no finalizer holds it for weeks), and
//! this reconciler records the pending window with the material, withdraws it from the
//! consumer Secrets, and destroys it when the window has passed. Applying the Key again before
//! then, in the same namespace (re-created, if it was deleted), restores it: the Key
//! reconciler cancels the deletion.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector;

use super::Context;
use super::store_watch::key_of_store;
use crate::api::{Key, KeyState};
use crate::error::Error;
use crate::kms::schedule;
use crate::plan::event;
use crate::plan::lifecycle::{self, LifecycleStep};
use crate::store::{self, Store};

/// How soon a withdrawal that lost a race with another writer is tried again.
const WITHDRAWAL_RETRY: Duration = Duration::from_secs(1);

pub async fn reconcile(
    store_meta: Arc<PartialObjectMeta<Secret>>,
    ctx: Arc<Context>,
    keys: reflector::Store<Key>,
) -> Result<Action, Error> {
    let Some(key) = key_of_store(&store_meta) else {
        return Ok(Action::await_change());
    };
    let (namespace, key_name) = (key.namespace.clone().unwrap_or_default(), key.name.clone());
    // While the Key exists, its own reconciler looks after the store. The cache may say so
    // (a Key's deletion reaches this reconciler only once the cache has dropped the Key);
    // that the Key is gone, a live read confirms before anything is done.
    if keys.get(&key).is_some() || ctx.kube.get_key(&namespace, &key_name).await?.is_some() {
        return Ok(Action::await_change());
    }
    let store_namespace = &ctx.scope.store_namespace;
    let Some(secret) = ctx
        .kube
        .get_secret(store_namespace, &store_meta.name_any())
        .await?
    else {
        return Ok(Action::await_change());
    };
    // A store that cannot be read is never destroyed: only a recorded date destroys material.
    let Ok(mut store) = Store::parse(secret, &namespace, &key_name) else {
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    match lifecycle::plan_orphan(&store.record, &ctx.settings, now) {
        None => {}
        Some(LifecycleStep::Record(record, _)) => {
            let scheduled = store::with_record(store.secret(), &record);
            let Some(written) = ctx.kube.replace_if_unchanged(&scheduled).await? else {
                return Ok(Action::requeue(WITHDRAWAL_RETRY));
            };
            let note = event::deleted_key_scheduled(&key_name, &record);
            ctx.kube.record(&written, &note);
            store = Store::parse(written, &namespace, &key_name).expect("the record just written");
        }
        Some(LifecycleStep::Destroy) => {
            destroy(&ctx, &namespace, &key_name, &store).await?;
            return Ok(Action::await_change());
        }
    }
    // Checked on every pass, not only when the deletion is recorded: a withdrawal that lost a
    // race is tried again until no consumer Secret serves the material.
    if !withdraw_from_consumers(&ctx, &namespace, &key_name, &store).await? {
        return Ok(Action::requeue(WITHDRAWAL_RETRY));
    }
    let due = store.record.deletion.as_ref().map(lifecycle::due_time);
    Ok(match due {
        Some(due) => Action::requeue(schedule::requeue_delay(now, due, ctx.settings.max_requeue)),
        None => Action::await_change(),
    })
}

/// The pending window has passed: the consumer Secrets first (no copy of the material may
/// outlive the store), then the store, each only as it was read.
async fn destroy(
    ctx: &Context,
    namespace: &str,
    key_name: &str,
    store: &Store,
) -> Result<(), Error> {
    for consumer in consumers_of(ctx, namespace, key_name, store).await? {
        ctx.kube.delete_if_unchanged(&consumer).await?;
    }
    if super::destroy_store(ctx, store).await? {
        tracing::info!(key = %key_name, %namespace, key_id = %store.record.key_id,
            "destroyed a deleted Key's material after its pending window");
        let note = event::deleted_key_destroyed(key_name, &store.record);
        ctx.kube.record(store.secret(), &note);
    }
    Ok(())
}

/// While a deleted Key's material waits for destruction, no consumer Secret serves it.
/// Whether every one is withdrawn (`false`: one changed meanwhile, try again).
async fn withdraw_from_consumers(
    ctx: &Context,
    namespace: &str,
    key_name: &str,
    store: &Store,
) -> Result<bool, Error> {
    let mut withdrawn_all = true;
    for consumer in consumers_of(ctx, namespace, key_name, store).await? {
        let name = consumer.name_any();
        let withdrawn = store::desired_consumer(
            Some(&consumer),
            namespace,
            &name,
            key_name,
            store,
            KeyState::PendingDeletion,
        );
        if withdrawn.data != consumer.data
            && ctx.kube.replace_if_unchanged(&withdrawn).await?.is_none()
        {
            withdrawn_all = false;
        }
    }
    Ok(withdrawn_all)
}

/// The consumer Secrets keyward wrote for the key that still exist, as read now: those the
/// record names (for a record from before keyward kept the list, those labelled with the Key).
async fn consumers_of(
    ctx: &Context,
    namespace: &str,
    key_name: &str,
    store: &Store,
) -> Result<Vec<Secret>, Error> {
    let recorded = &store.record.consumer_secrets;
    let names = match recorded.is_empty() {
        true => ctx.kube.consumer_secrets_of(namespace, key_name).await?,
        false => recorded.iter().cloned().collect(),
    };
    let mut consumers = Vec::new();
    for name in names {
        if let Some(consumer) = ctx.kube.get_secret(namespace, &name).await?
            && store::is_consumer_of(&consumer, key_name)
        {
            consumers.push(consumer);
        }
    }
    Ok(consumers)
}
