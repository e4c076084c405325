//! The API server and etcd restarted mid-run: keys being created and rotating, requests in
//! flight, then the component stopped for a few seconds and started again. These tests take
//! the cluster for themselves (every other test here holds [`CLUSTER`] shared).

use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::checks::assert_converged;
use crate::common::TestEnv;
use crate::control_plane::{Stopped, cluster_dir, control_plane};
use crate::fleet::{Fleet, KeyDef, MIXED, apply_all, apply_retrying, probe, request_versions};
use crate::recovery::{measure_recovery, wait_all_ready};
use crate::snapshot::observe;
use crate::{CLUSTER, FLAGS, RECOVER, ms};

/// One restart test: keys being created and rotating, requests in flight, then `component`
/// stopped for a few seconds and started again; measures the recovery and checks everything.
async fn restart_mid_run(test: &str, component: &str, kill: bool) {
    let _exclusive = CLUSTER.write().await;
    let Some(dir) = cluster_dir(&format!("{}::{test}", module_path!())) else {
        return;
    };
    let mut env = TestEnv::new(&format!("faults-{component}")).await;
    let mut fleet = Fleet::new("rs", 30, MIXED);
    // Half of every kind first, the other half mid-run.
    let all: Vec<KeyDef> = fleet.keys.values().cloned().collect();
    let (first, second) = all.split_at(all.len() / 2);
    let operator = env.start_operator(FLAGS);
    apply_all(&env, &first.iter().collect::<Vec<_>>()).await;
    let early = Fleet {
        keys: first.iter().map(|k| (k.name.clone(), k.clone())).collect(),
    };
    wait_all_ready(&env, &early, RECOVER).await;
    // Mid-run: the second half being created, requests being served, rotations going on.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let asymmetric: Vec<&KeyDef> = first.iter().filter(|k| !k.symmetric).collect();
    request_versions(&env, "before", &asymmetric).await;
    apply_all(&env, &second.iter().collect::<Vec<_>>()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = observe(&env, &fleet, &format!("before the {component} restart")).await;

    let outage = Instant::now();
    let stopping = control_plane(&dir, "stop", component, kill).await;
    let stopped = Stopped {
        dir: &dir,
        component,
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let starting = control_plane(&dir, "start", component, false).await;
    std::mem::forget(stopped);
    let back = Timestamp::now();
    let back_at = Instant::now();
    eprintln!(
        "{component}: unavailable for {} ms (stopping {} ms, 3000 ms down, {} ms from start to \
         ready)",
        ms(outage.elapsed()),
        ms(stopping),
        ms(starting)
    );
    assert!(
        env.operator_running(operator),
        "the operator exited while {component} was down"
    );

    // Recovery: a key applied now becomes Ready (the watches are back), every key is Ready,
    // and every rotating key rotates again.
    let probe_key = probe("probe-after-restart");
    fleet.add(probe_key.clone());
    apply_retrying(&env, &probe_key).await;
    let recovery = measure_recovery(&env, &fleet, &probe_key.name, back, back_at).await;
    wait_all_ready(&env, &fleet, RECOVER).await;
    let all_ready = back_at.elapsed();
    eprintln!(
        "{component} back: every rotating key rotated again after {} ms, a new key Ready after \
         {} ms, all {} keys Ready after {} ms",
        ms(recovery.rotated),
        ms(recovery.probe),
        fleet.keys.len(),
        ms(all_ready)
    );
    // And the operator goes on serving requests.
    let asymmetric: Vec<&KeyDef> = second.iter().filter(|k| !k.symmetric).collect();
    request_versions(&env, "after", &asymmetric).await;
    assert_converged(&env, &fleet, &before, &format!("{component} restart")).await;
    assert!(
        env.operator_running(operator),
        "the operator exited after {component} came back"
    );
}

#[tokio::test]
async fn api_server_restart_mid_run_loses_and_duplicates_nothing() {
    // SIGKILL: a crash, every connection dropped at once (a SIGTERM holds the watches open
    // while the server drains, for longer than this test should take).
    restart_mid_run(
        "api_server_restart_mid_run_loses_and_duplicates_nothing",
        "kube-apiserver",
        true,
    )
    .await;
}

#[tokio::test]
async fn etcd_restart_mid_run_loses_and_duplicates_nothing() {
    restart_mid_run(
        "etcd_restart_mid_run_loses_and_duplicates_nothing",
        "etcd",
        false,
    )
    .await;
}
