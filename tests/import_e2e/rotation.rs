//! EXTERNAL keys never rotate and take no KeyVersion, before or after their import.

use std::time::Duration;

use keyward::api::KeyState;
use kube::ResourceExt;

use crate::checks::{assert_imported, assert_refused};
use crate::common::{TestEnv, data_digest, entry_names, key_version_manifest, record_of};
use crate::keys::{
    AWAITING, external, material_in, metadata, put_secret, status, store, wait_parameters,
};
use crate::material::random;

/// EXTERNAL keys never rotate and take no KeyVersion, before or after their import. The
/// operator allows 1 s rotation intervals and versions at any time, so only the origin
/// refuses.
#[tokio::test]
async fn external_keys_never_rotate_and_take_no_key_versions() {
    let mut env = TestEnv::new("import-no-rotation").await;
    env.start_operator(&[
        "--min-rotation-interval",
        "1s",
        "--key-version-min-interval",
        "0s",
    ]);
    let material = random(32);
    put_secret(&env, "byok-material", &[("keyMaterial", &material)]).await;
    let imported = external("byok", &material_in("byok-material"));
    env.apply_key(&imported).await;
    env.apply_key(&external("waiting", "")).await;
    env.apply_key(&external(
        "rotating",
        "enableAutomaticRotation: true, rotationInterval: 2s",
    ))
    .await;
    let version = assert_imported(&env, "byok", &material).await;
    wait_parameters(&env, "waiting").await;

    // A new EXTERNAL key asking for rotation is refused and never created.
    assert_refused(
        &env,
        "rotating",
        "UnsupportedOperation",
        "automatic rotation is not available for keys with origin EXTERNAL",
    )
    .await;
    assert!(env.store("rotating").await.is_none());
    assert!(env.secret("rotating").await.is_none());

    // KeyVersions for an imported and for an awaiting EXTERNAL key are refused.
    for key in ["byok", "waiting"] {
        assert_key_version_refused(&env, key).await;
    }
    let consumer = data_digest(&env.secret("byok").await.unwrap());
    let stored = store(&env, "byok").await;
    assert_eq!(record_of(&stored).versions.len(), 1);
    assert_eq!(entry_names(&store(&env, "waiting").await), AWAITING);

    // Turning rotation on for the imported key is refused; it keeps its one version.
    env.apply_key(&external(
        "byok",
        &format!(
            "enableAutomaticRotation: true, rotationInterval: 2s, {}",
            material_in("byok-material")
        ),
    ))
    .await;
    assert_refused(
        &env,
        "byok",
        "UnsupportedOperation",
        "automatic rotation is not available for keys with origin EXTERNAL",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let key = env.key("byok").await;
    assert_eq!(metadata(&key).key_state, KeyState::Enabled);
    assert_eq!(metadata(&key).next_rotation_date, None);
    assert_eq!(status(&key).key_versions.len(), 1);
    let after = store(&env, "byok").await;
    assert_eq!(
        after.resource_version(),
        stored.resource_version(),
        "no new version"
    );
    assert_eq!(data_digest(&env.secret("byok").await.unwrap()), consumer);

    // Back to the valid spec: the same key, the same single version.
    env.apply_key(&imported).await;
    let key = env.wait_ready("byok").await;
    assert_eq!(
        metadata(&key).primary_key_version.as_deref(),
        Some(version.as_str())
    );
    assert_eq!(status(&key).key_versions.len(), 1);
}

/// A KeyVersion for EXTERNAL key `key` is refused: CreateKeyVersion is for asymmetric keys.
async fn assert_key_version_refused(env: &TestEnv, key: &str) {
    let request = format!("{key}-v2");
    env.apply_key_version(&key_version_manifest(&request, key))
        .await;
    let refused = env
        .wait_key_version(&request, "refused", |reason| {
            reason == "RejectedUnsupportedOperation"
        })
        .await;
    let condition = refused
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
        .expect("a Ready condition");
    assert_eq!(condition.status, "False");
    assert!(
        condition.message.starts_with(
            "Rejected.UnsupportedOperation: CreateKeyVersion is available only for asymmetric keys"
        ),
        "{}",
        condition.message
    );
}
