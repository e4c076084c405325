//! KeyVersion requests, by the seed's rules: refused too soon after the last version and for
//! symmetric keys, created after the interval, waiting for a Key that does not exist yet, and
//! refused beyond the limit of asymmetric versions.

use std::time::Duration;

use crate::common::{TestEnv, entry, key_manifest, key_version_manifest};
use crate::{condition_message, record, wait_consumer_serving, wait_request};

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
    env.apply_key_version(&key_version_manifest("too-soon", "signer"))
        .await;
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
    env.apply_key_version(&key_version_manifest("sym-v2", "sym"))
        .await;
    let message =
        condition_message(&wait_request(&env, "sym-v2", "RejectedUnsupportedOperation").await);
    assert!(
        message.contains("available only for asymmetric keys"),
        "{message}"
    );

    // After the interval, a request is accepted; the rejected one stays rejected.
    assert_created_after_the_interval(&env, &key_id).await;

    // A request for a Key that does not exist yet waits, then completes.
    assert_request_waits_for_its_key(&env).await;

    // The limit: 4 asymmetric versions held (signer 2, late-key 2), a fifth is refused.
    env.apply_key_version(&key_version_manifest("signer-v3", "signer"))
        .await;
    let refused = wait_request(&env, "signer-v3", "RejectedLimitExceeded").await;
    let message = condition_message(&refused);
    assert!(
        message.starts_with(&format!(
            "Rejected.LimitExceeded: namespace {} already holds 4 asymmetric key versions, the \
             most a namespace may hold (--max-asymmetric-key-versions 4)",
            env.namespace
        )),
        "{message}"
    );
}

/// After the interval, a request for `signer` is Created (a new version with `key_id`, served
/// and listed), and the request refused before stays refused.
async fn assert_created_after_the_interval(env: &TestEnv, key_id: &str) {
    tokio::time::sleep(Duration::from_secs(4)).await;
    env.apply_key_version(&key_version_manifest("signer-v2", "signer"))
        .await;
    let created = wait_request(env, "signer-v2", "Created").await;
    let response = created.status.unwrap().key_version.unwrap();
    assert_eq!(response.key_id, key_id);
    let version = response.key_version_id;
    let consumer = wait_consumer_serving(env, "signer", &version).await;
    let store = env.store("signer").await.unwrap();
    assert_eq!(
        entry(&consumer, "private.pem"),
        entry(&store, &format!("{version}.private.pem"))
    );
    let record = record(env, "signer").await;
    assert_eq!(record.versions.len(), 2);
    let initial = &record.versions[0].key_version_id;
    assert_eq!(
        entry(&consumer, &format!("{initial}.public.pem")),
        entry(&store, &format!("{initial}.public.pem"))
    );
    let too_soon = wait_request(env, "too-soon", "RejectedUnsupportedOperation").await;
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
                == Some(record.versions[1].creation_date.to_string())
        })
        .await;
    assert_eq!(key.status.unwrap().key_versions.len(), 2);
}

/// A request for a Key that does not exist yet waits for it; once the Key exists the request
/// is refused as too soon after its initial version, and a later one is Created.
async fn assert_request_waits_for_its_key(env: &TestEnv) {
    env.apply_key_version(&key_version_manifest("early", "late-key"))
        .await;
    let waiting = wait_request(env, "early", "WaitingForKey").await;
    assert_eq!(
        condition_message(&waiting),
        "waiting for Key late-key to exist in this namespace"
    );
    env.apply_key(&key_manifest("late-key", "{keySpec: RSA_2048}"))
        .await;
    env.wait_ready("late-key").await;
    // Once the Key exists its initial version is brand new, so the seed's interval applies:
    // like CreateKeyVersion right after CreateKey, the waiting request is refused.
    let refused = wait_request(env, "early", "RejectedUnsupportedOperation").await;
    assert!(condition_message(&refused).contains("a new version is allowed from"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    env.apply_key_version(&key_version_manifest("late-v2", "late-key"))
        .await;
    wait_request(env, "late-v2", "Created").await;
}
