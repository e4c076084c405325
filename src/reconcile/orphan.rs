//! Material stores whose Key object is gone. Deleting a Key is a ScheduleKeyDeletion: its
//! deletion completes at once (no finalizer holds it for weeks), and this reconciler records
//! the pending window with the material, withdraws it from the consumer Secret, and destroys it
//! when the window has passed. Applying the Key again before then restores it (the Key
//! reconciler cancels the deletion).

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef};

use super::Context;
use crate::api::labels;
use crate::api::{Key, KeyState};
use crate::error::Error;
use crate::kms::schedule;
use crate::plan::event;
use crate::plan::lifecycle::{self, LifecycleStep};
use crate::store::{self, Store};

pub async fn reconcile(
    store_meta: Arc<PartialObjectMeta<Secret>>,
    ctx: Arc<Context>,
    keys: reflector::Store<Key>,
) -> Result<Action, Error> {
    let namespace = store_meta
        .namespace()
        .ok_or(Error::MissingObjectField("metadata.namespace"))?;
    let Some(key_name) = store_meta.annotations().get(labels::KEY).cloned() else {
        return Ok(Action::await_change());
    };
    // While the Key exists, its own reconciler looks after the store. The cache may say so
    // (a Key's deletion reaches this reconciler only once the cache has dropped the Key);
    // that the Key is gone, a live read confirms before anything is done.
    let key = ObjectRef::<Key>::new(&key_name).within(&namespace);
    if keys.get(&key).is_some() || ctx.kube.get_key(&namespace, &key_name).await?.is_some() {
        return Ok(Action::await_change());
    }
    let Some(secret) = ctx
        .kube
        .get_secret(&namespace, &store_meta.name_any())
        .await?
    else {
        return Ok(Action::await_change());
    };
    // A store that cannot be read is never destroyed: only a recorded date destroys material.
    let Ok(store) = Store::parse(secret, &key_name) else {
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    match lifecycle::plan_orphan(&store.record, &ctx.settings, now) {
        None => {}
        Some(LifecycleStep::Record(record, _)) => {
            let scheduled = store::with_record(store.secret(), &record);
            if let Some(written) = ctx.kube.replace_if_unchanged(&scheduled).await? {
                let note = event::deleted_key_scheduled(&key_name, &record);
                ctx.kube.record(&written, &note).await;
                let written = Store::parse(written, &key_name).expect("the record just written");
                withdraw_from_consumers(&ctx, &namespace, &key_name, &written).await?;
            }
            return Ok(Action::requeue(std::time::Duration::from_secs(1)));
        }
        Some(LifecycleStep::Destroy) => {
            for name in ctx.kube.consumer_secrets_of(&namespace, &key_name).await? {
                if let Some(consumer) = ctx.kube.get_secret(&namespace, &name).await?
                    && store::is_consumer_of(&consumer, &key_name)
                {
                    ctx.kube.delete_if_unchanged(&consumer).await?;
                }
            }
            if ctx.kube.delete_if_unchanged(store.secret()).await? {
                tracing::info!(key = %key_name, %namespace, key_id = %store.record.key_id,
                    "destroyed a deleted Key's material after its pending window");
                let note = event::deleted_key_destroyed(&key_name, &store.record);
                ctx.kube.record(store.secret(), &note).await;
            }
            return Ok(Action::await_change());
        }
    }
    let due = store.record.deletion.as_ref().map(lifecycle::due_time);
    Ok(match due {
        Some(due) => Action::requeue(schedule::requeue_delay(now, due, ctx.settings.max_requeue)),
        None => Action::await_change(),
    })
}

/// While a deleted Key's material waits for destruction, no consumer Secret serves it.
async fn withdraw_from_consumers(
    ctx: &Context,
    namespace: &str,
    key_name: &str,
    store: &Store,
) -> Result<(), Error> {
    for name in ctx.kube.consumer_secrets_of(namespace, key_name).await? {
        let Some(consumer) = ctx.kube.get_secret(namespace, &name).await? else {
            continue;
        };
        if !store::is_consumer_of(&consumer, key_name) {
            continue;
        }
        let withdrawn = store::desired_consumer(
            Some(&consumer),
            namespace,
            &name,
            key_name,
            store,
            KeyState::PendingDeletion,
        );
        if withdrawn.data != consumer.data {
            ctx.kube.replace_if_unchanged(&withdrawn).await?;
        }
    }
    Ok(())
}
