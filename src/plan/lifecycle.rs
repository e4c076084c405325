//! A key's lifecycle (pure): its state, and scheduled deletion — requested by the spec, or by
//! deleting the Key object — recorded with the material, cancelled, or carried out when due.

use jiff::Timestamp;

use super::{Note, PlanSettings, event};
use crate::api::KeyState;
use crate::kms::error::Code;
use crate::kms::rules::{DEFAULT_PENDING_WINDOW_DAYS, ValidKey};
use crate::kms::schedule::{self, Interval, format_kms_time};
use crate::store::{DeletionCause, KeyRecord, ScheduledDeletion};

/// The state of a stored key, given the state the spec asks for (`None`: the spec is not
/// usable, so the request is not known). A recorded deletion wins over the spec, and a key
/// without material awaits its import.
pub fn key_state(record: &KeyRecord, desired: Option<KeyState>) -> KeyState {
    if record.deletion.is_some() {
        KeyState::PendingDeletion
    } else if record.versions.is_empty() {
        KeyState::PendingImport
    } else if desired == Some(KeyState::Disabled) {
        KeyState::Disabled
    } else {
        KeyState::Enabled
    }
}

/// What CreateKeyVersion answers a key in `state` (the seed: only Enabled keys take versions).
pub fn refuses_new_versions(state: KeyState) -> Option<Code> {
    match state {
        KeyState::Enabled => None,
        KeyState::Disabled => Some(Code::RejectedDisabled),
        KeyState::PendingDeletion => Some(Code::RejectedPendingDeletion),
        KeyState::PendingImport => Some(Code::RejectedPendingImport),
    }
}

/// Whether consumers get the material of a key in `state`: only an Enabled key's.
pub fn serves_material(state: KeyState) -> bool {
    state == KeyState::Enabled
}

/// A change to a key's lifecycle, to be written to its store (or carried out).
#[derive(Debug, PartialEq)]
pub enum LifecycleStep {
    /// Write this record (a deletion scheduled or cancelled, the pending window recorded).
    Record(Box<KeyRecord>, Option<Note>),
    /// The deletion is due: destroy the material.
    Destroy,
}

/// What the lifecycle asks of a key that exists and whose spec is valid, if anything.
pub fn plan_lifecycle(
    record: &KeyRecord,
    valid: &ValidKey,
    settings: &PlanSettings,
    now: Timestamp,
) -> Option<LifecycleStep> {
    if let Some(deletion) = &record.deletion {
        if valid.desired_state != KeyState::PendingDeletion {
            // CancelKeyDeletion; also how a re-applied Key takes its key back. Cancelling wins
            // even past the due time: destroying less is the safe side.
            let mut cancelled = record.clone();
            cancelled.deletion = None;
            let note = event::deletion_cancelled(record, deletion.delete_date, valid.desired_state);
            return Some(LifecycleStep::Record(Box::new(cancelled), Some(note)));
        }
        return is_due(deletion, now).then_some(LifecycleStep::Destroy);
    }
    if valid.desired_state == KeyState::PendingDeletion && !valid.deletion_protection {
        let scheduled = schedule_deletion(
            record,
            valid.pending_window_days,
            DeletionCause::KeyState,
            settings,
            now,
        );
        let delete_date = scheduled
            .deletion
            .as_ref()
            .map(|d| format_kms_time(d.delete_date))
            .unwrap_or_default();
        let note = event::deletion_scheduled(record, &delete_date);
        return Some(LifecycleStep::Record(Box::new(scheduled), Some(note)));
    }
    if record.pending_window_days != Some(valid.pending_window_days) {
        let mut recorded = record.clone();
        recorded.pending_window_days = Some(valid.pending_window_days);
        return Some(LifecycleStep::Record(Box::new(recorded), None));
    }
    None
}

/// What to do with a store whose Key object is gone: schedule the deletion its pending window
/// allows (a deleted Key is a ScheduleKeyDeletion), and destroy the material when it is due.
pub fn plan_orphan(
    record: &KeyRecord,
    settings: &PlanSettings,
    now: Timestamp,
) -> Option<LifecycleStep> {
    match &record.deletion {
        None => {
            let days = record
                .pending_window_days
                .unwrap_or(DEFAULT_PENDING_WINDOW_DAYS);
            let scheduled =
                schedule_deletion(record, days, DeletionCause::KeyDeleted, settings, now);
            Some(LifecycleStep::Record(Box::new(scheduled), None))
        }
        Some(deletion) if is_due(deletion, now) => Some(LifecycleStep::Destroy),
        Some(_) => None,
    }
}

/// When a scheduled deletion is due.
pub fn due_time(deletion: &ScheduledDeletion) -> Timestamp {
    deletion.delete_date
}

/// Due from its second on, never before. Material is only destroyed at a date that was
/// recorded with it: a record whose date cannot be read is not a store at all
/// (MaterialStoreInvalid), and nothing is destroyed.
fn is_due(deletion: &ScheduledDeletion, now: Timestamp) -> bool {
    schedule::is_due(now, due_time(deletion))
}

fn schedule_deletion(
    record: &KeyRecord,
    days: u32,
    cause: DeletionCause,
    settings: &PlanSettings,
    now: Timestamp,
) -> KeyRecord {
    let now = schedule::truncate_to_second(now);
    let window = Interval::from_secs(settings.pending_window_unit.as_secs() * u64::from(days));
    let delete_date = schedule::next_rotation(now, window).unwrap_or(Timestamp::MAX);
    let mut scheduled = record.clone();
    scheduled.deletion = Some(ScheduledDeletion {
        delete_date: schedule::truncate_to_second(delete_date),
        scheduled_at: now,
        cause,
    });
    scheduled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{KeyRequest, KeySpec, KeyUsage, Origin, ProtectionLevel};
    use crate::kms::rules::{RuleSettings, validate};
    use crate::plan::key_metadata;
    use crate::store::VersionRecord;

    fn record(versions: usize, deletion: Option<DeletionCause>) -> KeyRecord {
        KeyRecord {
            key_id: "k".into(),
            arn: "acs:kms:local:1:key/k".into(),
            creator: "1".into(),
            creation_date: at("2026-01-01T00:00:00Z"),
            key_spec: KeySpec::AliyunAes256,
            key_usage: KeyUsage::EncryptDecrypt,
            origin: Origin::AliyunKms,
            protection_level: ProtectionLevel::Software,
            versions: (0..versions)
                .map(|i| VersionRecord {
                    key_version_id: format!("v{i}"),
                    creation_date: at("2026-01-01T00:00:00Z"),
                    requested_by: None,
                })
                .collect(),
            pending_window_days: Some(7),
            deletion: deletion.map(|cause| ScheduledDeletion {
                delete_date: at("2026-01-08T00:00:00Z"),
                scheduled_at: at("2026-01-01T00:00:00Z"),
                cause,
            }),
            consumer_secrets: Default::default(),
            import_parameters: None,
            imported: None,
        }
    }

    fn settings() -> PlanSettings {
        PlanSettings {
            rules: RuleSettings::with_seed_bounds("local"),
            account_id: "1".into(),
            max_requeue: std::time::Duration::from_secs(600),
            key_version_min_interval: Interval::from_days(7),
            max_asymmetric_versions: 50,
            pending_window_unit: Interval::from_days(1),
        }
    }

    fn valid(key_state: &str, rotating: bool, protected: bool) -> ValidKey {
        let request = KeyRequest {
            key_state: Some(key_state.into()),
            enable_automatic_rotation: Some(rotating),
            rotation_interval: rotating.then(|| "30d".into()),
            deletion_protection: Some(protected),
            pending_window_in_days: Some(7),
            ..KeyRequest::default()
        };
        validate(&request, &settings().rules).unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// The seed's KeyState table: what each state is, and what it allows.
    #[test]
    fn each_state_allows_what_the_seed_says() {
        use KeyState::*;
        // (what the store holds, what the spec asks, the state, serves material, rotation,
        //  CreateKeyVersion's answer)
        let table = [
            (
                record(1, None),
                "Enabled",
                Enabled,
                true,
                AutomaticRotationState::Enabled,
                None,
            ),
            (
                record(1, None),
                "Disabled",
                Disabled,
                false,
                AutomaticRotationState::Suspended,
                Some(Code::RejectedDisabled),
            ),
            (
                record(1, Some(DeletionCause::KeyState)),
                "PendingDeletion",
                PendingDeletion,
                false,
                AutomaticRotationState::Suspended,
                Some(Code::RejectedPendingDeletion),
            ),
            (
                record(1, Some(DeletionCause::KeyDeleted)),
                "PendingDeletion",
                PendingDeletion,
                false,
                AutomaticRotationState::Suspended,
                Some(Code::RejectedPendingDeletion),
            ),
            (
                record(0, None),
                "Enabled",
                PendingImport,
                false,
                AutomaticRotationState::Suspended,
                Some(Code::RejectedPendingImport),
            ),
        ];
        for (record, asked, state, serves, rotation, versions) in table {
            let valid = valid(asked, true, false);
            assert_eq!(
                key_state(&record, Some(valid.desired_state)),
                state,
                "{asked}"
            );
            assert_eq!(serves_material(state), serves, "{state}");
            assert_eq!(refuses_new_versions(state), versions, "{state}");
            let metadata = key_metadata(&record, Some(&valid));
            assert_eq!(metadata.key_state, state);
            assert_eq!(
                metadata.automatic_rotation.as_str(),
                rotation.as_str(),
                "{state}"
            );
            assert_eq!(
                metadata.delete_date.is_some(),
                state == PendingDeletion,
                "{state}"
            );
        }
    }

    /// Stand-in so the table reads in the seed's words.
    #[derive(Clone, Copy)]
    enum AutomaticRotationState {
        Enabled,
        Suspended,
    }

    impl AutomaticRotationState {
        fn as_str(self) -> &'static str {
            match self {
                AutomaticRotationState::Enabled => "Enabled",
                AutomaticRotationState::Suspended => "Suspended",
            }
        }
    }

    #[test]
    fn scheduling_records_the_date_with_the_material() {
        let now = at("2026-01-01T10:00:00.7Z");
        let Some(LifecycleStep::Record(scheduled, Some(note))) = plan_lifecycle(
            &record(1, None),
            &valid("PendingDeletion", false, false),
            &settings(),
            now,
        ) else {
            panic!("a deletion is scheduled");
        };
        let deletion = scheduled.deletion.unwrap();
        assert_eq!(
            deletion.delete_date.to_string(),
            "2026-01-08T10:00:00Z",
            "7 days, whole seconds"
        );
        assert_eq!(deletion.cause, DeletionCause::KeyState);
        assert_eq!(note.reason, "KeyDeletionScheduled");
    }

    #[test]
    fn deletion_protection_schedules_nothing() {
        let step = plan_lifecycle(
            &record(1, None),
            &valid("PendingDeletion", false, true),
            &settings(),
            at("2026-01-01T00:00:00Z"),
        );
        assert_eq!(step, None);
    }

    #[test]
    fn enabled_or_disabled_cancels_even_past_the_date() {
        for asked in ["Enabled", "Disabled"] {
            for now in ["2026-01-02T00:00:00Z", "2026-02-01T00:00:00Z"] {
                let step = plan_lifecycle(
                    &record(1, Some(DeletionCause::KeyDeleted)),
                    &valid(asked, false, false),
                    &settings(),
                    at(now),
                );
                let Some(LifecycleStep::Record(cancelled, Some(note))) = step else {
                    panic!("{asked} {now}: cancel")
                };
                assert_eq!(cancelled.deletion, None);
                assert_eq!(note.reason, "KeyDeletionCancelled");
            }
        }
    }

    #[test]
    fn material_is_destroyed_at_the_recorded_date_never_before() {
        let pending = record(1, Some(DeletionCause::KeyState));
        let asked = valid("PendingDeletion", false, false);
        assert_eq!(
            plan_lifecycle(
                &pending,
                &asked,
                &settings(),
                at("2026-01-07T23:59:59.999Z")
            ),
            None
        );
        assert_eq!(
            plan_lifecycle(&pending, &asked, &settings(), at("2026-01-08T00:00:00Z")),
            Some(LifecycleStep::Destroy)
        );
        // A date that cannot be read is not a date: the record does not parse, its store is
        // MaterialStoreInvalid, and nothing is planned from it, destruction least of all.
        let unreadable = serde_json::to_string(&pending)
            .unwrap()
            .replace("2026-01-08T00:00:00Z", "soon");
        assert!(
            serde_json::from_str::<KeyRecord>(&unreadable).is_err(),
            "an unreadable date never destroys"
        );
    }

    #[test]
    fn a_deleted_keys_store_gets_the_recorded_window_then_is_destroyed() {
        let now = at("2026-03-01T00:00:00Z");
        let Some(LifecycleStep::Record(scheduled, None)) =
            plan_orphan(&record(1, None), &settings(), now)
        else {
            panic!("scheduled");
        };
        let deletion = scheduled.deletion.clone().unwrap();
        assert_eq!(
            deletion.delete_date.to_string(),
            "2026-03-08T00:00:00Z",
            "the recorded 7-day window"
        );
        assert_eq!(deletion.cause, DeletionCause::KeyDeleted);
        assert_eq!(
            plan_orphan(&scheduled, &settings(), at("2026-03-07T23:59:59Z")),
            None
        );
        assert_eq!(
            plan_orphan(&scheduled, &settings(), at("2026-03-08T00:00:00Z")),
            Some(LifecycleStep::Destroy)
        );
        let mut unrecorded = record(1, None);
        unrecorded.pending_window_days = None;
        let Some(LifecycleStep::Record(defaulted, None)) =
            plan_orphan(&unrecorded, &settings(), now)
        else {
            panic!()
        };
        assert_eq!(
            defaulted.deletion.unwrap().delete_date.to_string(),
            "2026-03-31T00:00:00Z",
            "30 days by default"
        );
    }

    #[test]
    fn the_pending_window_unit_scales_a_day_for_tests() {
        let mut fast = settings();
        fast.pending_window_unit = Interval::from_secs(1);
        let Some(LifecycleStep::Record(scheduled, _)) =
            plan_orphan(&record(1, None), &fast, at("2026-03-01T00:00:00Z"))
        else {
            panic!()
        };
        assert_eq!(
            scheduled.deletion.unwrap().delete_date.to_string(),
            "2026-03-01T00:00:07Z"
        );
    }
}
