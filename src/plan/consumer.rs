//! The consumer Secret, the one workloads mount: what it should hold for the key's state, and
//! the event each change of it deserves (pure). A Secret of its name that keyward did not
//! create for this Key is a conflict, never overwritten.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::{Note, Observed, SecretWrite};
use crate::api::{Key, KeyState, labels};
use crate::kms::error::{Code, Rejection};
use crate::kms::reason::Reason;
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
    // What keyward last published, by the state it wrote down (not by the data, which a hand
    // edit may have changed).
    let withdrawn = |s: &Secret| {
        let published = s.annotations().get(labels::KEY_STATE).map(String::as_str);
        published.is_some_and(|state| state != KeyState::Enabled.as_str())
    };
    let versions = store.record.versions.len();
    match existing {
        Some(existing) if !withdrawn(existing) && state != KeyState::Enabled => {
            let note = Note {
                warning: false,
                reason: Reason::MaterialWithdrawn,
                message: format!(
                    "withdrew the material from Secret {secret_name}: the key is {state}; the \
                     Secret stays, and gets all {versions} version(s) back if the key is enabled"
                ),
            };
            return Ok((Some(SecretWrite::Replace(desired)), vec![note]));
        }
        Some(existing) if withdrawn(existing) && state == KeyState::Enabled => {
            let note = Note {
                warning: false,
                reason: Reason::MaterialRestored,
                message: format!(
                    "restored all {versions} version(s) to Secret {secret_name}: the key is Enabled"
                ),
            };
            return Ok((Some(SecretWrite::Replace(desired)), vec![note]));
        }
        _ => {}
    }
    let status_secret_name = observed
        .key
        .status
        .as_ref()
        .and_then(|s| s.secret_name.as_deref());
    let published_before = status_secret_name == Some(secret_name);
    Ok(match existing {
        None if published_before => {
            let note = Note {
                warning: true,
                reason: Reason::SecretRestored,
                message: format!(
                    "Secret {secret_name} was deleted; rebuilt it from the material store with \
                     all {} version(s)",
                    store.record.versions.len()
                ),
            };
            (Some(SecretWrite::Create(desired)), vec![note])
        }
        // A key's first Secret is part of creating it: its KeyCreated event names the Secret.
        None if status_secret_name.is_none() => (Some(SecretWrite::Create(desired)), Vec::new()),
        None => {
            let note = Note {
                warning: false,
                reason: Reason::SecretCreated,
                message: format!("published key material in Secret {secret_name}"),
            };
            (Some(SecretWrite::Create(desired)), vec![note])
        }
        Some(existing) if !same_consumer(existing, &desired) => {
            let versions = store.record.versions.len();
            // Serving an older version of this key is the normal state after a new version
            // was added, which has its own event (KeyRotated, the KeyVersion's Created,
            // KeyMaterialImported); anything else means the Secret was changed by hand.
            let served = existing.data.as_ref().and_then(|d| d.get("keyVersionId"));
            let older = store.record.versions.iter().rev().skip(1);
            let notes = if older
                .map(|v| v.key_version_id.as_bytes())
                .any(|id| served.is_some_and(|b| b.0 == id))
            {
                Vec::new()
            } else {
                vec![Note {
                    warning: true,
                    reason: Reason::SecretRestored,
                    message: format!(
                        "Secret {secret_name} differed from the material store (changed outside \
                         keyward); rebuilt it with all {versions} version(s)"
                    ),
                }]
            };
            (Some(SecretWrite::Replace(desired)), notes)
        }
        Some(_) => (None, Vec::new()),
    })
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
