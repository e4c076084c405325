//! CreateKey: a Key object in the caller's namespace, visible to kubectl and GitOps diffing
//! like any other, answered with the seed's response once the controller has created the key.

use kube::ResourceExt;

use super::spec::SETTLE_WITHIN;
use super::{Answer, Call, boolean};
use crate::api::{Key, KeyRequest};
use crate::kms::response::{self, KmsError};
use crate::kms::rules;
use crate::service::error::ApiError;

/// Created Keys are named `key-<random>`; `alias/<name>` then addresses them.
const NAME_PREFIX: &str = "key-";

pub async fn create_key(call: &Call<'_>) -> Answer {
    let namespace = call.caller.namespace.as_str();
    if let Some(watched) = call
        .ctx
        .watch_namespace
        .as_deref()
        .filter(|w| *w != namespace)
    {
        return Err(ApiError::new(
            http::StatusCode::FORBIDDEN,
            "Forbidden.NoPermission",
            format!(
                "keyward watches namespace {watched} only: a key created for {} in namespace \
                 {namespace} would never be made",
                call.caller.username
            ),
        ));
    }
    if !call
        .ctx
        .allowed(call.caller, "createkey", namespace, None)
        .await?
    {
        return Err(ApiError::no_permission(
            &call.caller.username,
            "createkey",
            namespace,
            None,
        ));
    }
    let request = key_request(call)?;
    // Refused here, an invalid request leaves no object behind.
    rules::validate(&request, &call.ctx.rules)?;
    let key = Key {
        metadata: call.requested_metadata(NAME_PREFIX, namespace),
        spec: request,
        status: None,
    };
    let created = call
        .ctx
        .kube
        .create_requested(namespace, &key)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "creating a Key for CreateKey failed");
            ApiError::unavailable("The key could not be created; try again.")
        })?;
    let name = created.name_any();
    let settled = |k: &Key| k.uid() == created.uid() && outcome(k).is_some();
    let Some(key) = call
        .ctx
        .caches
        .wait_for_key(namespace, &name, SETTLE_WITHIN, settled)
        .await
    else {
        return Err(ApiError::not_settled(format!(
            "Key {namespace}/{name} was created but keyward has not made it within {}s; \
             DescribeKey alias/{name} shows when it has",
            SETTLE_WITHIN.as_secs()
        )));
    };
    match outcome(&key).expect("settled") {
        Ok(()) => {
            let metadata = response::key_metadata(&key).expect("settled with metadata");
            Ok(response::describe_key(
                metadata,
                call.request_id,
                call.request.format(),
            ))
        }
        Err(refusal) => {
            // Refused by what only the controller knows (the namespace's asymmetric key limit):
            // the object goes, as a failed CreateKey leaves nothing.
            if let Err(e) = call.ctx.kube.delete_refused_key(&key).await {
                tracing::warn!(error = %e, key = %name, "a refused Key could not be deleted");
            }
            Err(ApiError::reported(refusal))
        }
    }
}

/// `Some(Ok)` once the key exists, `Some(Err)` once the controller refused it, else `None`.
fn outcome(key: &Key) -> Option<Result<(), KmsError>> {
    let status = key.status.as_ref()?;
    if status.key_metadata.is_some() {
        return Some(Ok(()));
    }
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    let judged = status.observed_generation >= key.metadata.generation;
    (judged && ready.status == "False")
        .then(|| KmsError::from_condition_message(&ready.message))
        .flatten()
        .map(Err)
}

/// The CreateKey parameters as a Key's spec.
fn key_request(call: &Call<'_>) -> Result<KeyRequest, ApiError> {
    let param = |name: &str| call.request.param(name).map(str::to_string);
    let enable_automatic_rotation = boolean(call.request, "EnableAutomaticRotation")?;
    if call
        .request
        .param("DKMSInstanceId")
        .is_some_and(|v| !v.is_empty())
    {
        return Err(ApiError::invalid_parameter(
            "DKMSInstanceId is not supported: keyward keys live in the cluster; omit it",
        ));
    }
    Ok(KeyRequest {
        description: param("Description"),
        key_spec: param("KeySpec"),
        key_usage: param("KeyUsage"),
        origin: param("Origin"),
        protection_level: param("ProtectionLevel"),
        enable_automatic_rotation,
        rotation_interval: param("RotationInterval")
            .filter(|_| enable_automatic_rotation == Some(true)),
        ..KeyRequest::default()
    })
}
