//! What the cluster holds: every material store of a test's namespace read into a
//! [`Snapshot`], each store checked against the rules on the way (version ids unique, entries
//! complete, no request answered twice, nothing minted twice), and snapshots compared before
//! and after a fault (nothing lost or changed).

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use keyward::api::labels;
use keyward::store::{KeyRecord, RECORD_ENTRY, VersionRecord};
use kube::ResourceExt;
use kube::api::ListParams;
use sha2::{Digest, Sha256};

use crate::common::TestEnv;
use crate::fleet::{Fleet, KeyDef};
use crate::{RECOVER, retrying};

/// One key's material store as read from the cluster.
#[derive(Clone, Debug)]
pub struct StoreView {
    pub key_id: String,
    pub versions: Vec<VersionRecord>,
    /// A digest of each version's entries, by version id.
    pub digests: BTreeMap<String, String>,
}

/// Every store of a test's namespace, by key name.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub stores: BTreeMap<String, StoreView>,
}

impl Snapshot {
    pub fn versions(&self) -> usize {
        self.stores.values().map(|s| s.versions.len()).sum()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A short digest of some bytes, to print instead of them.
pub fn short_digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes)[..8])
}

pub fn store_selector() -> String {
    format!(
        "{},{}={}",
        labels::managed_selector(),
        labels::ROLE,
        labels::ROLE_MATERIAL
    )
}

/// The key a keyward Secret belongs to (the annotation holding the Key's full name).
pub fn key_of(secret: &Secret) -> String {
    secret
        .annotations()
        .get(labels::KEY)
        .cloned()
        .unwrap_or_else(|| secret.name_any())
}

/// Checks one store against the rules; `None` (with problems) when it cannot be read at all.
pub fn view_store(fleet: &Fleet, store: &Secret, problems: &mut Vec<String>) -> Option<StoreView> {
    let key = key_of(store);
    let Some(def) = fleet.keys.get(&key) else {
        problems.push(format!(
            "store {} belongs to no key of the test",
            store.name_any()
        ));
        return None;
    };
    let data = store.data.clone().unwrap_or_default();
    let Some(record) = data.get(RECORD_ENTRY) else {
        problems.push(format!("{key}: the store has no {RECORD_ENTRY}"));
        return None;
    };
    let record: KeyRecord = match serde_json::from_slice(&record.0) {
        Ok(record) => record,
        Err(e) => {
            problems.push(format!("{key}: {RECORD_ENTRY} does not parse: {e}"));
            return None;
        }
    };
    if record.key_spec.is_symmetric() != def.symmetric {
        problems.push(format!(
            "{key}: the store's key spec {} is not the one applied ({})",
            record.key_spec, def.spec
        ));
    }
    let digests = check_entries(&key, def, &record, &data, problems);
    check_answered_at_most_once(&key, &record, problems);
    check_minted_once(&key, def, &record, problems);
    Some(StoreView {
        key_id: record.key_id,
        versions: record.versions,
        digests,
    })
}

/// Version ids unique, every listed version with its entries and nothing else; returns a
/// digest of each version's entries, by version id.
fn check_entries(
    key: &str,
    def: &KeyDef,
    record: &KeyRecord,
    data: &BTreeMap<String, ByteString>,
    problems: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let suffixes: &[&str] = if def.symmetric {
        &[".key"]
    } else {
        &[".private.pem", ".public.pem"]
    };
    let mut ids = BTreeSet::new();
    let mut digests = BTreeMap::new();
    for version in &record.versions {
        let id = &version.key_version_id;
        if !ids.insert(id.clone()) {
            problems.push(format!("{key}: version {id} is listed twice"));
        }
        let mut hasher = Sha256::new();
        for suffix in suffixes {
            let entry = format!("{id}{suffix}");
            match data.get(&entry) {
                Some(bytes) => {
                    hasher.update(entry.as_bytes());
                    hasher.update((bytes.0.len() as u64).to_be_bytes());
                    hasher.update(&bytes.0);
                }
                None => problems.push(format!("{key}: version {id} has no entry {entry}")),
            }
        }
        digests.insert(id.clone(), hex(&hasher.finalize()));
    }
    for entry in data.keys().filter(|e| e.as_str() != RECORD_ENTRY) {
        let listed = suffixes.iter().any(|suffix| {
            entry
                .strip_suffix(suffix)
                .is_some_and(|id| ids.contains(id))
        });
        if !listed {
            problems.push(format!(
                "{key}: entry {entry} belongs to no listed version (versions: {ids:?})"
            ));
        }
    }
    digests
}

/// Each request answered at most once (exactly once is checked against the requests).
fn check_answered_at_most_once(key: &str, record: &KeyRecord, problems: &mut Vec<String>) {
    let mut answered = BTreeSet::new();
    for version in &record.versions {
        if let Some(uid) = &version.requested_by
            && !answered.insert(uid.clone())
        {
            problems.push(format!(
                "{key}: request {uid} was answered twice, the second time by {}",
                version.key_version_id
            ));
        }
    }
}

/// Not minted twice: the initial version, then rotations at least the interval apart (or, for
/// a key that does not rotate, only versions that a request asked for).
fn check_minted_once(key: &str, def: &KeyDef, record: &KeyRecord, problems: &mut Vec<String>) {
    match record.versions.first() {
        Some(first) if first.requested_by.is_some() => problems.push(format!(
            "{key}: the initial version {} answers a request",
            first.key_version_id
        )),
        Some(_) => {}
        None => problems.push(format!("{key}: the store lists no version")),
    }
    let unrequested: Vec<&VersionRecord> = record
        .versions
        .iter()
        .filter(|v| v.requested_by.is_none())
        .collect();
    match def.rotation {
        Some(interval) => {
            for pair in unrequested.windows(2) {
                let (a, b) = (
                    pair[0].creation_date.as_second(),
                    pair[1].creation_date.as_second(),
                );
                if b - a < interval {
                    problems.push(format!(
                        "{key}: versions {} ({}) and {} ({}) are {}s apart, less than the {interval}s \
                         interval: a rotation came early or was minted twice",
                        pair[0].key_version_id,
                        pair[0].creation_date,
                        pair[1].key_version_id,
                        pair[1].creation_date,
                        b - a
                    ));
                }
            }
        }
        None if unrequested.len() > 1 => problems.push(format!(
            "{key} does not rotate but holds {} versions no request asked for: {:?}",
            unrequested.len(),
            unrequested
                .iter()
                .map(|v| (&v.key_version_id, &v.creation_date))
                .collect::<Vec<_>>()
        )),
        None => {}
    }
}

pub fn second_of(date: &str) -> i64 {
    date.parse::<Timestamp>()
        .map(|t| t.as_second())
        .unwrap_or_else(|e| panic!("creation date {date:?}: {e}"))
}

/// Every store of the namespace, checked; panics with every broken rule.
pub async fn observe(env: &TestEnv, fleet: &Fleet, context: &str) -> Snapshot {
    let stores = list_stores(env).await;
    let mut problems = Vec::new();
    let mut snapshot = Snapshot::default();
    for store in &stores {
        if let Some(view) = view_store(fleet, store, &mut problems) {
            snapshot.stores.insert(key_of(store), view);
        }
    }
    assert!(
        problems.is_empty(),
        "{context}: the stores break the rules:\n  {}",
        problems.join("\n  ")
    );
    snapshot
}

pub async fn list_stores(env: &TestEnv) -> Vec<Secret> {
    let lp = ListParams::default().labels(&store_selector());
    retrying("list the material stores", RECOVER, || {
        let secrets = env.stores();
        let lp = lp.clone();
        async move { secrets.list(&lp).await }
    })
    .await
    .items
}

/// The creation date of each store's newest version, by key (of the stores whose record
/// reads).
pub async fn newest_versions(env: &TestEnv) -> BTreeMap<String, String> {
    list_stores(env)
        .await
        .iter()
        .filter_map(|s| {
            let bytes = s.data.as_ref()?.get(RECORD_ENTRY)?;
            let record: KeyRecord = serde_json::from_slice(&bytes.0).ok()?;
            Some((
                key_of(s),
                record.newest_version()?.creation_date.to_string(),
            ))
        })
        .collect()
}

/// Nothing that `before` held is lost or changed in `after`: the same KeyId, the same versions
/// first and in the same order, each with the same digest. Returns how many versions were
/// compared.
pub fn assert_preserved(context: &str, before: &Snapshot, after: &Snapshot) -> usize {
    let mut problems = Vec::new();
    let mut compared = 0;
    for (key, old) in &before.stores {
        let Some(new) = after.stores.get(key) else {
            problems.push(format!(
                "{key}: the store is gone (it held {} versions)",
                old.versions.len()
            ));
            continue;
        };
        if new.key_id != old.key_id {
            problems.push(format!(
                "{key}: KeyId was {}, is {}",
                old.key_id, new.key_id
            ));
        }
        for (i, version) in old.versions.iter().enumerate() {
            compared += 1;
            let id = &version.key_version_id;
            match new.versions.get(i) {
                Some(now) if now == version => {}
                now => problems.push(format!("{key}: version #{i} was {version:?}, is {now:?}")),
            }
            let (was, is) = (old.digests.get(id), new.digests.get(id));
            if was != is {
                problems.push(format!(
                    "{key}: version {id}'s material digest was {was:?}, is {is:?}"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{context}: {} of {compared} versions (of {} keys) compared before and after differ:\n  {}",
        problems.len(),
        before.stores.len(),
        problems.join("\n  ")
    );
    compared
}

/// How many stores exist, and how many versions they hold (from metadata only).
pub async fn progress(env: &TestEnv) -> (usize, usize) {
    let lp = ListParams::default().labels(&store_selector());
    let stores = retrying("list store metadata", RECOVER, || {
        let secrets = env.stores();
        let lp = lp.clone();
        async move { secrets.list_metadata(&lp).await }
    })
    .await
    .items;
    let versions = stores
        .iter()
        .filter_map(|s| s.annotations().get(labels::VERSIONS)?.parse::<usize>().ok())
        .sum();
    (stores.len(), versions)
}
