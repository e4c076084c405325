//! The Key reconciler: observe (live reads) -> plan (pure) -> act (through `k8s`).

use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use uuid::Uuid;

use super::Context;
use crate::api::Key;
use crate::error::Error;
use crate::material;
use crate::plan::{self, FreshIds, Observed, Plan};
use crate::store;

/// A key is created at most once per reconcile; after that the plan can only converge.
const MAX_PLANS: usize = 2;

pub async fn reconcile(key: Arc<Key>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = key
        .namespace()
        .ok_or(Error::MissingObjectField("metadata.namespace"))?;
    let name = key.name_any();
    let secret_name = plan::consumer_secret_name(&key);
    let store_name = store::store_name(&name);

    let mut store = ctx.kube.get_secret(&namespace, &store_name).await?;
    let consumer = ctx.kube.get_secret(&namespace, &secret_name).await?;

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
                let spec = new_key.record.key_spec;
                let material = if new_key.mint {
                    // RSA takes hundreds of milliseconds: keep it off the async workers.
                    Some(tokio::task::spawn_blocking(move || material::generate(spec)).await??)
                } else {
                    None
                };
                let secret =
                    store::new_store(&namespace, &name, &new_key.record, material.as_ref());
                drop(material);
                match ctx.kube.create_once(&secret).await? {
                    Some(created) => {
                        tracing::info!(
                            key = %name, namespace = %namespace, key_id = %new_key.record.key_id,
                            key_spec = %spec, "created key"
                        );
                        let note = created_note(&new_key.record);
                        ctx.kube.record(&key, &note).await;
                        store = Some(created);
                    }
                    // Another writer created the store first: theirs stands, ours is dropped.
                    None => store = ctx.kube.get_secret(&namespace, &store_name).await?,
                }
            }
            Plan::Converge(converge) => {
                if let Some(write) = &converge.consumer {
                    ctx.kube.write_consumer(write).await?;
                }
                if let Some(status) = &converge.status {
                    ctx.kube.apply_key_status(&key, status).await?;
                }
                for note in &converge.notes {
                    ctx.kube.record(&key, note).await;
                }
                return Ok(Action::await_change());
            }
        }
    }
    // The store was created (or found) but could not be planned from in this pass.
    Ok(Action::requeue(std::time::Duration::from_secs(1)))
}

fn created_note(record: &store::KeyRecord) -> plan::Note {
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
    plan::Note {
        warning: false,
        reason: "KeyCreated",
        message,
    }
}
