//! Automatic rotation, with an injected clock.

use super::*;

// --- Automatic rotation, with an injected clock ---

impl World {
    /// Carries out plans as the reconciler does (minting real material for new versions) until
    /// one writes nothing; returns the versions added and the last plan.
    fn run(&mut self, now: Timestamp) -> (Vec<String>, Converge) {
        let mut added = Vec::new();
        for _ in 0..6 {
            // A fresh version id per plan, as the reconciler draws one.
            let version_id = format!("00000000-0000-4000-8000-{:012}", self.drawn);
            self.drawn += 1;
            let ids = FreshIds {
                key_id: KEY_ID.into(),
                version_id,
            };
            let store = parsed(self.store.as_ref());
            let observed = Observed {
                key: &self.key,
                store: store.as_ref(),
                consumer: self.consumer.as_ref(),
                former_consumers: &Default::default(),
                asymmetric_versions: Some(0),
                import: None,
            };
            match super::plan(&observed, &settings(), now, &ids) {
                Plan::AddVersion(new) => {
                    let material = material::generate(new.record.key_spec).unwrap();
                    let store = self.store.as_ref().expect("a store");
                    let grown =
                        store::with_new_version(store, &new.record, &new.version, &material)
                            .expect("a fresh version id");
                    self.store = Some(written_over(store, grown));
                    added.push(new.version.key_version_id);
                }
                Plan::Converge(converge) if converge.is_noop() => return (added, *converge),
                Plan::Converge(converge) => self.apply(&converge),
                Plan::UpdateRecord(record, _) => {
                    let store = self.store.as_ref().expect("a store");
                    let updated = store::with_record(store, &record);
                    self.store = Some(written_over(store, updated));
                }
                Plan::Destroy => {
                    self.store = None;
                    self.consumer = None;
                }
                Plan::IssueImportParameters | Plan::ImportMaterial(_) | Plan::RemoveMaterial(_) => {
                    panic!("no EXTERNAL keys here")
                }
                Plan::CreateKey(_) => panic!("an existing key is never created again"),
                Plan::RetireConsumer(..) => panic!("spec.secretName never changes here"),
            }
        }
        panic!("the plans did not settle");
    }
}

fn rotating(interval: &str) -> World {
    World::settled(key(|r| {
        r.enable_automatic_rotation = Some(true);
        r.rotation_interval = Some(interval.into());
    }))
}

/// `CREATED` plus whole days, plus extra seconds (may be fractional).
fn after_days(days: i64, extra_secs: f64) -> Timestamp {
    let base = at(CREATED);
    let nanos = (extra_secs * 1e9) as i64;
    base.checked_add(jiff::SignedDuration::from_hours(days * 24))
        .unwrap()
        .checked_add(jiff::SignedDuration::from_nanos(nanos))
        .unwrap()
}

#[test]
fn rotation_waits_until_next_rotation_date_and_requeues_for_it() {
    let world = rotating("7d");
    let converge = world.converge(after_days(7, -1.0));
    assert!(
        converge.is_noop(),
        "nothing to write a second before the due time"
    );
    assert_eq!(
        converge.requeue_after,
        Some(std::time::Duration::from_secs(1))
    );
    let converge = world.converge(after_days(7, -0.3));
    assert_eq!(
        converge.requeue_after,
        Some(std::time::Duration::from_millis(300)),
        "to the due second: the timer never fires before it, nor a second after"
    );
    let far = world.converge(after_days(1, 0.0));
    assert_eq!(
        far.requeue_after,
        Some(std::time::Duration::from_secs(600)),
        "capped: a wall-clock jump delays a rotation by at most one requeue period"
    );
}

#[test]
fn rotation_mints_a_version_at_next_rotation_date_truncated_to_the_second() {
    let world = rotating("7d");
    let Plan::AddVersion(new) = world.plan(after_days(7, 0.75)) else {
        panic!("the rotation is due");
    };
    assert_eq!(new.version.key_version_id, VERSION_ID, "the fresh id");
    assert_eq!(
        new.version.creation_date.to_string(),
        "2016-04-01T10:42:40Z"
    );
    assert_eq!(new.version.requested_by, None);
    assert_eq!(
        new.record,
        store::Store::parse(world.store.clone().unwrap(), NS, NAME)
            .unwrap()
            .record
    );
}

#[test]
fn rotation_moves_primary_and_dates_and_keeps_every_version_for_consumers() {
    let mut world = rotating("7d");
    let first = world.metadata().primary_key_version.clone().unwrap();
    let first_bytes = data(world.consumer.as_ref().unwrap())["key"].clone();
    let mut fresh_world_ids = fresh();
    fresh_world_ids.version_id = "7a4f4d21-2b1e-4d5c-9a47-1d2f3c4b5a69".into();
    let now = after_days(7, 0.0);
    // The reconciler draws a fresh id per plan; use a second one for the rotation.
    let Plan::AddVersion(new) = super::plan(
        &Observed {
            key: &world.key,
            store: parsed(world.store.as_ref()).as_ref(),
            consumer: world.consumer.as_ref(),
            former_consumers: &Default::default(),
            asymmetric_versions: Some(0),
            import: None,
        },
        &settings(),
        now,
        &fresh_world_ids,
    ) else {
        panic!("due");
    };
    let second = new.version.key_version_id.clone();
    let material = material::generate(KeySpec::AliyunAes256).unwrap();
    let grown = store::with_new_version(
        world.store.as_ref().unwrap(),
        &new.record,
        &new.version,
        &material,
    )
    .unwrap();
    world.store = Some(grown);
    let converge = world.converge(now);
    assert_eq!(
        converge.notes,
        vec![],
        "a rotation is not a repair (KeyRotated tells of it), and readiness did not change"
    );
    world.apply(&converge);
    let m = world.metadata().clone();
    assert_eq!(m.primary_key_version.as_deref(), Some(second.as_str()));
    assert_eq!(
        m.last_rotation_date.as_deref(),
        Some("2016-04-01T10:42:40Z")
    );
    assert_eq!(
        m.next_rotation_date.as_deref(),
        Some("2016-04-08T10:42:40Z")
    );
    assert_eq!(m.creation_date, CREATED, "the key's creation date stays");
    let versions: Vec<&str> = world
        .status()
        .key_versions
        .iter()
        .map(|v| v.key_version_id.as_str())
        .collect();
    assert_eq!(versions, [first.as_str(), second.as_str()]);

    let consumer = world.consumer.as_ref().unwrap();
    assert_eq!(data(consumer)["keyVersionId"].0, second.as_bytes());
    let material::Material::Symmetric { key: minted } = &material else {
        panic!("AES material is symmetric");
    };
    assert!(
        data(consumer)["key"].0 == minted.expose(),
        "the default entry is the new version"
    );
    assert_eq!(
        data(consumer)[&format!("{first}.key")],
        first_bytes,
        "the old version stays"
    );
    assert!(world.converge(now).is_noop());
}

#[test]
fn an_operator_down_for_several_intervals_rotates_once_on_return() {
    let mut world = rotating("7d");
    let now = after_days(30, 0.0);
    let (added, last) = world.run(now);
    assert_eq!(added.len(), 1, "one rotation, not one per missed interval");
    assert_eq!(
        world.metadata().last_rotation_date.as_deref(),
        Some("2016-04-24T10:42:40Z")
    );
    assert_eq!(
        world.metadata().next_rotation_date.as_deref(),
        Some("2016-05-01T10:42:40Z")
    );
    assert_eq!(
        last.requeue_after,
        Some(std::time::Duration::from_secs(600))
    );
}

#[test]
fn the_schedule_holds_across_many_intervals_without_drift() {
    let mut world = rotating("7d");
    for week in 1..=10 {
        let (added, _) = world.run(after_days(7 * week, 0.4));
        assert_eq!(added.len(), 1, "week {week}");
        assert_eq!(
            world.metadata().next_rotation_date.as_deref().map(at),
            Some(after_days(7 * (week + 1), 0.0)),
            "week {week}: due times stay on whole seconds of the original schedule"
        );
    }
    assert_eq!(world.status().key_versions.len(), 11);
}

#[test]
fn changing_the_interval_recomputes_from_the_last_rotation() {
    let mut world = rotating("7d");
    world.key.spec.rotation_interval = Some("14d".into());
    world.key.metadata.generation = Some(2);
    let (added, _) = world.run(after_days(8, 0.0));
    assert!(added.is_empty(), "the 7-day due time no longer holds");
    assert_eq!(
        world.metadata().next_rotation_date.as_deref(),
        Some("2016-04-08T10:42:40Z")
    );
    assert_eq!(
        world.metadata().rotation_interval.as_deref(),
        Some("1209600s")
    );
    // Shortening it past the time already elapsed rotates at once.
    world.key.spec.rotation_interval = Some("7d".into());
    world.key.metadata.generation = Some(3);
    let (added, _) = world.run(after_days(8, 0.0));
    assert_eq!(added.len(), 1);
}

#[test]
fn disabling_rotation_removes_the_schedule_and_stops_requeueing() {
    let mut world = rotating("7d");
    world.key.spec.enable_automatic_rotation = Some(false);
    world.key.metadata.generation = Some(2);
    let (added, last) = world.run(after_days(30, 0.0));
    assert!(added.is_empty());
    let m = world.metadata();
    assert_eq!(m.automatic_rotation, AutomaticRotation::Disabled);
    assert_eq!(
        (m.next_rotation_date.as_ref(), m.rotation_interval.as_ref()),
        (None, None)
    );
    assert_eq!(last.requeue_after, None, "nothing to wait for");
}

#[test]
fn a_store_that_grew_meanwhile_is_not_rotated_again() {
    // Another writer rotated the key: re-reading its store, the plan finds nothing due.
    let mut world = rotating("7d");
    let now = after_days(7, 0.0);
    let (added, _) = world.run(now);
    assert_eq!(added.len(), 1);
    assert!(matches!(world.plan(now), Plan::Converge(_)));
}

/// `write` as the API server stores it over `read`: with the next resourceVersion.
fn written_over(read: &Secret, mut write: Secret) -> Secret {
    let version: u64 = read
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("a store read back has a resourceVersion");
    write.metadata.resource_version = Some((version + 1).to_string());
    write
}

#[test]
fn a_key_holding_the_most_versions_rotates_no_more() {
    let mut world = rotating("7d");
    let store = world.store.clone().unwrap();
    let mut record = store::Store::parse(store.clone(), NS, NAME).unwrap().record;
    let newest = record.versions[0].clone();
    let mut full = store;
    while record.versions.len() < 1000 {
        let mut older = newest.clone();
        older.key_version_id = format!("v{}", record.versions.len());
        full.data.as_mut().unwrap().insert(
            format!("{}.key", older.key_version_id),
            ByteString(vec![7; 32]),
        );
        record.versions.insert(0, older);
    }
    world.store = Some(store::with_record(&full, &record));
    let converge = world.converge(after_days(8, 0.0));
    let status = converge.status.expect("the status says why");
    assert_eq!(
        status.key_metadata.as_ref().unwrap().next_rotation_date,
        None
    );
    let message = &ready(&status).message;
    assert!(
        message.contains("holds 1000 versions") && message.contains("rotates no more"),
        "{message}"
    );
    assert_eq!(converge.requeue_after, None, "nothing falls due");
}
