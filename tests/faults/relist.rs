//! A Key deleted while the operator's Key watch is away, and nothing from before the deletion
//! left to replay: etcd compacted, the API server's watch cache of Keys started afresh. The
//! watch comes back with 410 Gone and lists the Keys anew, and the Key is simply not in the
//! list: no deletion event is ever sent for it, yet its deletion must be scheduled like any
//! other (the store controller looks at every store after such a list).
//!
//! Only the Key watch may have to list anew here. Were the store watch to list anew too, the
//! store controller would look at every store again anyway (a shared cache hands every object
//! it holds to its subscribers after each list), and could schedule the deletion whatever the
//! Key watch did, depending on which of the two lists came first. So the fault is one that only
//! Keys see: their CRD changed, as an upgrade changes it, which makes the API server build their
//! storage and watch cache anew. Restarting the API server instead ends every watch and makes
//! both list anew.

use std::time::{Duration, Instant};

use futures::StreamExt;
use keyward::api::{Key, labels};
use keyward::store::DeletionCause;
use kube::api::{DeleteParams, WatchParams};
use kube::core::WatchEvent;
use kube::{Api, ResourceExt};

use crate::common::cluster::{change_crd, install_crds};
use crate::common::{CONVERGE, TestEnv, entry_names, key_manifest, record_of};
use crate::control_plane::{cluster_dir, compact_etcd};
use crate::{CLUSTER, ms};

/// What the operator logs when its Key watch cannot resume where it was.
const KEY_WATCH_FAILED: &str = "watching Keys failed; retrying";
/// ... and when its store watch cannot.
const STORE_WATCH_FAILED: &str = "watching material stores failed; retrying";
/// The API server's reason: the watch's resourceVersion is older than anything it can replay.
const TOO_OLD: &str = "too old resource version";

#[tokio::test]
async fn a_key_deleted_while_the_key_watch_is_away_and_cannot_resume_is_scheduled_for_deletion() {
    // Exclusive: changing the Key CRD ends every Key watch on the cluster.
    let _exclusive = CLUSTER.write().await;
    let Some(dir) = cluster_dir(concat!(
        module_path!(),
        "::a_key_deleted_while_the_key_watch_is_away_and_cannot_resume_is_scheduled_for_deletion"
    )) else {
        return;
    };
    let mut env = TestEnv::new("faults-relist").await;
    let operator = env.start_operator(&[]);
    env.apply_key(&key_manifest("gone", "{}")).await;
    let before = env.wait_ready("gone").await.resource_version().unwrap();
    let serving = env.secret("gone").await.expect("the consumer Secret");
    assert_ne!(
        entry_names(&serving),
        ["keyId"],
        "Ready, yet no material served"
    );

    // Frozen, the operator reads nothing; its Key watch is ended before the Key is deleted (an
    // open one would carry the deletion event, queued in the frozen process's socket, to it
    // later). A watch of the test's own ends with it, and tells when.
    let keys = env.keys();
    let witness = keys
        .watch(&WatchParams::default().timeout(290), &before)
        .await
        .expect("watch Keys");
    let started = Instant::now();
    env.signal_operator(operator, "STOP");
    change_crd(&env.client, "keys.keyward.dev").await;
    wait_ended(witness.boxed()).await;
    keys.delete("gone", &DeleteParams::default())
        .await
        .expect("delete Key");
    let deadline = Instant::now() + Duration::from_secs(10);
    while keys.get_opt("gone").await.expect("get Key").is_some() {
        assert!(Instant::now() < deadline, "the Key's deletion was held");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing from before the deletion can be replayed: not by etcd (compacted), nor by the
    // watch cache of Keys (built anew again as the CRD is put back).
    let revision = compact_etcd(&dir).await;
    install_crds(&env.client).await;
    let refused = refused_from(&keys, &before).await;
    let seen = env.operator_log(operator).len();
    env.signal_operator(operator, "CONT");
    let resumed = Instant::now();
    eprintln!(
        "while the operator was frozen ({} ms): the Key watches ended, the Key deleted, etcd \
         compacted at revision {revision}; a watch from before is refused: {refused}",
        ms(started.elapsed())
    );

    let (date, entries) = wait_deletion_scheduled(&env, "gone").await;
    eprintln!(
        "{} ms after the operator resumed: deletion scheduled for {date}, the consumer Secret \
         holds {entries:?}",
        ms(resumed.elapsed())
    );

    // It was through a list of the Keys, not an event: the Key watch could not resume; and
    // the store watch did resume, so that only the Key watch's list can have told.
    let log = env.operator_log(operator);
    let since = &log[seen..];
    let relisted = since
        .lines()
        .find(|l| l.contains(KEY_WATCH_FAILED) && l.contains(TOO_OLD));
    assert!(
        relisted.is_some(),
        "the Key watch resumed without listing the Keys anew: no {KEY_WATCH_FAILED:?} with \
         {TOO_OLD:?} in the operator's log since it resumed"
    );
    eprintln!(
        "the Key watch listed anew: {}",
        relisted.unwrap_or_default()
    );
    let stores_relisted = since
        .lines()
        .find(|l| l.contains(STORE_WATCH_FAILED) && l.contains(TOO_OLD));
    assert_eq!(
        stores_relisted, None,
        "the store watch listed the stores anew too, which looks at every store again: this \
         run cannot tell whether the Key watch's list did"
    );
    assert!(env.operator_running(operator), "the operator exited");
}

/// Waits until `watch` ends: the API server ended it.
async fn wait_ended<S: futures::Stream + Unpin>(mut watch: S) {
    let within = Duration::from_secs(60);
    let drained = async { while watch.next().await.is_some() {} };
    tokio::time::timeout(within, drained)
        .await
        .unwrap_or_else(|_| {
            panic!("the API server kept a watch of Keys open {within:?} after their CRD changed")
        });
}

/// Waits until a watch of Keys from `resource_version` is refused with 410 Gone; returns the
/// API server's message.
async fn refused_from(keys: &Api<Key>, resource_version: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = match keys
            .watch(&WatchParams::default().timeout(1), resource_version)
            .await
        {
            Ok(watch) => watch
                .boxed()
                .next()
                .await
                .map(|event| event.map_err(|e| e.to_string())),
            Err(e) => Some(Err(e.to_string())),
        };
        let told = match &answer {
            Some(Ok(WatchEvent::Error(status))) if status.code == 410 => {
                return status.message.clone();
            }
            Some(Ok(WatchEvent::Error(status))) => format!("error {status:?}"),
            Some(Ok(WatchEvent::Deleted(key))) => format!("the deletion of {}", key.name_any()),
            Some(Ok(_)) => "an event".to_string(),
            Some(Err(e)) => e.clone(),
            None => "nothing".to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "a watch of Keys from resourceVersion {resource_version}, from before the deletion, \
             is still served ({told}), not refused as too old"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the store of Key `name` records a deletion scheduled because the Key was
/// deleted (with its date in the annotation) and its consumer Secret serves only `keyId`,
/// marked PendingDeletion; returns the delete date and the consumer's entries. Panics with
/// what was last seen if that does not happen within [`CONVERGE`].
async fn wait_deletion_scheduled(env: &TestEnv, name: &str) -> (String, Vec<String>) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let store = env.store(name).await.expect("the store outlived the Key");
        let deletion = record_of(&store).deletion;
        let date = store.annotations().get(labels::DELETE_DATE).cloned();
        let consumer = env.secret(name).await.expect("the consumer Secret");
        let entries = entry_names(&consumer);
        let state = consumer.annotations().get(labels::KEY_STATE).cloned();
        if deletion.as_ref().map(|d| d.cause) == Some(DeletionCause::KeyDeleted)
            && let Some(date) = &date
            && entries == ["keyId"]
            && state.as_deref() == Some("PendingDeletion")
        {
            return (date.clone(), entries);
        }
        assert!(
            Instant::now() < deadline,
            "the deleted Key {name}'s deletion was not scheduled within {CONVERGE:?}: the store \
             records {deletion:?} (annotation {date:?}); the consumer Secret holds {entries:?}, \
             state {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
