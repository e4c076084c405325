//! The consumer Secret, the one workloads mount: what it should hold for the key's state, and
//! the event each change of it deserves (pure). A Secret of its name that keyward did not
//! create for this Key is a conflict, never overwritten.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::{Note, Observed, SecretWrite, event};
use crate::api::{Key, KeyState, labels};
use crate::kms::error::{Code, Rejection};
use crate::store::{self, Store};

/// The consumer Secret write, if any, and the event it deserves. A Secret of that name that
/// keyward did not create for this Key is a conflict, never overwritten.
pub(super) fn plan_consumer(
    observed: &Observed<'_>,
    store: &Store,
    secret_name: &str,
    state: KeyState,
) -> Result<(Option<SecretWrite>, Vec<Note>), Rejection> {
    let key_name = observed.key.name_any();
    let namespace = observed.key.namespace().unwrap_or_default();
    let existing = observed.consumer;
    if existing.is_some_and(|s| !store::is_consumer_of(s, &key_name)) {
        return Err(secret_name_conflict(secret_name));
    }
    let desired =
        store::desired_consumer(existing, &namespace, secret_name, &key_name, store, state);
    let versions = store.record.versions.len();
    let Some(existing) = existing else {
        let status = observed.key.status.as_ref();
        let published_before = status.and_then(|s| s.secret_name.as_deref());
        let note = absent_consumer_note(published_before, secret_name, versions);
        return Ok((
            Some(SecretWrite::Create(desired)),
            note.into_iter().collect(),
        ));
    };
    if let Some(note) = state_change_note(existing, state, secret_name, versions) {
        return Ok((Some(SecretWrite::Replace(desired)), vec![note]));
    }
    if same_consumer(existing, &desired) {
        return Ok((None, Vec::new()));
    }
    let note = edited_consumer_note(existing, store, secret_name);
    Ok((
        Some(SecretWrite::Replace(desired)),
        note.into_iter().collect(),
    ))
}

/// The event of the key's state changing what its Secret serves: material withdrawn when
/// the key stops being Enabled, restored when it is Enabled again. keyward goes by the state
/// it wrote down on the Secret, not by its data, which a hand edit may have changed.
fn state_change_note(
    existing: &Secret,
    state: KeyState,
    secret_name: &str,
    versions: usize,
) -> Option<Note> {
    let published = existing.annotations().get(labels::KEY_STATE);
    let withdrawn = published.is_some_and(|s| s != KeyState::Enabled.as_str());
    match (withdrawn, state == KeyState::Enabled) {
        (false, false) => Some(event::material_withdrawn(secret_name, state, versions)),
        (true, true) => Some(event::material_restored(secret_name, versions)),
        _ => None,
    }
}

/// The event of creating a Secret that is not there: none for a key's first Secret (its
/// KeyCreated event names it), a warning if the Secret published before was deleted.
/// `published_before` is the status's `secretName`.
fn absent_consumer_note(
    published_before: Option<&str>,
    secret_name: &str,
    versions: usize,
) -> Option<Note> {
    match published_before {
        Some(name) if name == secret_name => {
            Some(event::secret_deleted_restored(secret_name, versions))
        }
        None => None,
        Some(_) => Some(event::secret_created(secret_name)),
    }
}

/// The event of rebuilding a Secret that differs from the store. Serving an older version of
/// this key is the normal state after a new version was added, which has its own event
/// (KeyRotated, the KeyVersion's Created, KeyMaterialImported); anything else means the
/// Secret was changed by hand.
fn edited_consumer_note(existing: &Secret, store: &Store, secret_name: &str) -> Option<Note> {
    let served = existing.data.as_ref().and_then(|d| d.get("keyVersionId"));
    let mut older = store.record.versions.iter().rev().skip(1);
    let serves_older = older.any(|v| served.is_some_and(|b| b.0 == v.key_version_id.as_bytes()));
    let versions = store.record.versions.len();
    (!serves_older).then(|| event::secret_edited_restored(secret_name, versions))
}

/// The Secret consumers mount: `spec.secretName`, or the Key's name.
pub fn consumer_secret_name(key: &Key) -> String {
    key.spec
        .secret_name
        .clone()
        .unwrap_or_else(|| key.name_any())
}

pub(super) fn secret_name_conflict(secret_name: &str) -> Rejection {
    Rejection::new(
        Code::SecretNameConflict,
        format!(
            "Secret {secret_name} already exists and was not created by keyward for this Key; \
             keyward never takes over or overwrites it: set spec.secretName to an unused name, \
             or remove that Secret"
        ),
    )
}

/// Equal in everything keyward owns: type, data, and keyward's labels and annotations.
fn same_consumer(existing: &Secret, desired: &Secret) -> bool {
    existing.type_ == desired.type_
        && existing.data == desired.data
        && contains_all(&existing.metadata.labels, &desired.metadata.labels)
        && contains_all(
            &existing.metadata.annotations,
            &desired.metadata.annotations,
        )
}

fn contains_all(
    have: &Option<std::collections::BTreeMap<String, String>>,
    want: &Option<std::collections::BTreeMap<String, String>>,
) -> bool {
    let want = want.iter().flatten();
    want.into_iter()
        .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
}
