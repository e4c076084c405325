//! Crashes and races: the operator killed at arbitrary points (rotating, serving requests)
//! never loses or changes a version nor answers a request twice; two operators at once mint
//! each version once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use keyward::store::KeyRecord;

use crate::common::pauses::Pauses;
use crate::common::{TestEnv, entry, key_manifest, key_version_manifest};
use crate::{
    record, ts, version_digests, wait_consumer_serving, wait_request, wait_request_settled,
    wait_versions,
};

/// Everything the cluster holds about versions: each store's version digests, and which
/// request each version answers.
async fn observe_versions(
    env: &TestEnv,
    keys: &[&str],
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut all = BTreeMap::new();
    for key in keys {
        if let Some(store) = env.store(key).await {
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
    apply_crash_keys(&env).await;

    let mut pauses = Pauses(0x6b65797761726421);
    let mut seen: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut requests = Vec::new();
    for trial in 0..20 {
        // A new request every other trial, so kills also land while requests are served.
        if trial % 2 == 0 {
            let name = format!("req-{trial}");
            env.apply_key_version(&key_version_manifest(&name, asymmetric[trial / 2 % 2]))
                .await;
            requests.push(name);
        }
        env.start_operator(&flags);
        tokio::time::sleep(pauses.next(50, 1549)).await;
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
    assert_requests_answered_once(&env, &requests).await;
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
    assert_still_on_schedule(&env, &rotating).await;
    // Consumers serve exactly what the stores hold.
    assert_consumers_serve_stores(&env, &keys).await;
}

/// The keys of the crash test: three rotating, two asymmetric.
async fn apply_crash_keys(env: &TestEnv) {
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
}

/// Each request ends answered exactly once, or refused (too soon after the previous version,
/// as the seed says) with no version at all; and most went through.
async fn assert_requests_answered_once(env: &TestEnv, requests: &[String]) {
    let mut created = 0;
    for request in requests {
        let settled = wait_request_settled(env, request).await;
        let uid = settled.metadata.uid.clone().unwrap();
        let record = record(env, &settled.spec.key_ref.name).await;
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
}

/// Each rotating key rotated across the trials, never early or twice, and its schedule still
/// holds.
async fn assert_still_on_schedule(env: &TestEnv, rotating: &[&str]) {
    for &key in rotating {
        let record = record(env, key).await;
        assert!(
            record.versions.len() >= 3,
            "{key} rotated across the trials"
        );
        let interval = if key == "k-aes-1" { 3 } else { 2 };
        for pair in record.versions.windows(2) {
            let gap = pair[1].creation_date.as_second() - pair[0].creation_date.as_second();
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
}

/// Each key's consumer Secret serves exactly what its store holds.
async fn assert_consumers_serve_stores(env: &TestEnv, keys: &[&str]) {
    for key in keys {
        let store = env.store(key).await.unwrap();
        let newest = record(env, key)
            .await
            .versions
            .last()
            .unwrap()
            .key_version_id
            .clone();
        let consumer = wait_consumer_serving(env, key, &newest).await;
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
        env.apply_key_version(&key_version_manifest(&format!("twin-req-{i}"), "twin-ec"))
            .await;
        wait_request(&env, &format!("twin-req-{i}"), "Created").await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    for i in 0..3 {
        let record = wait_versions(&env, &format!("twin-{i}"), 3).await;
        for pair in record.versions.windows(2) {
            let gap = pair[1].creation_date.as_second() - pair[0].creation_date.as_second();
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
