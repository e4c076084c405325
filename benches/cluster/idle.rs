//! Idle silence: with N converged keys and nothing changing, the operator writes nothing (its
//! writes counted from the API server's audit log) and reconciles a bounded number of times.
//!
//! Half the keys rotate (every 365 days): those are looked at again at most every 10 minutes
//! (the cap on a requeue), so a window of W seconds allows at most
//! rotating keys x (W / 600 + 1) reconciles. Keys that do not rotate are never looked at.

use std::time::Duration;

use std::time::Instant;

use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::harness::{self, Cluster, Mix, OPERATOR_USER, ReadyWatch};

/// The longest a rotating key waits before its schedule is looked at again (see main.rs).
const REQUEUE_CAP: Duration = Duration::from_secs(600);

pub struct Settings {
    pub keys: usize,
    pub window: Duration,
}

pub async fn run(cluster: &Cluster, settings: &Settings) -> Vec<String> {
    let namespace = cluster.namespace("idle").await;
    let stores = cluster.namespace("idle-stores").await;
    let operator = cluster.start_operator(Some(&namespace), &stores, &[]).await;
    let watch = ReadyWatch::start(&cluster.client, &namespace).await;
    harness::apply_keys(&cluster.client, &namespace, settings.keys, 32, |i| {
        let rotation = (i % 2 == 0).then_some("365d");
        harness::key_manifest(Mix::Aes, i, rotation)
    })
    .await;
    watch.all_ready(settings.keys).await;
    drop(watch);
    operator
        .settle(settings.keys as u64, Duration::from_secs(3))
        .await;
    // Events are posted after the writes they record, in order: the window starts once the
    // last new key's KeyCreated is posted, or that backlog would count as idle writes.
    wait_for_events(&cluster.client, &namespace, "KeyCreated", settings.keys).await;

    let audit = cluster.audit();
    let before = operator.key_reconciles().await;
    tokio::time::sleep(settings.window).await;
    let reconciles = operator.key_reconciles().await - before;
    // Let the audit log catch up with the last requests of the window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writes = audit.writes_by(OPERATOR_USER);
    operator.report_warnings("idle");
    drop(operator);
    cluster.delete_namespaces(&[namespace, stores]).await;

    let rotating = settings.keys.div_ceil(2) as u64;
    let bound = rotating * (settings.window.as_secs() / REQUEUE_CAP.as_secs() + 1);
    let line = format!(
        "idle, {} converged keys for {} s: {} writes by the operator (audit log), {reconciles} \
         reconciles (bound {bound})",
        settings.keys,
        settings.window.as_secs(),
        writes.total()
    );
    println!("{line}");
    assert_eq!(writes.total(), 0, "the idle operator wrote: {writes}");
    assert!(
        reconciles <= bound,
        "{reconciles} reconciles in an idle window allowing {bound}"
    );
    vec![line]
}

/// Waits until `namespace` holds `count` events with `reason`; panics after two minutes.
async fn wait_for_events(client: &Client, namespace: &str, reason: &str, count: usize) {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let listed = events
            .list(&ListParams::default())
            .await
            .expect("list events");
        let seen = listed
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .count();
        if seen >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{seen} of {count} {reason} events posted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
