//! Moves the stores of the former layout (in the Keys' own namespaces) to the store namespace,
//! before any controller starts: see [`crate::store::migration`]. Once a move is complete, a
//! marker in the store namespace says so, and later starts never move anything again: after
//! the upgrade, a Secret a tenant dresses as a former store is never taken for one.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::Context;
use crate::api::labels;
use crate::error::Error;
use crate::store::migration::{self, MoveStep};

/// Moves every former store in scope; tried again, with growing pauses, until all are moved
/// (a conflict is reported and left, never forced).
pub(super) async fn move_former_stores(ctx: &Context) {
    let mut failures = 0;
    loop {
        match move_all(ctx).await {
            Ok(()) => return,
            Err(e) => {
                failures += 1;
                let delay = super::backoff(failures).min(Duration::from_secs(30));
                tracing::warn!(error = %e, retry_in = ?delay,
                    "moving material stores to the store namespace failed");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn move_all(ctx: &Context) -> Result<(), Error> {
    let marker =
        migration::completion_marker(&ctx.scope.store_namespace, ctx.scope.namespace.as_deref());
    if ctx
        .kube
        .get_secret(&ctx.scope.store_namespace, &marker.name_any())
        .await?
        .is_some()
    {
        return Ok(());
    }
    let selector = format!(
        "{},{}={}",
        labels::managed_selector(),
        labels::ROLE,
        labels::ROLE_MATERIAL
    );
    let former = ctx
        .kube
        .list_secrets(ctx.scope.namespace.as_deref(), &selector)
        .await?;
    let former: Vec<_> = former
        .into_iter()
        .filter(migration::is_former_store)
        .collect();
    if former.is_empty() {
        ctx.kube.create_once(&marker).await?;
        return Ok(());
    }
    tracing::info!(
        stores = former.len(),
        "moving material stores to the store namespace"
    );
    for original in &former {
        move_one(ctx, original).await?;
    }
    ctx.kube.create_once(&marker).await?;
    tracing::info!(stores = former.len(), "moved material stores");
    Ok(())
}

/// Copies one store create-only, then deletes the original as it was read. Each step is
/// decided on what the original and the destination hold now, so a move interrupted anywhere
/// is finished, and an original changed meanwhile is read again, never left behind. An error
/// if the original keeps changing: the whole move is tried again.
async fn move_one(ctx: &Context, original: &Secret) -> Result<(), Error> {
    let store_namespace = &ctx.scope.store_namespace;
    let Some(to) = migration::destination(original, store_namespace) else {
        tracing::warn!(secret = %original.name_any(), namespace = ?original.namespace(),
            "a material store of the former layout names no Key; left where it is");
        return Ok(());
    };
    let mut original = original.clone();
    // Copy, then delete: two rounds; more only if the original or the copy changed between.
    for _ in 0..5 {
        let copy = ctx.kube.get_secret(store_namespace, &to.name()).await?;
        match migration::plan_move(&original, to, copy.as_ref()) {
            MoveStep::Copy(copy) => {
                ctx.kube.create_once(&copy).await?;
            }
            MoveStep::DeleteOriginal => {
                if ctx.kube.delete_if_unchanged(&original).await? {
                    tracing::info!(key = %to.key_name, namespace = %to.key_namespace,
                        store = %to.name(), "moved a material store to the store namespace");
                    return Ok(());
                }
                // Changed (or gone) since it was read: decide again on what it holds now.
                let namespace = original.namespace().unwrap_or_default();
                match ctx
                    .kube
                    .get_secret(&namespace, &original.name_any())
                    .await?
                {
                    Some(now) => original = now,
                    None => return Ok(()),
                }
            }
            MoveStep::Conflict(message) => {
                tracing::error!(key = %to.key_name, namespace = %to.key_namespace, %message,
                    "could not move a material store");
                return Ok(());
            }
        }
    }
    Err(Error::Stale("material store of the former layout"))
}
