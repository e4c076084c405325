//! A request that is accepted gets exactly one version, and keeps it across crashes.

use super::*;

// ---- Accepted -------------------------------------------------------------------------------

#[test]
fn enabled_asymmetric_key_past_the_interval_gets_the_requested_version() {
    for spec in ASYMMETRIC {
        let world = World::with_key(spec);
        let new = expect_add(world.plan(now()));
        assert_eq!(
            new,
            NewVersion {
                record: world.record(),
                version: requested_version(FRESH_ID, NOW_KMS, UID),
            },
            "{spec}"
        );
        assert_eq!(new.record.key_id, KEY_ID, "{spec}");
        assert_eq!(new.record.key_spec, spec);
        assert_eq!(
            new.record.versions,
            vec![initial_version(KEY_CREATED)],
            "{spec}: the record is the store's, without the new version"
        );
    }
}

#[test]
fn accepted_version_is_reported_created_once_then_nothing_is_written() {
    for spec in ASYMMETRIC {
        let mut world = World::with_key(spec);
        let new = expect_add(world.plan(now()));
        world.add_version(&new);

        // The store now holds both versions, the new one for this request.
        assert_eq!(
            world.record().versions,
            vec![
                initial_version(KEY_CREATED),
                requested_version(FRESH_ID, NOW_KMS, UID),
            ],
            "{spec}"
        );
        let store = world.store.as_ref().unwrap();
        let mut expected_entries = vec![
            format!("{FRESH_ID}.private.pem"),
            format!("{FRESH_ID}.public.pem"),
            format!("{INITIAL_VERSION_ID}.private.pem"),
            format!("{INITIAL_VERSION_ID}.public.pem"),
            RECORD_ENTRY.to_string(),
        ];
        expected_entries.sort();
        assert_eq!(data_names(store), expected_entries, "{spec}");
        assert_eq!(world.asymmetric_versions, 2);

        // Planned again (same reconcile, a fresh id drawn): the request is reported.
        let report = expect_report(world.plan_with(now(), OTHER_FRESH_ID));
        assert_eq!(
            report,
            (
                Some(created_status(FRESH_ID, NOW_KMS, NOW_KMS)),
                vec![created_note(FRESH_ID, NOW_KMS)],
            ),
            "{spec}"
        );
        world.request.status = report.0;

        // With that status fed back, nothing is left to write, now or much later.
        assert_eq!(world.report(now()), nothing_to_write(), "{spec}");
        assert_eq!(
            expect_report(world.plan_with(later(), OTHER_FRESH_ID)),
            nothing_to_write(),
            "{spec}"
        );
    }
}

#[test]
fn reconciling_an_accepted_request_adds_exactly_one_version() {
    let mut world = World::with_key(KeySpec::EcP256);
    let reported = world.reconcile(now(), FRESH_ID);
    assert_eq!(
        reported,
        (
            Some(created_status(FRESH_ID, NOW_KMS, NOW_KMS)),
            vec![created_note(FRESH_ID, NOW_KMS)],
        )
    );
    assert_eq!(world.record().versions.len(), 2);
    // Every later reconcile, whatever id it draws, writes nothing and adds nothing.
    for when in [now(), later()] {
        assert_eq!(world.reconcile(when, OTHER_FRESH_ID), nothing_to_write());
    }
    assert_eq!(world.record().versions.len(), 2);
    assert_eq!(world.asymmetric_versions, 2);
}

// ---- Crash safety ---------------------------------------------------------------------------

#[test]
fn version_in_the_store_for_this_request_is_reported_never_minted_again() {
    // The operator stopped after writing the store, before writing the request's status.
    let mut crashed = World::with_key(KeySpec::EcP256);
    let new = expect_add(crashed.plan(now()));
    crashed.add_version(&new);
    assert_eq!(crashed.request.status, None);

    let restart = "2019-08-02T10:38:28Z";
    type Edit = fn(&mut World);
    let cases: [(&str, Edit); 3] = [
        // A second later the rules would refuse a new version: the request is still done.
        ("as it was, too soon for another version", |_| {}),
        ("at the limit of asymmetric versions", |w| {
            w.asymmetric_versions = 50;
        }),
        ("with the Key deleted meanwhile", |w| w.key = None),
    ];
    for (what, edit) in cases {
        let mut world = World {
            request: crashed.request.clone(),
            key: crashed.key.clone(),
            store: crashed.store.clone(),
            asymmetric_versions: crashed.asymmetric_versions,
        };
        edit(&mut world);
        let plan = world.plan_with(at(restart), OTHER_FRESH_ID);
        assert_eq!(
            expect_report(plan),
            (
                Some(created_status(FRESH_ID, NOW_KMS, restart)),
                vec![created_note(FRESH_ID, NOW_KMS)],
            ),
            "{what}"
        );
    }
    assert_eq!(
        crashed.reconcile(at(restart), OTHER_FRESH_ID).0,
        Some(created_status(FRESH_ID, NOW_KMS, restart))
    );
    assert_eq!(
        crashed.record().versions,
        vec![
            initial_version(KEY_CREATED),
            requested_version(FRESH_ID, NOW_KMS, UID),
        ],
        "no second version"
    );
}

#[test]
fn created_request_stays_created_when_its_key_or_store_is_gone() {
    let mut settled = World::with_key(KeySpec::EcP256);
    settled.reconcile(now(), FRESH_ID);
    let created = Some(created_status(FRESH_ID, NOW_KMS, NOW_KMS));
    assert_eq!(settled.request.status, created);

    let mut unreadable = settled.store.clone().unwrap();
    unreadable.data.as_mut().unwrap().remove(RECORD_ENTRY);
    let cases = [
        ("store gone", settled.key.clone(), None),
        ("Key and store gone", None, None),
        ("store unreadable", settled.key.clone(), Some(unreadable)),
        ("Key gone, store kept", None, settled.store.clone()),
    ];
    for (what, key, store) in cases {
        let world = World {
            request: settled.request.clone(),
            key,
            store,
            asymmetric_versions: 50,
        };
        assert_eq!(
            expect_report(world.plan_with(later(), OTHER_FRESH_ID)),
            nothing_to_write(),
            "{what}"
        );
    }

    // A status that lost its condition (say, edited by hand) gets Created back, with the
    // version it names, even without a store.
    let mut world = World {
        request: settled.request.clone(),
        key: None,
        store: None,
        asymmetric_versions: 0,
    };
    world.request.status.as_mut().unwrap().conditions.clear();
    let later_kms = "2019-09-01T08:00:00Z";
    assert_eq!(
        world.report(later()),
        (
            Some(created_status(FRESH_ID, NOW_KMS, later_kms)),
            vec![created_note(FRESH_ID, NOW_KMS)],
        )
    );
}
