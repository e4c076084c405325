//! The consumer Secret: what workloads mount, derived from the store alone, and how keyward
//! recognises the ones it created.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::{Store, managed_meta};
use crate::api::KeyState;
use crate::api::labels;

/// Whether `secret` is a consumer Secret keyward created for Key `key_name`: its type (which
/// cannot change after creation) and the annotation naming the Key, unless another manager
/// claims it. A Secret whose labels were merely edited away is restored, not disowned.
pub fn is_consumer_of(secret: &Secret, key_name: &str) -> bool {
    let annotations = secret.metadata.annotations.as_ref();
    let manager = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY));
    secret.type_.as_deref() == Some(labels::CONSUMER_SECRET_TYPE)
        && annotations
            .and_then(|a| a.get(labels::KEY))
            .map(String::as_str)
            == Some(key_name)
        && manager.is_none_or(|m| m == labels::MANAGED_BY_VALUE)
}

/// The consumer Secret as it should be. When one exists, its metadata is kept (labels and
/// annotations that others added survive) with keyward's own labels and annotations set.
pub fn desired_consumer(
    existing: Option<&Secret>,
    namespace: &str,
    secret_name: &str,
    key_name: &str,
    store: &Store,
    state: KeyState,
) -> Secret {
    let ours = managed_meta(
        secret_name.to_string(),
        namespace,
        key_name,
        labels::ROLE_CONSUMER,
        &store.record.key_id,
    );
    let mut metadata = existing.map(|s| s.metadata.clone()).unwrap_or_default();
    metadata.name = ours.name;
    metadata.namespace = ours.namespace;
    metadata
        .labels
        .get_or_insert_default()
        .extend(ours.labels.unwrap_or_default());
    let annotations = metadata.annotations.get_or_insert_default();
    annotations.extend(ours.annotations.unwrap_or_default());
    annotations.insert(labels::KEY_STATE.into(), state.as_str().into());
    // Only an Enabled key's material is served; otherwise the Secret stays, saying why, and
    // gets every version back, unchanged, when the key is enabled again.
    let data = if state == KeyState::Enabled {
        store.consumer_data()
    } else {
        BTreeMap::from([(
            "keyId".to_string(),
            ByteString(store.record.key_id.clone().into_bytes()),
        )])
    };
    Secret {
        metadata,
        type_: Some(labels::CONSUMER_SECRET_TYPE.to_string()),
        data: Some(data),
        ..Secret::default()
    }
}
