//! Faults on the real control plane: the operator killed with SIGKILL during bulk creation and
//! during rotation bursts, the API server and etcd restarted mid-run, every connection to the
//! API server cut (and refused for a while), and the leader of two replicas killed mid-burst.
//!
//! After each fault the same things must hold, and a failure prints what was compared:
//! * every key converges (Ready);
//! * no version is lost or changed: each store only grows by appending versions, and a digest
//!   of each version's entries (`<versionId>.key`, `.private.pem`, `.public.pem`) is the same
//!   before and after the fault;
//! * nothing is minted twice: the KeyId never changes, version ids are unique, a key that does
//!   not rotate keeps its one initial version, consecutive rotations are at least the interval
//!   apart, each KeyVersion request is answered by exactly one version (`requestedBy`) or
//!   refused with none, and no key has two KeyCreated events;
//! * every consumer Secret serves exactly what its store holds, and the Key's status lists the
//!   store's versions.
//!
//! The restart tests need the control plane's directory (`hack/local-cluster.sh up DIR`) in
//! `KEYWARD_TEST_CLUSTER_DIR`, which hack/test.sh sets for the cluster it starts; the proxy
//! test needs an API server on a loopback address. Against other clusters these tests fail,
//! saying why, unless `KEYWARD_TEST_SKIP_RESTARTS=1`: then they print that they were SKIPPED
//! (on stderr, even when the harness captures output) and return.
//!
//! A restart disturbs every test on the cluster, so restarts run alone: every test here holds
//! a lock, shared by the others, exclusive for the restart tests.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{CONVERGE, TestEnv};
use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use keyward::api::labels;
use keyward::api::{Key, KeyVersion};
use keyward::store::{KeyRecord, RECORD_ENTRY, VersionRecord};
use kube::api::ListParams;
use kube::config::Kubeconfig;
use kube::{Api, ResourceExt};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Restarts run alone; everything else side by side.
static CLUSTER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Intervals of seconds, versions on request a second apart, and no limit in the way.
const FLAGS: &[&str] = &[
    "--min-rotation-interval",
    "1s",
    "--key-version-min-interval",
    "1s",
    "--max-asymmetric-key-versions",
    "1000",
];

/// How long after a fault the operator may take to converge again: generous, because after
/// an API server restart its watches come back only after kube-runtime's backoff (0.8 s
/// doubling to 30 s, with jitter, shared by each controller's watches), measured at 15 to 35 s.
const RECOVER: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// The keys

/// One Key of a test's fleet: its manifest's spec and, if it rotates, its interval in seconds.
#[derive(Clone, Debug)]
struct KeyDef {
    name: String,
    spec: &'static str,
    rotation: Option<i64>,
    symmetric: bool,
}

impl KeyDef {
    fn manifest(&self) -> String {
        format!(
            "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: {}}}\nspec: {}\n",
            self.name, self.spec
        )
    }
}

/// Every key spec and usage, two of three symmetric kinds rotating.
const MIXED: &[(&str, Option<i64>, bool)] = &[
    (
        "{enableAutomaticRotation: true, rotationInterval: 2s}",
        Some(2),
        true,
    ),
    ("{keySpec: RSA_2048}", None, false),
    (
        "{keySpec: Aliyun_SM4, enableAutomaticRotation: true, rotationInterval: 2s}",
        Some(2),
        true,
    ),
    ("{keySpec: EC_P256, keyUsage: SIGN/VERIFY}", None, false),
    ("{}", None, true),
    ("{keySpec: EC_SM2, keyUsage: ENCRYPT/DECRYPT}", None, false),
    (
        "{enableAutomaticRotation: true, rotationInterval: 3s}",
        Some(3),
        true,
    ),
    ("{keySpec: EC_P256K, keyUsage: SIGN/VERIFY}", None, false),
    ("{keySpec: Aliyun_SM4}", None, true),
    ("{keySpec: RSA_2048, keyUsage: SIGN/VERIFY}", None, false),
];

/// Symmetric keys that all rotate every 2 s: created together, they rotate in bursts.
const ROTATING: &[(&str, Option<i64>, bool)] = &[
    (
        "{enableAutomaticRotation: true, rotationInterval: 2s}",
        Some(2),
        true,
    ),
    (
        "{keySpec: Aliyun_SM4, enableAutomaticRotation: true, rotationInterval: 2s}",
        Some(2),
        true,
    ),
];

/// The keys a test works with, by name.
#[derive(Clone, Debug, Default)]
struct Fleet {
    keys: BTreeMap<String, KeyDef>,
}

impl Fleet {
    fn new(prefix: &str, count: usize, mix: &[(&'static str, Option<i64>, bool)]) -> Fleet {
        let mut fleet = Fleet::default();
        for i in 0..count {
            let (spec, rotation, symmetric) = mix[i % mix.len()];
            fleet.add(KeyDef {
                name: format!("{prefix}-{i:02}"),
                spec,
                rotation,
                symmetric,
            });
        }
        fleet
    }

    fn add(&mut self, key: KeyDef) {
        self.keys.insert(key.name.clone(), key);
    }

    fn rotating(&self) -> Vec<&KeyDef> {
        self.keys
            .values()
            .filter(|k| k.rotation.is_some())
            .collect()
    }

    fn asymmetric(&self) -> Vec<&KeyDef> {
        self.keys.values().filter(|k| !k.symmetric).collect()
    }
}

/// A plain AES key applied after a fault: it only becomes Ready if the operator's watches
/// came back, so the time it takes is the recovery time.
fn probe(name: &str) -> KeyDef {
    KeyDef {
        name: name.to_string(),
        spec: "{}",
        rotation: None,
        symmetric: true,
    }
}

/// Applies keys all at once.
async fn apply_all(env: &TestEnv, keys: &[&KeyDef]) {
    let manifests: Vec<String> = keys.iter().map(|k| k.manifest()).collect();
    join_all(manifests.iter().map(|m| env.apply_key(m))).await;
}

/// Applies a key, retrying through transient failures (a client connection that died with
/// the API server).
async fn apply_retrying(env: &TestEnv, key: &KeyDef) {
    let mut manifest: Key = serde_yaml::from_str(&key.manifest()).expect("a Key manifest");
    manifest.metadata.namespace = Some(env.namespace.clone());
    let params = kube::api::PatchParams::apply("keyward-test").force();
    retrying(&format!("apply Key {}", key.name), RECOVER, || {
        let keys = env.keys();
        let (manifest, params) = (manifest.clone(), params.clone());
        async move {
            keys.patch(&key.name, &params, &kube::api::Patch::Apply(&manifest))
                .await
        }
    })
    .await;
}

/// KeyVersion requests, one for each of `keys`, named `<prefix>-<key>`.
async fn request_versions(env: &TestEnv, prefix: &str, keys: &[&KeyDef]) -> Vec<String> {
    let mut names = Vec::new();
    for key in keys {
        let name = format!("{prefix}-{}", key.name);
        env.apply_key_version(&format!(
            "apiVersion: keyward.dev/v1alpha1\nkind: KeyVersion\nmetadata: {{name: {name}}}\nspec: {{keyRef: {{name: {}}}}}\n",
            key.name
        ))
        .await;
        names.push(name);
    }
    names
}

// ---------------------------------------------------------------------------------------------
// What the cluster holds, and the rules it must follow

/// One key's material store as read from the cluster.
#[derive(Clone, Debug)]
struct StoreView {
    key_id: String,
    versions: Vec<VersionRecord>,
    /// A digest of each version's entries, by version id.
    digests: BTreeMap<String, String>,
}

/// Every store of a test's namespace, by key name.
#[derive(Clone, Debug, Default)]
struct Snapshot {
    stores: BTreeMap<String, StoreView>,
}

impl Snapshot {
    fn versions(&self) -> usize {
        self.stores.values().map(|s| s.versions.len()).sum()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A short digest of some bytes, to print instead of them.
fn short_digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes)[..8])
}

fn store_selector() -> String {
    format!(
        "{},{}={}",
        labels::managed_selector(),
        labels::ROLE,
        labels::ROLE_MATERIAL
    )
}

/// The key a keyward Secret belongs to (the annotation holding the Key's full name).
fn key_of(secret: &Secret) -> String {
    secret
        .annotations()
        .get(labels::KEY)
        .cloned()
        .unwrap_or_else(|| secret.name_any())
}

/// Checks one store against the rules; `None` (with problems) when it cannot be read at all.
fn view_store(fleet: &Fleet, store: &Secret, problems: &mut Vec<String>) -> Option<StoreView> {
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
    let suffixes: &[&str] = if def.symmetric {
        &[".key"]
    } else {
        &[".private.pem", ".public.pem"]
    };
    // Version ids unique, every listed version with its entries and nothing else.
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
    // Each request answered at most once (exactly once is checked against the requests).
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
    // Not minted twice: the initial version, then rotations at least the interval apart (or,
    // for a key that does not rotate, only versions that a request asked for).
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
                    second_of(&pair[0].creation_date),
                    second_of(&pair[1].creation_date),
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
    Some(StoreView {
        key_id: record.key_id,
        versions: record.versions,
        digests,
    })
}

fn second_of(date: &str) -> i64 {
    date.parse::<Timestamp>()
        .map(|t| t.as_second())
        .unwrap_or_else(|e| panic!("creation date {date:?}: {e}"))
}

/// Every store of the namespace, checked; panics with every broken rule.
async fn observe(env: &TestEnv, fleet: &Fleet, context: &str) -> Snapshot {
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

async fn list_stores(env: &TestEnv) -> Vec<Secret> {
    let lp = ListParams::default().labels(&store_selector());
    retrying("list the material stores", RECOVER, || {
        let secrets = env.secrets();
        let lp = lp.clone();
        async move { secrets.list(&lp).await }
    })
    .await
    .items
}

/// Nothing that `before` held is lost or changed in `after`: the same KeyId, the same versions
/// first and in the same order, each with the same digest. Returns how many versions were
/// compared.
fn assert_preserved(context: &str, before: &Snapshot, after: &Snapshot) -> usize {
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

/// Waits until every key of the fleet is Ready at its current generation; returns how long
/// that took, or panics naming the keys that are not, with their condition.
async fn wait_all_ready(env: &TestEnv, fleet: &Fleet, within: Duration) -> Duration {
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
    // The Key's status lists the store's versions and KeyId.
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
    problems
}

/// Every key's consumer Secret serves exactly what its store holds, and its status lists the
/// store's versions. Rotations go on meanwhile, so each key is compared until it has matched
/// once (a consumer is written just after its store).
async fn assert_consumers_serve_stores(env: &TestEnv, fleet: &Fleet, context: &str) {
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
            let Some(store) = by_name.get(&format!("{name}.keyward-material")) else {
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
async fn assert_requests_answered_once(env: &TestEnv, fleet: &Fleet) -> (usize, usize) {
    let api: Api<KeyVersion> = Api::namespaced(env.client.clone(), &env.namespace);
    let deadline = Instant::now() + RECOVER;
    let requests = loop {
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
            break requests;
        }
        assert!(
            Instant::now() < deadline,
            "KeyVersion requests did not settle:\n  {}",
            unsettled.join("\n  ")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let snapshot = observe(env, fleet, "answering requests").await;
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

fn request_reason(request: &KeyVersion) -> Option<String> {
    let status = request.status.as_ref()?;
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some(ready.reason.clone())
}

/// No key was created twice: at most one KeyCreated event each.
async fn assert_created_once(env: &TestEnv) {
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

/// Waits until every rotating key has a version dated after `since` (in whole seconds, as
/// versions are dated: rotation resumed after a fault); returns how long that took.
async fn wait_rotated_since(env: &TestEnv, fleet: &Fleet, since: Timestamp) -> Duration {
    let started = Instant::now();
    let deadline = started + RECOVER;
    loop {
        let stores = list_stores(env).await;
        let newest: BTreeMap<String, i64> = stores
            .iter()
            .filter_map(|s| {
                let bytes = s.data.as_ref()?.get(RECORD_ENTRY)?;
                let record: KeyRecord = serde_json::from_slice(&bytes.0).ok()?;
                let at = second_of(&record.newest_version()?.creation_date);
                Some((key_of(s), at))
            })
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
struct Recovery {
    /// Until a Key applied after the fault was Ready: its watches were back.
    probe: Duration,
    /// Until every rotating key had rotated again: its reconciles were back.
    rotated: Duration,
}

/// Measures, from `from` (the fault's end, `since` on the wall clock), how long it takes until
/// the Key `probe` is Ready and until every rotating key of `fleet` has a version dated after
/// `since`; panics naming what has not happened within [`RECOVER`].
async fn measure_recovery(
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
            let newest: BTreeMap<String, String> = list_stores(env)
                .await
                .iter()
                .filter_map(|s| {
                    let bytes = s.data.as_ref()?.get(RECORD_ENTRY)?;
                    let record: KeyRecord = serde_json::from_slice(&bytes.0).ok()?;
                    Some((key_of(s), record.newest_version()?.creation_date.clone()))
                })
                .collect();
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

/// Everything the file proves, once the operator has converged after the faults.
async fn assert_converged(env: &TestEnv, fleet: &Fleet, before: &Snapshot, context: &str) {
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

/// Retries an API call through transient failures for up to `within`.
async fn retrying<T, F, Fut>(what: &str, within: Duration, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let deadline = Instant::now() + within;
    loop {
        match call().await {
            Ok(value) => return value,
            Err(e) if Instant::now() < deadline => {
                eprintln!("{what}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{what}: still failing after {within:?}: {e}"),
        }
    }
}

/// How many stores exist, and how many versions they hold (from metadata only).
async fn progress(env: &TestEnv) -> (usize, usize) {
    let lp = ListParams::default().labels(&store_selector());
    let stores = retrying("list store metadata", RECOVER, || {
        let secrets = env.secrets();
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

/// A deterministic sequence of pauses: the kill points vary, every run is the same.
struct Pauses(u64);

impl Pauses {
    fn next(&mut self, min_ms: u64, max_ms: u64) -> Duration {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Duration::from_millis(min_ms + (self.0 >> 33) % (max_ms - min_ms + 1))
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// ---------------------------------------------------------------------------------------------
// 1. kill -9 during bulk creation and during rotation bursts

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
        let operator = env.start_operator(FLAGS);
        let run = Instant::now();
        if let KillAt::Created(more) = kill_at {
            let target = (stores_before + more).min(fleet.keys.len());
            let deadline = Instant::now() + Duration::from_secs(30);
            while progress(&env).await.0 < target {
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
        let (stores_after, versions) = progress(&env).await;
        eprintln!(
            "trial {trial} ({kill_at:?}): killed after {} ms; stores {stores_before} -> \
             {stores_after} of {}, {versions} versions",
            ms(run.elapsed()),
            fleet.keys.len()
        );
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

// ---------------------------------------------------------------------------------------------
// 2. The API server and etcd restarted mid-run

/// The local control plane's directory, or `None` (having said so) when restarts are to be
/// skipped; panics when they cannot be run and are not to be skipped.
fn cluster_dir(test: &str) -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("KEYWARD_TEST_CLUSTER_DIR").map(PathBuf::from) else {
        return skip_or_fail(
            test,
            "KEYWARD_TEST_CLUSTER_DIR is not set, so the cluster of KEYWARD_TEST_KUBECONFIG is \
             taken to be external and no component of it can be restarted",
        );
    };
    // Never restart another cluster than the one under test.
    let theirs = server_of(&dir.join("kubeconfig"));
    let ours = server_of(&common::kubeconfig_path());
    assert_eq!(
        theirs,
        ours,
        "KEYWARD_TEST_CLUSTER_DIR={} serves {theirs}, but KEYWARD_TEST_KUBECONFIG points at \
         {ours}: refusing to restart a cluster the tests do not use",
        dir.display()
    );
    Some(dir)
}

fn skip_or_fail<T>(test: &str, why: &str) -> Option<T> {
    if std::env::var("KEYWARD_TEST_SKIP_RESTARTS").as_deref() == Ok("1") {
        // Straight to stderr: the test harness captures eprintln! of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (not passed): faults::{test}: {why} (KEYWARD_TEST_SKIP_RESTARTS=1)"
        );
        return None;
    }
    panic!(
        "{test} cannot run: {why}. Run the suite with hack/test.sh (it starts a local control \
         plane and sets KEYWARD_TEST_KUBECONFIG and KEYWARD_TEST_CLUSTER_DIR), set \
         KEYWARD_TEST_CLUSTER_DIR to the DIR of `hack/local-cluster.sh up DIR`, or set \
         KEYWARD_TEST_SKIP_RESTARTS=1 to skip it (reported as SKIPPED, not passed)"
    );
}

/// The API server URL of a kubeconfig's current context.
fn server_of(path: &Path) -> String {
    let config = Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}", path.display()));
    let context = config.current_context.clone().unwrap_or_default();
    let cluster = config
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .unwrap_or_default();
    config
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .unwrap_or_else(|| panic!("{}: no server for context {context:?}", path.display()))
}

/// Runs `hack/local-cluster.sh ACTION DIR COMPONENT [--kill]` off the async workers; returns
/// how long it took, panicking with its output if it failed.
async fn control_plane(dir: &Path, action: &str, component: &str, kill: bool) -> Duration {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/local-cluster.sh");
    let mut command = Command::new(script);
    command.arg(action).arg(dir).arg(component);
    if kill {
        command.arg("--kill");
    }
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || command.stdin(Stdio::null()).output())
        .await
        .expect("join")
        .expect("run hack/local-cluster.sh");
    let took = started.elapsed();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "hack/local-cluster.sh {action} {} {component} failed ({}):\n{said}",
        dir.display(),
        output.status
    );
    eprint!("{said}");
    took
}

/// Starts a stopped component again if the test fails before it does: the other tests need
/// the cluster whole.
struct Stopped<'a> {
    dir: &'a Path,
    component: &'a str,
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/local-cluster.sh");
        let status = Command::new(script)
            .arg("start")
            .arg(self.dir)
            .arg(self.component)
            .stdin(Stdio::null())
            .status();
        eprintln!(
            "started {} again after a failure: {status:?}",
            self.component
        );
    }
}

/// One restart test: keys being created and rotating, requests in flight, then `component`
/// stopped for a few seconds and started again; measures the recovery and checks everything.
async fn restart_mid_run(test: &str, component: &str, kill: bool) {
    let _exclusive = CLUSTER.write().await;
    let Some(dir) = cluster_dir(test) else {
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

// ---------------------------------------------------------------------------------------------
// 3. Dropped connections: the operator talks to the API server through a proxy that cuts them

/// A TCP proxy on loopback that forwards to the API server and can reset every connection
/// through it, or refuse new ones for a while.
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    faults: Arc<tokio::sync::watch::Sender<Faults>>,
    accepted: Arc<AtomicUsize>,
    live: Arc<AtomicUsize>,
    acceptor: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        assert!(
            upstream.ip().is_loopback(),
            "the proxy forwards to loopback only"
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let mut proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            upstream,
            faults: Arc::new(tokio::sync::watch::channel(Faults::default()).0),
            accepted: Arc::default(),
            live: Arc::default(),
            acceptor: None,
        };
        proxy.accept_on(listener);
        proxy
    }

    fn accept_on(&mut self, listener: TcpListener) {
        let (faults, accepted, live, upstream) = (
            self.faults.clone(),
            self.accepted.clone(),
            self.live.clone(),
            self.upstream,
        );
        self.acceptor = Some(tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                // Subscribed before the connection is forwarded: no fault can slip past it.
                let faults = faults.subscribe();
                tokio::spawn(forward(inbound, upstream, faults, live.clone()));
            }
        }));
    }

    /// Resets every connection through the proxy; returns how many there were.
    fn cut_all(&self) -> usize {
        let live = self.live.load(Ordering::SeqCst);
        self.faults.send_modify(|f| f.cut += 1);
        live
    }

    /// Silences every connection through the proxy, as if the peer had vanished without a
    /// reset (a NAT or load balancer that dropped its state): nothing is forwarded on them any
    /// more, and they stay open until the next cut. New connections work. Returns how many
    /// there were.
    fn stall_all(&self) -> usize {
        let live = self.live.load(Ordering::SeqCst);
        self.faults.send_modify(|f| f.stall += 1);
        live
    }

    /// Closes the listening socket (connections are refused), resets every connection, and
    /// listens on the same port again after `for_`.
    async fn refuse(&mut self, for_: Duration) -> usize {
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.abort();
            let _ = acceptor.await;
        }
        let cut = self.cut_all();
        tokio::time::sleep(for_).await;
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket
            .bind(self.addr)
            .unwrap_or_else(|e| panic!("listening on {} again: {e}", self.addr));
        self.accept_on(socket.listen(1024).expect("listen"));
        cut
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.abort();
        }
        self.cut_all();
    }
}

/// Counts a live connection while it lasts.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The faults asked of the proxy so far: each counts up.
#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    cut: u64,
    stall: u64,
}

async fn forward(
    mut inbound: TcpStream,
    upstream: SocketAddr,
    mut faults: tokio::sync::watch::Receiver<Faults>,
    live: Arc<AtomicUsize>,
) {
    live.fetch_add(1, Ordering::SeqCst);
    let _live = Live(live);
    let start = *faults.borrow_and_update();
    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
        let _ = inbound.set_zero_linger();
        return;
    };
    // Forward until either side closes, or a fault: true for a stall, false for a cut.
    let next_fault = async {
        while faults.changed().await.is_ok() {
            let now = *faults.borrow_and_update();
            if now.cut != start.cut {
                return false;
            }
            if now.stall != start.stall {
                return true;
            }
        }
        false
    };
    let stalled = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
        stalled = next_fault => stalled,
    };
    if stalled {
        // Hold both sockets, forwarding nothing, until the next cut.
        while faults.changed().await.is_ok() {
            if faults.borrow_and_update().cut != start.cut {
                break;
            }
        }
    }
    // Closed with RST, not FIN: as a dropped connection looks to both sides.
    let _ = inbound.set_zero_linger();
    let _ = outbound.set_zero_linger();
}

/// The address of a `https://IP:PORT` server URL.
fn socket_addr_of(server: &str) -> SocketAddr {
    let authority = server
        .strip_prefix("https://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    authority
        .parse()
        .unwrap_or_else(|_| panic!("the API server {server:?} is not at https://IP:PORT"))
}

/// An operator process of this file's own, for a kubeconfig other than the harness's (whose
/// `start_operator` always uses KEYWARD_TEST_KUBECONFIG). Killed when dropped; it logs at the
/// harness's level to where the harness keeps the test's operator logs, so that the harness's
/// leak check covers it and its failure dump prints it, like its own operators' logs.
struct OwnOperator {
    child: Child,
    log: PathBuf,
}

impl OwnOperator {
    fn start(env: &TestEnv, kubeconfig: &Path, index: usize, extra: &[&str]) -> OwnOperator {
        let dir = std::env::temp_dir()
            .join("keyward-tests")
            .join(&env.namespace);
        std::fs::create_dir_all(&dir).expect("log dir");
        let log = dir.join(format!("operator-proxied-{index}.log"));
        let file = std::fs::File::create(&log).expect("operator log");
        let child = Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(["run", "--watch-namespace", &env.namespace])
            .args(["--log-level", common::OPERATOR_LOG_LEVEL])
            .args(["--http-addr", "127.0.0.1:0"])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start keyward");
        OwnOperator { child, log }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }
}

impl Drop for OwnOperator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("(the proxied operator's log: {})", self.log.display());
        }
    }
}

/// A copy of the test kubeconfig whose server is the proxy, in a private directory removed
/// when dropped (it holds the token: never in the log directory the harness prints).
struct ProxiedKubeconfig {
    dir: PathBuf,
    path: PathBuf,
}

impl ProxiedKubeconfig {
    fn write(namespace: &str, proxy: SocketAddr) -> ProxiedKubeconfig {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mut config =
            Kubeconfig::read_from(common::kubeconfig_path()).expect("readable kubeconfig");
        for cluster in config
            .clusters
            .iter_mut()
            .filter_map(|c| c.cluster.as_mut())
        {
            cluster.server = Some(format!("https://{proxy}"));
        }
        let dir = std::env::temp_dir().join(format!("keyward-faults-{namespace}"));
        std::fs::create_dir_all(&dir).expect("kubeconfig dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = dir.join("kubeconfig");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .expect("write kubeconfig");
        file.write_all(serde_yaml::to_string(&config).unwrap().as_bytes())
            .expect("write kubeconfig");
        ProxiedKubeconfig { dir, path }
    }
}

impl Drop for ProxiedKubeconfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

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
    let server = server_of(&common::kubeconfig_path());
    let upstream = socket_addr_of(&server);
    if !upstream.ip().is_loopback() {
        // Panics unless skipping was asked for.
        skip_or_fail::<()>(
            "dropped_connections_are_reestablished_and_nothing_is_lost",
            &format!(
                "the API server {server} is not on a loopback address, where the proxy forwards"
            ),
        );
        return;
    }
    let env = TestEnv::new("faults-proxy").await;
    let mut proxy = Proxy::start(upstream).await;
    let kubeconfig = ProxiedKubeconfig::write(&env.namespace, proxy.addr);
    let mut operator = OwnOperator::start(&env, &kubeconfig.path, 0, FLAGS);
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

// ---------------------------------------------------------------------------------------------
// 4. Two replicas with leader election: the leader killed during bursts

const LEASE: Duration = Duration::from_secs(4);

/// As the operator computes it: 2/15 of the lease duration.
fn retry_period() -> Duration {
    LEASE * 2 / 15
}

/// Each operator's identity, from its "waiting for the leader Lease" line, waited for.
async fn identity_of(env: &TestEnv, operator: usize) -> String {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let log = env.operator_log(operator);
        let identity = log
            .lines()
            .find(|l| l.contains("waiting for the leader Lease"))
            .and_then(|line| line.split("identity=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
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
type Candidates = BTreeMap<String, usize>;

async fn candidates(env: &TestEnv, operators: &[usize]) -> Candidates {
    let mut by_identity = Candidates::new();
    for &operator in operators {
        by_identity.insert(identity_of(env, operator).await, operator);
    }
    by_identity
}

/// Waits until one of `candidates` holds the Lease; returns it and when it acquired it.
async fn wait_leader(
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
/// nobody leads; checks that the takeover came within the lease duration plus one retry
/// period, and that the new leader wrote nothing before it led.
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
    // The Lease expires at most its duration after the kill (the last renewal came before
    // it); the standby looks once per retry period, and each look is a GET and a write.
    let bound = LEASE + retry_period() + Duration::from_millis(500);
    assert!(
        took <= bound,
        "{context}: operator {next} took the Lease {} ms after the leader was killed; at most \
         the lease duration ({} ms) plus one retry period ({} ms) plus 500 ms for the requests",
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

/// A connection that goes silent without being closed (the peer vanished, or a NAT or load
/// balancer in between dropped its state: no RST, no FIN) must not stall the operator: within
/// 30 s every rotating key rotates again and a new Key becomes Ready, over new connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_do_not_stall_rotation_or_new_keys() {
    let _shared = CLUSTER.read().await;
    let server = server_of(&common::kubeconfig_path());
    let upstream = socket_addr_of(&server);
    if !upstream.ip().is_loopback() {
        skip_or_fail::<()>(
            "half_open_connections_do_not_stall_rotation_or_new_keys",
            &format!(
                "the API server {server} is not on a loopback address, where the proxy forwards"
            ),
        );
        return;
    }
    let env = TestEnv::new("faults-half-open").await;
    let proxy = Proxy::start(upstream).await;
    let kubeconfig = ProxiedKubeconfig::write(&env.namespace, proxy.addr);
    let mut operator = OwnOperator::start(&env, &kubeconfig.path, 0, FLAGS);
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
    let (probe_ready, newest) = loop {
        let probe_ready = env
            .keys()
            .get_opt(&probe_key.name)
            .await
            .ok()
            .flatten()
            .and_then(|k| common::ready_reason(&k))
            .as_deref()
            == Some("KeyReady");
        let mut newest = BTreeMap::new();
        for store in list_stores(&env).await {
            let record: Option<KeyRecord> = store
                .data
                .as_ref()
                .and_then(|d| d.get(RECORD_ENTRY))
                .and_then(|r| serde_json::from_slice(&r.0).ok());
            if let Some(version) = record.as_ref().and_then(|r| r.newest_version()) {
                newest.insert(key_of(&store), version.creation_date.clone());
            }
        }
        let rotated = fleet.rotating().iter().all(|k| {
            newest
                .get(&k.name)
                .is_some_and(|d| second_of(d) > since.as_second())
        });
        if (probe_ready && rotated) || at.elapsed() > window {
            break (probe_ready, newest);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let late: Vec<String> = fleet
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
        .collect();
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
