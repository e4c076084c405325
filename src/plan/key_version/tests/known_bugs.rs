//! Bugs found once, each kept fixed.

use super::*;

// ---- Known bugs ------------------------------------------------------------------------------

#[test]
fn store_left_behind_by_a_deleted_key_gets_no_new_version() {
    let mut world = World::with_key(KeySpec::EcP256);
    // The Key was deleted; its store carries no owner reference and stays.
    world.key = None;
    assert_eq!(
        world.plan(now()),
        RequestPlan::Report {
            status: Some(waiting_status(&waiting_to_exist(), NOW_KMS)),
            notes: vec![waiting_note(&waiting_to_exist())],
            recheck_after: None,
        }
    );
}

#[test]
fn key_ref_no_key_could_have_is_refused_with_invalid_parameter_once() {
    for name in [".", "..", "no such key", "a<b>", "Upper"] {
        let mut world = World::without_key();
        world.request.spec.key_ref.name = name.into();
        let message = format!(
            "InvalidParameter: spec.keyRef.name {name:?} cannot name a Key: Key names are lowercase letters, \
             digits, '-' and '.', at most 253 characters; create a KeyVersion naming an \
             existing Key"
        );
        assert_eq!(
            world.reconcile(now(), FRESH_ID),
            rejected(Code::InvalidParameter, &message, NOW_KMS),
            "{name:?}"
        );
        assert_eq!(world.reconcile(later(), FRESH_ID), nothing_to_write());
    }
}
