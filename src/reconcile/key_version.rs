//! The KeyVersion reconciler: observe (live reads) -> plan (pure) -> act (through `k8s`).

use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use uuid::Uuid;

use super::{Context, grown_by_version};
use crate::api::KeyVersion;
use crate::error::Error;
use crate::plan::key_version::{ObservedRequest, RequestPlan, plan_request};
use crate::store::Store;
use k8s_openapi::api::core::v1::Secret;

/// Adding the version takes one plan, a lost race another; then the request is reported.
const MAX_PLANS: usize = 4;

pub async fn reconcile(request: Arc<KeyVersion>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = request
        .namespace()
        .ok_or(Error::MissingObjectField("metadata.namespace"))?;
    let key_name = &request.spec.key_ref.name;
    let location = ctx.scope.store_of(&namespace, key_name);
    let (store_namespace, store_name) = (location.store_namespace, location.name());

    // A name no Key can have is not even a valid request path: nothing to read.
    let (key, mut store) = if crate::api::is_object_name(key_name) {
        (
            ctx.kube.get_key(&namespace, key_name).await?,
            ctx.kube.get_secret(store_namespace, &store_name).await?,
        )
    } else {
        (None, None)
    };
    // Each store is parsed once, when read or written.
    let parse = |secret: Option<Secret>| secret.map(|s| Store::parse(s, &namespace, key_name));
    let mut store = parse(store.take());

    let max = ctx.settings.max_asymmetric_versions;
    for _ in 0..MAX_PLANS {
        // A place taken for every plan, from the stores keyward wrote, held until the version
        // written is noted (or the plan is not to write).
        let (_reservation, asymmetric_versions) = match ctx.quota.reserve(&namespace, max).await {
            Ok(reservation) => {
                let held = reservation.held;
                (Some(reservation), held)
            }
            Err(held) => (None, held),
        };
        let observed = ObservedRequest {
            request: &request,
            key: key.as_ref(),
            store: store.as_ref(),
            asymmetric_versions,
        };
        let version_id = fresh_version_id(store.as_ref());
        match plan_request(&observed, &ctx.settings, Timestamp::now(), &version_id) {
            RequestPlan::AddVersion(new_version) => {
                let Some(Ok(current)) = store.as_ref() else {
                    continue;
                };
                // Not noted as this process's own write: its watch event wakes the Key, whose
                // consumer Secret then serves the new version.
                let replaced = match grown_by_version(&ctx, current.secret(), &new_version).await? {
                    Some(grown) => ctx.kube.replace_if_unchanged(&grown).await?,
                    None => None,
                };
                match replaced {
                    Some(replaced) => {
                        ctx.quota.wrote(&replaced);
                        tracing::info!(key = %key_name, %namespace,
                            key_id = %new_version.record.key_id, key_version_id = %version_id,
                            request = %request.name_any(), "created key version");
                        store = parse(Some(replaced));
                    }
                    // The store changed since it was read: read it again and decide anew.
                    None => {
                        let secret = ctx.kube.get_secret(store_namespace, &store_name).await?;
                        store = parse(secret);
                    }
                }
            }
            RequestPlan::Report {
                status,
                notes,
                recheck_after,
            } => {
                if let Some(status) = &status {
                    ctx.kube.write_status(request.as_ref(), status).await?;
                }
                for note in &notes {
                    ctx.kube.record(request.as_ref(), note);
                }
                return Ok(match recheck_after {
                    Some(delay) => Action::requeue(delay),
                    None => Action::await_change(),
                });
            }
        }
    }
    Ok(Action::requeue(std::time::Duration::from_secs(1)))
}

/// The id for a new version: an HSM key's is derived from its KeyId and count of versions
/// (see `key::fresh_ids`: a retry after a crash finds the objects already generated), any
/// other key's drawn at random.
fn fresh_version_id(store: Option<&Result<Store, crate::kms::error::Rejection>>) -> String {
    match store {
        Some(Ok(store)) if store.record.protection_level == crate::api::ProtectionLevel::Hsm => {
            crate::hsm::derived_version_id(&store.record.key_id, store.record.versions.len())
        }
        _ => Uuid::new_v4().to_string(),
    }
}
