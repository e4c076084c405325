//! The versions of a key: CreateKeyVersion (a KeyVersion object, the same request
//! `kubectl keyward create-key-version` makes), DescribeKeyVersion and ListKeyVersions (from
//! the Key's status).

use kube::ResourceExt;

use super::spec::SETTLE_WITHIN;
use super::{
    Answer, Call, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, find_key, metadata_of, page_parameter, required,
};
use crate::api::key::KeyVersionEntry;
use crate::api::key_version::{KeyRef, KeyVersionRequest};
use crate::api::{Key, KeyMetadata, KeyState, KeyVersion};
use crate::cluster::Waited;
use crate::kms::error::{Code, Rejection};
use crate::kms::response;
use crate::service::error::ApiError;

pub async fn create_key_version(call: &Call<'_>) -> Answer {
    let key = find_key(call.ctx, call.caller, required(call.request, "KeyId")?)?;
    call.authorize("createkeyversion", &key).await?;
    refuse_early(metadata_of(&key)?)?;
    let (namespace, name) = (key.namespace().unwrap_or_default(), key.name_any());
    let request = KeyVersion {
        metadata: call.requested_metadata(&format!("{name}-"), &namespace),
        spec: KeyVersionRequest {
            key_ref: KeyRef { name: name.clone() },
        },
        status: None,
    };
    let kube = &call.ctx.kube;
    let created = kube
        .create_requested(&namespace, &request)
        .await
        .map_err(unavailable)?;
    let request_name = created.name_any();
    let settled = |r: &KeyVersion| response::key_version_outcome(r).is_some();
    let waited = kube
        .wait_for(&namespace, &request_name, SETTLE_WITHIN, settled)
        .await
        .map_err(unavailable)?;
    let answered = match waited {
        Waited::Done(request) => request,
        Waited::Gone => {
            return Err(ApiError::new(
                http::StatusCode::CONFLICT,
                "ConcurrentModification",
                format!("KeyVersion {namespace}/{request_name} was deleted before it was answered"),
            ));
        }
        Waited::TimedOut => {
            return Err(ApiError::not_settled(format!(
                "KeyVersion {namespace}/{request_name} was created but keyward has not answered \
                 it within {}s; its status shows the outcome",
                SETTLE_WITHIN.as_secs()
            )));
        }
    };
    match response::key_version_outcome(&answered).expect("settled") {
        Ok(version) => Ok(response::create_key_version(
            &version,
            call.request_id,
            call.request.format(),
        )),
        Err(refusal) => Err(ApiError::reported(refusal)),
    }
}

/// What the seed refuses whatever the controller knows: a new version of a symmetric key, or
/// of a key that is not Enabled. Refused here, the request leaves no KeyVersion behind; the
/// controller still judges the rest (the interval since the last version, the limits).
fn refuse_early(metadata: &KeyMetadata) -> Result<(), ApiError> {
    if metadata.key_spec.is_symmetric() {
        return Err(Rejection::new(
            Code::RejectedUnsupportedOperation,
            format!(
                "key {} is {}: CreateKeyVersion is for asymmetric keys; symmetric keys get new \
                 versions by automatic rotation (UpdateRotationPolicy)",
                metadata.key_id,
                metadata.key_spec.as_str()
            ),
        )
        .into());
    }
    match metadata.key_state {
        KeyState::Enabled => Ok(()),
        state => Err(ApiError::rejected_in_state(
            state.as_str(),
            format!(
                "key {} is {}: CreateKeyVersion needs an Enabled key",
                metadata.key_id,
                state.as_str()
            ),
        )),
    }
}

pub async fn describe_key_version(call: &Call<'_>) -> Answer {
    let key = find_key(call.ctx, call.caller, required(call.request, "KeyId")?)?;
    call.authorize("describekeyversion", &key).await?;
    let key_id = &metadata_of(&key)?.key_id;
    let wanted = required(call.request, "KeyVersionId")?;
    let version = versions(&key)
        .iter()
        .find(|v| v.key_version_id == wanted)
        .ok_or_else(version_not_found)?;
    Ok(response::describe_key_version(
        key_id,
        version,
        call.request_id,
        call.request.format(),
    ))
}

pub async fn list_key_versions(call: &Call<'_>) -> Answer {
    let key = find_key(call.ctx, call.caller, required(call.request, "KeyId")?)?;
    let page_number = page_parameter(call.request, "PageNumber", 1, usize::MAX)?;
    let page_size = page_parameter(call.request, "PageSize", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    call.authorize("listkeyversions", &key).await?;
    let key_id = &metadata_of(&key)?.key_id;
    let versions = versions(&key);
    let page: Vec<KeyVersionEntry> = versions
        .iter()
        .skip((page_number - 1).saturating_mul(page_size))
        .take(page_size)
        .cloned()
        .collect();
    Ok(response::list_key_versions_page(
        key_id,
        &page,
        versions.len(),
        page_number,
        page_size,
        call.request_id,
        call.request.format(),
    ))
}

fn versions(key: &Key) -> &[KeyVersionEntry] {
    key.status
        .as_ref()
        .map(|s| s.key_versions.as_slice())
        .unwrap_or_default()
}

/// The KMS's answer for a KeyVersionId the key does not have.
pub fn version_not_found() -> ApiError {
    ApiError::new(
        http::StatusCode::NOT_FOUND,
        "Forbidden.KeyVersionNotFound",
        "The specified Key version is not found.",
    )
}

fn unavailable(error: crate::error::Error) -> ApiError {
    tracing::warn!(error = %error, "a KeyVersion could not be created or watched for the KMS API");
    ApiError::unavailable("The key version could not be created; try again.")
}
