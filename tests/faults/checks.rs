//! What must hold once the operator has converged after the faults, besides what
//! [`snapshot`](crate::snapshot) checks in each store: every key Ready with a store, nothing
//! lost or changed, every consumer Secret serving exactly what its store holds, every
//! KeyVersion request answered once (or refused with no version), every key created once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use keyward::api::labels;
use keyward::api::{Key, KeyVersion};
use keyward::store::{KeyRecord, RECORD_ENTRY, VersionRecord};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::common::TestEnv;
use crate::fleet::{Fleet, KeyDef};
use crate::recovery::wait_all_ready;
use crate::snapshot::{Snapshot, assert_preserved, observe, short_digest};
use crate::{RECOVER, retrying};

/// Everything the fault tests prove, once the operator has converged after the faults.
pub async fn assert_converged(env: &TestEnv, fleet: &Fleet, before: &Snapshot, context: &str) {
    wait_all_ready(env, fleet, RECOVER).await;
    let after = observe(env, fleet, context).await;
    let missing: Vec<&String> = fleet
        .keys
        .keys()
        .filter(|k| !after.stores.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "{context}: keys without a store: {missing:?}"
    );
    let compared = assert_preserved(context, before, &after);
    assert_consumers_serve_stores(env, fleet, context).await;
    let (created, refused) = assert_requests_answered_once(env, fleet).await;
    assert_created_once(env).await;
    eprintln!(
        "{context}: {} keys Ready, {} versions held, {compared} versions compared unchanged, \
         {created} requests answered once, {refused} refused",
        fleet.keys.len(),
        after.versions()
    );
}

/// What is wrong with a consumer Secret (and the Key's status) given its store; empty when it
/// serves exactly what the store holds.
fn consumer_problems(
    def: &KeyDef,
    store: &Secret,
    consumer: Option<&Secret>,
    key: Option<&Key>,
) -> Vec<String> {
    let name = &def.name;
    let Some(consumer) = consumer else {
        return vec![format!("{name}: no consumer Secret")];
    };
    let store_data = store.data.clone().unwrap_or_default();
    let data = consumer.data.clone().unwrap_or_default();
    let record: KeyRecord = match store_data
        .get(RECORD_ENTRY)
        .map(|r| serde_json::from_slice(&r.0))
    {
        Some(Ok(record)) => record,
        _ => return vec![format!("{name}: the store's record does not parse")],
    };
    let Some(newest) = record.newest_version() else {
        return vec![format!("{name}: the store has no version")];
    };
    let mut problems = Vec::new();
    if consumer.type_.as_deref() != Some(labels::CONSUMER_SECRET_TYPE) {
        problems.push(format!("{name}: consumer type {:?}", consumer.type_));
    }
    let text = |entry: &str| {
        data.get(entry)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    if text("keyId").as_deref() != Some(record.key_id.as_str()) {
        problems.push(format!(
            "{name}: consumer keyId {:?}, store {}",
            text("keyId"),
            record.key_id
        ));
    }
    if text("keyVersionId").as_deref() != Some(newest.key_version_id.as_str()) {
        problems.push(format!(
            "{name}: consumer serves version {:?}, the store's newest is {}",
            text("keyVersionId"),
            newest.key_version_id
        ));
    }
    entry_problems(def, newest, &store_data, &data, &mut problems);
    status_problems(name, &record, key, &mut problems);
    problems
}

/// Every version entry of the store served byte for byte, the default entries the newest
/// version's, and nothing the store does not hold.
fn entry_problems(
    def: &KeyDef,
    newest: &VersionRecord,
    store_data: &BTreeMap<String, ByteString>,
    data: &BTreeMap<String, ByteString>,
    problems: &mut Vec<String>,
) {
    let name = &def.name;
    // Every version entry of the store, byte for byte.
    for (entry, bytes) in store_data
        .iter()
        .filter(|(e, _)| e.as_str() != RECORD_ENTRY)
    {
        match data.get(entry) {
            Some(served) if served.0 == bytes.0 => {}
            served => problems.push(format!(
                "{name}: entry {entry}: store sha256 {}, consumer {:?}",
                short_digest(&bytes.0),
                served.map(|s| short_digest(&s.0))
            )),
        }
    }
    // The default entries are the newest version's.
    let defaults: &[(&str, &str)] = if def.symmetric {
        &[("key", ".key")]
    } else {
        &[
            ("private.pem", ".private.pem"),
            ("public.pem", ".public.pem"),
        ]
    };
    for (entry, suffix) in defaults {
        let source = format!("{}{suffix}", newest.key_version_id);
        let (served, held) = (data.get(*entry), store_data.get(&source));
        if served.is_none() || served.map(|s| &s.0) != held.map(|h| &h.0) {
            problems.push(format!(
                "{name}: entry {entry}: consumer {:?}, store's {source} {:?}",
                served.map(|s| short_digest(&s.0)),
                held.map(|h| short_digest(&h.0))
            ));
        }
    }
    // Nothing the store does not hold.
    for entry in data.keys() {
        let known = store_data.contains_key(entry) && entry != RECORD_ENTRY
            || defaults.iter().any(|(d, _)| d == entry)
            || entry == "keyId"
            || entry == "keyVersionId";
        if !known {
            problems.push(format!(
                "{name}: consumer entry {entry} is not in the store"
            ));
        }
    }
}

/// The Key's status lists the store's versions and KeyId.
fn status_problems(name: &str, record: &KeyRecord, key: Option<&Key>, problems: &mut Vec<String>) {
    match key.and_then(|k| k.status.as_ref()) {
        None => problems.push(format!("{name}: the Key has no status")),
        Some(status) => {
            let key_id = status.key_metadata.as_ref().map(|m| m.key_id.as_str());
            if key_id != Some(record.key_id.as_str()) {
                problems.push(format!(
                    "{name}: status KeyId {key_id:?}, store {}",
                    record.key_id
                ));
            }
            let listed: Vec<&str> = status
                .key_versions
                .iter()
                .map(|v| v.key_version_id.as_str())
                .collect();
            let held: Vec<&str> = record
                .versions
                .iter()
                .map(|v| v.key_version_id.as_str())
                .collect();
            if listed != held {
                problems.push(format!(
                    "{name}: status lists versions {listed:?}, the store {held:?}"
                ));
            }
        }
    }
}

/// Every key's consumer Secret serves exactly what its store holds, and its status lists the
/// store's versions. Rotations go on meanwhile, so each key is compared until it has matched
/// once (a consumer is written just after its store).
pub async fn assert_consumers_serve_stores(env: &TestEnv, fleet: &Fleet, context: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pending: BTreeSet<String> = fleet.keys.keys().cloned().collect();
    let lp = ListParams::default().labels(&labels::managed_selector());
    loop {
        let secrets = retrying("list keyward's Secrets", RECOVER, || {
            let secrets = env.secrets();
            let lp = lp.clone();
            async move { secrets.list(&lp).await }
        })
        .await
        .items;
        let stores = retrying("list the stores", RECOVER, || {
            let stores = env.stores();
            let lp = lp.clone();
            async move { stores.list(&lp).await }
        })
        .await
        .items;
        let stores: BTreeMap<String, &Secret> = stores.iter().map(|s| (s.name_any(), s)).collect();
        let keys = retrying("list Keys", RECOVER, || {
            let keys = env.keys();
            async move { keys.list(&ListParams::default()).await }
        })
        .await
        .items;
        let by_name: BTreeMap<String, &Secret> =
            secrets.iter().map(|s| (s.name_any(), s)).collect();
        let mut problems = Vec::new();
        pending.retain(|name| {
            let def = &fleet.keys[name];
            let Some(store) = stores.get(&env.store_name(name)) else {
                problems.push(format!("{name}: no store"));
                return true;
            };
            let key = keys.iter().find(|k| k.name_any() == *name);
            let found = consumer_problems(def, store, by_name.get(name).copied(), key);
            let failed = !found.is_empty();
            problems.extend(found);
            failed
        });
        if pending.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{context}: {} consumer Secrets never served what their stores hold (compared \
             every entry's sha256, the default entries with the newest version's, keyId, \
             keyVersionId, and the status's version list):\n  {}",
            pending.len(),
            problems.join("\n  ")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every KeyVersion request settles, and is answered by exactly one version (the one its
/// status reports) if Created, by none if refused; no version answers a request that does
/// not exist. Returns (created, refused).
pub async fn assert_requests_answered_once(env: &TestEnv, fleet: &Fleet) -> (usize, usize) {
    let requests = settled_requests(env).await;
    let snapshot = observe(env, fleet, "answering requests").await;
    let mut answers = answers_by_request(&snapshot);
    let mut problems = Vec::new();
    let (mut created, mut refused) = (0, 0);
    for request in &requests {
        let uid = request.metadata.uid.clone().unwrap_or_default();
        let name = request.name_any();
        let answered = answers.remove(&uid).unwrap_or_default();
        match request.status.as_ref().and_then(|s| s.key_version.as_ref()) {
            Some(response) => {
                created += 1;
                let expected = vec![(
                    request.spec.key_ref.name.clone(),
                    response.key_version_id.clone(),
                )];
                if answered != expected {
                    problems.push(format!(
                        "{name} reports {expected:?}; the stores answer it with {answered:?}"
                    ));
                }
            }
            None => {
                refused += 1;
                if !answered.is_empty() {
                    problems.push(format!(
                        "{name} was refused ({:?}) but got versions {answered:?}",
                        request_reason(request)
                    ));
                }
            }
        }
    }
    for (uid, versions) in answers {
        problems.push(format!(
            "versions {versions:?} answer request {uid}, which does not exist"
        ));
    }
    assert!(
        problems.is_empty(),
        "{} KeyVersion requests: each must be answered by exactly one version:\n  {}",
        requests.len(),
        problems.join("\n  ")
    );
    (created, refused)
}

/// Every KeyVersion request of the namespace, once each is Created or refused.
async fn settled_requests(env: &TestEnv) -> Vec<KeyVersion> {
    let api: Api<KeyVersion> = Api::namespaced(env.client.clone(), &env.namespace);
    let deadline = Instant::now() + RECOVER;
    loop {
        let requests = retrying("list KeyVersions", RECOVER, || {
            let api = api.clone();
            async move { api.list(&ListParams::default()).await }
        })
        .await
        .items;
        let unsettled: Vec<String> = requests
            .iter()
            .filter(|r| {
                !matches!(request_reason(r).as_deref(), Some(reason)
                    if reason == "Created" || reason.starts_with("Rejected"))
            })
            .map(|r| format!("{}: {:?}", r.name_any(), request_reason(r)))
            .collect();
        if unsettled.is_empty() {
            return requests;
        }
        assert!(
            Instant::now() < deadline,
            "KeyVersion requests did not settle:\n  {}",
            unsettled.join("\n  ")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The versions that answer each request, by request uid, as (key, version id).
fn answers_by_request(snapshot: &Snapshot) -> BTreeMap<String, Vec<(String, String)>> {
    let mut answers: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (key, store) in &snapshot.stores {
        for version in &store.versions {
            if let Some(uid) = &version.requested_by {
                answers
                    .entry(uid.clone())
                    .or_default()
                    .push((key.clone(), version.key_version_id.clone()));
            }
        }
    }
    answers
}

fn request_reason(request: &KeyVersion) -> Option<String> {
    let status = request.status.as_ref()?;
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some(ready.reason.clone())
}

/// No key was created twice: at most one KeyCreated event each.
pub async fn assert_created_once(env: &TestEnv) {
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.namespace);
    let list = retrying("list events", RECOVER, || {
        let events = events.clone();
        async move { events.list(&ListParams::default()).await }
    })
    .await;
    let mut created: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for event in list.items {
        if event.reason.as_deref() == Some("KeyCreated") {
            let on = event
                .regarding
                .as_ref()
                .and_then(|r| r.name.clone())
                .unwrap_or_default();
            created
                .entry(on)
                .or_default()
                .push(event.note.unwrap_or_default());
        }
    }
    let twice: Vec<String> = created
        .iter()
        .filter(|(_, notes)| notes.len() > 1)
        .map(|(key, notes)| format!("{key}: {notes:?}"))
        .collect();
    assert!(
        twice.is_empty(),
        "keys created more than once:\n  {}",
        twice.join("\n  ")
    );
}
