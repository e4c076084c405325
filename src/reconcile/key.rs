//! The Key reconciler: observe (live reads) -> plan (pure) -> act (through `k8s`).

use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use uuid::Uuid;

use super::{Context, mint};
use crate::api::Key;
use crate::error::Error;
use crate::plan::{self, Converge, FreshIds, Note, Observed, Plan};
use crate::store::{self, KeyRecord};

/// Creating a key and rotating it each take one plan; a lost race takes another. Past this,
/// the reconcile ends and runs again shortly.
const MAX_PLANS: usize = 4;

pub async fn reconcile(key: Arc<Key>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = key
        .namespace()
        .ok_or(Error::MissingObjectField("metadata.namespace"))?;
    let name = key.name_any();
    let store_name = store::store_name(&name);

    let mut store = ctx.kube.get_secret(&namespace, &store_name).await?;
    let mut consumer = ctx
        .kube
        .get_secret(&namespace, &plan::consumer_secret_name(&key))
        .await?;

    for _ in 0..MAX_PLANS {
        let fresh = FreshIds {
            key_id: Uuid::new_v4().to_string(),
            version_id: Uuid::new_v4().to_string(),
        };
        let observed = Observed {
            key: &key,
            store: store.as_ref(),
            consumer: consumer.as_ref(),
        };
        match plan::plan(&observed, &ctx.settings, Timestamp::now(), &fresh) {
            Plan::CreateKey(new_key) => {
                let material = match new_key.mint {
                    true => Some(mint(new_key.record.key_spec).await?),
                    false => None,
                };
                let secret =
                    store::new_store(&namespace, &name, &new_key.record, material.as_ref());
                drop(material);
                match ctx.kube.create_once(&secret).await? {
                    Some(created) => {
                        tracing::info!(key = %name, %namespace, key_id = %new_key.record.key_id,
                            key_spec = %new_key.record.key_spec, "created key");
                        ctx.kube
                            .record(key.as_ref(), &created_note(&new_key.record))
                            .await;
                        store = Some(created);
                    }
                    // Another writer created the store first: theirs stands, ours is dropped.
                    None => store = ctx.kube.get_secret(&namespace, &store_name).await?,
                }
            }
            Plan::AddVersion(new_version) => {
                let Some(current) = store.as_ref() else {
                    continue;
                };
                let material = mint(new_version.record.key_spec).await?;
                let grown = store::with_new_version(
                    current,
                    &new_version.record,
                    &new_version.version,
                    &material,
                );
                drop(material);
                let Some(grown) = grown else { continue };
                match ctx.kube.replace_if_unchanged(&grown).await? {
                    Some(replaced) => {
                        let id = &new_version.version.key_version_id;
                        tracing::info!(key = %name, %namespace, key_id = %new_version.record.key_id,
                            key_version_id = %id, "rotated key");
                        let note = Note {
                            warning: false,
                            reason: "KeyRotated",
                            message: format!(
                                "rotated key {}: version {id} is now the primary version",
                                new_version.record.key_id
                            ),
                        };
                        ctx.kube.record(key.as_ref(), &note).await;
                        store = Some(replaced);
                    }
                    // The store changed since it was read (another writer rotated it): read
                    // it again and decide anew; the material minted here is dropped unused.
                    None => store = ctx.kube.get_secret(&namespace, &store_name).await?,
                }
            }
            Plan::UpdateRecord(record, note) => {
                let Some(current) = store.as_ref() else {
                    continue;
                };
                let updated = store::with_record(current, &record);
                match ctx.kube.replace_if_unchanged(&updated).await? {
                    Some(replaced) => {
                        if let Some(note) = &note {
                            ctx.kube.record(key.as_ref(), note).await;
                        }
                        store = Some(replaced);
                    }
                    None => store = ctx.kube.get_secret(&namespace, &store_name).await?,
                }
            }
            Plan::Destroy => {
                // The consumer Secret first: no copy of the material may outlive the store.
                if let Some(published) = consumer.take()
                    && store::is_consumer_of(&published, &name)
                {
                    ctx.kube.delete_if_unchanged(&published).await?;
                }
                if let Some(current) = store.take()
                    && ctx.kube.delete_if_unchanged(&current).await?
                {
                    tracing::info!(key = %name, %namespace, "destroyed the key's material as scheduled");
                    let note = Note {
                        warning: false,
                        reason: "KeyMaterialDestroyed",
                        message: "the scheduled deletion was due: destroyed the key's material"
                            .to_string(),
                    };
                    ctx.kube.record(key.as_ref(), &note).await;
                }
                store = ctx.kube.get_secret(&namespace, &store_name).await?;
            }
            Plan::Converge(converge) => return apply(&ctx, &key, &converge).await,
        }
    }
    Ok(Action::requeue(std::time::Duration::from_secs(1)))
}

async fn apply(ctx: &Context, key: &Key, converge: &Converge) -> Result<Action, Error> {
    if let Some(write) = &converge.consumer {
        ctx.kube.write_consumer(write).await?;
    }
    if let Some(status) = &converge.status {
        ctx.kube.apply_status(key, status).await?;
    }
    for note in &converge.notes {
        ctx.kube.record(key, note).await;
    }
    if let Some(present) = converge.finalizer {
        ctx.kube
            .set_finalizer(key, plan::DELETION_PROTECTION_FINALIZER, present)
            .await?;
    }
    Ok(match converge.requeue_after {
        Some(delay) => Action::requeue(delay),
        None => Action::await_change(),
    })
}

fn created_note(record: &KeyRecord) -> Note {
    let message = match record.newest_version() {
        Some(v) => format!(
            "created key {} ({}) with initial version {}",
            record.key_id, record.key_spec, v.key_version_id
        ),
        None => format!(
            "created key {} ({}) awaiting imported key material",
            record.key_id, record.key_spec
        ),
    };
    Note {
        warning: false,
        reason: "KeyCreated",
        message,
    }
}
