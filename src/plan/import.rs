//! EXTERNAL keys: import parameters issued while a key awaits material, material imported from
//! spec.keyMaterial, other material refused, and expired material removed (pure).

use jiff::Timestamp;

use super::consumer::{consumer_secret_name, plan_consumer};
use super::status::{Outcome, converge_status};
use super::{FreshIds, Observed, Plan, PlanSettings};
use crate::api::{KeyMetadata, KeyState, Origin};
use crate::kms::error::{Code, Rejection};
use crate::kms::rules::ValidKey;
use crate::kms::schedule::{self, format_kms_time};
use crate::store::{ImportedMaterial, KeyRecord, Store, VersionRecord};

/// An EXTERNAL key without material: it reports how to import, withdraws material that
/// expired from its consumer Secret, and looks again when the import token expires.
pub(super) fn plan_pending_import(
    observed: &Observed<'_>,
    store: &Store,
    metadata: KeyMetadata,
    settings: &PlanSettings,
    now: Timestamp,
    outcome: Outcome,
) -> Plan {
    let key = observed.key;
    let record = &store.record;
    let token_expiry = record
        .import_parameters
        .as_ref()
        .and_then(|p| schedule::parse_kms_time(&p.token_expire_time));
    let mut plan = converge_status(key, Some(metadata), Some(record), outcome, now);
    if let Plan::Converge(converge) = &mut plan {
        let secret_name = consumer_secret_name(key);
        if observed.consumer.is_some()
            && let Ok((write, mut notes)) =
                plan_consumer(observed, store, &secret_name, KeyState::PendingImport)
        {
            converge.consumer = write;
            notes.append(&mut converge.notes);
            converge.notes = notes;
        }
        converge.requeue_after =
            token_expiry.map(|due| schedule::requeue_delay(now, due, settings.max_requeue));
    }
    plan
}

/// The refusal of material other than what an EXTERNAL key was imported with.
pub(super) fn other_material(record: &KeyRecord, imported_version: &str) -> Rejection {
    Rejection::new(
        Code::InvalidKeyMaterial,
        format!(
            "key {} was imported with other material (version {imported_version}): only that \
             material can be imported into it again; import it into a new EXTERNAL Key instead",
            record.key_id
        ),
    )
}

/// An EXTERNAL key: import parameters issued while it awaits material, material imported
/// from spec.keyMaterial, other material refused, and expired material removed.
pub(super) fn plan_external(
    observed: &Observed<'_>,
    record: &KeyRecord,
    valid: &ValidKey,
    now: Timestamp,
    fresh: &FreshIds,
) -> Result<Option<Plan>, Rejection> {
    if record.origin != Origin::External {
        return Ok(None);
    }
    match record.versions.is_empty() {
        false => plan_imported(observed, record, valid, now),
        true => plan_awaiting_material(observed, record, valid, now, fresh),
    }
}

/// A key with imported material: removed when it expires, other material refused, and the
/// expiry time following the spec.
fn plan_imported(
    observed: &Observed<'_>,
    record: &KeyRecord,
    valid: &ValidKey,
    now: Timestamp,
) -> Result<Option<Plan>, Rejection> {
    let expire_time = valid.import.as_ref().and_then(|i| i.expire_time);
    let expired = record.imported.as_ref().and_then(|i| i.expire_time);
    if expired.is_some_and(|t| schedule::is_due(now, t)) {
        let mut removed = record.clone();
        removed.versions.clear();
        return Ok(Some(Plan::RemoveMaterial(Box::new(removed))));
    }
    // Material that cannot be read any more (its Secret deleted once imported, its token
    // expired) is no change; other material that can be is refused: it never replaces the
    // material a key was imported with.
    if let (Some(Ok(material)), Some(previous)) = (&observed.import, &record.imported)
        && crate::kms::import::fingerprint(material.expose()) != previous.fingerprint
    {
        return Err(other_material(record, &previous.key_version_id));
    }
    // The expiry time follows the spec while the material is there; a time already past
    // is refused rather than taking the key out of service at once.
    if let Some(at) = expire_time.filter(|t| schedule::is_due(now, *t))
        && record.imported.as_ref().and_then(|i| i.expire_time) != Some(at)
    {
        return Err(expire_time_passed(at));
    }
    let wanted = expire_time;
    if let Some(imported) = &record.imported
        && valid.import.is_some()
        && imported.expire_time != wanted
    {
        let mut updated = record.clone();
        if let Some(i) = updated.imported.as_mut() {
            i.expire_time = wanted;
        }
        return Ok(Some(Plan::UpdateRecord(Box::new(updated), None)));
    }
    Ok(None)
}

/// A key awaiting material: parameters issued (again, once their token expired), then the
/// material spec.keyMaterial names imported, if it can be.
fn plan_awaiting_material(
    observed: &Observed<'_>,
    record: &KeyRecord,
    valid: &ValidKey,
    now: Timestamp,
    fresh: &FreshIds,
) -> Result<Option<Plan>, Rejection> {
    // Parameters first: an import is only tried against parameters that are still valid.
    let token_expired = record.import_parameters.as_ref().is_none_or(|p| {
        schedule::parse_kms_time(&p.token_expire_time).is_none_or(|t| schedule::is_due(now, t))
    });
    if token_expired {
        return Ok(Some(Plan::IssueImportParameters));
    }
    let material = match observed.import {
        None => return Ok(None),
        Some(Err(rejection)) => return Err(rejection.clone()),
        Some(Ok(material)) => material,
    };
    let fingerprint = crate::kms::import::fingerprint(material.expose());
    if let Some(previous) = &record.imported
        && previous.fingerprint != fingerprint
    {
        return Err(other_material(record, &previous.key_version_id));
    }
    let expire_time = valid.import.as_ref().and_then(|i| i.expire_time);
    if let Some(at) = expire_time.filter(|t| schedule::is_due(now, *t)) {
        return Err(expire_time_passed(at));
    }
    // The same material again takes its version back; new material gets a new one.
    let (version_id, created) = match &record.imported {
        Some(previous) => (previous.key_version_id.clone(), previous.creation_date),
        None => (fresh.version_id.clone(), schedule::truncate_to_second(now)),
    };
    let mut imported = record.clone();
    imported.versions = vec![VersionRecord {
        key_version_id: version_id.clone(),
        creation_date: created,
        requested_by: None,
    }];
    imported.imported = Some(ImportedMaterial {
        key_version_id: version_id,
        creation_date: created,
        fingerprint,
        expire_time,
    });
    // The parameters stay until their token expires: the same wrapped Secret can import the
    // same material again after it expired.
    Ok(Some(Plan::ImportMaterial(Box::new(imported))))
}

/// The refusal of a spec.keyMaterial.expireTime that has passed.
fn expire_time_passed(at: Timestamp) -> Rejection {
    Rejection::new(
        Code::InvalidParameter,
        format!(
            "spec.keyMaterial.expireTime {} has passed; set a later time, or remove it for \
             material that does not expire",
            format_kms_time(at)
        ),
    )
}
