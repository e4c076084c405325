//! A rejection is final, like a failed API call; except the limit's, which depends on the
//! namespace's other keys.

use super::*;

// ---- Final rejections ----------------------------------------------------------------------

#[test]
fn rejection_stays_final_when_the_request_would_now_be_accepted() {
    type Edit = fn(&mut World);
    // (what, world, when refused, what changes, when planned again, whether a new request
    // would be accepted in the changed world)
    let cases: [(&str, World, Timestamp, Edit, Timestamp, bool); 3] = [
        (
            "too soon, then the interval passes",
            World::with_key(KeySpec::EcP256),
            at("2016-03-26T00:00:00Z"),
            |_| {},
            later(),
            true,
        ),
        // Refused is not turned into waiting either.
        (
            "too soon, then the Key and its store are gone",
            World::with_key(KeySpec::EcP256),
            at("2016-03-26T00:00:00Z"),
            |w| {
                w.key = None;
                w.store = None;
            },
            later(),
            false,
        ),
        (
            "symmetric, then the store becomes unreadable",
            World::with_key(KeySpec::AliyunSm4),
            now(),
            |w| w.store.as_mut().unwrap().type_ = Some("Opaque".into()),
            later(),
            false,
        ),
    ];
    for (what, mut world, refused_at, edit, replanned_at, acceptable) in cases {
        let (status, notes) = world.reconcile(refused_at, FRESH_ID);
        let reason = status.map(|s| s.conditions[0].reason.clone());
        assert!(
            reason.as_deref().is_some_and(|r| r.starts_with("Rejected")),
            "{what}: {reason:?}"
        );
        assert_eq!(notes.len(), 1, "{what}");

        edit(&mut world);
        let unanswered = World {
            request: request(),
            key: world.key.clone(),
            store: world.store.clone(),
            asymmetric_versions: world.asymmetric_versions,
        };
        assert_eq!(
            matches!(unanswered.plan(replanned_at), RequestPlan::AddVersion(_)),
            acceptable,
            "{what}: would a new request be accepted?"
        );
        // A refused request stays refused: nothing written, nothing announced, no version.
        let versions_before = world.record_if_readable().map(|r| r.versions);
        assert_eq!(
            world.reconcile(replanned_at, OTHER_FRESH_ID),
            nothing_to_write(),
            "{what}"
        );
        assert_eq!(
            world.record_if_readable().map(|r| r.versions),
            versions_before,
            "{what}: no surprise version"
        );
    }
}

#[test]
fn every_final_rejection_reason_is_final() {
    let finals: Vec<Code> = Code::ALL
        .iter()
        .copied()
        .filter(|c| c.is_final_rejection())
        .collect();
    assert_eq!(
        finals,
        vec![
            Code::RejectedUnsupportedOperation,
            Code::RejectedDisabled,
            Code::RejectedPendingDeletion,
            Code::RejectedPendingImport,
        ]
    );
    for code in finals {
        // A world in which the request would be accepted.
        let mut world = World::with_key(KeySpec::EcP256);
        let message = format!("{}: refused earlier", code.as_str());
        world.request.status = Some(rejected_status(code, &message, KEY_CREATED));
        assert_eq!(world.report(later()), nothing_to_write(), "{code:?}");
    }
    // Waiting is not an answer: the same world accepts a request that was waiting.
    let mut world = World::with_key(KeySpec::EcP256);
    world.request.status = Some(waiting_status(&waiting_to_exist(), KEY_CREATED));
    assert_eq!(
        expect_add(world.plan(later())).version,
        requested_version(FRESH_ID, "2019-09-01T08:00:00Z", UID)
    );
}

#[test]
fn a_request_refused_for_the_limit_is_looked_at_again_and_served_once_there_is_room() {
    let mut world = World::with_key(KeySpec::EcP256);
    world.asymmetric_versions = 50;
    let RequestPlan::Report { recheck_after, .. } = world.plan(now()) else {
        panic!("expected a refusal");
    };
    assert_eq!(recheck_after, Some(crate::plan::key_version::LIMIT_RECHECK));
    let (status, notes) = world.reconcile(now(), FRESH_ID);
    let reason = status.map(|s| s.conditions[0].reason.clone());
    assert_eq!(reason.as_deref(), Some("RejectedLimitExceeded"));
    assert_eq!(notes.len(), 1);
    // Still full: nothing new is written or announced.
    assert_eq!(world.reconcile(now(), FRESH_ID), nothing_to_write());
    // Another key of the namespace was deleted: the same request is served.
    world.asymmetric_versions = 49;
    assert_eq!(
        expect_add(world.plan(now())).version,
        requested_version(FRESH_ID, NOW_KMS, UID)
    );
}
