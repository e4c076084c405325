//! At start-up, before the controllers write anything: the HSM objects that no store records.
//!
//! HSM version ids are derived, so an attempt that crashed between generating objects and
//! recording them is completed by the next attempt, which finds them. What is left unrecorded
//! is what no attempt will come back for: objects of a Key deleted meanwhile, or of a store
//! removed by hand. They are reported (a log line each, and `keyward_hsm_orphaned_objects`),
//! never destroyed: deciding that a key is gone is for a person, and what a store might still
//! come to record must not be destroyed by a guess.

use std::collections::BTreeSet;

use kube::ResourceExt;

use super::Context;
use crate::api::labels;
use crate::error::Error;
use crate::hsm::VersionObjects;
use crate::store::Store;

/// Lists the token's keyward objects and the stores in scope, and reports every object of a
/// version no store records. How many there are.
pub async fn report_unrecorded(ctx: &Context) -> Result<usize, Error> {
    let Some(hsm) = &ctx.hsm else {
        return Ok(0);
    };
    // The token first: a version recorded after the listing is then seen in its store.
    let listed = hsm.run(|token| token.list()).await?;
    if listed.is_empty() {
        hsm.set_unrecorded(0);
        return Ok(0);
    }
    let stores = ctx
        .kube
        .list_secrets(
            Some(&ctx.scope.store_namespace),
            &ctx.scope.stores_selector(),
        )
        .await?;
    let recorded: BTreeSet<VersionObjects> = stores
        .into_iter()
        .filter_map(|secret| {
            let annotations = secret.annotations();
            let key_name = annotations.get(labels::KEY)?.clone();
            let namespace = annotations.get(labels::KEY_NAMESPACE)?.clone();
            Store::parse(secret, &namespace, &key_name).ok()
        })
        .flat_map(|store| {
            let record = store.record;
            record
                .versions
                .iter()
                .map(|v| VersionObjects::new(&record.key_id, &v.key_version_id))
                .collect::<Vec<_>>()
        })
        .collect();
    let unrecorded: Vec<_> = listed
        .iter()
        .filter(|(objects, _)| !recorded.contains(objects))
        .collect();
    for (objects, class) in &unrecorded {
        tracing::warn!(key_id = %objects.key_id, key_version_id = %objects.key_version_id,
            label = %objects.label(), id = %hex(&objects.id()), class = %class,
            "the HSM holds an object of a key version that no store records; it is left in \
             place (docs/hsm.md says how to inspect and remove it)");
    }
    hsm.set_unrecorded(unrecorded.len());
    tracing::info!(
        objects = listed.len(),
        unrecorded = unrecorded.len(),
        "audited the HSM's key objects against the stores"
    );
    Ok(unrecorded.len())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
