//! Rotation on time: N keys rotating every few seconds (the operator started with test bounds,
//! `--min-rotation-interval 1s`). A rotation is due at the previous version's creationDate plus
//! the interval; its lateness is when a watch first sees the new version in the Key's status
//! minus that, so it includes writing the store, the consumer Secret and the status. Rotations
//! due but not seen by the end of the window count with their lateness so far.
//!
//! Asserted, since they are correctness and not speed: no version is created before it is due,
//! and the store holds no version twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use keyward::api::Key;
use keyward::store::{self, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::harness::{self, Cluster, Mix, OPERATOR_USER, ReadyWatch};

pub struct Settings {
    pub keys: usize,
    pub interval: Duration,
    pub window: Duration,
}

/// A version as the watch first saw it.
#[derive(Clone)]
struct Seen {
    id: String,
    created: Timestamp,
    observed: Timestamp,
}

type Versions = Arc<Mutex<HashMap<String, Vec<Seen>>>>;

pub async fn run(cluster: &Cluster, settings: &Settings) -> Vec<String> {
    let namespace = cluster.namespace("rotation").await;
    let stores = cluster.namespace("rotation-stores").await;
    let interval_text = format!("{}s", settings.interval.as_secs());
    let operator = cluster
        .start_operator(
            Some(&namespace),
            &stores,
            &["--min-rotation-interval", "1s"],
        )
        .await;
    let versions: Versions = Arc::default();
    let watch = watch_versions(
        Api::namespaced(cluster.client.clone(), &namespace),
        versions.clone(),
    );
    let ready = ReadyWatch::start(&cluster.client, &namespace).await;
    harness::apply_keys(&cluster.client, &namespace, settings.keys, 32, |i| {
        harness::key_manifest(Mix::Aes, i, Some(&interval_text))
    })
    .await;
    ready.all_ready(settings.keys).await;
    drop(ready);
    let audit = cluster.audit();
    tokio::time::sleep(settings.window).await;
    let end = Timestamp::now();
    watch.abort();
    let writes = audit.writes_by(OPERATOR_USER);

    let interval = SignedDuration::try_from(settings.interval).expect("an interval");
    let seen = versions.lock().expect("versions").clone();
    let mut lateness = Vec::new();
    let mut early = Vec::new();
    let mut overdue = 0;
    for (key, versions) in &seen {
        for pair in versions.windows(2) {
            let due = pair[0].created + interval;
            lateness.push(pair[1].observed.duration_since(due).as_secs_f64());
            if pair[1].created < due {
                early.push(format!(
                    "{key}: version {} created before {due}",
                    pair[1].id
                ));
            }
        }
        if let Some(last) = versions.last() {
            let due = last.created + interval;
            if due < end {
                overdue += 1;
                lateness.push(end.duration_since(due).as_secs_f64());
            }
        }
    }
    let duplicates =
        duplicate_versions(&cluster.client, &namespace, &stores, settings.interval).await;
    operator.report_warnings("rotation");
    drop(operator);
    cluster.delete_namespaces(&[namespace, stores]).await;

    let rotations = lateness.len() - overdue;
    let line = format!(
        "rotation, {} keys every {} s for {} s: {rotations} rotations, lateness p50 {:.2} s, \
         p99 {:.2} s, max {:.2} s ({overdue} due but not yet seen at the end, counted as late \
         so far); {} early, {} duplicate; {:.2} operator writes per rotation ({writes})",
        settings.keys,
        settings.interval.as_secs(),
        settings.window.as_secs(),
        harness::percentile(&lateness, 50.0),
        harness::percentile(&lateness, 99.0),
        harness::percentile(&lateness, 100.0),
        early.len(),
        duplicates.len(),
        writes.total() as f64 / rotations.max(1) as f64,
    );
    println!("{line}");
    assert!(rotations > 0, "no key rotated in the window");
    assert!(
        early.is_empty(),
        "rotations before they were due: {early:?}"
    );
    assert!(
        duplicates.is_empty(),
        "versions minted twice: {duplicates:?}"
    );
    vec![line]
}

/// Notes each version of each Key when the watch first sees it in the status.
fn watch_versions(keys: Api<Key>, versions: Versions) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut events = watcher(keys, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let (Ok(watcher::Event::Apply(key)) | Ok(watcher::Event::InitApply(key))) = event
            else {
                continue;
            };
            let observed = Timestamp::now();
            let Some(status) = &key.status else { continue };
            let mut versions = versions.lock().expect("versions");
            let known = versions.entry(key.name_any()).or_default();
            for entry in status.key_versions.iter().skip(known.len()) {
                known.push(Seen {
                    id: entry.key_version_id.clone(),
                    created: entry.creation_date.parse().expect("a KMS time"),
                    observed,
                });
            }
        }
    })
}

/// Versions the stores hold twice, or closer together than the interval: what a second,
/// racing rotation would leave behind.
async fn duplicate_versions(
    client: &kube::Client,
    namespace: &str,
    stores: &str,
    interval: Duration,
) -> Vec<String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), stores);
    let interval = SignedDuration::try_from(interval).expect("an interval");
    let mut found = Vec::new();
    let stores = secrets
        .list(&Default::default())
        .await
        .expect("list secrets");
    for secret in &stores.items {
        let Some(key) = secret.annotations().get(keyward::api::labels::KEY) else {
            continue;
        };
        if secret.name_any() != store::store_name(namespace, key) {
            continue;
        }
        let record = Store::parse(secret.clone(), namespace, key)
            .expect("a whole store")
            .record;
        let mut ids = HashSet::new();
        for version in &record.versions {
            if !ids.insert(version.key_version_id.clone()) {
                found.push(format!("{key}: version {} twice", version.key_version_id));
            }
        }
        for pair in record.versions.windows(2) {
            let (a, b) = (pair[0].creation_date, pair[1].creation_date);
            if b.duration_since(a) < interval {
                found.push(format!(
                    "{key}: versions {} and {} only {} apart",
                    pair[0].key_version_id,
                    pair[1].key_version_id,
                    b.duration_since(a)
                ));
            }
        }
    }
    found
}
