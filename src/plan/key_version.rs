//! A CreateKeyVersion request (a `KeyVersion`) + its key + now -> what to do (pure).
//!
//! The seed's rules: the key must be asymmetric and Enabled, at least the minimum interval
//! must have passed since its last version, and the namespace's asymmetric versions must stay
//! within the limit. A rejection is final, like a failed API call, except the limit's: that
//! depends on the other keys, so the request is looked at again. A request whose key does not
//! exist yet waits for it: GitOps may apply them in any order.

use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;

use super::status::{Readiness, ready_conditions};
use super::{NewVersion, Note, PlanSettings};
use crate::api::key_version::{KeyVersion, KeyVersionMetadata, KeyVersionStatus};
use crate::api::{Key, KeyState};
use crate::kms::error::{Code, Rejection};
use crate::kms::reason::{READY, Reason};
use crate::kms::schedule::{format_kms_time, next_rotation, truncate_to_second};
use crate::store::{KeyRecord, Store, VersionRecord};

/// What the request reconciler saw.
pub struct ObservedRequest<'a> {
    pub request: &'a KeyVersion,
    /// The Key named by `spec.keyRef`, if it exists.
    pub key: Option<&'a Key>,
    /// That Key's material store, if it exists: parsed, or why it cannot be used.
    pub store: Option<&'a Result<Store, Rejection>>,
    /// Asymmetric versions of the request's namespace, initial versions included.
    pub asymmetric_versions: usize,
}

#[derive(Debug, PartialEq)]
pub enum RequestPlan {
    /// Mint the requested version and add it to the key's store; then plan again.
    AddVersion(Box<NewVersion>),
    /// Write the status (`None`: unchanged) and record the notes; plan again after
    /// `recheck_after`, if set, without waiting for a change.
    Report {
        status: Option<KeyVersionStatus>,
        notes: Vec<Note>,
        recheck_after: Option<Duration>,
    },
}

pub fn plan_request(
    observed: &ObservedRequest<'_>,
    settings: &PlanSettings,
    now: Timestamp,
    fresh_version_id: &str,
) -> RequestPlan {
    let request = observed.request;
    let key_name = &request.spec.key_ref.name;
    let uid = request.uid();
    let store = observed.store.and_then(|s| s.as_ref().ok());

    // Already done: the store lists the version this request asked for (its status may not
    // have been written if the operator stopped in between), or the status says so.
    let fulfilled = store.as_ref().and_then(|store| {
        let version = store
            .record
            .versions
            .iter()
            .find(|v| v.requested_by == uid && uid.is_some())?;
        Some(response(&store.record, version))
    });
    if let Some(done) = fulfilled.or_else(|| previous_response(request)) {
        return report_created(request, done, now);
    }
    if is_finally_rejected(request) {
        // A refused request stays refused, like a failed API call.
        return RequestPlan::Report {
            status: None,
            notes: Vec::new(),
            recheck_after: None,
        };
    }

    // The schema refuses such names; a request stored before it did, or on a server that skips
    // the schema, must still hear why it can never be served.
    if !crate::api::is_object_name(key_name) {
        let rejection = Rejection::new(
            Code::InvalidParameter,
            format!(
                "spec.keyRef.name {} cannot name a Key: Key names are lowercase \
                 letters, digits, '-' and '.', at most 253 characters; create a KeyVersion \
                 naming an existing Key",
                crate::kms::error::quote(key_name)
            ),
        );
        return report(request, None, Readiness::rejected(&rejection), now);
    }

    // The store outlives a deleted Key (by design): only a Key that exists takes versions.
    let Some(store) = store.filter(|_| observed.key.is_some()) else {
        let message = match (observed.key, observed.store) {
            (None, _) => format!("waiting for Key {key_name} to exist in this namespace"),
            (Some(_), None) => format!("waiting for Key {key_name} to be created"),
            (Some(_), Some(_)) => format!("waiting for Key {key_name} to become usable"),
        };
        return report(
            request,
            None,
            Readiness::waiting(Reason::WaitingForKey, message),
            now,
        );
    };
    match check_rules(
        observed.key,
        key_name,
        &store.record,
        observed.asymmetric_versions,
        settings,
        now,
    ) {
        Err(rejection) if rejection.code == Code::RejectedLimitExceeded => {
            let mut plan = report(request, None, Readiness::rejected(&rejection), now);
            if let RequestPlan::Report { recheck_after, .. } = &mut plan {
                *recheck_after = Some(LIMIT_RECHECK);
            }
            plan
        }
        Err(rejection) => report(request, None, Readiness::rejected(&rejection), now),
        Ok(()) => RequestPlan::AddVersion(Box::new(NewVersion {
            record: store.record.clone(),
            version: VersionRecord {
                key_version_id: fresh_version_id.to_string(),
                creation_date: truncate_to_second(now),
                requested_by: uid,
            },
        })),
    }
}

/// The seed's CreateKeyVersion rules, in the order the KMS checks them.
fn check_rules(
    key: Option<&Key>,
    key_name: &str,
    record: &KeyRecord,
    asymmetric_versions: usize,
    settings: &PlanSettings,
    now: Timestamp,
) -> Result<(), Rejection> {
    let key_id = &record.key_id;
    if record.key_spec.is_symmetric() {
        return Err(Rejection::new(
            Code::RejectedUnsupportedOperation,
            format!(
                "CreateKeyVersion is available only for asymmetric keys; key {key_name} \
                 ({key_id}) is {}: symmetric keys are rotated instead (automatic rotation, \
                 for keys with origin Aliyun_KMS)",
                record.key_spec
            ),
        ));
    }
    let desired = key
        .and_then(|k| k.spec.key_state.as_deref())
        .and_then(KeyState::parse);
    let state = super::lifecycle::key_state(record, desired.or(Some(KeyState::Enabled)));
    if let Some(code) = super::lifecycle::refuses_new_versions(state) {
        return Err(Rejection::new(
            code,
            format!("key {key_name} ({key_id}) is {state}: new versions need an Enabled key"),
        ));
    }
    let max = crate::store::max_versions(record.key_spec);
    if record.versions.len() >= max {
        return Err(Rejection::new(
            Code::RejectedLimitExceeded,
            format!(
                "key {key_name} ({key_id}) holds {} versions, the most one key may hold (its \
                 Secrets must stay within the 1 MiB limit of a Secret): create a new key",
                record.versions.len()
            ),
        ));
    }
    if let Some(last) = record.last_rotation() {
        let min = settings.key_version_min_interval;
        let allowed_from = next_rotation(last, min).unwrap_or(Timestamp::MAX);
        if now < allowed_from {
            return Err(Rejection::new(
                Code::RejectedUnsupportedOperation,
                format!(
                    "the last version of key {key_name} ({key_id}) was created at {}; versions \
                     must be at least {min} apart: a new version is allowed from {}",
                    format_kms_time(last),
                    format_kms_time(allowed_from)
                ),
            ));
        }
    }
    let namespace = key.and_then(|k| k.namespace()).unwrap_or_default();
    within_limit(&namespace, asymmetric_versions, settings)
}

/// How often a request or Key refused for the limit is looked at again: the limit depends on
/// other keys, which may be deleted meanwhile.
pub const LIMIT_RECHECK: Duration = Duration::from_secs(30);

/// Refuses one more asymmetric version in a namespace that holds `held` (the seed: 50 per
/// user and region; in keyward, per namespace).
pub(super) fn within_limit(
    namespace: &str,
    held: usize,
    settings: &PlanSettings,
) -> Result<(), Rejection> {
    let max = settings.max_asymmetric_versions;
    if held < max {
        return Ok(());
    }
    Err(Rejection::new(
        Code::RejectedLimitExceeded,
        format!(
            "namespace {namespace} already holds {held} asymmetric key versions, the most a \
             namespace may hold (--max-asymmetric-key-versions {max}): delete asymmetric keys it \
             no longer needs, or ask the cluster's administrator to raise the limit; checked \
             again every {} s",
            LIMIT_RECHECK.as_secs()
        ),
    ))
}

/// The CreateKeyVersion response for `version` of the key in `record`.
fn response(record: &KeyRecord, version: &VersionRecord) -> KeyVersionMetadata {
    KeyVersionMetadata {
        key_id: record.key_id.clone(),
        key_version_id: version.key_version_id.clone(),
        creation_date: format_kms_time(version.creation_date),
    }
}

fn previous_response(request: &KeyVersion) -> Option<KeyVersionMetadata> {
    request.status.as_ref()?.key_version.clone()
}

/// Whether the request already got a final rejection.
fn is_finally_rejected(request: &KeyVersion) -> bool {
    let ready = request
        .status
        .iter()
        .flat_map(|s| s.conditions.iter())
        .find(|c| c.type_ == READY);
    ready.is_some_and(|ready| {
        Code::ALL
            .iter()
            .any(|code| code.is_final_rejection() && code.reason() == ready.reason)
    })
}

fn report_created(request: &KeyVersion, done: KeyVersionMetadata, now: Timestamp) -> RequestPlan {
    let message = format!(
        "version {} of key {} was created at {}",
        done.key_version_id, done.key_id, done.creation_date
    );
    report(
        request,
        Some(done),
        Readiness::ready(Reason::Created, message),
        now,
    )
}

fn report(
    request: &KeyVersion,
    response: Option<KeyVersionMetadata>,
    readiness: Readiness,
    now: Timestamp,
) -> RequestPlan {
    let previous = request.status.as_ref();
    let previous_conditions = previous.map_or(&[][..], |s| s.conditions.as_slice());
    let generation = request.metadata.generation;
    let (conditions, note) = ready_conditions(previous_conditions, readiness, generation, now);
    let desired = KeyVersionStatus {
        key_version: response,
        conditions,
        observed_generation: generation,
    };
    RequestPlan::Report {
        status: (previous != Some(&desired)).then_some(desired),
        notes: note.into_iter().collect(),
        recheck_after: None,
    }
}
#[cfg(test)]
mod tests;
