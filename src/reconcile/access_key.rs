//! The AccessKey reconcilers: one issues each AccessKey's pair and keeps its Secret in step;
//! the other revokes keyward's copy of a pair once its AccessKey is gone.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef};

use super::Context;
use crate::api::{AccessKey, labels};
use crate::error::Error;
use crate::plan::SecretWrite;
use crate::plan::access_key::{AccessKeyPlan, ObservedAccessKey, is_pair_of, plan};
use crate::store::credential::{Credential, credential_name};

/// Issuing takes one plan, a retired Secret or a revoked copy one more each.
const MAX_PLANS: usize = 6;

pub async fn reconcile(access_key: Arc<AccessKey>, ctx: Arc<Context>) -> Result<Action, Error> {
    if access_key.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = access_key
        .namespace()
        .ok_or(Error::MissingObjectField("metadata.namespace"))?;
    let name = access_key.name_any();
    let store_namespace = &ctx.scope.store_namespace;
    let secret_name = access_key.secret_name();
    for _ in 0..MAX_PLANS {
        let credential = ctx
            .kube
            .get_secret(store_namespace, &credential_name(&namespace, &name))
            .await?;
        let issued = ctx.kube.get_secret(&namespace, &secret_name).await?;
        let former = former_pairs(&ctx, &access_key, &namespace, &secret_name).await?;
        let observed = ObservedAccessKey {
            access_key: &access_key,
            credential: credential
                .as_ref()
                .map(|secret| (secret, Credential::parse(secret))),
            issued: issued.as_ref(),
            former: &former,
        };
        match plan(&observed, Timestamp::now()) {
            AccessKeyPlan::Issue => {
                let issued = tokio::task::spawn_blocking({
                    let access_key = access_key.clone();
                    move || Credential::issue(&access_key)
                })
                .await?
                .map_err(crate::kms::material::MaterialError::from)?;
                if ctx
                    .kube
                    .create_once(&issued.to_secret(store_namespace))
                    .await?
                    .is_some()
                {
                    tracing::info!(%namespace, access_key = %name,
                        access_key_id = %issued.access_key_id, "issued an AccessKey pair");
                }
            }
            AccessKeyPlan::Revoke(stale) => {
                if ctx.kube.delete_if_unchanged(&stale).await? {
                    tracing::info!(%namespace, access_key = %name,
                        "revoked the pair of an earlier AccessKey of this name");
                }
            }
            AccessKeyPlan::Retire(former) => {
                ctx.kube.delete_if_unchanged(&former).await?;
            }
            AccessKeyPlan::Converge(converge) => {
                if let Some(write) = &converge.issued {
                    let written = match write {
                        SecretWrite::Create(secret) => ctx.kube.create_once(secret).await?,
                        SecretWrite::Replace(secret) => {
                            ctx.kube.replace_if_unchanged(secret).await?
                        }
                    };
                    // Another writer got there first: read again.
                    if written.is_none() {
                        continue;
                    }
                }
                if let Some(status) = &converge.status {
                    ctx.kube.write_status(access_key.as_ref(), status).await?;
                }
                return Ok(Action::await_change());
            }
        }
    }
    Ok(Action::requeue(Duration::from_secs(1)))
}

/// keyward's pair Secrets of `access_key` under names other than `secret_name`. Listed only
/// while the status does not yet name `secret_name` as the Secret (a first issue, or a
/// `secretName` change in progress): otherwise there are none to find.
async fn former_pairs(
    ctx: &Context,
    access_key: &AccessKey,
    namespace: &str,
    secret_name: &str,
) -> Result<Vec<Secret>, Error> {
    let reported = access_key
        .status
        .as_ref()
        .and_then(|s| s.secret_name.as_deref());
    if reported == Some(secret_name) {
        return Ok(Vec::new());
    }
    let listed = ctx
        .kube
        .list_secrets(Some(namespace), &pairs_selector(&access_key.name_any()))
        .await?;
    Ok(listed
        .into_iter()
        .filter(|s| s.name_any() != secret_name && is_pair_of(s, access_key))
        .collect())
}

/// The selector of keyward's pair Secrets of AccessKey `name`.
fn pairs_selector(name: &str) -> String {
    format!(
        "{},{}={}",
        labels::managed_selector(),
        labels::ACCESS_KEY,
        labels::key_label_value(name)
    )
}

/// keyward's copy of a pair whose AccessKey is gone (deleted, or its namespace), or is
/// another object of the same name now: deleted, as read, with the Secrets it was issued into.
/// Decided on a live read of the AccessKey, as destruction of key material is.
pub async fn revoke_orphan(
    credential: Arc<PartialObjectMeta<Secret>>,
    ctx: Arc<Context>,
    access_keys: reflector::Store<AccessKey>,
) -> Result<Action, Error> {
    let Some(owner) = access_key_of(&credential) else {
        return Ok(Action::await_change());
    };
    let uid = credential.annotations().get(labels::ACCESS_KEY_UID);
    let current = |ak: &AccessKey| ak.uid().as_ref() == uid;
    if access_keys.get(&owner).is_some_and(|ak| current(&ak)) {
        return Ok(Action::await_change());
    }
    let namespace = owner.namespace.clone().unwrap_or_default();
    let live = ctx.kube.get_access_key(&namespace, &owner.name).await?;
    if live.as_ref().is_some_and(current) {
        return Ok(Action::await_change());
    }
    let Some(secret) = ctx
        .kube
        .get_secret(&ctx.scope.store_namespace, &credential.name_any())
        .await?
    else {
        return Ok(Action::await_change());
    };
    let Ok(revoked) = Credential::parse(&secret) else {
        // Not one keyward can read: left for an administrator, never guessed at.
        return Ok(Action::await_change());
    };
    if !ctx.kube.delete_if_unchanged(&secret).await? {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    tracing::info!(%namespace, access_key = %owner.name, access_key_id = %revoked.access_key_id,
        "revoked the pair of a deleted AccessKey");
    // Its issued Secrets, while the namespace is there: only those holding this very pair.
    for issued in ctx
        .kube
        .list_secrets(Some(&namespace), &pairs_selector(&owner.name))
        .await?
    {
        if revoked.is_in(&issued) {
            ctx.kube.delete_if_unchanged(&issued).await?;
        }
    }
    Ok(Action::await_change())
}

/// The AccessKey a credential was issued for, from its annotations.
pub fn access_key_of(credential: &PartialObjectMeta<Secret>) -> Option<ObjectRef<AccessKey>> {
    let annotations = credential.annotations();
    let name = annotations.get(labels::ACCESS_KEY)?;
    let namespace = annotations.get(labels::KEY_NAMESPACE)?;
    Some(ObjectRef::new(name).within(namespace))
}

/// The AccessKey an issued Secret belongs to.
pub fn access_key_of_pair(secret: PartialObjectMeta<Secret>) -> Option<ObjectRef<AccessKey>> {
    let name = secret.annotations().get(labels::ACCESS_KEY)?;
    Some(ObjectRef::new(name).within(&secret.namespace()?))
}
