//! Moving a store of the former layout (`<key>.keyward-material`, in the Key's own namespace)
//! to keyward's store namespace (pure). The move copies the Secret create-only, then deletes
//! the original only as it was read, so a crash at any point leaves at least one whole copy,
//! and the next start finishes the move: nothing is minted, lost or duplicated.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::ObjectMeta;

use super::StoreLocation;
use crate::api::labels;

/// The next step of moving one store of the former layout.
#[derive(Debug, PartialEq)]
pub enum MoveStep {
    /// Create this copy in the store namespace (create-only).
    Copy(Box<Secret>),
    /// The copy holds everything the original does: delete the original.
    DeleteOriginal,
    /// A different store already has the copy's name: leave both as they are.
    Conflict(String),
}

/// The Secret in `store_namespace` whose presence says the stores of the Keys of `scope` (one
/// namespace, or all: `None`) were moved; it holds nothing.
pub fn completion_marker(store_namespace: &str, scope: Option<&str>) -> Secret {
    let name = match scope {
        Some(namespace) => format!("keyward-layout-moved.{namespace}"),
        None => "keyward-layout-moved".to_string(),
    };
    Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(store_namespace.into()),
            ..ObjectMeta::default()
        },
        type_: Some(labels::LAYOUT_MARKER_SECRET_TYPE.into()),
        ..Secret::default()
    }
}

/// Whether `secret` is a store of the former layout: keyward's store labels, but no annotation
/// naming the Key's namespace (a store of the store namespace has one).
pub fn is_former_store(secret: &Secret) -> bool {
    secret.type_.as_deref() == Some(labels::MATERIAL_SECRET_TYPE)
        && !secret.annotations().contains_key(labels::KEY_NAMESPACE)
}

/// Where the former store `original` moves to, in `store_namespace`; `None` if it names no Key.
pub fn destination<'a>(
    original: &'a Secret,
    store_namespace: &'a str,
) -> Option<StoreLocation<'a>> {
    Some(StoreLocation {
        store_namespace,
        key_namespace: original.metadata.namespace.as_deref()?,
        key_name: original.annotations().get(labels::KEY)?,
    })
}

/// The next step for `original`, given what its destination holds now.
pub fn plan_move(original: &Secret, to: StoreLocation<'_>, copy: Option<&Secret>) -> MoveStep {
    let Some(copy) = copy else {
        return MoveStep::Copy(Box::new(copied(original, to)));
    };
    let key_id = |s: &Secret| s.annotations().get(labels::KEY_ID).cloned();
    let same_key = key_id(copy).is_some() && key_id(copy) == key_id(original);
    let belongs = copy
        .annotations()
        .get(labels::KEY_NAMESPACE)
        .map(String::as_str)
        == Some(to.key_namespace)
        && copy.annotations().get(labels::KEY).map(String::as_str) == Some(to.key_name);
    if same_key && belongs && holds_all_of(copy, original) {
        return MoveStep::DeleteOriginal;
    }
    MoveStep::Conflict(format!(
        "the store of Key {} in namespace {} could not be moved: Secret {} in namespace {} \
         already holds {}; both are left as they are: compare them, and delete the one that is \
         not the key's",
        to.key_name,
        to.key_namespace,
        to.name(),
        to.store_namespace,
        if same_key {
            "this key with other contents"
        } else {
            "another key"
        }
    ))
}

/// The copy: the same type, data, labels and annotations, plus the Key's namespace.
fn copied(original: &Secret, to: StoreLocation<'_>) -> Secret {
    let mut labels = original.labels().clone();
    labels.insert(labels::KEY_NAMESPACE.into(), to.key_namespace.into());
    let mut annotations = original.annotations().clone();
    annotations.insert(labels::KEY_NAMESPACE.into(), to.key_namespace.into());
    Secret {
        metadata: ObjectMeta {
            name: Some(to.name()),
            namespace: Some(to.store_namespace.into()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        type_: original.type_.clone(),
        data: original.data.clone(),
        immutable: original.immutable,
        ..Secret::default()
    }
}

/// Whether `copy` holds every entry of `original`, byte for byte.
fn holds_all_of(copy: &Secret, original: &Secret) -> bool {
    let (Some(copied), Some(entries)) = (&copy.data, &original.data) else {
        return original.data.is_none();
    };
    entries
        .iter()
        .all(|(name, bytes)| copied.get(name) == Some(bytes))
}

#[cfg(test)]
mod tests;
