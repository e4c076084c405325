//! Manifests of EXTERNAL keys, what the tests read from the cluster about them (status, store,
//! events, Secrets), and times in the KMS format.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use keyward::api::{ImportParameters, Key, KeyMetadata, KeyStatus};
use kube::ResourceExt;
use kube::api::{ObjectMeta, PostParams};

use crate::common::{self, TestEnv};

/// The store entries of an EXTERNAL key without material: its record and the wrapping key.
pub const AWAITING: [&str; 2] = ["import.private.pem", "key.json"];

/// A Key with origin EXTERNAL and `extra` spec fields (flow YAML, without braces).
pub fn external(name: &str, extra: &str) -> String {
    let spec = match extra {
        "" => "{origin: EXTERNAL}".to_string(),
        extra => format!("{{origin: EXTERNAL, {extra}}}"),
    };
    format!(
        "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

/// `spec.keyMaterial` naming Secret `secret`, without an expiry.
pub fn material_in(secret: &str) -> String {
    format!("keyMaterial: {{secretRef: {{name: {secret}}}}}")
}

/// `spec.keyMaterial` naming Secret `secret`, expiring at `expire`.
pub fn material_until(secret: &str, expire: &str) -> String {
    format!("keyMaterial: {{secretRef: {{name: {secret}}}, expireTime: \"{expire}\"}}")
}

pub fn status(key: &Key) -> &KeyStatus {
    key.status.as_ref().expect("the Key has a status")
}

pub fn metadata(key: &Key) -> &KeyMetadata {
    status(key)
        .key_metadata
        .as_ref()
        .expect("the Key has keyMetadata")
}

pub fn ready(key: &Key) -> &Condition {
    status(key)
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("the Key has a Ready condition")
}

pub async fn store(env: &TestEnv, key: &str) -> Secret {
    env.store(key)
        .await
        .unwrap_or_else(|| panic!("Key {key} has no material store"))
}

/// Creates an Opaque Secret with `entries`.
pub async fn put_secret(env: &TestEnv, name: &str, entries: &[(&str, &[u8])]) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        data: Some(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };
    if let Err(e) = env.secrets().create(&PostParams::default(), &secret).await {
        panic!("creating Secret {name}: {e}");
    }
}

/// Waits until the Key awaits its import with parameters in status; returns them.
pub async fn wait_parameters(env: &TestEnv, name: &str) -> ImportParameters {
    let key = env
        .wait_key(name, "PendingImport with import parameters", |k| {
            common::ready_reason(k).as_deref() == Some("PendingImport")
                && k.status
                    .as_ref()
                    .is_some_and(|s| s.import_parameters.is_some())
        })
        .await;
    status(&key).import_parameters.clone().unwrap()
}

/// The Warning events on `name` with `reason`.
pub async fn warnings(env: &TestEnv, name: &str, reason: &str) -> Vec<String> {
    env.events_for(name)
        .await
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason))
        .map(|e| e.note.unwrap_or_default())
        .collect()
}

/// How many events on `name` have `reason`.
pub async fn count_events(env: &TestEnv, name: &str, reason: &str) -> usize {
    env.events_for(name)
        .await
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .count()
}

/// Waits for the consumer Secret to satisfy `done`.
pub async fn wait_consumer(env: &TestEnv, name: &str, what: &str, done: impl Fn(&Secret) -> bool) {
    let deadline = Instant::now() + common::CONVERGE;
    loop {
        if env.secret(name).await.as_ref().is_some_and(&done) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Secret {name} did not become {what} within {:?}",
            common::CONVERGE
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn key_state_annotation(secret: &Secret) -> Option<&str> {
    secret
        .annotations()
        .get("keyward.dev/key-state")
        .map(String::as_str)
}

/// Compares key bytes without ever printing them.
pub fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    assert!(
        got == want,
        "{what}: {} bytes, not the {} bytes expected (contents not shown)",
        got.len(),
        want.len()
    );
}
/// The KMS time format: UTC to the second.
pub fn kms_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses `text`, insisting that it is in the KMS format exactly.
pub fn parse_kms(text: &str) -> Timestamp {
    let at: Timestamp = text
        .parse()
        .unwrap_or_else(|e| panic!("{text:?} is not a time: {e}"));
    assert_eq!(
        kms_time(at),
        text,
        "not in the KMS format (UTC, to the second)"
    );
    at
}

/// Whole seconds from now.
pub fn seconds_from_now(seconds: i64) -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second() + seconds).unwrap()
}
