//! A request waits for its Key and its store.

use super::*;

// ---- Waiting for the Key ---------------------------------------------------------------------

#[test]
fn request_waits_for_its_key_and_is_accepted_once_the_key_is_usable() {
    let mut world = World::without_key();

    // No Key.
    assert_eq!(
        world.reconcile(now(), FRESH_ID),
        (
            Some(waiting_status(&waiting_to_exist(), NOW_KMS)),
            vec![waiting_note(&waiting_to_exist())],
        )
    );
    // Time alone changes nothing.
    assert_eq!(world.reconcile(later(), FRESH_ID), nothing_to_write());

    // The Key exists, its store not yet.
    let key = key_of(KeySpec::EcP256, Origin::AliyunKms);
    world.key = Some(key.clone());
    let t2 = "2019-08-02T11:00:00Z";
    assert_eq!(
        world.reconcile(at(t2), FRESH_ID),
        (
            Some(waiting_status(&waiting_to_be_created(), NOW_KMS)),
            vec![waiting_note(&waiting_to_be_created())],
        ),
        "still not ready: the transition time stays"
    );

    // The store exists but cannot be read. (A Key whose store was kept when it was deleted,
    // or restored from a backup: its last version is old.)
    let good = store_for(&key, t0());
    let mut unreadable = good.clone();
    unreadable.data.as_mut().unwrap().remove(RECORD_ENTRY);
    world.store = Some(unreadable);
    assert_eq!(
        world.reconcile(at("2019-08-02T11:00:01Z"), FRESH_ID),
        (
            Some(waiting_status(&waiting_to_become_usable(), NOW_KMS)),
            vec![waiting_note(&waiting_to_become_usable())],
        )
    );
    assert_eq!(world.record_if_readable(), None);

    // The store is whole: the same request is accepted.
    world.store = Some(good);
    let t4 = "2019-08-02T11:00:02.5Z";
    let new = expect_add(world.plan(at(t4)));
    assert_eq!(
        new.version,
        requested_version(FRESH_ID, "2019-08-02T11:00:02Z", UID)
    );
    world.add_version(&new);
    assert_eq!(
        world.reconcile(at(t4), OTHER_FRESH_ID),
        (
            Some(created_status(
                FRESH_ID,
                "2019-08-02T11:00:02Z",
                "2019-08-02T11:00:02Z"
            )),
            vec![created_note(FRESH_ID, "2019-08-02T11:00:02Z")],
        )
    );
}

#[test]
fn unreadable_store_is_waited_for_and_never_grown() {
    let key = key_of(KeySpec::EcP256, Origin::AliyunKms);
    let good = store_for(&key, t0());
    type Edit = fn(&mut Secret);
    let cases: [(&str, Edit); 5] = [
        ("key.json missing", |s| {
            s.data.as_mut().unwrap().remove(RECORD_ENTRY);
        }),
        ("key.json not JSON", |s| {
            s.data.as_mut().unwrap().insert(
                RECORD_ENTRY.into(),
                k8s_openapi::ByteString(b"{not json".to_vec()),
            );
        }),
        ("a version's private key missing", |s| {
            s.data
                .as_mut()
                .unwrap()
                .remove(&format!("{INITIAL_VERSION_ID}.private.pem"));
        }),
        ("not a material store", |s| s.type_ = Some("Opaque".into())),
        ("no data", |s| s.data = None),
    ];
    for (what, edit) in cases {
        let mut store = good.clone();
        edit(&mut store);
        let world = World {
            request: request(),
            key: Some(key.clone()),
            store: Some(store),
            asymmetric_versions: 1,
        };
        assert_eq!(
            world.report(now()),
            (
                Some(waiting_status(&waiting_to_become_usable(), NOW_KMS)),
                vec![waiting_note(&waiting_to_become_usable())],
            ),
            "{what}"
        );
    }
}

#[test]
fn store_of_another_key_is_not_used() {
    let mut world = World::with_key(KeySpec::EcP256);
    // Even one that lists a version for this very request.
    world.reconcile(now(), FRESH_ID);
    world.request.status = None;
    let annotations = world
        .store
        .as_mut()
        .unwrap()
        .metadata
        .annotations
        .as_mut()
        .unwrap();
    assert_eq!(annotations[labels::KEY], KEY_NAME);
    annotations.insert(labels::KEY.into(), "other".into());

    assert_eq!(
        world.report(later()),
        (
            Some(waiting_status(
                &waiting_to_become_usable(),
                "2019-09-01T08:00:00Z"
            )),
            vec![waiting_note(&waiting_to_become_usable())],
        )
    );
}
