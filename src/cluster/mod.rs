//! The only module that talks to the API server: reads Secrets, writes Secrets, status and
//! events. Every write is create-only or conditional where a lost race could lose material.

mod events;
mod requests;

pub use requests::{API_MANAGER, Waited};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use k8s_openapi::NamespaceResourceScope;
use kube::api::ListParams;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::api::labels;
use crate::api::{AccessKey, Key};
use crate::error::Error;
use crate::plan::{Note, SecretWrite};
use events::EventRecorder;

/// The field manager of every write, and the reporting controller of every event.
pub const MANAGER: &str = "keyward";

/// How long a request waits for the API server's next bytes before it fails (and is retried,
/// on a new connection). Without it, a request sent on a connection that went silent without
/// closing (a vanished peer, a NAT or load balancer that dropped its state) never returns, and
/// the reconcile awaiting it never ends: that key would never rotate again.
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// How long the API server keeps each watch open, in seconds: shorter than [`READ_TIMEOUT`],
/// so that a watch that is merely quiet ends normally before it could be taken for a dead one.
/// A watch stalled on a silent connection is thus replaced within [`READ_TIMEOUT`].
pub const WATCH_TIMEOUT_SECS: u32 = 15;

/// A client for the current kubeconfig (or the in-cluster configuration) with
/// [`READ_TIMEOUT`].
pub async fn client() -> Result<Client, kube::Error> {
    let mut config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    config.read_timeout = Some(READ_TIMEOUT);
    // Count from each request, not from when its pooled connection last carried one.
    config.reset_reader_on_write = true;
    Client::try_from(config)
}

/// A handle on the namespaced resources of kind `K`: in `namespace`, or in every namespace.
/// Handles are made only here, so that every call to the API server is in this module.
pub fn api<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    }
}

#[derive(Clone)]
pub struct Kube {
    client: Client,
    events: EventRecorder,
    pub own_writes: OwnWrites,
}

/// The versions of objects the Key reconciler wrote, so that the watch event of its own write
/// does not wake it again: it went on planning from the object the write returned. Writes by
/// the other reconcilers (a KeyVersion's new version, the janitor's) are not noted: the Key
/// reconciler must hear of those. Each version is forgotten once its event is seen. A write
/// whose event never comes (a watch that re-lists past it) costs an entry, so the set is
/// emptied when it grows large: at worst that is one needless reconcile per entry.
#[derive(Clone, Default)]
pub struct OwnWrites(Arc<Mutex<HashSet<(String, String)>>>);

impl OwnWrites {
    const MAX: usize = 100_000;

    fn version_of(object: &impl Resource) -> Option<(String, String)> {
        Some((object.uid()?, object.resource_version()?))
    }

    pub fn note(&self, written: &impl Resource) {
        if let Some(version) = Self::version_of(written) {
            let mut versions = self.0.lock().expect("own writes");
            if versions.len() >= Self::MAX {
                versions.clear();
            }
            versions.insert(version);
        }
    }

    /// Notes `written` and hands it back.
    pub fn noted<K: Resource>(&self, written: K) -> K {
        self.note(&written);
        written
    }

    /// Whether `observed` is exactly what this process last wrote (then forgotten).
    pub fn is_echo(&self, observed: &impl Resource) -> bool {
        Self::version_of(observed)
            .is_some_and(|version| self.0.lock().expect("own writes").remove(&version))
    }
}

impl Kube {
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let instance = instance.unwrap_or_else(|| MANAGER.to_string());
        Kube {
            events: EventRecorder::new(client.clone(), instance),
            client,
            own_writes: OwnWrites::default(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn secrets(&self, namespace: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// A live read, not a cache: what is minted must be decided on current state.
    pub async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, Error> {
        Ok(self.secrets(namespace).get_opt(name).await?)
    }

    /// Secrets matching `selector` in `namespace` (every namespace when `None`), data included.
    pub async fn list_secrets(
        &self,
        namespace: Option<&str>,
        selector: &str,
    ) -> Result<Vec<Secret>, Error> {
        let secrets: Api<Secret> = api(self.client.clone(), namespace);
        let listed = secrets
            .list(&ListParams::default().labels(selector))
            .await?;
        Ok(listed.items)
    }

    /// Creates a Secret that must never be overwritten. `None` when one of that name already
    /// exists: someone else created it first, and theirs stands.
    pub async fn create_once(&self, secret: &Secret) -> Result<Option<Secret>, Error> {
        let namespace = secret
            .namespace()
            .ok_or(Error::MissingObjectField("namespace"))?;
        match self
            .secrets(&namespace)
            .create(&PostParams::default(), secret)
            .await
        {
            Ok(created) => Ok(Some(created)),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a Secret only if it is unchanged since it was read (its resourceVersion).
    /// `None` when it changed meanwhile: the caller reads it again and re-plans.
    pub async fn replace_if_unchanged(&self, secret: &Secret) -> Result<Option<Secret>, Error> {
        let namespace = secret
            .namespace()
            .ok_or(Error::MissingObjectField("namespace"))?;
        if secret.resource_version().is_none() {
            return Err(Error::MissingObjectField("metadata.resourceVersion"));
        }
        let api = self.secrets(&namespace);
        match api
            .replace(&secret.name_any(), &PostParams::default(), secret)
            .await
        {
            Ok(replaced) => Ok(Some(replaced)),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Commits a write of a material store with its precondition (create-only, or replace
    /// only the version it was planned from) and notes it as this process's own, so its watch
    /// event wakes nothing. `None` when another writer got there first: the caller reads the
    /// store again and plans anew; whatever it minted for the write is dropped unused.
    pub async fn commit(&self, write: &SecretWrite) -> Result<Option<Secret>, Error> {
        let written = match write {
            SecretWrite::Create(secret) => self.create_once(secret).await?,
            SecretWrite::Replace(secret) => self.replace_if_unchanged(secret).await?,
        };
        Ok(written.map(|secret| self.own_writes.noted(secret)))
    }

    /// Deletes a Secret only if it is the very one that was read (same UID and
    /// resourceVersion): material is never destroyed on a stale view. `false` if it changed or
    /// is gone already.
    pub async fn delete_if_unchanged(&self, secret: &Secret) -> Result<bool, Error> {
        let namespace = secret
            .namespace()
            .ok_or(Error::MissingObjectField("namespace"))?;
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: secret.uid(),
                resource_version: secret.resource_version(),
            }),
            ..DeleteParams::default()
        };
        match self
            .secrets(&namespace)
            .delete(&secret.name_any(), &params)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Adds or removes a finalizer of a Key, conditional on the version it was decided from.
    pub async fn set_finalizer(
        &self,
        key: &Key,
        finalizer: &str,
        present: bool,
    ) -> Result<(), Error> {
        let namespace = key
            .namespace()
            .ok_or(Error::MissingObjectField("namespace"))?;
        let mut finalizers: Vec<String> = key
            .finalizers()
            .iter()
            .filter(|f| *f != finalizer)
            .cloned()
            .collect();
        if present {
            finalizers.push(finalizer.to_string());
        }
        let patch = json!({
            "metadata": { "finalizers": finalizers, "resourceVersion": key.resource_version() }
        });
        let api: Api<Key> = Api::namespaced(self.client.clone(), &namespace);
        api.patch(
            &key.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        Ok(())
    }

    /// The consumer Secrets keyward made for Key `key_name` in `namespace` (metadata only).
    pub async fn consumer_secrets_of(
        &self,
        namespace: &str,
        key_name: &str,
    ) -> Result<Vec<String>, Error> {
        let selector = format!(
            "{},{}={},{}={}",
            labels::managed_selector(),
            labels::ROLE,
            labels::ROLE_CONSUMER,
            labels::KEY,
            labels::key_label_value(key_name)
        );
        let listed = self
            .secrets(namespace)
            .list_metadata(&ListParams::default().labels(&selector))
            .await?;
        Ok(listed
            .items
            .into_iter()
            .filter(|s| s.annotations().get(labels::KEY).map(String::as_str) == Some(key_name))
            .map(|s| s.name_any())
            .collect())
    }

    /// Creates or replaces the consumer Secret. A replace carries the resourceVersion it was
    /// planned from, so a concurrent change makes it fail (and the key is planned again).
    pub async fn write_consumer(&self, write: &SecretWrite) -> Result<Secret, Error> {
        Ok(match write {
            SecretWrite::Create(secret) => {
                let namespace = secret
                    .namespace()
                    .ok_or(Error::MissingObjectField("namespace"))?;
                self.secrets(&namespace)
                    .create(&PostParams::default(), secret)
                    .await?
            }
            SecretWrite::Replace(secret) => {
                let namespace = secret
                    .namespace()
                    .ok_or(Error::MissingObjectField("namespace"))?;
                if secret.resource_version().is_none() {
                    return Err(Error::MissingObjectField("metadata.resourceVersion"));
                }
                self.secrets(&namespace)
                    .replace(&secret.name_any(), &PostParams::default(), secret)
                    .await?
            }
        })
    }

    /// Replaces the whole status with one JSON patch (`add /status` replaces it), so fields
    /// keyward no longer sets (for example `nextRotationDate` once rotation is off) are
    /// removed. Unconditional, like a forced apply: keyward is the status's only writer. A
    /// JSON patch is also the cheapest write for the API server: no YAML to parse, no merge.
    pub async fn write_status<K>(&self, object: &K, status: &impl Serialize) -> Result<K, Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
        K: DeserializeOwned + Clone + std::fmt::Debug,
    {
        let namespace = object
            .namespace()
            .ok_or(Error::MissingObjectField("namespace"))?;
        let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        let patch: json_patch::Patch =
            serde_json::from_value(json!([{ "op": "add", "path": "/status", "value": status }]))
                .expect("one add operation is a JSON patch");
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..PatchParams::default()
        };
        Ok(api
            .patch_status(&object.name_any(), &params, &Patch::Json::<()>(patch))
            .await?)
    }

    /// Who a bearer token is, if the API server accepts it for `audience` (a TokenReview).
    pub async fn review_token(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<Option<UserInfo>, Error> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: Some(vec![audience.to_string()]),
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let reviewed = api.create(&PostParams::default(), &review).await?;
        let status = reviewed.status.unwrap_or_default();
        Ok(match status.authenticated {
            Some(true) => status.user,
            _ => None,
        })
    }

    /// Whether RBAC lets `user` (with `groups`) do `verb` on Keys in `namespace` (one Key when
    /// `name` is given): a SubjectAccessReview, so `kubectl auth can-i` gives the same answer.
    pub async fn review_access(
        &self,
        user: &str,
        groups: &[String],
        verb: &str,
        namespace: &str,
        name: Option<&str>,
    ) -> Result<bool, Error> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.to_string()),
                groups: Some(groups.to_vec()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some("keyward.dev".into()),
                    resource: Some("keys".into()),
                    verb: Some(verb.to_string()),
                    namespace: Some(namespace.to_string()),
                    name: name.map(str::to_string),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let reviewed = api.create(&PostParams::default(), &review).await?;
        Ok(reviewed.status.is_some_and(|s| s.allowed))
    }

    /// A live read of an AccessKey.
    pub async fn get_access_key(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<AccessKey>, Error> {
        let api: Api<AccessKey> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.get_opt(name).await?)
    }

    /// A live read of a Key.
    pub async fn get_key(&self, namespace: &str, name: &str) -> Result<Option<Key>, Error> {
        let api: Api<Key> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.get_opt(name).await?)
    }

    /// Records an event on `object`, posted in the background (see [`EventRecorder`]).
    pub fn record<K: Resource<DynamicType = ()>>(&self, object: &K, note: &Note) {
        self.events.record(object, note);
    }

    /// Waits, at most `within`, for the events recorded to be posted.
    pub async fn flush_events(&self, within: std::time::Duration) {
        self.events.flush(within).await;
    }

    /// Fails if `namespace` does not exist. Not knowing (no permission to read namespaces) is
    /// not a failure: writes there will tell.
    pub async fn check_namespace(&self, namespace: &str) -> Result<(), Error> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        match namespaces.get_opt(namespace).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Error::NamespaceMissing(namespace.to_string())),
            Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The UID of the kube-system namespace: a stable identity of the cluster, used as the
    /// default account id.
    pub async fn cluster_account_id(&self) -> Result<String, Error> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let kube_system = namespaces.get("kube-system").await?;
        kube_system
            .uid()
            .ok_or(Error::MissingObjectField("metadata.uid"))
    }
}
