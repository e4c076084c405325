//! Connections between the operator and the API server cut through a proxy: every connection
//! reset (and new ones refused for a while), or silenced without a reset (half-open). The
//! operator must reconnect, recover within bounds, and lose or duplicate nothing.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::checks::assert_converged;
use crate::common::{self, TestEnv};
use crate::fleet::{Fleet, KeyDef, MIXED, apply_all, probe, request_versions};
use crate::proxy::{ProxiedKubeconfig, Proxy, loopback_upstream, start_proxied_operator};
use crate::recovery::{measure_recovery, wait_all_ready, wait_rotated_since};
use crate::snapshot::{Snapshot, assert_preserved, newest_versions, observe, second_of};
use crate::{CLUSTER, FLAGS, RECOVER, ms};

/// One fault through the proxy.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// Reset every connection.
    All,
    /// Reset every connection and refuse new ones for this long.
    Refuse(Duration),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_are_reestablished_and_nothing_is_lost() {
    let _shared = CLUSTER.read().await;
    let Some(upstream) = loopback_upstream(concat!(
        module_path!(),
        "::dropped_connections_are_reestablished_and_nothing_is_lost"
    )) else {
        return;
    };
    let env = TestEnv::new("faults-proxy").await;
    let mut proxy = Proxy::start(upstream).await;
    let kubeconfig = ProxiedKubeconfig::write(&env.namespace, proxy.addr);
    let mut operator = start_proxied_operator(&env, &kubeconfig.path, 0, FLAGS);
    let mut fleet = Fleet::new("px", 30, MIXED);
    apply_all(&env, &fleet.keys.values().collect::<Vec<_>>()).await;
    let mut seen = Snapshot::default();

    let faults = [
        (Duration::from_millis(1500), Cut::All),
        (Duration::from_millis(2000), Cut::All),
        (
            Duration::from_millis(1000),
            Cut::Refuse(Duration::from_secs(4)),
        ),
        (Duration::from_millis(1500), Cut::All),
        (Duration::from_millis(500), Cut::All),
    ];
    let mut recoveries = Vec::new();
    for (i, (after, fault)) in faults.into_iter().enumerate() {
        tokio::time::sleep(after).await;
        if i == 1 {
            // Requests in flight at the next cuts (the keys have existed for over a second).
            let keys: Vec<&KeyDef> = fleet.asymmetric().into_iter().take(4).collect();
            request_versions(&env, "cut", &keys).await;
        }
        let accepted = proxy.accepted.load(Ordering::SeqCst);
        let cut = match fault {
            Cut::All => proxy.cut_all(),
            Cut::Refuse(for_) => proxy.refuse(for_).await,
        };
        let at = Instant::now();
        // The operator must come back through the proxy: a key applied now becomes Ready.
        let since = Timestamp::now();
        let probe_key = probe(&format!("probe-{i}"));
        fleet.add(probe_key.clone());
        env.apply_key(&probe_key.manifest()).await;
        let took = measure_recovery(&env, &fleet, &probe_key.name, since, at).await;
        let reconnected = proxy.accepted.load(Ordering::SeqCst) - accepted;
        eprintln!(
            "fault {i} ({fault:?}): reset {cut} connections; every rotating key rotated again \
             {} ms later, a new key Ready {} ms later; {reconnected} connections made since",
            ms(took.rotated),
            ms(took.probe)
        );
        assert!(
            cut > 0,
            "fault {i}: no connection went through the proxy to cut"
        );
        assert!(reconnected > 0, "fault {i}: the operator did not reconnect");
        assert!(operator.running(), "the operator exited after fault {i}");
        recoveries.push(took);
        let now = observe(&env, &fleet, &format!("after fault {i}")).await;
        assert_preserved(&format!("fault {i}"), &seen, &now);
        seen = now;
    }
    let last = Timestamp::now();
    wait_rotated_since(&env, &fleet, last).await;
    assert_converged(&env, &fleet, &seen, "connections cut").await;
    assert!(operator.running(), "the operator exited");
    eprintln!(
        "recovery after each fault, (rotation, new key) in ms: {:?}; {} connections through \
         the proxy in all",
        recoveries
            .iter()
            .map(|r| (ms(r.rotated), ms(r.probe)))
            .collect::<Vec<_>>(),
        proxy.accepted.load(Ordering::SeqCst)
    );
}

/// A connection that goes silent without being closed (the peer vanished, or a NAT or load
/// balancer in between dropped its state: no RST, no FIN) must not stall the operator: within
/// 30 s every rotating key rotates again and a new Key becomes Ready, over new connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_do_not_stall_rotation_or_new_keys() {
    let _shared = CLUSTER.read().await;
    let Some(upstream) = loopback_upstream(concat!(
        module_path!(),
        "::half_open_connections_do_not_stall_rotation_or_new_keys"
    )) else {
        return;
    };
    let env = TestEnv::new("faults-half-open").await;
    let proxy = Proxy::start(upstream).await;
    let kubeconfig = ProxiedKubeconfig::write(&env.namespace, proxy.addr);
    let mut operator = start_proxied_operator(&env, &kubeconfig.path, 0, FLAGS);
    let fleet = Fleet::new("ho", 4, MIXED);
    apply_all(&env, &fleet.keys.values().collect::<Vec<_>>()).await;
    wait_all_ready(&env, &fleet, RECOVER).await;

    let silenced = proxy.stall_all();
    let accepted = proxy.accepted.load(Ordering::SeqCst);
    let since = Timestamp::now();
    let at = Instant::now();
    let probe_key = probe("probe-half-open");
    env.apply_key(&probe_key.manifest()).await;
    let window = Duration::from_secs(30);
    let (probe_ready, newest) =
        poll_recovery(&env, &fleet, &probe_key.name, since, at, window).await;
    let late = not_rotated_since(&fleet, &newest, since);
    assert!(
        probe_ready && late.is_empty(),
        "{silenced} connections went silent at {since}; {} s later, a Key applied then is {}, \
         and {} of {} rotating keys have not rotated since:\n  {}\n({} connections opened \
         since; the operator is {})",
        at.elapsed().as_secs(),
        if probe_ready { "Ready" } else { "not Ready" },
        late.len(),
        fleet.rotating().len(),
        late.join("\n  "),
        proxy.accepted.load(Ordering::SeqCst) - accepted,
        if operator.running() {
            "running"
        } else {
            "gone"
        }
    );
    eprintln!(
        "{silenced} connections went silent; {:.1} s later a new Key was Ready and every \
         rotating key had rotated ({} connections opened since)",
        at.elapsed().as_secs_f64(),
        proxy.accepted.load(Ordering::SeqCst) - accepted
    );
}

/// Polls every half second, until `window` after `at` at the most, whether Key `probe` is
/// Ready and every rotating key has a version dated after `since`; returns the last answers:
/// whether the probe was Ready, and each key's newest version date.
async fn poll_recovery(
    env: &TestEnv,
    fleet: &Fleet,
    probe: &str,
    since: Timestamp,
    at: Instant,
    window: Duration,
) -> (bool, BTreeMap<String, String>) {
    loop {
        let probe_ready = env
            .keys()
            .get_opt(probe)
            .await
            .ok()
            .flatten()
            .and_then(|k| common::ready_reason(&k))
            .as_deref()
            == Some("KeyReady");
        let newest = newest_versions(env).await;
        let rotated = fleet.rotating().iter().all(|k| {
            newest
                .get(&k.name)
                .is_some_and(|d| second_of(d) > since.as_second())
        });
        if (probe_ready && rotated) || at.elapsed() > window {
            return (probe_ready, newest);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The rotating keys without a version dated after `since`, with their interval and newest
/// version date.
fn not_rotated_since(
    fleet: &Fleet,
    newest: &BTreeMap<String, String>,
    since: Timestamp,
) -> Vec<String> {
    fleet
        .rotating()
        .iter()
        .filter(|k| {
            newest
                .get(&k.name)
                .is_none_or(|d| second_of(d) <= since.as_second())
        })
        .map(|k| {
            format!(
                "{} (every {}s): newest version {:?}",
                k.name,
                k.rotation.unwrap_or_default(),
                newest.get(&k.name)
            )
        })
        .collect()
}
