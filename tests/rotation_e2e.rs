//! Rotation and KeyVersion on a real API server, with intervals of seconds (the operator's
//! test bounds): on time, never early, never twice, and no version ever lost or changed, even
//! when the operator is killed at arbitrary points or runs twice at once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{TestEnv, entry};
use k8s_openapi::api::core::v1::Secret;
use keyward::api::KeyVersion;
use keyward::store::KeyRecord;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use sha2::{Digest, Sha256};

const FAST_ROTATION: &[&str] = &["--min-rotation-interval", "1s"];

fn key_manifest(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

fn ts(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

/// The record of a key's store.
async fn record(env: &TestEnv, key: &str) -> KeyRecord {
    let store = env
        .secret(&format!("{key}.keyward-material"))
        .await
        .expect("store");
    serde_json::from_slice(entry(&store, "key.json")).expect("key.json")
}

/// A digest of each version's material in a store, by version id.
fn version_digests(store: &Secret) -> BTreeMap<String, String> {
    let mut digests: BTreeMap<String, Sha256> = BTreeMap::new();
    for (name, bytes) in store.data.iter().flatten() {
        if let Some((id, _)) = name.split_once('.')
            && uuid::Uuid::parse_str(id).is_ok()
        {
            let hasher = digests.entry(id.to_string()).or_default();
            hasher.update(name.as_bytes());
            hasher.update(&bytes.0);
        }
    }
    digests
        .into_iter()
        .map(|(id, h)| {
            (
                id,
                h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
            )
        })
        .collect()
}

async fn wait_versions(env: &TestEnv, key: &str, count: usize) -> KeyRecord {
    let deadline = Instant::now() + common::CONVERGE;
    loop {
        if env
            .secret(&format!("{key}.keyward-material"))
            .await
            .is_some()
        {
            let record = record(env, key).await;
            if record.versions.len() >= count {
                return record;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{key} did not reach {count} versions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Consecutive versions are at least `interval` and at most `interval + slack` apart.
fn assert_on_schedule(record: &KeyRecord, interval: i64, slack: i64) {
    for pair in record.versions.windows(2) {
        let gap = ts(&pair[1].creation_date).as_second() - ts(&pair[0].creation_date).as_second();
        assert!(
            gap >= interval,
            "a rotation came early: {gap}s after the previous one"
        );
        assert!(
            gap <= interval + slack,
            "a rotation came late: {gap}s after the previous one"
        );
    }
}

#[tokio::test]
async fn keys_rotate_on_time_and_consumers_keep_every_version() {
    let mut env = TestEnv::new("rotation").await;
    env.start_operator(FAST_ROTATION);
    env.apply_key(&key_manifest(
        "spin",
        "{enableAutomaticRotation: true, rotationInterval: 3s}",
    ))
    .await;
    env.apply_key(&key_manifest(
        "spin-sm4",
        "{keySpec: Aliyun_SM4, enableAutomaticRotation: true, rotationInterval: 4s}",
    ))
    .await;
    env.wait_ready("spin").await;
    let first = version_digests(&env.secret("spin.keyward-material").await.unwrap());

    let record = wait_versions(&env, "spin", 4).await;
    assert_on_schedule(&record, 3, 2);
    assert_on_schedule(&wait_versions(&env, "spin-sm4", 3).await, 4, 2);
    let ids: BTreeSet<&str> = record
        .versions
        .iter()
        .map(|v| v.key_version_id.as_str())
        .collect();
    assert_eq!(ids.len(), record.versions.len(), "version ids are unique");

    // Status follows the store; the consumer Secret serves the newest and keeps every version.
    let newest = record.versions.last().unwrap().key_version_id.clone();
    let key = env
        .wait_key("spin", "reporting its newest version", |k| {
            k.status
                .as_ref()
                .and_then(|s| s.key_metadata.as_ref())
                .and_then(|m| m.primary_key_version.clone())
                == Some(newest.clone())
        })
        .await;
    let m = key.status.as_ref().unwrap().key_metadata.clone().unwrap();
    let last = ts(m.last_rotation_date.as_deref().unwrap());
    assert_eq!(
        ts(m.next_rotation_date.as_deref().unwrap()).as_second(),
        last.as_second() + 3
    );
    assert_eq!(m.rotation_interval.as_deref(), Some("3s"));
    assert!(key.status.as_ref().unwrap().key_versions.len() >= 4);
    let store = env.secret("spin.keyward-material").await.unwrap();
    let consumer = wait_consumer_serving(&env, "spin", &newest).await;
    assert_eq!(
        entry(&consumer, "key"),
        entry(&store, &format!("{newest}.key"))
    );
    for version in &record.versions {
        let name = format!("{}.key", version.key_version_id);
        assert_eq!(
            entry(&consumer, &name),
            entry(&store, &name),
            "version kept for consumers"
        );
    }
    // Versions never change once written.
    let now = version_digests(&store);
    for (id, digest) in &first {
        assert_eq!(now.get(id), Some(digest), "version {id} changed");
    }
    assert!(
        env.wait_event("spin", "KeyRotated")
            .await
            .contains("is now the primary version")
    );

    // Deleted by hand after several rotations: rebuilt with every version, bytes unchanged.
    env.secrets()
        .delete("spin", &Default::default())
        .await
        .unwrap();
    env.wait_event_saying("spin", "SecretRestored", "was deleted")
        .await;
    let rebuilt = env.secret("spin").await.expect("rebuilt");
    let store = env.secret("spin.keyward-material").await.unwrap();
    let listed: KeyRecord = serde_json::from_slice(entry(&store, "key.json")).unwrap();
    assert!(listed.versions.len() >= 4);
    for version in &listed.versions {
        let name = format!("{}.key", version.key_version_id);
        if rebuilt.data.as_ref().is_some_and(|d| d.contains_key(&name)) {
            assert_eq!(entry(&rebuilt, &name), entry(&store, &name), "{name}");
        } else {
            // Only a version minted after the rebuild may be missing from it.
            assert_eq!(
                &version.key_version_id,
                &listed.versions.last().unwrap().key_version_id
            );
        }
    }
}

async fn wait_consumer_serving(env: &TestEnv, name: &str, version: &str) -> Secret {
    let deadline = Instant::now() + common::CONVERGE;
    loop {
        if let Some(secret) = env.secret(name).await
            && secret
                .data
                .as_ref()
                .and_then(|d| d.get("keyVersionId"))
                .is_some_and(|v| v.0 == version.as_bytes())
        {
            return secret;
        }
        assert!(
            Instant::now() < deadline,
            "Secret {name} does not serve {version}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn changing_the_rotation_policy_reschedules_and_disabling_stops_it() {
    let mut env = TestEnv::new("rotation-policy").await;
    env.start_operator(FAST_ROTATION);
    env.apply_key(&key_manifest(
        "policy",
        "{enableAutomaticRotation: true, rotationInterval: 1h}",
    ))
    .await;
    let key = env.wait_ready("policy").await;
    let m = key.status.unwrap().key_metadata.unwrap();
    assert_eq!(m.rotation_interval.as_deref(), Some("3600s"));

    // Shorter than the time since the last rotation: due at once (UpdateRotationPolicy).
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.apply_key(&key_manifest(
        "policy",
        "{enableAutomaticRotation: true, rotationInterval: 2s}",
    ))
    .await;
    wait_versions(&env, "policy", 2).await;

    env.apply_key(&key_manifest(
        "policy",
        "{enableAutomaticRotation: false, rotationInterval: 2s}",
    ))
    .await;
    let key = env
        .wait_key("policy", "reporting rotation Disabled", |k| {
            common::ready_reason(k).as_deref() == Some("KeyReady")
                && k.status
                    .as_ref()
                    .and_then(|s| s.key_metadata.as_ref())
                    .is_some_and(|m| {
                        m.automatic_rotation == keyward::api::AutomaticRotation::Disabled
                    })
        })
        .await;
    let m = key.status.unwrap().key_metadata.unwrap();
    assert_eq!((m.next_rotation_date, m.rotation_interval), (None, None));
    let versions = record(&env, "policy").await.versions.len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        record(&env, "policy").await.versions.len(),
        versions,
        "rotated while disabled"
    );
}

fn request_manifest(name: &str, key: &str) -> String {
    format!(
        "apiVersion: keyward.dev/v1alpha1\nkind: KeyVersion\nmetadata: {{name: {name}}}\nspec: {{keyRef: {{name: {key}}}}}\n"
    )
}

async fn apply_request(env: &TestEnv, manifest: &str) -> KeyVersion {
    let mut request: KeyVersion = serde_yaml::from_str(manifest).unwrap();
    request.metadata.namespace = Some(env.namespace.clone());
    let api: Api<KeyVersion> = Api::namespaced(env.client.clone(), &env.namespace);
    api.patch(
        &request.name_any(),
        &PatchParams::apply("keyward-test").force(),
        &Patch::Apply(&request),
    )
    .await
    .unwrap()
}

async fn wait_request(env: &TestEnv, name: &str, reason: &str) -> KeyVersion {
    wait_request_where(env, name, reason, |r| r == reason).await
}

/// Waits until a request is Created or finally rejected.
async fn wait_request_settled(env: &TestEnv, name: &str) -> KeyVersion {
    wait_request_where(env, name, "settled", |r| {
        r == "Created" || r.starts_with("Rejected")
    })
    .await
}

/// Waits until the request's Ready reason satisfies `done`; `what` names it in a failure.
async fn wait_request_where(
    env: &TestEnv,
    name: &str,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> KeyVersion {
    let api: Api<KeyVersion> = Api::namespaced(env.client.clone(), &env.namespace);
    let deadline = Instant::now() + common::CONVERGE;
    loop {
        let request = api.get(name).await.unwrap();
        let ready = request
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        if ready.is_some_and(|c| done(&c.reason)) {
            return request;
        }
        assert!(
            Instant::now() < deadline,
            "KeyVersion {name} did not become {what}: {:?}",
            ready.map(|c| &c.message)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn condition_message(request: &KeyVersion) -> String {
    let status = request.status.as_ref().unwrap();
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message
        .clone()
}

#[tokio::test]
async fn key_version_requests_follow_the_seeds_rules() {
    let mut env = TestEnv::new("key-versions").await;
    env.start_operator(&[
        "--key-version-min-interval",
        "4s",
        "--max-asymmetric-key-versions",
        "4",
    ]);
    env.apply_key(&key_manifest(
        "signer",
        "{keySpec: EC_P256, keyUsage: SIGN/VERIFY}",
    ))
    .await;
    env.apply_key(&key_manifest("sym", "{}")).await;
    let signer = env.wait_ready("signer").await;
    let key_id = signer.status.unwrap().key_metadata.unwrap().key_id;
    env.wait_ready("sym").await;

    // Too soon after the initial version: rejected, with the date a version is allowed from.
    apply_request(&env, &request_manifest("too-soon", "signer")).await;
    let rejected = wait_request(&env, "too-soon", "RejectedUnsupportedOperation").await;
    let message = condition_message(&rejected);
    assert!(
        message.starts_with("Rejected.UnsupportedOperation: the last version of key signer"),
        "{message}"
    );
    assert!(
        message.contains("a new version is allowed from "),
        "{message}"
    );
    assert!(
        env.wait_event("too-soon", "RejectedUnsupportedOperation")
            .await
            .starts_with("Rejected.UnsupportedOperation")
    );

    // Symmetric keys rotate instead.
    apply_request(&env, &request_manifest("sym-v2", "sym")).await;
    let message =
        condition_message(&wait_request(&env, "sym-v2", "RejectedUnsupportedOperation").await);
    assert!(
        message.contains("available only for asymmetric keys"),
        "{message}"
    );

    // After the interval, a request is accepted; the rejected one stays rejected.
    tokio::time::sleep(Duration::from_secs(4)).await;
    apply_request(&env, &request_manifest("signer-v2", "signer")).await;
    let created = wait_request(&env, "signer-v2", "Created").await;
    let response = created.status.unwrap().key_version.unwrap();
    assert_eq!(response.key_id, key_id);
    let version = response.key_version_id;
    let consumer = wait_consumer_serving(&env, "signer", &version).await;
    let store = env.secret("signer.keyward-material").await.unwrap();
    assert_eq!(
        entry(&consumer, "private.pem"),
        entry(&store, &format!("{version}.private.pem"))
    );
    let record = record(&env, "signer").await;
    assert_eq!(record.versions.len(), 2);
    let initial = &record.versions[0].key_version_id;
    assert_eq!(
        entry(&consumer, &format!("{initial}.public.pem")),
        entry(&store, &format!("{initial}.public.pem"))
    );
    let too_soon = wait_request(&env, "too-soon", "RejectedUnsupportedOperation").await;
    assert!(
        too_soon.status.unwrap().key_version.is_none(),
        "a rejected request stays rejected"
    );
    let key = env
        .wait_key("signer", "reporting the new version", |k| {
            k.status
                .as_ref()
                .and_then(|s| s.key_metadata.as_ref())
                .and_then(|m| m.last_rotation_date.clone())
                == Some(record.versions[1].creation_date.clone())
        })
        .await;
    assert_eq!(key.status.unwrap().key_versions.len(), 2);

    // A request for a Key that does not exist yet waits, then completes.
    apply_request(&env, &request_manifest("early", "late-key")).await;
    let waiting = wait_request(&env, "early", "WaitingForKey").await;
    assert_eq!(
        condition_message(&waiting),
        "waiting for Key late-key to exist in this namespace"
    );
    env.apply_key(&key_manifest("late-key", "{keySpec: RSA_2048}"))
        .await;
    env.wait_ready("late-key").await;
    // Once the Key exists its initial version is brand new, so the seed's interval applies:
    // like CreateKeyVersion right after CreateKey, the waiting request is refused.
    let refused = wait_request(&env, "early", "RejectedUnsupportedOperation").await;
    assert!(condition_message(&refused).contains("a new version is allowed from"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    apply_request(&env, &request_manifest("late-v2", "late-key")).await;
    wait_request(&env, "late-v2", "Created").await;

    // The limit: 4 asymmetric versions held (signer 2, late-key 2), a fifth is refused.
    apply_request(&env, &request_manifest("signer-v3", "signer")).await;
    let refused = wait_request(&env, "signer-v3", "RejectedLimitExceeded").await;
    let message = condition_message(&refused);
    assert!(message.starts_with("Rejected.LimitExceeded: the operator already holds 4 asymmetric key versions, the limit is 4"), "{message}");
}

/// A deterministic sequence of pauses, so the kill points vary but every run is the same.
struct Pauses(u64);

impl Pauses {
    fn next(&mut self, max_ms: u64) -> Duration {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Duration::from_millis(50 + (self.0 >> 33) % max_ms)
    }
}

/// Everything the cluster holds about versions: each store's version digests, and which
/// request each version answers.
async fn observe_versions(
    env: &TestEnv,
    keys: &[&str],
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut all = BTreeMap::new();
    for key in keys {
        if let Some(store) = env.secret(&format!("{key}.keyward-material")).await {
            let record: KeyRecord = serde_json::from_slice(entry(&store, "key.json")).unwrap();
            let digests = version_digests(&store);
            assert_eq!(
                digests.len(),
                record.versions.len(),
                "{key}: every listed version has material, no other"
            );
            let requested: Vec<&String> = record
                .versions
                .iter()
                .filter_map(|v| v.requested_by.as_ref())
                .collect();
            let unique: BTreeSet<&&String> = requested.iter().collect();
            assert_eq!(
                unique.len(),
                requested.len(),
                "{key}: a request was answered twice"
            );
            all.insert(key.to_string(), digests);
        }
    }
    all
}

#[tokio::test]
async fn kill_nine_at_any_point_never_loses_changes_or_duplicates_a_version() {
    let mut env = TestEnv::new("kill-nine").await;
    let flags = [
        "--min-rotation-interval",
        "1s",
        "--key-version-min-interval",
        "1s",
    ];
    let rotating = ["k-aes-0", "k-aes-1", "k-sm4"];
    let asymmetric = ["k-rsa", "k-ec"];
    let keys: Vec<&str> = rotating.iter().chain(asymmetric.iter()).copied().collect();
    env.apply_key(&key_manifest(
        "k-aes-0",
        "{enableAutomaticRotation: true, rotationInterval: 2s}",
    ))
    .await;
    env.apply_key(&key_manifest(
        "k-aes-1",
        "{enableAutomaticRotation: true, rotationInterval: 3s}",
    ))
    .await;
    env.apply_key(&key_manifest(
        "k-sm4",
        "{keySpec: Aliyun_SM4, enableAutomaticRotation: true, rotationInterval: 2s}",
    ))
    .await;
    env.apply_key(&key_manifest(
        "k-rsa",
        "{keySpec: RSA_2048, keyUsage: SIGN/VERIFY}",
    ))
    .await;
    env.apply_key(&key_manifest(
        "k-ec",
        "{keySpec: EC_SM2, keyUsage: SIGN/VERIFY}",
    ))
    .await;

    let mut pauses = Pauses(0x6b65797761726421);
    let mut seen: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut requests = Vec::new();
    for trial in 0..20 {
        // A new request every other trial, so kills also land while requests are served.
        if trial % 2 == 0 {
            let name = format!("req-{trial}");
            apply_request(&env, &request_manifest(&name, asymmetric[trial / 2 % 2])).await;
            requests.push(name);
        }
        env.start_operator(&flags);
        tokio::time::sleep(pauses.next(1500)).await;
        env.kill_operators();
        let now = observe_versions(&env, &keys).await;
        for (key, versions) in &seen {
            for (id, digest) in versions {
                assert_eq!(
                    now[key].get(id),
                    Some(digest),
                    "trial {trial}: {key} version {id} lost or changed"
                );
            }
        }
        seen = now;
    }

    // After the crashes, one more run converges everything.
    env.start_operator(&flags);
    for key in &keys {
        env.wait_ready(key).await;
    }
    // Each request ends answered exactly once, or refused (too soon after the previous
    // version, as the seed says) with no version at all.
    let mut created = 0;
    for request in &requests {
        let settled = wait_request_settled(&env, request).await;
        let uid = settled.metadata.uid.clone().unwrap();
        let record = record(&env, &settled.spec.key_ref.name).await;
        let answered: Vec<_> = record
            .versions
            .iter()
            .filter(|v| v.requested_by.as_deref() == Some(uid.as_str()))
            .collect();
        match settled.status.and_then(|s| s.key_version) {
            Some(response) => {
                created += 1;
                assert_eq!(answered.len(), 1, "{request} answered exactly once");
                assert_eq!(answered[0].key_version_id, response.key_version_id);
            }
            None => assert!(
                answered.is_empty(),
                "{request} was refused but got a version"
            ),
        }
    }
    assert!(
        created >= 3,
        "only {created} of {} requests went through",
        requests.len()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let end = observe_versions(&env, &keys).await;
    for (key, versions) in &seen {
        for (id, digest) in versions {
            assert_eq!(
                end[key].get(id),
                Some(digest),
                "{key} version {id} lost or changed"
            );
        }
    }
    for key in rotating {
        let record = record(&env, key).await;
        assert!(
            record.versions.len() >= 3,
            "{key} rotated across the trials"
        );
        let interval = if key == "k-aes-1" { 3 } else { 2 };
        for pair in record.versions.windows(2) {
            let gap =
                ts(&pair[1].creation_date).as_second() - ts(&pair[0].creation_date).as_second();
            assert!(
                gap >= interval,
                "{key}: a rotation {gap}s after the previous one is early or doubled"
            );
        }
        let key = env.key(key).await;
        let m = key.status.unwrap().key_metadata.unwrap();
        assert_eq!(
            ts(m.next_rotation_date.as_deref().unwrap()).as_second(),
            ts(m.last_rotation_date.as_deref().unwrap()).as_second() + interval,
            "the schedule still holds"
        );
    }
    // Consumers serve exactly what the stores hold.
    for key in &keys {
        let store = env
            .secret(&format!("{key}.keyward-material"))
            .await
            .unwrap();
        let newest = record(&env, key)
            .await
            .versions
            .last()
            .unwrap()
            .key_version_id
            .clone();
        let consumer = wait_consumer_serving(&env, key, &newest).await;
        for (name, bytes) in store
            .data
            .iter()
            .flatten()
            .filter(|(n, _)| n.as_str() != "key.json")
        {
            assert_eq!(entry(&consumer, name), bytes.0.as_slice(), "{key}: {name}");
        }
    }
}

#[tokio::test]
async fn two_operators_rotating_and_serving_requests_at_once_mint_each_version_once() {
    let mut env = TestEnv::new("two-rotating").await;
    let flags = [
        "--min-rotation-interval",
        "1s",
        "--key-version-min-interval",
        "1s",
    ];
    env.start_operator(&flags);
    env.start_operator(&flags);
    for i in 0..3 {
        env.apply_key(&key_manifest(
            &format!("twin-{i}"),
            "{enableAutomaticRotation: true, rotationInterval: 2s}",
        ))
        .await;
    }
    env.apply_key(&key_manifest(
        "twin-ec",
        "{keySpec: EC_P256K, keyUsage: SIGN/VERIFY}",
    ))
    .await;
    env.wait_ready("twin-ec").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..3 {
        apply_request(&env, &request_manifest(&format!("twin-req-{i}"), "twin-ec")).await;
        wait_request(&env, &format!("twin-req-{i}"), "Created").await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    for i in 0..3 {
        let record = wait_versions(&env, &format!("twin-{i}"), 3).await;
        for pair in record.versions.windows(2) {
            let gap =
                ts(&pair[1].creation_date).as_second() - ts(&pair[0].creation_date).as_second();
            assert!(
                gap >= 2,
                "twin-{i}: two versions {gap}s apart: a rotation was minted twice"
            );
        }
    }
    let record = record(&env, "twin-ec").await;
    assert_eq!(
        record.versions.len(),
        4,
        "the initial version and one per request"
    );
}
