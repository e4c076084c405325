//! Two replicas with leader election, the leader killed during a creation burst and during a
//! rotation burst: a standby takes over within the lease duration, writes nothing before it
//! leads, and nothing is lost or minted twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::checks::assert_converged;
use crate::common::operator::logged_field;
use crate::common::{CONVERGE, TestEnv};
use crate::fleet::{Fleet, KeyDef, MIXED, apply_all, request_versions};
use crate::recovery::{wait_all_ready, wait_rotated_since};
use crate::snapshot::{Snapshot, assert_preserved, observe, progress};
use crate::{CLUSTER, FLAGS, RECOVER, ms, retrying};

const LEASE: Duration = Duration::from_secs(4);

/// As the operator computes it: 2/15 of the lease duration.
fn retry_period() -> Duration {
    LEASE * 2 / 15
}

/// Each operator's identity, from its "waiting for the leader Lease" line, waited for.
pub(crate) async fn identity_of(env: &TestEnv, operator: usize) -> String {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let log = env.operator_log(operator);
        let identity = logged_field(&log, "waiting for the leader Lease", "identity")
            .map(|identity| identity.trim_matches('"').to_string());
        if let Some(identity) = identity {
            return identity;
        }
        assert!(
            Instant::now() < deadline,
            "operator {operator} never logged its identity"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The replicas that may lead, by identity.
pub(crate) type Candidates = BTreeMap<String, usize>;

pub(crate) async fn candidates(env: &TestEnv, operators: &[usize]) -> Candidates {
    let mut by_identity = Candidates::new();
    for &operator in operators {
        by_identity.insert(identity_of(env, operator).await, operator);
    }
    by_identity
}

/// Waits until one of `candidates` holds the Lease; returns it and when it acquired it.
pub(crate) async fn wait_leader(
    env: &TestEnv,
    candidates: &Candidates,
    within: Duration,
) -> (usize, Timestamp) {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.namespace);
    let deadline = Instant::now() + within;
    loop {
        let lease = retrying("get the Lease", RECOVER, || {
            let leases = leases.clone();
            async move { leases.get_opt("keyward").await }
        })
        .await;
        let spec = lease.and_then(|l| l.spec).unwrap_or_default();
        let leader = spec
            .holder_identity
            .as_ref()
            .and_then(|holder| candidates.get(holder));
        if let (Some(&leader), Some(acquired)) = (leader, spec.acquire_time.as_ref()) {
            return (leader, acquired.0);
        }
        assert!(
            Instant::now() < deadline,
            "none of {candidates:?} holds the Lease within {within:?} (holder {:?})",
            spec.holder_identity
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a failover showed.
struct Failover {
    /// The replica that took over.
    leader: usize,
    /// From the kill to the new leader's acquireTime on the Lease.
    took: Duration,
    /// The stores as the killed leader left them (read before anyone took over).
    at_kill: Snapshot,
}

/// Kills the leader and waits for one of `standbys` to take over, reading the stores while
/// nobody leads; checks that the takeover came within the lease duration plus two retry
/// periods, and that the new leader wrote nothing before it led.
async fn fail_over(
    env: &mut TestEnv,
    fleet: &Fleet,
    leader: usize,
    standbys: &Candidates,
    context: &str,
) -> Failover {
    let killed = Timestamp::now();
    env.kill_operator(leader);
    let at_kill = observe(env, fleet, &format!("{context}, nobody leading")).await;
    let (next, acquired) = wait_leader(env, standbys, LEASE * 4).await;
    let took = Duration::try_from(acquired.duration_since(killed)).unwrap_or_default();
    // A standby counts the lease duration from when it saw the last renewal (its own clock,
    // as client-go's observedTime), not from the renewTime written: it sees the renewal at its
    // next look, up to a retry period after the kill, and takes over at the first look a
    // lease duration after that, up to another retry period later. Each look is a GET and a
    // write. (Counted from renewTime, by the leader's clock, one retry period less.)
    let bound = LEASE + 2 * retry_period() + Duration::from_millis(500);
    assert!(
        took <= bound,
        "{context}: operator {next} took the Lease {} ms after the leader was killed; at most \
         the lease duration ({} ms) plus two retry periods ({} ms each) plus 500 ms for the \
         requests",
        ms(took),
        ms(LEASE),
        ms(retry_period())
    );
    // A standby writes nothing before it leads.
    let log = env.operator_log(next);
    let acquired_at = log
        .find("acquired the leader Lease")
        .expect("acquired line");
    for marker in ["created key", "rotated key", "created key version"] {
        if let Some(at) = log.find(marker) {
            assert!(
                at > acquired_at,
                "{context}: operator {next} logged {marker:?} before it led"
            );
        }
    }
    Failover {
        leader: next,
        took,
        at_kill,
    }
}

#[tokio::test]
async fn leader_killed_during_bursts_fails_over_within_the_lease_and_mints_nothing_twice() {
    let _shared = CLUSTER.read().await;
    let mut env = TestEnv::new("faults-leader").await;
    let namespace = env.namespace.clone();
    let lease_secs = format!("{}s", LEASE.as_secs());
    let mut flags = vec![
        "--leader-elect",
        "--leader-election-namespace",
        &namespace,
        "--leader-election-lease-duration",
        &lease_secs,
    ];
    flags.extend_from_slice(FLAGS);
    let a = env.start_operator(&flags);
    let b = env.start_operator(&flags);
    let both = candidates(&env, &[a, b]).await;
    let (leader, _) = wait_leader(&env, &both, CONVERGE).await;
    let standby = if leader == a { b } else { a };

    // A creation burst: kill the leader once a third of the keys exist.
    let fleet = Fleet::new("ha", 30, MIXED);
    let standbys = candidates(&env, &[standby]).await;
    apply_all(&env, &fleet.keys.values().collect::<Vec<_>>()).await;
    let deadline = Instant::now() + CONVERGE;
    while progress(&env).await.0 < fleet.keys.len() / 3 {
        assert!(Instant::now() < deadline, "the leader created too few keys");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = fail_over(&mut env, &fleet, leader, &standbys, "failover 1").await;
    eprintln!(
        "failover 1 (killed with {} of {} keys created, {} versions): operator {} took the \
         Lease {} ms after the kill (lease {} ms, retry period {} ms)",
        first.at_kill.stores.len(),
        fleet.keys.len(),
        first.at_kill.versions(),
        first.leader,
        ms(first.took),
        ms(LEASE),
        ms(retry_period())
    );
    let standby = env.start_operator(&flags);
    let standbys = candidates(&env, &[standby]).await;
    wait_all_ready(&env, &fleet, RECOVER).await;
    let asymmetric: Vec<&KeyDef> = fleet.asymmetric();
    request_versions(&env, "ha", &asymmetric).await;

    // A rotation burst: kill the leader as soon as it adds a version.
    let (_, versions) = progress(&env).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while progress(&env).await.1 == versions {
        assert!(Instant::now() < deadline, "no rotation within 10s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = fail_over(&mut env, &fleet, first.leader, &standbys, "failover 2").await;
    assert_preserved("failover 1 to failover 2", &first.at_kill, &second.at_kill);
    eprintln!(
        "failover 2 (killed in a rotation burst, {} versions held): the Lease was taken {} ms \
         after the kill",
        second.at_kill.versions(),
        ms(second.took)
    );
    let back = Timestamp::now();
    let took = wait_rotated_since(&env, &fleet, back).await;
    eprintln!("after failover 2, every key rotated within {} ms", ms(took));
    assert_converged(&env, &fleet, &second.at_kill, "leader failovers").await;
}
