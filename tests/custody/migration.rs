//! The move of an installation of the former layout (stores in the Keys' own namespace) to the
//! store namespace, with the operator killed (`kill -9`) while the move is under way: at every
//! kill each key is whole in at least one place, each start resumes where the last stopped,
//! and in the end every store is in the store namespace, once, byte for byte, and every Key is
//! the key its former store recorded, served with the same bytes: nothing minted, lost or
//! duplicated.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use keyward::api::labels;
use keyward::kms::schedule::format_kms_time;
use keyward::store::{DeletionCause, RECORD_ENTRY};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::common::operator::logged_field;
use crate::common::{TestEnv, eventually, record_of};
use crate::former::{self, FormerKey, former_store_name};
use crate::{key_id, status_versions};

/// Stores of the former layout: enough that a move takes hundreds of API calls.
const STORES: usize = 150;

/// The operator is killed once it has copied this many stores (beyond those a previous start
/// left copied): early, midway and late in the move. Each kill must land before the move ends.
const KILL_AFTER_COPIES: [usize; 3] = [10, 60, 110];

/// Keys whose move a previous start left half done (the copy created, the original not yet
/// deleted): one with a Key object, one without.
const INTERRUPTED: [&str; 2] = ["key-005", "key-007"];

#[tokio::test]
async fn migration_survives_kill_nine_midway() {
    let mut env = TestEnv::new("migration-kill").await;
    let former = former::build(&env, STORES).await;
    former::install(&env, &former).await;
    let interrupted: Vec<Secret> = INTERRUPTED
        .iter()
        .map(|name| former::interrupted_copy(&env, &former[*name]))
        .collect();
    former::create_all(&env, &env.store_namespace, interrupted.iter().collect()).await;

    // Each start finds the originals the last one left, and is killed midway through them.
    let mut originals = STORES;
    for (trial, copies) in KILL_AFTER_COPIES.into_iter().enumerate() {
        let operator = env.start_operator(&[]);
        let at = INTERRUPTED.len() + copies;
        wait_for_copies(&mut env, operator, at).await;
        env.kill_operator(operator);
        let layout = Layout::read(&env).await;
        layout.assert_every_key_whole(&env, &former, &[]);
        assert!(
            !layout.originals.is_empty(),
            "trial {trial}: the move had ended when the operator was killed after {at} copies: \
             no kill landed midway; raise STORES"
        );
        assert_resumed(&env.operator_log(operator), originals, trial);
        eprintln!(
            "trial {trial}: killed with {} of {STORES} stores copied, {} originals left",
            layout.copies.len(),
            layout.originals.len()
        );
        originals = layout.originals.len();
    }

    let operator = env.start_operator(&[]);
    let orphans: Vec<&str> = former
        .values()
        .filter(|k| !k.applied)
        .map(|k| k.name.as_str())
        .collect();
    let layout = eventually("every store moved, the Key-less ones scheduled", || async {
        let layout = Layout::read(&env).await;
        let moved = layout.originals.is_empty() && layout.copies.len() == STORES;
        (moved && layout.all_scheduled(&orphans)).then_some(layout)
    })
    .await;
    assert_resumed(
        &env.operator_log(operator),
        originals,
        KILL_AFTER_COPIES.len(),
    );
    layout.assert_every_key_whole(&env, &former, &orphans);
    assert_no_store_left_behind(&env).await;
    assert_keys_kept(&env, &former).await;
    assert!(env.operator_running(operator));
}

/// The stores of the former layout in the tenant's namespace, and the stores in the store
/// namespace, each by the Key it belongs to.
struct Layout {
    originals: BTreeMap<String, Secret>,
    copies: BTreeMap<String, Secret>,
}

impl Layout {
    async fn read(env: &TestEnv) -> Layout {
        Layout {
            originals: stores_by_key(env.secrets()).await,
            copies: stores_by_key(env.stores()).await,
        }
    }

    /// Whether the store of each of `keys` records a scheduled deletion.
    fn all_scheduled(&self, keys: &[&str]) -> bool {
        keys.iter().all(|name| {
            let copy = self.copies.get(*name);
            copy.is_some_and(|c| record_of(c).deletion.is_some())
        })
    }

    /// Every key whole in at least one place: its original as created, or a copy holding
    /// exactly what the original held (with the Key's namespace); nothing else. Only the keys
    /// of `scheduled` (which have no Key object) may have a deletion recorded in their copy.
    fn assert_every_key_whole(
        &self,
        env: &TestEnv,
        former: &BTreeMap<String, FormerKey>,
        scheduled: &[&str],
    ) {
        for name in self.originals.keys().chain(self.copies.keys()) {
            assert!(former.contains_key(name), "a store of no key: {name}");
        }
        for (name, key) in former {
            let (original, copy) = (self.originals.get(name), self.copies.get(name));
            assert!(
                original.is_some() || copy.is_some(),
                "key {name} is lost: in no store"
            );
            if let Some(original) = original {
                assert_eq!(original.name_any(), former_store_name(name));
                // Compared, never printed: it is key material.
                assert!(
                    original.data.as_ref() == Some(key.data()),
                    "{name}: original changed"
                );
                assert_eq!(original.labels(), key.store.labels(), "{name}");
                assert_eq!(original.annotations(), key.store.annotations(), "{name}");
            }
            if let Some(copy) = copy {
                assert_copy(env, key, copy, scheduled.contains(&name.as_str()));
            }
        }
    }
}

/// The copy of `key`'s store: its name in the store namespace, the original's type, data,
/// labels and annotations, with the Key's namespace, and the original's material; its record
/// is the original's but for the deletion a Key-less store gets (if `scheduled`) and the
/// consumer Secret a Key's record names.
fn assert_copy(env: &TestEnv, key: &FormerKey, copy: &Secret, scheduled: bool) {
    let name = &key.name;
    assert_eq!(
        copy.name_any(),
        keyward::store::store_name(&env.namespace, name)
    );
    assert_eq!(copy.type_, key.store.type_, "{name}");
    let mut labels = key.store.labels().clone();
    labels.insert(labels::KEY_NAMESPACE.into(), env.namespace.clone());
    assert_eq!(copy.labels(), &labels, "{name}: the copy's labels");
    let mut annotations = key.store.annotations().clone();
    annotations.insert(labels::KEY_NAMESPACE.into(), env.namespace.clone());
    let data = copy.data.as_ref().expect("copy data");
    assert!(
        without_record(data) == without_record(key.data()),
        "{name}: the copy's material is not the original's"
    );
    // The record changes only by what the operator decided since: a deletion scheduled for a
    // Key-less store; for a Key, the consumer Secrets it now names (the former layout kept no
    // list), which are the Key's own.
    let mut record = record_of(copy);
    if scheduled {
        let deletion = record.deletion.take().expect("a deletion scheduled");
        assert_eq!(deletion.cause, DeletionCause::KeyDeleted, "{name}");
        let delete_date = format_kms_time(deletion.delete_date);
        annotations.insert(labels::DELETE_DATE.into(), delete_date);
    }
    let consumers = std::mem::take(&mut record.consumer_secrets);
    assert!(
        consumers.iter().all(|c| c == name),
        "{name}: the record names consumer Secrets {consumers:?}"
    );
    assert_eq!(record, key.record, "{name}: the record changed");
    assert_eq!(
        copy.annotations(),
        &annotations,
        "{name}: the copy's annotations"
    );
}

/// A store's entries but its record: the material.
fn without_record(data: &BTreeMap<String, ByteString>) -> BTreeMap<String, ByteString> {
    let mut material = data.clone();
    material.remove(RECORD_ENTRY);
    material
}

/// keyward's stores in the namespace of `api`, by the Key their annotation names; panics if a
/// key has two.
async fn stores_by_key(api: Api<Secret>) -> BTreeMap<String, Secret> {
    let lp = ListParams::default().labels(&format!(
        "{},{}={}",
        labels::managed_selector(),
        labels::ROLE,
        labels::ROLE_MATERIAL
    ));
    let mut stores = BTreeMap::new();
    for store in api.list(&lp).await.expect("list stores").items {
        let key = store
            .annotations()
            .get(labels::KEY)
            .cloned()
            .expect("a key");
        if let Some(other) = stores.insert(key.clone(), store) {
            panic!("key {key} has two stores, one is {}", other.name_any());
        }
    }
    stores
}

/// Waits until the store namespace holds `copies` stores: the move is under way.
async fn wait_for_copies(env: &mut TestEnv, operator: usize, copies: usize) {
    let deadline = std::time::Instant::now() + crate::common::CONVERGE;
    let lp = ListParams::default().labels(&labels::managed_selector());
    loop {
        let listed = env.stores().list_metadata(&lp).await.expect("list stores");
        if listed.items.len() >= copies {
            return;
        }
        assert!(env.operator_running(operator), "the operator exited");
        assert!(
            std::time::Instant::now() < deadline,
            "the operator copied no more than {} stores",
            listed.items.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Start `trial` found the originals the start before left: `left` of them, or one fewer if
/// a deletion was in flight when that one was killed.
fn assert_resumed(log: &str, left: usize, trial: usize) {
    let found: usize = logged_field(log, "moving material stores", "stores")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("start {trial} logged no move"));
    assert!(
        found <= left && found + 1 >= left,
        "start {trial} found {found} stores to move, the one before left {left}"
    );
}

/// No store of any kind is left in the tenant's namespace.
async fn assert_no_store_left_behind(env: &TestEnv) {
    let secrets = env.secrets().list(&ListParams::default()).await.unwrap();
    let left: Vec<String> = secrets
        .items
        .iter()
        .filter(|s| s.type_.as_deref() == Some(labels::MATERIAL_SECRET_TYPE))
        .map(|s| s.name_any())
        .collect();
    assert!(
        left.is_empty(),
        "stores left in the tenant's namespace: {left:?}"
    );
}

/// Each Key applied is the key of its former store, Ready, and its consumer Secret serves the
/// store's bytes (the former consumer Secret's, where there was one); no key was created.
async fn assert_keys_kept(env: &TestEnv, former: &BTreeMap<String, FormerKey>) {
    for key in former.values().filter(|k| k.applied) {
        let name = &key.name;
        let ready = env.wait_ready(name).await;
        assert_eq!(key_id(&ready), key.record.key_id, "{name}: another key");
        let versions: Vec<String> = key
            .record
            .versions
            .iter()
            .map(|v| v.key_version_id.clone())
            .collect();
        assert_eq!(status_versions(&ready), versions, "{name}: other versions");
        let consumer = env.secret(name).await.expect("a consumer Secret");
        assert!(
            consumer.data == Some(key.consumer_data()),
            "{name}: the consumer Secret does not serve the former material"
        );
    }
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.namespace);
    let events = events.list(&ListParams::default()).await.unwrap().items;
    let minted: Vec<_> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("KeyCreated"))
        .filter_map(|e| e.regarding.as_ref().and_then(|r| r.name.clone()))
        .collect();
    assert!(minted.is_empty(), "keys created anew: {minted:?}");
}

/// An original changed while the move runs (a label or annotation added by the tenant, or by
/// a policy engine) is moved all the same: the move does not end with material left in the
/// tenant's namespace.
#[tokio::test]
async fn a_store_changed_during_the_move_is_moved_all_the_same() {
    let mut env = TestEnv::new("migration-changed").await;
    let former = former::build(&env, STORES).await;
    former::install(&env, &former).await;
    let operator = env.start_operator(&[]);
    let log_says = |text: &'static str| {
        let env = &env;
        move || async move { env.operator_log(operator).contains(text).then_some(()) }
    };
    eventually("the move started", log_says("moving material stores")).await;
    // The move goes in name order: the last originals are still there, as listed.
    let patch = serde_json::json!({"metadata": {"annotations": {"example.com/audited": "yes"}}});
    let mut changed = Vec::new();
    for name in former.keys().rev().take(20) {
        let store = former_store_name(name);
        let params = PatchParams::default();
        if env
            .secrets()
            .patch(&store, &params, &Patch::Merge(&patch))
            .await
            .is_ok()
        {
            changed.push(name.clone());
        }
    }
    assert!(
        !changed.is_empty(),
        "every original was moved before one could be changed"
    );
    eventually("the move ended", log_says("moved material stores")).await;

    let layout = Layout::read(&env).await;
    let left: Vec<&String> = layout.originals.keys().collect();
    assert!(
        left.is_empty(),
        "the move ended with {} of the {} originals changed during it left in the tenant's \
         namespace: {left:?}",
        left.len(),
        changed.len()
    );
    for (name, key) in &former {
        let copy = layout.copies.get(name).expect("a copy");
        let data = copy.data.as_ref().expect("copy data");
        assert!(
            without_record(data) == without_record(key.data()),
            "{name}: the copy's material is not the original's"
        );
    }
}
