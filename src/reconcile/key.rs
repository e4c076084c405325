//! The Key reconciler: observe (live reads) -> plan (pure) -> act (through `k8s`).

use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use uuid::Uuid;

use super::{Context, add_version, mint};
use crate::api::Key;
use crate::api::Origin;
use crate::error::Error;
use crate::kms::error::{Code, Rejection};
use crate::kms::import;
use crate::kms::material::SecretBytes;
use crate::plan::{self, Converge, FreshIds, Note, Observed, Plan};
use crate::store::{self, KeyRecord, Store};
use k8s_openapi::api::core::v1::Secret;

/// How soon a reconcile that found the cache behind its own last write runs again.
const STALE_CACHE_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// How soon a failed import is tried again: its Secret is not watched.
const IMPORT_RETRY: std::time::Duration = std::time::Duration::from_secs(15);

/// Whether the key's store exists and records an EXTERNAL key: one whose spec.keyMaterial is
/// read, to import it or to check that it is still the material imported.
fn is_external(key: &Key, store: Option<&Secret>) -> bool {
    store
        .and_then(|s| Store::read(s, &key.name_any()).ok())
        .is_some_and(|s| s.record.origin == Origin::External)
}

/// The material spec.keyMaterial names, read and unwrapped with the store's wrapping key, for
/// an EXTERNAL key; or why it cannot be imported.
fn import_attempt(
    key: &Key,
    store: Option<&Secret>,
    source: Option<&Option<Secret>>,
) -> Option<Result<SecretBytes, Rejection>> {
    let reference = key.spec.key_material.as_ref()?;
    let store_secret = store?;
    let stored = Store::read(store_secret, &key.name_any()).ok()?;
    if stored.record.origin != Origin::External {
        return None;
    }
    let Some(Some(secret)) = source else {
        return Some(Err(Rejection::new(
            Code::InvalidParameter,
            format!(
                "spec.keyMaterial.secretRef names Secret {}, which does not exist in this \
                 namespace: create it with encryptedKeyMaterial and importToken (or keyMaterial)",
                reference.secret_ref.name
            ),
        )));
    };
    let wrapping_key = store_secret
        .data
        .as_ref()
        .and_then(|d| d.get(store::WRAPPING_KEY_ENTRY))
        .map(|b| b.0.as_slice());
    let data = secret.data.clone().unwrap_or_default();
    Some(
        import::unwrap(
            &data,
            stored.record.key_spec,
            stored.record.import_parameters.as_ref(),
            wrapping_key,
            Timestamp::now(),
        )
        .map_err(Rejection::from),
    )
}

/// Whether the Secret spec.keyMaterial names is what holds the key back: a key that awaits
/// material cannot import it, or an imported key is pointed at other material.
fn import_blocks(
    key: &Key,
    store: Option<&Secret>,
    import: Option<&Result<SecretBytes, Rejection>>,
) -> bool {
    // Most keys import nothing: their store is not read again for this.
    let Some(import) = import else {
        return false;
    };
    let Some(record) = store
        .and_then(|s| Store::read(s, &key.name_any()).ok())
        .map(|s| s.record)
    else {
        return false;
    };
    match import {
        Err(_) => record.versions.is_empty(),
        Ok(material) => record
            .imported
            .is_some_and(|i| i.fingerprint != import::fingerprint(material.expose())),
    }
}

/// Creating a key and rotating it each take one plan; a lost race takes another. Past this,
/// the reconcile ends and runs again shortly.
const MAX_PLANS: usize = 4;

pub async fn reconcile(key: Arc<Key>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = key
        .namespace()
        .ok_or(Error::MissingObjectField("metadata.namespace"))?;
    let name = key.name_any();
    let store_name = store::store_name(&name);
    // The cache has not caught up with this process's own last status write: plan from that
    // write's Key, not from one without the status it was given.
    if ctx.written_statuses.is_stale(&key) {
        return Ok(Action::requeue(STALE_CACHE_RETRY));
    }

    // The consumer Secret first: a name taken by another Secret must be found before any
    // material is minted.
    let mut consumer = ctx
        .kube
        .get_secret(&namespace, &plan::consumer_secret_name(&key))
        .await?;
    // A Key with neither a status nor a consumer Secret is almost always new: its store is
    // not read first. Stores are created create-only, so should one exist after all (a Key
    // applied again after its deletion), the create fails and the store is read then; the
    // material minted for it is dropped unused.
    let store_may_exist =
        key.status.is_some() || consumer.is_some() || key.metadata.deletion_timestamp.is_some();
    let mut store = match store_may_exist {
        true => ctx.kube.get_secret(&namespace, &store_name).await?,
        false => None,
    };

    // The Secret spec.keyMaterial names, read once for an EXTERNAL key.
    let mut import_source = None;

    for _ in 0..MAX_PLANS {
        if import_source.is_none()
            && let Some(source) = &key.spec.key_material
            && is_external(&key, store.as_ref())
        {
            let name = &source.secret_ref.name;
            import_source = Some(ctx.kube.get_secret(&namespace, name).await?);
        }
        let fresh = FreshIds {
            key_id: Uuid::new_v4().to_string(),
            version_id: Uuid::new_v4().to_string(),
        };
        let import = import_attempt(&key, store.as_ref(), import_source.as_ref());
        let recheck_import = import_blocks(&key, store.as_ref(), import.as_ref());
        let observed = Observed {
            key: &key,
            store: store.as_ref(),
            consumer: consumer.as_ref(),
            import,
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
                            .record(key.as_ref(), &created_note(&key, &new_key.record))
                            .await;
                        store = Some(ctx.kube.own_writes.noted(created));
                    }
                    // Another writer created the store first: theirs stands, ours is dropped.
                    None => store = ctx.kube.get_secret(&namespace, &store_name).await?,
                }
            }
            Plan::AddVersion(new_version) => {
                let Some(current) = store.as_ref() else {
                    continue;
                };
                match add_version(&ctx, current, &new_version).await? {
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
                        store = Some(ctx.kube.own_writes.noted(replaced));
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
                        store = Some(ctx.kube.own_writes.noted(replaced));
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
            Plan::IssueImportParameters => {
                let Some(current) = store.as_ref() else {
                    continue;
                };
                let Ok(stored) = Store::read(current, &name) else {
                    continue;
                };
                let issued_at = Timestamp::now();
                let (parameters, wrapping_key) =
                    tokio::task::spawn_blocking(move || import::issue_parameters(issued_at))
                        .await??;
                let mut record = stored.record.clone();
                let expires = parameters.token_expire_time.clone();
                record.import_parameters = Some(parameters);
                let updated = store::with_import_parameters(current, &record, &wrapping_key);
                drop(wrapping_key);
                match ctx.kube.replace_if_unchanged(&updated).await? {
                    Some(replaced) => {
                        let note = Note {
                            warning: false,
                            reason: "ImportParametersIssued",
                            message: format!(
                                "issued import parameters for key {}: wrap the material with \
                                 status.importParameters.publicKey and import it before {expires}",
                                record.key_id
                            ),
                        };
                        ctx.kube.record(key.as_ref(), &note).await;
                        store = Some(ctx.kube.own_writes.noted(replaced));
                    }
                    None => store = ctx.kube.get_secret(&namespace, &store_name).await?,
                }
            }
            Plan::ImportMaterial(record) => {
                let Some(current) = store.as_ref() else {
                    continue;
                };
                let Some(Ok(material)) =
                    import_attempt(&key, store.as_ref(), import_source.as_ref())
                else {
                    continue;
                };
                let Some(updated) = store::with_imported_material(current, &record, &material)
                else {
                    continue;
                };
                drop(material);
                match ctx.kube.replace_if_unchanged(&updated).await? {
                    Some(replaced) => {
                        let version = record.imported.as_ref().map(|i| i.key_version_id.clone());
                        let note = Note {
                            warning: false,
                            reason: "KeyMaterialImported",
                            message: format!(
                                "imported key material into key {} as version {}",
                                record.key_id,
                                version.unwrap_or_default()
                            ),
                        };
                        ctx.kube.record(key.as_ref(), &note).await;
                        store = Some(ctx.kube.own_writes.noted(replaced));
                    }
                    None => store = ctx.kube.get_secret(&namespace, &store_name).await?,
                }
            }
            Plan::RemoveMaterial(record) => {
                let Some(current) = store.as_ref() else {
                    continue;
                };
                let updated = store::without_unlisted_material(current, &record);
                match ctx.kube.replace_if_unchanged(&updated).await? {
                    Some(replaced) => {
                        let note = Note {
                            warning: false,
                            reason: "KeyMaterialExpired",
                            message: format!(
                                "the imported material of key {} expired and was removed; the key \
                                 awaits its import again (the same material only)",
                                record.key_id
                            ),
                        };
                        ctx.kube.record(key.as_ref(), &note).await;
                        store = Some(ctx.kube.own_writes.noted(replaced));
                    }
                    None => store = ctx.kube.get_secret(&namespace, &store_name).await?,
                }
            }
            Plan::Converge(converge) => {
                let action = apply(&ctx, &key, &converge).await?;
                // The import Secret is not watched: look again for it to appear or change.
                return Ok(if recheck_import {
                    Action::requeue(IMPORT_RETRY)
                } else {
                    action
                });
            }
        }
    }
    Ok(Action::requeue(std::time::Duration::from_secs(1)))
}

async fn apply(ctx: &Context, key: &Key, converge: &Converge) -> Result<Action, Error> {
    if let Some(write) = &converge.consumer {
        let written = ctx.kube.write_consumer(write).await?;
        ctx.kube.own_writes.note(&written);
    }
    if let Some(status) = &converge.status
        && !ctx.written_statuses.already_written(key, status)
    {
        let written = ctx.kube.write_status(key, status).await?;
        ctx.kube.own_writes.note(&written);
        ctx.written_statuses.remember(key, status, &written);
    }
    for note in &converge.notes {
        ctx.kube.record(key, note).await;
    }
    if let Some(present) = converge.finalizer {
        ctx.kube
            .set_finalizer(
                key,
                crate::api::labels::DELETION_PROTECTION_FINALIZER,
                present,
            )
            .await?;
    }
    Ok(match converge.requeue_after {
        Some(delay) => Action::requeue(delay),
        None => Action::await_change(),
    })
}

/// The one event of a new key: its first Secret and first Ready get none of their own.
fn created_note(key: &Key, record: &KeyRecord) -> Note {
    let message = match record.newest_version() {
        Some(v) => format!(
            "created key {} ({}) with initial version {}, published in Secret {}",
            record.key_id,
            record.key_spec,
            v.key_version_id,
            plan::consumer_secret_name(key)
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
