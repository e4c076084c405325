//! The Ready condition's transition time, and conditions of other types.

use super::*;

// ---- Ready's transition time -----------------------------------------------------------------

#[test]
fn ready_transition_time_moves_only_when_its_status_changes() {
    // Waiting, then refused: Ready stays False, so its transition time stays.
    let mut world = World::without_key();
    world.reconcile(now(), FRESH_ID);
    let created = at("2019-08-05T09:00:00.25Z");
    let fresh_key = World::with_key_created(KeySpec::EcP256, created);
    world.key = fresh_key.key;
    world.store = fresh_key.store;
    world.asymmetric_versions = 1;
    // GitOps applied the Key and the request together: the Key's initial version was just
    // created, so a new version is too soon.
    let message = too_soon_message("2019-08-05T09:00:00Z", "2019-08-12T09:00:00Z");
    assert_eq!(
        world.reconcile(at("2019-08-05T09:00:01Z"), FRESH_ID),
        (
            Some(rejected_status(
                Code::RejectedUnsupportedOperation,
                &message,
                NOW_KMS
            )),
            vec![rejected_note(Code::RejectedUnsupportedOperation, &message)],
        )
    );

    // Waiting, then created: Ready becomes True, a new transition time, kept afterwards.
    let mut world = World::without_key();
    world.reconcile(now(), FRESH_ID);
    let existing = World::with_key(KeySpec::EcP256);
    world.key = existing.key;
    world.store = existing.store;
    world.asymmetric_versions = 1;
    let created_at = "2019-08-06T12:00:00Z";
    let (status, _) = world.reconcile(at("2019-08-06T12:00:00.75Z"), FRESH_ID);
    assert_eq!(
        status,
        Some(created_status(FRESH_ID, created_at, created_at))
    );
    assert_eq!(world.reconcile(later(), OTHER_FRESH_ID), nothing_to_write());
    // The store lost (Ready stays True, no new time).
    world.store = None;
    assert_eq!(world.reconcile(later(), OTHER_FRESH_ID), nothing_to_write());
    assert_eq!(
        world.request.status,
        Some(created_status(FRESH_ID, created_at, created_at))
    );
}

#[test]
fn conditions_of_other_types_are_kept() {
    let mut world = World::without_key();
    let other = Condition {
        type_: "Audited".into(),
        status: "True".into(),
        reason: "Reviewed".into(),
        message: "reviewed by the security team".into(),
        observed_generation: Some(1),
        last_transition_time: Time(at(KEY_CREATED)),
    };
    world.request.status = Some(KeyVersionStatus {
        conditions: vec![other.clone()],
        ..KeyVersionStatus::default()
    });
    let (status, _) = world.reconcile(now(), FRESH_ID);
    let status = status.expect("a status write");
    assert_eq!(
        status.conditions,
        vec![
            other,
            ready_condition(
                "False",
                Reason::WaitingForKey.as_str(),
                &waiting_to_exist(),
                NOW_KMS
            ),
        ]
    );
    assert_eq!(world.reconcile(later(), FRESH_ID), nothing_to_write());
}
