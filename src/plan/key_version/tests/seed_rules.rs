//! The seed's rules: asymmetric keys only, the minimum interval, the limit of versions.

use super::*;

// ---- Asymmetric keys only -------------------------------------------------------------------

#[test]
fn symmetric_key_is_rejected_as_unsupported_operation() {
    let cases = [
        (
            key_of(KeySpec::AliyunAes256, Origin::AliyunKms),
            KeySpec::AliyunAes256,
        ),
        (
            key_of(KeySpec::AliyunSm4, Origin::AliyunKms),
            KeySpec::AliyunSm4,
        ),
        // A symmetric key awaiting its import is refused for being symmetric first.
        (
            key_of(KeySpec::AliyunAes256, Origin::External),
            KeySpec::AliyunAes256,
        ),
    ];
    for (key, spec) in cases {
        let origin = key.spec.origin.clone().unwrap();
        let store = store_for(&key, t0());
        let world = World {
            request: request(),
            key: Some(key),
            store: Some(store),
            asymmetric_versions: 0,
        };
        let message = symmetric_message(spec);
        assert!(
            message.starts_with(
                "Rejected.UnsupportedOperation: CreateKeyVersion is available only for \
                 asymmetric keys"
            ),
            "{message}"
        );
        assert_eq!(
            world.report(now()),
            rejected(Code::RejectedUnsupportedOperation, &message, NOW_KMS),
            "{spec} {origin}"
        );
    }
}

#[test]
fn asymmetric_key_awaiting_import_is_rejected_pending_import() {
    // The rules never let such a key be created; a hand-made store can still describe one.
    let key = key_of(KeySpec::EcP256, Origin::External);
    let refused = rules::validate(&key.spec, &settings().rules).unwrap_err();
    assert_eq!(refused.code, Code::UnsupportedOperation);
    assert_eq!(
        crate::plan::lifecycle::key_state(
            &Store::parse(pending_import_store(KeySpec::EcP256), NS, KEY_NAME)
                .unwrap()
                .record,
            Some(KeyState::Enabled)
        ),
        KeyState::PendingImport
    );

    for spec in ASYMMETRIC {
        let world = World {
            request: request(),
            key: Some(key_of(spec, Origin::External)),
            store: Some(pending_import_store(spec)),
            asymmetric_versions: 0,
        };
        assert_eq!(
            world.report(now()),
            rejected(
                Code::RejectedPendingImport,
                &pending_import_message(),
                NOW_KMS
            ),
            "{spec}"
        );
    }
}

// ---- The minimum interval -------------------------------------------------------------------

#[test]
fn version_too_soon_after_the_last_is_rejected_naming_when_it_is_allowed() {
    let message = too_soon_message(KEY_CREATED, KEY_CREATED_PLUS_7D);
    // (now, Some(creation date) if accepted)
    let cases = [
        ("2016-03-25T10:42:40.987654321Z", None),
        ("2016-03-26T00:00:00Z", None),
        ("2016-04-01T10:42:39Z", None),
        ("2016-04-01T10:42:39.999999999Z", None),
        ("2016-04-01T10:42:40Z", Some("2016-04-01T10:42:40Z")),
        ("2016-04-01T10:42:40.5Z", Some("2016-04-01T10:42:40Z")),
        ("2016-04-01T10:42:41Z", Some("2016-04-01T10:42:41Z")),
    ];
    for spec in [KeySpec::EcP256, KeySpec::EcSm2] {
        let world = World::with_key(spec);
        for (when, accepted) in cases {
            let plan = world.plan(at(when));
            match accepted {
                None => {
                    let since = format_kms_time(at(when));
                    assert_eq!(
                        expect_report(plan),
                        rejected(Code::RejectedUnsupportedOperation, &message, &since),
                        "{spec} at {when}"
                    );
                }
                Some(creation_date) => assert_eq!(
                    expect_add(plan).version,
                    requested_version(FRESH_ID, creation_date, UID),
                    "{spec} at {when}"
                ),
            }
        }
    }
}

#[test]
fn interval_counts_from_the_newest_version_not_the_key_creation() {
    const PREVIOUS_UID: &str = "7a9c3f14-2b6e-4f0a-9d1c-5e8b2a4f0de0";
    const PREVIOUS_ID: &str = "3e5b7d91-8c4a-4e2f-b6d0-1a9c7e5f0de0";
    let mut world = World::with_key(KeySpec::EcP256);
    // An earlier KeyVersion got its version at now().
    world.accept_other_request("signing-previous", PREVIOUS_UID, PREVIOUS_ID, now());
    assert_eq!(
        world.record().newest_version(),
        Some(&requested_version(PREVIOUS_ID, NOW_KMS, PREVIOUS_UID))
    );

    // This request, a day later: too soon after the previous version, and that version is
    // not taken for this request's.
    let message = too_soon_message(NOW_KMS, "2019-08-09T10:38:27Z");
    assert_eq!(
        world.report(at("2019-08-03T10:38:27Z")),
        rejected(
            Code::RejectedUnsupportedOperation,
            &message,
            "2019-08-03T10:38:27Z"
        )
    );
    assert_eq!(
        world.report(at("2019-08-09T10:38:26Z")),
        rejected(
            Code::RejectedUnsupportedOperation,
            &message,
            "2019-08-09T10:38:26Z"
        )
    );

    // Exactly seven days after it: accepted, on top of both versions.
    let new = expect_add(world.plan(at("2019-08-09T10:38:27Z")));
    assert_eq!(
        new,
        NewVersion {
            record: world.record(),
            version: requested_version(FRESH_ID, "2019-08-09T10:38:27Z", UID),
        }
    );
    assert_eq!(new.record.versions.len(), 2);

    // Both requests find their own version afterwards, not the newest.
    world.add_version(&new);
    let previous = request_named("signing-previous", PREVIOUS_UID);
    let reported = expect_report(plan_for(&world, &previous, later(), OTHER_FRESH_ID));
    assert_eq!(
        reported.0.and_then(|s| s.key_version),
        Some(response(PREVIOUS_ID, NOW_KMS))
    );
    assert_eq!(
        world.report(later()).0.and_then(|s| s.key_version),
        Some(response(FRESH_ID, "2019-08-09T10:38:27Z"))
    );
}

// ---- The limit of asymmetric versions -------------------------------------------------------

#[test]
fn limit_of_asymmetric_versions_is_enforced_from_the_maximum_on() {
    let mut world = World::with_key(KeySpec::EcP256);
    for count in [50, 51, 1000] {
        world.asymmetric_versions = count;
        assert_eq!(
            world.report(now()),
            rejected(Code::RejectedLimitExceeded, &limit_message(count), NOW_KMS),
            "{count}"
        );
    }
    for count in [49, 1, 0] {
        world.asymmetric_versions = count;
        assert_eq!(
            expect_add(world.plan(now())).version,
            requested_version(FRESH_ID, NOW_KMS, UID),
            "{count}"
        );
    }
}

#[test]
fn rules_are_checked_in_the_kms_order() {
    // Symmetric before the interval and the limit; the interval before the limit.
    let mut world = World::with_key(KeySpec::AliyunAes256);
    world.asymmetric_versions = 50;
    assert_eq!(
        world
            .report(t0())
            .0
            .map(|s| s.conditions[0].message.clone()),
        Some(symmetric_message(KeySpec::AliyunAes256))
    );
    let mut world = World::with_key(KeySpec::EcP256);
    world.asymmetric_versions = 50;
    assert_eq!(
        world
            .report(t0())
            .0
            .map(|s| s.conditions[0].message.clone()),
        Some(too_soon_message(KEY_CREATED, KEY_CREATED_PLUS_7D))
    );
}

// ---- The most versions one key holds -----------------------------------------------------

#[test]
fn a_key_holding_the_most_versions_takes_no_more() {
    let mut world = World::with_key(KeySpec::EcP256);
    let store = world.store.clone().unwrap();
    let mut record = Store::parse(store.clone(), NS, KEY_NAME).unwrap().record;
    // Old versions, as far back as the record needs: their material is not read here.
    let oldest = record.versions[0].clone();
    while record.versions.len() < 100 {
        let mut older = oldest.clone();
        older.key_version_id = format!("v{}", record.versions.len());
        record.versions.insert(0, older);
    }
    let mut full = crate::store::with_record(&store, &record);
    for version in &record.versions[..99] {
        full.data.as_mut().unwrap().extend([
            (
                format!("{}.private.pem", version.key_version_id),
                k8s_openapi::ByteString(b"x".to_vec()),
            ),
            (
                format!("{}.public.pem", version.key_version_id),
                k8s_openapi::ByteString(b"x".to_vec()),
            ),
        ]);
    }
    world.store = Some(full);
    let (status, _) = world.reconcile(later(), FRESH_ID);
    let ready = &status.unwrap().conditions[0];
    assert_eq!(ready.reason, "RejectedLimitExceeded");
    assert!(
        ready
            .message
            .contains("holds 100 versions, the most one key may hold"),
        "{}",
        ready.message
    );
}
