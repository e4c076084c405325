//! What an imported key looks like (Enabled, its material its one version, published), what a
//! refused import leaves alone (everything), and how a refusal is reported (a condition and a
//! Warning event that start with the code).

use keyward::api::{ImportParameters, KeyState};
use kube::ResourceExt;

use crate::common::{TestEnv, data_digest, entry, entry_names, ready_message, record_of};
use crate::keys::{
    AWAITING, assert_same_bytes, count_events, key_state_annotation, metadata, ready, status,
    store, wait_consumer, warnings,
};

/// The key is Enabled with `material` as its one version, published in its consumer Secret;
/// returns the version id.
pub async fn assert_imported(env: &TestEnv, name: &str, material: &[u8]) -> String {
    let key = env.wait_ready(name).await;
    let m = metadata(&key);
    assert_eq!(m.key_state, KeyState::Enabled);
    let versions = &status(&key).key_versions;
    assert_eq!(versions.len(), 1, "one version: {versions:?}");
    let version = versions[0].key_version_id.clone();
    assert_eq!(m.primary_key_version.as_deref(), Some(version.as_str()));
    assert_eq!(
        m.last_rotation_date.as_deref(),
        Some(versions[0].creation_date.as_str())
    );
    assert_eq!(
        status(&key).import_parameters,
        None,
        "import parameters are shown only while the key awaits its material"
    );

    let store = store(env, name).await;
    let mut stored = AWAITING.map(String::from).to_vec();
    stored.push(format!("{version}.key"));
    stored.sort();
    assert_eq!(entry_names(&store), stored);
    assert_same_bytes(
        entry(&store, &format!("{version}.key")),
        material,
        "stored material",
    );
    let record = record_of(&store);
    assert_eq!(record.versions.len(), 1);
    let imported = record.imported.expect("the record says what was imported");
    assert_eq!(imported.key_version_id, version);
    assert_eq!(
        store
            .annotations()
            .get("keyward.dev/versions")
            .map(String::as_str),
        Some("1")
    );

    // The consumer Secret is written after the store: wait for it to serve this version.
    let secret = status(&key).secret_name.clone().unwrap();
    wait_consumer(env, &secret, "Enabled with the imported version", |s| {
        key_state_annotation(s) == Some("Enabled")
            && s.data
                .as_ref()
                .and_then(|d| d.get("keyVersionId"))
                .is_some_and(|v| v.0 == version.as_bytes())
    })
    .await;
    let consumer = env.secret(&secret).await.unwrap();
    let mut published = vec![
        format!("{version}.key"),
        "key".to_string(),
        "keyId".to_string(),
        "keyVersionId".to_string(),
    ];
    published.sort();
    assert_eq!(entry_names(&consumer), published);
    assert_same_bytes(
        entry(&consumer, "key"),
        material,
        "the consumer Secret's key",
    );
    assert_same_bytes(
        entry(&consumer, &format!("{version}.key")),
        material,
        "the consumer Secret's version entry",
    );
    assert_eq!(entry(&consumer, "keyId"), m.key_id.as_bytes());
    version
}

/// A snapshot of everything a refused import must leave alone.
pub struct Untouched {
    pub store_version: Option<String>,
    pub store_digest: String,
    pub parameters: ImportParameters,
    pub consumer: Option<String>,
    pub imports: usize,
}

pub async fn untouched(env: &TestEnv, name: &str) -> Untouched {
    let store = store(env, name).await;
    let key = env.key(name).await;
    Untouched {
        store_version: store.resource_version(),
        store_digest: data_digest(&store),
        parameters: status(&key).import_parameters.clone().expect("parameters"),
        consumer: env.secret(name).await.map(|s| data_digest(&s)),
        imports: count_events(env, name, "KeyMaterialImported").await,
    }
}

/// The key still awaits its import, exactly as in `before`: no version, no material, the same
/// parameters, the same (or no) consumer Secret, a store that was not written.
pub async fn assert_unchanged(env: &TestEnv, name: &str, before: &Untouched) {
    let key = env.key(name).await;
    assert_eq!(metadata(&key).key_state, KeyState::PendingImport, "{name}");
    assert_eq!(metadata(&key).primary_key_version, None, "{name}");
    assert_eq!(metadata(&key).material_expire_time, None, "{name}");
    assert!(status(&key).key_versions.is_empty(), "{name}: no version");
    assert_eq!(
        status(&key).import_parameters.as_ref(),
        Some(&before.parameters),
        "{name}: the same import parameters"
    );
    let store = store(env, name).await;
    assert_eq!(entry_names(&store), AWAITING, "{name}: no material stored");
    assert_eq!(
        store.resource_version(),
        before.store_version,
        "{name}: the store was written"
    );
    assert_eq!(data_digest(&store), before.store_digest, "{name}");
    assert!(record_of(&store).versions.is_empty(), "{name}");
    assert_eq!(
        env.secret(name).await.map(|s| data_digest(&s)),
        before.consumer,
        "{name}: the consumer Secret changed"
    );
    assert_eq!(
        count_events(env, name, "KeyMaterialImported").await,
        before.imports,
        "{name}: a KeyMaterialImported event"
    );
}

/// Waits for the refusal `code` and checks its condition and its Warning event.
pub async fn assert_refused(env: &TestEnv, name: &str, code: &str, says: &str) {
    let key = env.wait_reason(name, code).await;
    let condition = ready(&key);
    assert_eq!(condition.status, "False", "{name}");
    let message = ready_message(&key);
    assert!(
        message.starts_with(&format!("{code}: ")),
        "{name}: {message}"
    );
    assert!(message.contains(says), "{name}: {message}");
    let note = env.wait_event(name, code).await;
    let events = warnings(env, name, code).await;
    assert!(
        !events.is_empty(),
        "{name}: the {code} event is not a Warning"
    );
    assert!(note.starts_with(&format!("{code}: ")), "{name}: {note}");
}
