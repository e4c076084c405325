//! `kill -9` of the operator: during bulk creation (a fleet of every key spec, killed at points
//! that vary from trial to trial) and during rotation bursts (keys that all rotate together).

use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::checks::assert_converged;
use crate::common::TestEnv;
use crate::common::pauses::Pauses;
use crate::fleet::{Fleet, MIXED, ROTATING, apply_all};
use crate::recovery::{wait_all_ready, wait_rotated_since};
use crate::snapshot::{Snapshot, assert_preserved, observe, progress};
use crate::{CLUSTER, FLAGS, RECOVER, ms};

/// When a trial kills the operator: a while after it starts, or once it has created this many
/// more stores (and then a little later).
#[derive(Clone, Copy, Debug)]
enum KillAt {
    After(Duration),
    Created(usize),
}

#[tokio::test]
async fn kill_nine_during_bulk_creation_mints_each_key_once() {
    let _shared = CLUSTER.read().await;
    let mut env = TestEnv::new("faults-bulk").await;
    let fleet = Fleet::new("bulk", 60, MIXED);
    let started = Instant::now();
    apply_all(&env, &fleet.keys.values().collect::<Vec<_>>()).await;
    eprintln!(
        "applied {} keys in {} ms",
        fleet.keys.len(),
        ms(started.elapsed())
    );

    let plan = [
        KillAt::After(Duration::from_millis(400)),
        KillAt::Created(1),
        KillAt::After(Duration::from_millis(600)),
        KillAt::Created(3),
        KillAt::After(Duration::from_millis(500)),
        KillAt::Created(5),
        KillAt::Created(10),
    ];
    let mut pauses = Pauses(0x62756c6b2d6b696c);
    let mut seen = Snapshot::default();
    let mut mid_creation = 0;
    for (trial, kill_at) in plan.into_iter().enumerate() {
        let (stores_before, _) = progress(&env).await;
        if stores_before == fleet.keys.len() {
            break;
        }
        let stores_after =
            kill_during_creation(&mut env, &fleet, trial, kill_at, &mut pauses, stores_before)
                .await;
        if stores_after > stores_before && stores_after < fleet.keys.len() {
            mid_creation += 1;
        }
        let now = observe(&env, &fleet, &format!("after kill {trial}")).await;
        assert_preserved(&format!("kill {trial}"), &seen, &now);
        seen = now;
    }
    assert!(
        mid_creation >= 2,
        "only {mid_creation} kills landed while keys were being created: the trials prove \
         little"
    );

    env.start_operator(FLAGS);
    let took = wait_all_ready(&env, &fleet, RECOVER).await;
    eprintln!(
        "after the kills, all {} keys Ready in {} ms",
        fleet.keys.len(),
        ms(took)
    );
    assert_converged(&env, &fleet, &seen, "bulk creation with kill -9").await;
    // Keys that do not rotate were minted exactly once.
    let end = observe(&env, &fleet, "end").await;
    for key in fleet.keys.values().filter(|k| k.rotation.is_none()) {
        assert_eq!(
            end.stores[&key.name].versions.len(),
            1,
            "{}: one initial version, nothing else",
            key.name
        );
    }
}

#[tokio::test]
async fn kill_nine_during_rotation_bursts_rotates_each_key_once_per_interval() {
    let _shared = CLUSTER.read().await;
    let mut env = TestEnv::new("faults-burst").await;
    let fleet = Fleet::new("burst", 30, ROTATING);
    apply_all(&env, &fleet.keys.values().collect::<Vec<_>>()).await;
    let operator = env.start_operator(FLAGS);
    let took = wait_all_ready(&env, &fleet, RECOVER).await;
    eprintln!(
        "{} rotating keys Ready in {} ms",
        fleet.keys.len(),
        ms(took)
    );
    let mut seen = observe(&env, &fleet, "before the kills").await;
    let initial_versions = seen.versions();

    let mut operator = operator;
    let mut pauses = Pauses(0x6275727374212121);
    for trial in 0..6 {
        if trial % 2 == 0 {
            // In a burst: as soon as a version is added, with a little jitter.
            let (_, versions) = progress(&env).await;
            let deadline = Instant::now() + Duration::from_secs(10);
            while progress(&env).await.1 == versions {
                assert!(
                    Instant::now() < deadline,
                    "trial {trial}: no rotation in 10s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(pauses.next(0, 150)).await;
        } else {
            tokio::time::sleep(pauses.next(300, 2300)).await;
        }
        env.kill_operator(operator);
        let (_, versions) = progress(&env).await;
        let now = observe(&env, &fleet, &format!("after kill {trial}")).await;
        let compared = assert_preserved(&format!("kill {trial}"), &seen, &now);
        eprintln!(
            "trial {trial}: killed with {versions} versions held, {compared} earlier versions \
             unchanged"
        );
        seen = now;
        // Down for a while: keys fall due and rotate together when it is back.
        tokio::time::sleep(pauses.next(0, 1500)).await;
        operator = env.start_operator(FLAGS);
    }
    let restarted = Timestamp::now();
    let took = wait_rotated_since(&env, &fleet, restarted).await;
    eprintln!(
        "after the last restart, every key rotated within {} ms",
        ms(took)
    );
    assert_converged(&env, &fleet, &seen, "rotation bursts with kill -9").await;
    let end = observe(&env, &fleet, "end").await;
    assert!(
        end.versions() >= initial_versions + 3 * fleet.keys.len(),
        "only {} rotations across the trials",
        end.versions() - initial_versions
    );
}

/// One trial of bulk creation: an operator started with `stores_before` stores existing, and
/// killed as `kill_at` says; returns how many stores exist afterwards.
async fn kill_during_creation(
    env: &mut TestEnv,
    fleet: &Fleet,
    trial: usize,
    kill_at: KillAt,
    pauses: &mut Pauses,
    stores_before: usize,
) -> usize {
    let operator = env.start_operator(FLAGS);
    let run = Instant::now();
    if let KillAt::Created(more) = kill_at {
        let target = (stores_before + more).min(fleet.keys.len());
        let deadline = Instant::now() + Duration::from_secs(30);
        while progress(env).await.0 < target {
            assert!(
                Instant::now() < deadline,
                "trial {trial}: the operator created no {more} stores in 30s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let pause = match kill_at {
        KillAt::After(after) => after,
        KillAt::Created(_) => pauses.next(0, 60),
    };
    tokio::time::sleep(pause).await;
    env.kill_operator(operator);
    let (stores_after, versions) = progress(env).await;
    eprintln!(
        "trial {trial} ({kill_at:?}): killed after {} ms; stores {stores_before} -> \
         {stores_after} of {}, {versions} versions",
        ms(run.elapsed()),
        fleet.keys.len()
    );
    stores_after
}
