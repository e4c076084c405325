//! The actions served, each: find the Key, ask RBAC, answer with the KMS's document.
//!
//! [`crypto`] uses keys; [`create_key`], [`spec`] and [`versions`] manage them through the
//! resources (a Key, its spec, KeyVersions), so the controllers stay the only place that mints.

mod create_key;
mod crypto;
mod spec;
mod versions;

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use kube::api::ObjectMeta;
use kube::runtime::reflector::ObjectRef;

use super::ApiContext;
use super::error::ApiError;
use super::identity::Caller;
use super::request::ApiRequest;
use crate::api::{Key, KeyMetadata, labels};
use crate::kms::response;

/// ListKeys pages: the KMS's default and largest page sizes.
const DEFAULT_PAGE_SIZE: usize = 10;
const MAX_PAGE_SIZE: usize = 100;

/// One authenticated request being answered.
pub struct Call<'a> {
    pub ctx: &'a ApiContext,
    pub caller: &'a Caller,
    pub request: &'a ApiRequest,
    pub request_id: &'a str,
}

/// A response document, or why not.
pub type Answer = Result<String, ApiError>;

impl Call<'_> {
    /// RBAC's answer for `verb` on `key`, as an error naming the verb when refused.
    async fn authorize(&self, verb: &str, key: &Key) -> Result<(), ApiError> {
        authorize(self.ctx, self.caller, verb, key).await
    }

    /// The metadata of a Key or KeyVersion the API creates for this call: named
    /// `<prefix><random>` in `namespace`, annotated with the caller who asked for it.
    fn requested_metadata(&self, prefix: &str, namespace: &str) -> ObjectMeta {
        ObjectMeta {
            generate_name: Some(prefix.to_string()),
            namespace: Some(namespace.to_string()),
            annotations: Some(BTreeMap::from([(
                labels::CREATED_BY.to_string(),
                self.caller.username.clone(),
            )])),
            ..ObjectMeta::default()
        }
    }

    fn document(&self, document: &impl serde::Serialize) -> String {
        response::document(document, self.request.format())
    }
}

/// The actions [`perform`] serves (the metrics label requests by these names only).
pub const SERVED: [&str; 22] = [
    "CreateKey",
    "DescribeKey",
    "ListKeys",
    "UpdateKeyDescription",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "UpdateRotationPolicy",
    "CreateKeyVersion",
    "DescribeKeyVersion",
    "ListKeyVersions",
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GetPublicKey",
    "AsymmetricSign",
    "AsymmetricVerify",
    "AsymmetricEncrypt",
    "AsymmetricDecrypt",
];

/// Answers one authenticated request: the response document, or why not. (An action added
/// here belongs in [`SERVED`] too.)
pub async fn perform(
    ctx: &ApiContext,
    caller: &Caller,
    request: &ApiRequest,
    action: &str,
    request_id: &str,
) -> Answer {
    let call = Call {
        ctx,
        caller,
        request,
        request_id,
    };
    match action {
        "CreateKey" => create_key::create_key(&call).await,
        "DescribeKey" => describe_key(&call).await,
        "ListKeys" => list_keys(&call).await,
        "UpdateKeyDescription" => spec::update_key_description(&call).await,
        "EnableKey" => spec::enable_key(&call).await,
        "DisableKey" => spec::disable_key(&call).await,
        "ScheduleKeyDeletion" => spec::schedule_key_deletion(&call).await,
        "CancelKeyDeletion" => spec::cancel_key_deletion(&call).await,
        "UpdateRotationPolicy" => spec::update_rotation_policy(&call).await,
        "CreateKeyVersion" => versions::create_key_version(&call).await,
        "DescribeKeyVersion" => versions::describe_key_version(&call).await,
        "ListKeyVersions" => versions::list_key_versions(&call).await,
        "Encrypt" => crypto::encrypt(&call).await,
        "Decrypt" => crypto::decrypt(&call).await,
        "ReEncrypt" => crypto::re_encrypt(&call).await,
        "GenerateDataKey" => crypto::generate_data_key(&call, true).await,
        "GenerateDataKeyWithoutPlaintext" => crypto::generate_data_key(&call, false).await,
        "GetPublicKey" => crypto::get_public_key(&call).await,
        "AsymmetricSign" => crypto::asymmetric_sign(&call).await,
        "AsymmetricVerify" => crypto::asymmetric_verify(&call).await,
        "AsymmetricEncrypt" => crypto::asymmetric_encrypt(&call).await,
        "AsymmetricDecrypt" => crypto::asymmetric_decrypt(&call).await,
        other => Err(ApiError::unknown_action(other)),
    }
}

async fn describe_key(call: &Call<'_>) -> Answer {
    let key = find_key(call.ctx, call.caller, required(call.request, "KeyId")?)?;
    call.authorize("describekey", &key).await?;
    let metadata = metadata_of(&key)?;
    Ok(response::describe_key(
        metadata,
        call.request_id,
        call.request.format(),
    ))
}

async fn list_keys(call: &Call<'_>) -> Answer {
    let (ctx, caller, request) = (call.ctx, call.caller, call.request);
    let page_number = page_parameter(request, "PageNumber", 1, usize::MAX)?;
    let page_size = page_parameter(request, "PageSize", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let namespace = &caller.namespace;
    if !ctx.allowed(caller, "listkeys", namespace, None).await? {
        return Err(ApiError::no_permission(
            &caller.username,
            "listkeys",
            namespace,
            None,
        ));
    }
    let mut keys: Vec<(String, String)> = ctx
        .caches
        .keys
        .state()
        .iter()
        .filter(|k| k.namespace().as_deref() == Some(namespace.as_str()))
        .filter_map(|k| {
            let metadata = k.status.as_ref()?.key_metadata.as_ref()?;
            Some((metadata.key_id.clone(), metadata.arn.clone()))
        })
        .collect();
    keys.sort();
    let total = keys.len();
    let page: Vec<(&str, &str)> = keys
        .iter()
        .skip((page_number - 1).saturating_mul(page_size))
        .take(page_size)
        .map(|(id, arn)| (id.as_str(), arn.as_str()))
        .collect();
    Ok(response::list_keys(
        &page,
        total,
        page_number,
        page_size,
        call.request_id,
        request.format(),
    ))
}

/// A Key's KeyMetadata; a Key without it (not created, or refused) answers what its Ready
/// condition says, as not found.
fn metadata_of(key: &Key) -> Result<&KeyMetadata, ApiError> {
    response::key_metadata(key).map_err(|error| ApiError {
        status: http::StatusCode::NOT_FOUND,
        error,
    })
}

/// The Key a `KeyId` parameter names: a KeyId, an ARN (`acs:kms:<region>:<account>:key/<id>`),
/// or `alias/<Key name>` in the caller's namespace.
fn find_key(ctx: &ApiContext, caller: &Caller, key_id: &str) -> Result<Arc<Key>, ApiError> {
    if let Some(name) = key_id.strip_prefix("alias/") {
        let reference = ObjectRef::new(name).within(&caller.namespace);
        return ctx
            .caches
            .keys
            .get(&reference)
            .ok_or_else(ApiError::key_not_found);
    }
    let id = match key_id.strip_prefix("acs:kms:") {
        Some(arn) => arn.rsplit_once(":key/").map(|(_, id)| id).ok_or_else(|| {
            ApiError::invalid_parameter("KeyId is an ARN without \":key/<KeyId>\"")
        })?,
        None => key_id,
    };
    ctx.caches
        .keys
        .find(|k| {
            k.status
                .as_ref()
                .and_then(|s| s.key_metadata.as_ref())
                .is_some_and(|m| m.key_id == id)
        })
        .ok_or_else(ApiError::key_not_found)
}

async fn authorize(
    ctx: &ApiContext,
    caller: &Caller,
    verb: &str,
    key: &Key,
) -> Result<(), ApiError> {
    let namespace = key.namespace().unwrap_or_default();
    let name = key.name_any();
    match ctx.allowed(caller, verb, &namespace, Some(&name)).await? {
        true => Ok(()),
        false => Err(ApiError::no_permission(
            &caller.username,
            verb,
            &namespace,
            Some(&name),
        )),
    }
}

fn required<'a>(request: &'a ApiRequest, name: &str) -> Result<&'a str, ApiError> {
    request
        .param(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::missing(name))
}

fn page_parameter(
    request: &ApiRequest,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let Some(text) = request.param(name) else {
        return Ok(default);
    };
    match text.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid_parameter(format!(
            "{name} must be a whole number from 1 to {max}"
        ))),
    }
}

/// A Boolean parameter: `true` or `false` in any case (the v1 SDK sends Python's `True`).
fn boolean(request: &ApiRequest, name: &str) -> Result<Option<bool>, ApiError> {
    match request.param(name) {
        None => Ok(None),
        Some(text) if text.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(text) if text.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(ApiError::invalid_parameter(format!(
            "{name} must be true or false"
        ))),
    }
}
