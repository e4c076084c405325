//! The key-management actions that change a Key: each is a change of the Key's spec, the same
//! change `kubectl edit` would make (so a GitOps-owned Key shows it as drift), checked by the
//! CreateKey rules first, written only if the Key is unchanged since it was read, and answered
//! once this replica has seen the controller take it up.

use std::time::Duration;

use kube::ResourceExt;
use serde_json::{Map, Value, json};

use super::{Answer, Call, boolean, find_key, metadata_of, required};
use crate::api::{Key, KeyMetadata, KeyRequest, KeyState};
use crate::kms::rules;
use crate::service::error::ApiError;

/// How often a write lost to a concurrent change is decided again from a fresh read.
const ATTEMPTS: usize = 3;
/// How long the API waits for the controller to take a change up before answering `Timeout`.
pub const SETTLE_WITHIN: Duration = Duration::from_secs(10);

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Done<'a> {
    request_id: &'a str,
}

/// UpdateKeyDescription: `spec.description`.
pub async fn update_key_description(call: &Call<'_>) -> Answer {
    let description = call
        .request
        .param("Description")
        .ok_or_else(|| ApiError::missing("Description"))?;
    change(call, "updatekeydescription", |_, _| {
        Ok(json!({ "description": description }))
    })
    .await
}

/// EnableKey: `spec.keyState: Enabled`. A key pending deletion must have the deletion
/// cancelled first, and a key awaiting imported material cannot be enabled.
pub async fn enable_key(call: &Call<'_>) -> Answer {
    change(call, "enablekey", |_, metadata| {
        refuse_unless_settled_state(metadata, "EnableKey")?;
        Ok(json!({ "keyState": "Enabled" }))
    })
    .await
}

/// DisableKey: `spec.keyState: Disabled` (the consumer Secret's material is withdrawn).
pub async fn disable_key(call: &Call<'_>) -> Answer {
    change(call, "disablekey", |_, metadata| {
        refuse_unless_settled_state(metadata, "DisableKey")?;
        Ok(json!({ "keyState": "Disabled" }))
    })
    .await
}

/// ScheduleKeyDeletion: `spec.keyState: PendingDeletion` with `pendingWindowInDays`.
pub async fn schedule_key_deletion(call: &Call<'_>) -> Answer {
    let days = pending_window(required(call.request, "PendingWindowInDays")?)?;
    change(call, "schedulekeydeletion", move |key, metadata| {
        if metadata.key_state == KeyState::PendingDeletion {
            return Err(ApiError::rejected_in_state(
                "PendingDeletion",
                format!(
                    "Key {} is already scheduled for deletion on {}: call CancelKeyDeletion \
                     first to schedule it with another window",
                    metadata.key_id,
                    metadata
                        .delete_date
                        .as_deref()
                        .unwrap_or("its window's end")
                ),
            ));
        }
        if key.spec.deletion_protection == Some(true) {
            return Err(ApiError::new(
                http::StatusCode::FORBIDDEN,
                "Forbidden.DeletionProtection",
                format!(
                    "Key {} has deletion protection: set spec.deletionProtection to false on \
                     Key {}/{} before scheduling its deletion",
                    metadata.key_id,
                    key.namespace().unwrap_or_default(),
                    key.name_any()
                ),
            ));
        }
        Ok(json!({ "keyState": "PendingDeletion", "pendingWindowInDays": days }))
    })
    .await
}

/// CancelKeyDeletion: the key returns to Enabled, as the KMS documents.
pub async fn cancel_key_deletion(call: &Call<'_>) -> Answer {
    change(call, "cancelkeydeletion", |key, metadata| {
        if metadata.key_state != KeyState::PendingDeletion {
            return Err(ApiError::rejected_in_state(
                metadata.key_state.as_str(),
                format!(
                    "Key {} is {}: there is no deletion to cancel",
                    metadata.key_id,
                    metadata.key_state.as_str()
                ),
            ));
        }
        if key.metadata.deletion_timestamp.is_some() {
            return Err(ApiError::rejected_in_state(
                "PendingDeletion",
                format!(
                    "Key {} is pending deletion because its object {}/{} was deleted: apply the \
                     Key again under the same name before the window ends to keep it",
                    metadata.key_id,
                    key.namespace().unwrap_or_default(),
                    key.name_any()
                ),
            ));
        }
        Ok(json!({ "keyState": "Enabled" }))
    })
    .await
}

/// UpdateRotationPolicy: `spec.enableAutomaticRotation` and `spec.rotationInterval`.
pub async fn update_rotation_policy(call: &Call<'_>) -> Answer {
    let enable = boolean(call.request, "EnableAutomaticRotation")?
        .ok_or_else(|| ApiError::missing("EnableAutomaticRotation"))?;
    let interval = call
        .request
        .param("RotationInterval")
        .filter(|v| !v.is_empty());
    if enable && interval.is_none() {
        return Err(ApiError::missing("RotationInterval"));
    }
    change(call, "updaterotationpolicy", move |_, metadata| {
        if metadata.key_state != KeyState::Enabled {
            return Err(ApiError::rejected_in_state(
                metadata.key_state.as_str(),
                format!(
                    "Key {} is {}: only an Enabled key's rotation policy can be changed",
                    metadata.key_id,
                    metadata.key_state.as_str()
                ),
            ));
        }
        Ok(match enable {
            true => json!({ "enableAutomaticRotation": true, "rotationInterval": interval }),
            false => json!({ "enableAutomaticRotation": false, "rotationInterval": null }),
        })
    })
    .await
}

/// EnableKey and DisableKey leave a key pending deletion or awaiting material as it is.
fn refuse_unless_settled_state(metadata: &KeyMetadata, action: &str) -> Result<(), ApiError> {
    let advice = match metadata.key_state {
        KeyState::Enabled | KeyState::Disabled => return Ok(()),
        KeyState::PendingDeletion => "call CancelKeyDeletion first",
        KeyState::PendingImport => "import its key material first",
    };
    Err(ApiError::rejected_in_state(
        metadata.key_state.as_str(),
        format!(
            "{action} is refused: key {} is {}; {advice}",
            metadata.key_id,
            metadata.key_state.as_str()
        ),
    ))
}

fn pending_window(text: &str) -> Result<i64, ApiError> {
    match text.parse::<i64>() {
        Ok(days) if (7..=30).contains(&days) => Ok(days),
        _ => Err(ApiError::invalid_parameter(format!(
            "PendingWindowInDays must be a whole number of days from 7 to 30, not {text:?}"
        ))),
    }
}

/// The shared path of every spec change: find the Key, ask RBAC for `verb`, then (from a live
/// read, again if a concurrent change wins) decide the spec fields to merge, check the result
/// by the CreateKey rules, write it conditionally, and wait for the controller to take it up.
async fn change(
    call: &Call<'_>,
    verb: &str,
    decide: impl Fn(&Key, &KeyMetadata) -> Result<Value, ApiError>,
) -> Answer {
    let cached = find_key(call.ctx, call.caller, required(call.request, "KeyId")?)?;
    call.authorize(verb, &cached).await?;
    let (namespace, name) = (cached.namespace().unwrap_or_default(), cached.name_any());
    for _ in 0..ATTEMPTS {
        let key = call
            .ctx
            .kube
            .get_key(&namespace, &name)
            .await
            .map_err(unavailable)?
            .filter(|live| live.uid() == cached.uid())
            .ok_or_else(ApiError::key_not_found)?;
        let metadata = metadata_of(&key)?;
        let fields = decide(&key, metadata)?;
        let spec = merged(&key.spec, &fields)?;
        rules::validate(&spec, &call.ctx.rules)?;
        if spec == key.spec {
            // Already so: nothing to write.
            return Ok(call.document(&Done {
                request_id: call.request_id,
            }));
        }
        let Some(written) = call
            .ctx
            .kube
            .patch_key_spec(&key, fields)
            .await
            .map_err(unavailable)?
        else {
            continue;
        };
        let generation = written.metadata.generation.unwrap_or_default();
        let taken_up = |k: &Key| {
            k.status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .is_some_and(|observed| observed >= generation)
        };
        return match call
            .ctx
            .caches
            .wait_for_key(&namespace, &name, SETTLE_WITHIN, taken_up)
            .await
        {
            Some(_) => Ok(call.document(&Done {
                request_id: call.request_id,
            })),
            None => Err(ApiError::not_settled(format!(
                "The change is recorded in the spec of Key {namespace}/{name} (generation \
                 {generation}) but keyward has not applied it within {}s; DescribeKey shows \
                 when it has",
                SETTLE_WITHIN.as_secs()
            ))),
        };
    }
    Err(ApiError::new(
        http::StatusCode::CONFLICT,
        "ConcurrentModification",
        format!("Key {namespace}/{name} kept changing while this request was applied; retry"),
    ))
}

/// The spec with `fields` merged in (a JSON merge patch of the spec object).
fn merged(spec: &KeyRequest, fields: &Value) -> Result<KeyRequest, ApiError> {
    let mut value = serde_json::to_value(spec).map_err(internal)?;
    if let (Some(target), Some(fields)) = (value.as_object_mut(), fields.as_object()) {
        merge_into(target, fields);
    }
    serde_json::from_value(value).map_err(internal)
}

fn merge_into(target: &mut Map<String, Value>, fields: &Map<String, Value>) {
    for (name, value) in fields {
        match value {
            Value::Null => target.remove(name),
            value => target.insert(name.clone(), value.clone()),
        };
    }
}

fn unavailable(error: crate::error::Error) -> ApiError {
    tracing::warn!(error = %error, "a Key could not be read or written for the KMS API");
    ApiError::unavailable("The Key could not be read or changed; try again.")
}

fn internal(error: serde_json::Error) -> ApiError {
    tracing::error!(error = %error, "a Key's spec did not survive a round trip");
    ApiError::internal()
}
