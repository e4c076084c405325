//! The Key reconciler: observe (live reads, each store parsed once) -> plan (pure) -> commit
//! (one path for every store write, through [`crate::cluster`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use uuid::Uuid;

use super::quota::Reservation;
use super::{Context, grown_by_version, mint};
use crate::api::{Key, KeySpec, Origin, ProtectionLevel, labels};
use crate::error::Error;
use crate::hsm;
use crate::kms::error::{Code, Rejection};
use crate::kms::import;
use crate::kms::material::SecretBytes;
use crate::plan::{self, Converge, FreshIds, NewKey, Note, Observed, Plan, SecretWrite, event};
use crate::store::{self, KeyRecord, Store};

/// How soon a reconcile that found the cache behind its own last write runs again.
const STALE_CACHE_RETRY: Duration = Duration::from_millis(100);

/// How soon a failed import is tried again: its Secret is not watched.
const IMPORT_RETRY: Duration = Duration::from_secs(15);

/// Creating a key and rotating it each take one plan; a lost race takes another. Past this,
/// the reconcile ends and runs again shortly.
const MAX_PLANS: usize = 4;

/// A store as observed: absent, or parsed (whole, or why it cannot be used).
type ObservedStore = Option<Result<Store, Rejection>>;

pub async fn reconcile(key: Arc<Key>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = key
        .namespace()
        .ok_or(Error::MissingObjectField("metadata.namespace"))?;
    // The cache has not caught up with this process's own last status write: plan from that
    // write's Key, not from one without the status it was given.
    if ctx.written_statuses.is_stale(&key) {
        return Ok(Action::requeue(STALE_CACHE_RETRY));
    }
    let mut pass = Pass::observe(&ctx, &key, namespace).await?;
    for _ in 0..MAX_PLANS {
        let fresh = fresh_ids(&key, pass.valid_store());
        pass.read_import_source(&ctx).await?;
        pass.read_former_consumers(&ctx).await?;
        let asymmetric_versions = pass.count_for_creation(&ctx).await;
        let import = pass.import.as_ref().map(|i| &i.material);
        let recheck_import = import_blocks(pass.store.as_ref(), import);
        let observed = Observed {
            key: &key,
            store: pass.store.as_ref(),
            consumer: pass.consumer.as_ref(),
            former_consumers: &pass.former_consumers,
            asymmetric_versions,
            import,
        };
        let step = plan::plan(&observed, &ctx.settings, Timestamp::now(), &fresh);
        if let Plan::Converge(converge) = step {
            let action = apply(&ctx, &key, &converge).await?;
            // The import Secret is not watched: look again for it to appear or change.
            return Ok(if recheck_import {
                Action::requeue(IMPORT_RETRY)
            } else {
                action
            });
        }
        pass.carry_out(&ctx, step).await?;
    }
    Ok(Action::requeue(Duration::from_secs(1)))
}

/// What one reconcile of a Key has seen, kept up to date with its own writes.
struct Pass<'a> {
    key: &'a Key,
    namespace: String,
    consumer: Option<Secret>,
    /// The consumer Secrets of earlier `secretName`s, read once each (see
    /// [`Observed::former_consumers`]).
    former_consumers: BTreeMap<String, Option<Secret>>,
    store: ObservedStore,
    /// The Secret spec.keyMaterial names, read once, for an EXTERNAL key.
    import_source: Option<Option<Secret>>,
    /// The material read from it, unwrapped once per set of import parameters.
    import: Option<ImportAttempt>,
    /// The place taken in the namespace's share of asymmetric versions, while creating such a
    /// key.
    reservation: Option<Reservation>,
}

/// The outcome of unwrapping spec.keyMaterial with one set of import parameters.
struct ImportAttempt {
    /// The import token it was unwrapped against: new parameters mean a new attempt.
    token: Option<String>,
    material: Result<SecretBytes, Rejection>,
}

impl<'a> Pass<'a> {
    /// Live reads: the consumer Secret first (a name taken by another Secret must be found
    /// before any material is minted), then the store.
    async fn observe(ctx: &Context, key: &'a Key, namespace: String) -> Result<Self, Error> {
        let consumer_name = plan::consumer_secret_name(key);
        // A name that is no object name (stored before the schema refused it, or on a server
        // that skips the schema) is never put into a request path: the plan refuses it.
        let consumer = match crate::api::is_object_name(&consumer_name) {
            true => ctx.kube.get_secret(&namespace, &consumer_name).await?,
            false => None,
        };
        // A Key with neither a status nor a consumer Secret is almost always new: its store is
        // not read first. Stores are created create-only, so should one exist after all (a Key
        // applied again after its deletion), the create fails and the store is read then; the
        // material minted for it is dropped unused.
        // An HSM key is always looked for: its objects would be generated before the create
        // found the store, and be left unrecorded.
        let hsm = key.spec.protection_level.as_deref() == Some(ProtectionLevel::Hsm.as_str());
        let store_may_exist = hsm
            || key.status.is_some()
            || consumer.is_some()
            || key.metadata.deletion_timestamp.is_some();
        let mut pass = Pass {
            key,
            namespace,
            consumer,
            former_consumers: BTreeMap::new(),
            store: None,
            import_source: None,
            import: None,
            reservation: None,
        };
        if store_may_exist {
            pass.read_store(ctx).await?;
        }
        Ok(pass)
    }

    fn key_name(&self) -> String {
        self.key.name_any()
    }

    async fn read_store(&mut self, ctx: &Context) -> Result<(), Error> {
        let key_name = self.key_name();
        let location = ctx.scope.store_of(&self.namespace, &key_name);
        let secret = ctx
            .kube
            .get_secret(location.store_namespace, &location.name())
            .await?;
        self.observe_store(secret);
        Ok(())
    }

    /// Parses a store just read or written: the one place a store becomes a typed value.
    fn observe_store(&mut self, secret: Option<Secret>) {
        let key_name = self.key_name();
        self.store = secret.map(|s| Store::parse(s, &self.namespace, &key_name));
    }

    fn valid_store(&self) -> Option<&Store> {
        self.store.as_ref().and_then(|s| s.as_ref().ok())
    }

    /// For an EXTERNAL key with spec.keyMaterial: reads the Secret it names (once) and unwraps
    /// the material with the store's current import parameters (once per set of parameters).
    async fn read_import_source(&mut self, ctx: &Context) -> Result<(), Error> {
        let Some(reference) = &self.key.spec.key_material else {
            return Ok(());
        };
        let Some(stored) = self.valid_store() else {
            return Ok(());
        };
        if stored.record.origin != Origin::External {
            return Ok(());
        }
        if self.import_source.is_none() {
            let name = &reference.secret_ref.name;
            let source = match crate::api::is_object_name(name) {
                true => ctx.kube.get_secret(&self.namespace, name).await?,
                false => None,
            };
            self.import_source = Some(source);
        }
        let Some(stored) = self.valid_store() else {
            return Ok(());
        };
        let token = stored
            .record
            .import_parameters
            .as_ref()
            .map(|p| p.import_token.clone());
        if self.import.as_ref().is_none_or(|i| i.token != token) {
            let source = self.import_source.as_ref().and_then(Option::as_ref);
            let material = unwrap_import(&reference.secret_ref.name, stored, source);
            self.import = Some(ImportAttempt { token, material });
        }
        Ok(())
    }

    /// For a key that may be created with an asymmetric spec: the namespace's asymmetric
    /// versions (a place is reserved, counting again, before the store is written).
    async fn count_for_creation(&self, ctx: &Context) -> Option<usize> {
        let spec = self.key.spec.key_spec.as_deref().and_then(KeySpec::parse)?;
        if self.store.is_some() || spec.is_symmetric() {
            return None;
        }
        Some(ctx.quota.asymmetric_versions(&self.namespace).await)
    }

    /// Takes a place in the namespace's share for an asymmetric key, if there is still one.
    /// Minting comes first: keys are minted, and written, in parallel.
    async fn room_for(&mut self, ctx: &Context, new_key: &NewKey) -> bool {
        if new_key.record.key_spec.is_symmetric() {
            return true;
        }
        let max = ctx.settings.max_asymmetric_versions;
        self.reservation = ctx.quota.reserve(&self.namespace, max).await.ok();
        self.reservation.is_some()
    }

    /// Reads the consumer Secrets of earlier `secretName`s that the record names and this pass
    /// has not read; for a record from before keyward kept that list, lists keyward's consumer
    /// Secrets of the Key (once). Nothing to read for a key that never changed its Secret.
    async fn read_former_consumers(&mut self, ctx: &Context) -> Result<(), Error> {
        let Some(stored) = self.valid_store() else {
            return Ok(());
        };
        let current = plan::consumer_secret_name(self.key);
        let mut names: Vec<String> = stored.record.consumer_secrets.iter().cloned().collect();
        if names.is_empty() && !self.former_consumers.contains_key(&current) {
            names = ctx
                .kube
                .consumer_secrets_of(&self.namespace, &self.key_name())
                .await?;
            // Listed once: the current name marks the listing done.
            self.former_consumers.insert(current.clone(), None);
        }
        for name in names {
            if name == current || self.former_consumers.contains_key(&name) {
                continue;
            }
            let secret = ctx.kube.get_secret(&self.namespace, &name).await?;
            self.former_consumers.insert(name, secret);
        }
        Ok(())
    }

    /// Carries out one step that changes the store, and goes on from what it wrote; a lost
    /// race means reading the store again.
    async fn carry_out(&mut self, ctx: &Context, step: Plan) -> Result<(), Error> {
        let step = match step {
            Plan::Destroy => return self.destroy(ctx).await,
            Plan::CreateKey(new_key) => return self.create(ctx, &new_key).await,
            Plan::RetireConsumer(secret, note) => return self.retire(ctx, &secret, &note).await,
            step => step,
        };
        // Removing expired material is as final as destruction: decided on a live read too.
        if matches!(step, Plan::RemoveMaterial(_)) {
            self.confirm_live(ctx).await?;
        }
        let rotation = match &step {
            Plan::AddVersion(new) => Some((
                new.record.key_id.clone(),
                new.version.key_version_id.clone(),
            )),
            _ => None,
        };
        let Some(Ok(current)) = self.store.as_ref() else {
            return Ok(());
        };
        let Some((write, note)) = self.store_write(ctx, current, step).await? else {
            return Ok(());
        };
        if self.commit(ctx, write, note).await?
            && let Some((key_id, key_version_id)) = rotation
        {
            tracing::info!(key = %self.key_name(), namespace = %self.namespace, %key_id,
                %key_version_id, "rotated key");
        }
        Ok(())
    }

    /// The store write of a step on an existing store, and the event it is recorded with.
    /// `None` when there is nothing to write after all (the step no longer fits the store).
    async fn store_write(
        &self,
        ctx: &Context,
        current: &Store,
        step: Plan,
    ) -> Result<Option<(SecretWrite, Option<Note>)>, Error> {
        let secret = current.secret();
        Ok(match step {
            Plan::AddVersion(new_version) => {
                let id = &new_version.version.key_version_id;
                let note = event::key_rotated(&new_version.record, id);
                grown_by_version(ctx, secret, &new_version)
                    .await?
                    .map(|grown| (SecretWrite::Replace(grown), Some(note)))
            }
            Plan::UpdateRecord(record, note) => Some((
                SecretWrite::Replace(store::with_record(secret, &record)),
                note,
            )),
            Plan::IssueImportParameters => {
                let issued_at = Timestamp::now();
                let (parameters, wrapping_key) =
                    tokio::task::spawn_blocking(move || import::issue_parameters(issued_at))
                        .await??;
                let mut record = current.record.clone();
                record.import_parameters = Some(parameters);
                let updated = store::with_import_parameters(secret, &record, &wrapping_key);
                Some((
                    SecretWrite::Replace(updated),
                    Some(event::import_parameters_issued(&record)),
                ))
            }
            Plan::ImportMaterial(record) => {
                let material = self.import.as_ref().and_then(|i| i.material.as_ref().ok());
                material
                    .and_then(|m| store::with_imported_material(secret, &record, m))
                    .map(|updated| {
                        let note = event::material_imported(&record);
                        (SecretWrite::Replace(updated), Some(note))
                    })
            }
            Plan::RemoveMaterial(record) => Some((
                SecretWrite::Replace(store::without_unlisted_material(secret, &record)),
                Some(event::material_expired(&record)),
            )),
            Plan::CreateKey(_) | Plan::Destroy | Plan::RetireConsumer(..) | Plan::Converge(_) => {
                None
            }
        })
    }

    /// Mints the key's initial material (unless it awaits an import) and creates its store.
    async fn create(&mut self, ctx: &Context, new_key: &NewKey) -> Result<(), Error> {
        let initial = new_key.record.newest_version();
        let material = match (new_key.mint, initial) {
            (true, Some(initial)) => {
                Some(mint(ctx, &new_key.record, &initial.key_version_id).await?)
            }
            _ => None,
        };
        if !self.room_for(ctx, new_key).await {
            // Another key took the last place meanwhile: the next plan refuses this one.
            return Ok(());
        }
        let key_name = self.key_name();
        let location = ctx.scope.store_of(&self.namespace, &key_name);
        let secret = store::new_store(location, &new_key.record, material.as_ref());
        drop(material);
        let note = event::key_created(&new_key.record, &plan::consumer_secret_name(self.key));
        if self
            .commit(ctx, SecretWrite::Create(secret), Some(note))
            .await?
        {
            tracing::info!(key = %key_name, namespace = %self.namespace,
                key_id = %new_key.record.key_id, key_spec = %new_key.record.key_spec,
                "created key");
        }
        // Noted by the commit (or not written): the place is the store's now.
        self.reservation = None;
        Ok(())
    }

    /// Commits one store write: on success records its event and goes on from the store as
    /// written; when another writer got there first, reads the store again. Whether it was
    /// committed.
    async fn commit(
        &mut self,
        ctx: &Context,
        write: SecretWrite,
        note: Option<Note>,
    ) -> Result<bool, Error> {
        let Some(written) = ctx.kube.commit(&write).await? else {
            self.read_store(ctx).await?;
            return Ok(false);
        };
        if let Some(note) = &note {
            ctx.kube.record(self.key, note);
        }
        ctx.quota.wrote(&written);
        self.observe_store(Some(written));
        Ok(true)
    }

    /// Fails unless the Key is, live, the version this pass planned from: what destroys material
    /// is never decided on a cache that may not yet show a cancellation.
    async fn confirm_live(&self, ctx: &Context) -> Result<(), Error> {
        let live = ctx.kube.get_key(&self.namespace, &self.key_name()).await?;
        match live.and_then(|k| k.resource_version()) == self.key.resource_version() {
            true => Ok(()),
            false => Err(Error::Stale("Key")),
        }
    }

    /// Deletes a consumer Secret of an earlier `secretName`, as it was read, and reads it
    /// again if it changed meanwhile.
    async fn retire(&mut self, ctx: &Context, secret: &Secret, note: &Note) -> Result<(), Error> {
        let name = secret.name_any();
        let now = match ctx.kube.delete_if_unchanged(secret).await? {
            true => {
                ctx.kube.record(self.key, note);
                None
            }
            false => ctx.kube.get_secret(&self.namespace, &name).await?,
        };
        self.former_consumers.insert(name, now);
        Ok(())
    }

    /// The scheduled deletion is due: the consumer Secrets first (no copy of the material may
    /// outlive the store), then the store, each only as it was read. Decided on a live read of
    /// the Key: a cancellation that the cache has not caught up with wins.
    async fn destroy(&mut self, ctx: &Context) -> Result<(), Error> {
        self.confirm_live(ctx).await?;
        let key_name = self.key_name();
        let former = std::mem::take(&mut self.former_consumers).into_values();
        for published in self.consumer.take().into_iter().chain(former.flatten()) {
            if store::is_consumer_of(&published, &key_name) {
                ctx.kube.delete_if_unchanged(&published).await?;
            }
        }
        if let Some(Ok(current)) = self.store.take()
            && super::destroy_store(ctx, &current).await?
        {
            ctx.quota.destroyed(current.secret());
            tracing::info!(key = %key_name, namespace = %self.namespace,
                "destroyed the key's material as scheduled");
            ctx.kube.record(self.key, &event::material_destroyed());
        }
        self.read_store(ctx).await
    }
}

/// The ids a plan may give a new key or version. An HSM key's are derived rather than drawn
/// (the KeyId from the Key's UID, a version's id from the KeyId and the count of versions), so
/// that an attempt after a crash between generating token objects and recording them names, and
/// finds, the same objects: no second key, and no object left unrecorded.
fn fresh_ids(key: &Key, store: Option<&Store>) -> FreshIds {
    let hsm = match store {
        Some(store) => store.record.protection_level == ProtectionLevel::Hsm,
        None => key.spec.protection_level.as_deref() == Some(ProtectionLevel::Hsm.as_str()),
    };
    let uid = key.uid().filter(|_| hsm);
    let Some(uid) = uid else {
        return FreshIds {
            key_id: Uuid::new_v4().to_string(),
            version_id: Uuid::new_v4().to_string(),
        };
    };
    let key_id = match store {
        Some(store) => store.record.key_id.clone(),
        None => hsm::derived_key_id(&uid),
    };
    let ordinal = store.map_or(0, |s| s.record.versions.len());
    FreshIds {
        version_id: hsm::derived_version_id(&key_id, ordinal),
        key_id,
    }
}

/// The material spec.keyMaterial names, unwrapped with the store's wrapping key; or why it
/// cannot be imported.
fn unwrap_import(
    source_name: &str,
    stored: &Store,
    source: Option<&Secret>,
) -> Result<SecretBytes, Rejection> {
    let Some(secret) = source else {
        return Err(Rejection::new(
            Code::InvalidParameter,
            format!(
                "spec.keyMaterial.secretRef names Secret {source_name}, which does not exist in \
                 this namespace: create it with encryptedKeyMaterial and importToken (or \
                 keyMaterial)"
            ),
        ));
    };
    let data = secret.data.clone().unwrap_or_default();
    import::unwrap(
        &data,
        stored.record.key_spec,
        stored.record.import_parameters.as_ref(),
        stored.wrapping_key(),
        Timestamp::now(),
    )
}

/// Whether the Secret spec.keyMaterial names is what holds the key back: a key that awaits
/// material cannot import it, or an imported key is pointed at other material.
fn import_blocks(
    store: Option<&Result<Store, Rejection>>,
    import: Option<&Result<SecretBytes, Rejection>>,
) -> bool {
    let (Some(import), Some(Ok(stored))) = (import, store) else {
        return false;
    };
    let record: &KeyRecord = &stored.record;
    match import {
        Err(_) => record.versions.is_empty(),
        Ok(material) => record
            .imported
            .as_ref()
            .is_some_and(|i| i.fingerprint != import::fingerprint(material.expose())),
    }
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
        ctx.kube.record(key, note);
    }
    if let Some(present) = converge.finalizer {
        ctx.kube
            .set_finalizer(key, labels::DELETION_PROTECTION_FINALIZER, present)
            .await?;
    }
    Ok(match converge.requeue_after {
        Some(delay) => Action::requeue(delay),
        None => Action::await_change(),
    })
}
