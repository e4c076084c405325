//! The KMS API's writes: Keys and KeyVersions created for CreateKey and CreateKeyVersion, and
//! Key specs changed for the key-management actions. Each is an ordinary change of a resource,
//! made under its own field manager, so `kubectl` and GitOps tools see what the API changed;
//! the controllers then do the work, and the API waits for their answer.

use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::wait::await_condition;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Kube;
use crate::api::Key;
use crate::error::Error;

/// The field manager of the API's writes: `managedFields` and GitOps diffs name it.
pub const API_MANAGER: &str = "keyward-kms-api";

/// What waiting for a controller's answer came to.
pub enum Waited<K> {
    /// The object reached the condition.
    Done(K),
    /// The object was deleted before it did.
    Gone,
    /// It did not within the time given.
    TimedOut,
}

impl Kube {
    /// Creates a Key or KeyVersion asked for through the API.
    pub async fn create_requested<K>(&self, namespace: &str, object: &K) -> Result<K, Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
        K: Serialize + DeserializeOwned + Clone + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let params = PostParams {
            field_manager: Some(API_MANAGER.into()),
            ..PostParams::default()
        };
        Ok(api.create(&params, object).await?)
    }

    /// Merges `spec` into a Key's spec, only if the Key is still at the resourceVersion it was
    /// read at (a merge patch that carries `metadata.resourceVersion` is conditional). `None`
    /// when it changed meanwhile: the caller reads it again and decides anew.
    pub async fn patch_key_spec(&self, key: &Key, spec: Value) -> Result<Option<Key>, Error> {
        let namespace = key
            .namespace()
            .ok_or(Error::MissingObjectField("namespace"))?;
        let resource_version = key
            .resource_version()
            .ok_or(Error::MissingObjectField("metadata.resourceVersion"))?;
        let api: Api<Key> = Api::namespaced(self.client.clone(), &namespace);
        let patch = json!({"metadata": {"resourceVersion": resource_version}, "spec": spec});
        let params = PatchParams {
            field_manager: Some(API_MANAGER.into()),
            ..PatchParams::default()
        };
        match api
            .patch(&key.name_any(), &params, &Patch::Merge(&patch))
            .await
        {
            Ok(patched) => Ok(Some(patched)),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a Key the API created and the controller refused, if it is still that object
    /// (same UID and resourceVersion): a refused Key holds no material.
    pub async fn delete_refused_key(&self, key: &Key) -> Result<(), Error> {
        let namespace = key
            .namespace()
            .ok_or(Error::MissingObjectField("namespace"))?;
        let api: Api<Key> = Api::namespaced(self.client.clone(), &namespace);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: key.uid(),
                resource_version: key.resource_version(),
            }),
            ..DeleteParams::default()
        };
        match api.delete(&key.name_any(), &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits, at most `within`, for object `name` to satisfy `done` (one watch of that object).
    pub async fn wait_for<K>(
        &self,
        namespace: &str,
        name: &str,
        within: Duration,
        done: impl Fn(&K) -> bool + Send + 'static,
    ) -> Result<Waited<K>, Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
        K: DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let condition = move |object: Option<&K>| object.is_none_or(&done);
        match tokio::time::timeout(within, await_condition(api, name, condition)).await {
            Ok(Ok(Some(object))) => Ok(Waited::Done(object)),
            Ok(Ok(None)) => Ok(Waited::Gone),
            Ok(Err(error)) => Err(Error::Wait(error.to_string())),
            Err(_) => Ok(Waited::TimedOut),
        }
    }
}
