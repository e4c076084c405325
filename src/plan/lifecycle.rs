//! A key's lifecycle (pure): its state, and scheduled deletion — requested by the spec, or by
//! deleting the Key object — recorded with the material, cancelled, or carried out when due.

use jiff::Timestamp;

use super::{Note, PlanSettings};
use crate::api::KeyState;
use crate::rules::{DEFAULT_PENDING_WINDOW_DAYS, ValidKey};
use crate::schedule::{self, Interval, format_kms_time, parse_kms_time};
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
            let note = Note {
                warning: false,
                reason: "KeyDeletionCancelled",
                message: format!(
                    "cancelled the deletion of key {} scheduled for {}; the key is {}",
                    record.key_id, deletion.delete_date, valid.desired_state
                ),
            };
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
            .map(|d| d.delete_date.clone())
            .unwrap_or_default();
        let note = Note {
            warning: false,
            reason: "KeyDeletionScheduled",
            message: format!(
                "key {} will be destroyed at {delete_date}; set spec.keyState to Enabled or \
                 Disabled before then to cancel",
                record.key_id
            ),
        };
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

/// When a scheduled deletion is due, if it is readable.
pub fn due_time(deletion: &ScheduledDeletion) -> Option<Timestamp> {
    parse_kms_time(&deletion.delete_date)
}

/// Due from its second on, never before. An unreadable date is never due: material is only
/// destroyed at a date that was recorded with it.
fn is_due(deletion: &ScheduledDeletion, now: Timestamp) -> bool {
    due_time(deletion).is_some_and(|due| schedule::is_due(now, due))
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
        delete_date: format_kms_time(delete_date),
        scheduled_at: format_kms_time(now),
        cause,
    });
    scheduled
}
