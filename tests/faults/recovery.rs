//! Waiting for the operator to come back after a fault, and measuring how long it took: every
//! key Ready, rotation resumed, a Key applied after the fault Ready.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use keyward::api::Key;
use kube::ResourceExt;
use kube::api::ListParams;

use crate::RECOVER;
use crate::common::{self, TestEnv};
use crate::fleet::Fleet;
use crate::snapshot::{newest_versions, second_of};

/// Waits until every key of the fleet is Ready at its current generation; returns how long
/// that took, or panics naming the keys that are not, with their condition.
pub async fn wait_all_ready(env: &TestEnv, fleet: &Fleet, within: Duration) -> Duration {
    let started = Instant::now();
    let deadline = started + within;
    loop {
        match env.keys().list(&ListParams::default()).await {
            Ok(list) => {
                let keys: BTreeMap<String, Key> =
                    list.items.into_iter().map(|k| (k.name_any(), k)).collect();
                let waiting: Vec<String> = fleet
                    .keys
                    .keys()
                    .filter(|name| {
                        keys.get(*name).and_then(common::ready_reason).as_deref()
                            != Some("KeyReady")
                    })
                    .map(|name| match keys.get(name) {
                        None => format!("{name}: no such Key"),
                        Some(key) => format!("{name}: {}", condition_of(key)),
                    })
                    .collect();
                if waiting.is_empty() {
                    return started.elapsed();
                }
                assert!(
                    Instant::now() < deadline,
                    "{} of {} keys not Ready within {within:?}:\n  {}",
                    waiting.len(),
                    fleet.keys.len(),
                    waiting.join("\n  ")
                );
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "listing Keys still fails after {within:?}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn condition_of(key: &Key) -> String {
    let Some(ready) = key
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
    else {
        return "no Ready condition yet".into();
    };
    format!(
        "Ready={} {} (generation {:?} observed {:?}): {}",
        ready.status,
        ready.reason,
        key.metadata.generation,
        ready.observed_generation,
        ready.message
    )
}

/// Waits until every rotating key has a version dated after `since` (in whole seconds, as
/// versions are dated: rotation resumed after a fault); returns how long that took.
pub async fn wait_rotated_since(env: &TestEnv, fleet: &Fleet, since: Timestamp) -> Duration {
    let started = Instant::now();
    let deadline = started + RECOVER;
    loop {
        let newest: BTreeMap<String, i64> = newest_versions(env)
            .await
            .into_iter()
            .map(|(key, date)| (key, second_of(&date)))
            .collect();
        let behind: Vec<String> = fleet
            .rotating()
            .iter()
            .filter(|k| {
                newest
                    .get(&k.name)
                    .is_none_or(|at| *at <= since.as_second())
            })
            .map(|k| format!("{}: newest version at {:?}", k.name, newest.get(&k.name)))
            .collect();
        if behind.is_empty() {
            return started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "rotation did not resume after {since}:\n  {}",
            behind.join("\n  ")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How long after a fault the operator took to come back, measured side by side.
#[derive(Clone, Copy, Debug)]
pub struct Recovery {
    /// Until a Key applied after the fault was Ready: its watches were back.
    pub probe: Duration,
    /// Until every rotating key had rotated again: its reconciles were back.
    pub rotated: Duration,
}

/// Measures, from `from` (the fault's end, `since` on the wall clock), how long it takes until
/// the Key `probe` is Ready and until every rotating key of `fleet` has a version dated after
/// `since`; panics naming what has not happened within [`RECOVER`].
pub async fn measure_recovery(
    env: &TestEnv,
    fleet: &Fleet,
    probe: &str,
    since: Timestamp,
    from: Instant,
) -> Recovery {
    let (mut probe_at, mut rotated_at) = (None, None);
    loop {
        if probe_at.is_none() {
            let key = env.keys().get_opt(probe).await.ok().flatten();
            if key.and_then(|k| common::ready_reason(&k)).as_deref() == Some("KeyReady") {
                probe_at = Some(from.elapsed());
            }
        }
        let mut behind = Vec::new();
        if rotated_at.is_none() {
            let newest = newest_versions(env).await;
            behind = fleet
                .rotating()
                .iter()
                .filter(|k| {
                    newest
                        .get(&k.name)
                        .is_none_or(|d| second_of(d) <= since.as_second())
                })
                .map(|k| format!("{}: newest version {:?}", k.name, newest.get(&k.name)))
                .collect();
            if behind.is_empty() {
                rotated_at = Some(from.elapsed());
            }
        }
        if let (Some(probe), Some(rotated)) = (probe_at, rotated_at) {
            return Recovery { probe, rotated };
        }
        assert!(
            from.elapsed() < RECOVER,
            "not recovered {RECOVER:?} after {since}: Key {probe} Ready after {probe_at:?}; \
             rotating keys that did not rotate since:\n  {}",
            behind.join("\n  ")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
