//! Rotation and KeyVersion on a real API server, with intervals of seconds (the operator's
//! test bounds): on time, never early, never twice, and no version ever lost or changed, even
//! when the operator is killed at arbitrary points or runs twice at once.
//!
//! The tests by concern: [`schedule`] (rotation on time, and policy changes), [`requests`]
//! (KeyVersion requests and the seed's rules for them), [`crashes`] (the operator killed at
//! arbitrary points, or running twice at once). The helpers below read stores and requests.

#[path = "../common/mod.rs"]
mod common;

mod crashes;
mod requests;
mod schedule;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use keyward::api::KeyVersion;
use keyward::store::KeyRecord;
use sha2::{Digest, Sha256};

use common::TestEnv;

const FAST_ROTATION: &[&str] = &["--min-rotation-interval", "1s"];

fn ts(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

/// The record of a key's store.
async fn record(env: &TestEnv, key: &str) -> KeyRecord {
    env.record(key).await.expect("store")
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
        if env.store(key).await.is_some() {
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
        let gap = pair[1].creation_date.as_second() - pair[0].creation_date.as_second();
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

async fn wait_request(env: &TestEnv, name: &str, reason: &str) -> KeyVersion {
    env.wait_key_version(name, reason, |r| r == reason).await
}

/// Waits until a request is Created or finally rejected.
async fn wait_request_settled(env: &TestEnv, name: &str) -> KeyVersion {
    env.wait_key_version(name, "settled", |r| {
        r == "Created" || r.starts_with("Rejected")
    })
    .await
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
