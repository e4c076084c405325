//! ImportKeyMaterial on a real API server: keys with origin EXTERNAL (Aliyun_AES_256, 32 bytes;
//! Aliyun_SM4, 16 bytes) await their material with RSA-2048 import parameters in status, take
//! material wrapped by the OpenSSL 3 CLI (RSAES-OAEP, SHA-256) or raw, refuse every malformed
//! import without changing anything, lose their material when it expires and take back only
//! the same material, and never rotate or take KeyVersions.
//!
//! Key bytes never appear in assertion messages (they compare with `==` and report lengths);
//! the material the test makes and wraps goes through OpenSSL in owner-only scratch files
//! (0700 directory, 0600 files) that are removed when each wrap is done.
//!
//! `ExpiredImportToken` is not reached here: a token is valid for 24 hours, and the operator
//! issues new parameters as soon as a token has expired, before it tries any import, so an
//! import with the old token is `InvalidImportToken` (shown below by backdating the token in
//! the material store). The `ExpiredImportToken` code itself (a matching token at or past its
//! tokenExpireTime) is covered by the unit tests in src/import.rs
//! (`a_token_expires_at_its_expire_time_exactly`, `an_unreadable_expire_time_counts_as_expired`).

mod common;

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{TestEnv, data_digest, entry, entry_names, ready_message};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use keyward::api::ImportParameters;
use keyward::api::{Key, KeyMetadata, KeySpec, KeyState, KeyStatus, KeyVersion};
use keyward::store::KeyRecord;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, ResourceExt};

/// The store entries of an EXTERNAL key without material: its record and the wrapping key.
const AWAITING: [&str; 2] = ["import.private.pem", "key.json"];

// ---------------------------------------------------------------------------------------------
// Manifests and cluster reads

/// A Key with origin EXTERNAL and `extra` spec fields (flow YAML, without braces).
fn external(name: &str, extra: &str) -> String {
    let spec = match extra {
        "" => "{origin: EXTERNAL}".to_string(),
        extra => format!("{{origin: EXTERNAL, {extra}}}"),
    };
    format!(
        "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

/// `spec.keyMaterial` naming Secret `secret`, without an expiry.
fn material_in(secret: &str) -> String {
    format!("keyMaterial: {{secretRef: {{name: {secret}}}}}")
}

/// `spec.keyMaterial` naming Secret `secret`, expiring at `expire`.
fn material_until(secret: &str, expire: &str) -> String {
    format!("keyMaterial: {{secretRef: {{name: {secret}}}, expireTime: \"{expire}\"}}")
}

fn status(key: &Key) -> &KeyStatus {
    key.status.as_ref().expect("the Key has a status")
}

fn metadata(key: &Key) -> &KeyMetadata {
    status(key)
        .key_metadata
        .as_ref()
        .expect("the Key has keyMetadata")
}

fn ready(key: &Key) -> &Condition {
    status(key)
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("the Key has a Ready condition")
}

fn store_name(key: &str) -> String {
    format!("{key}.keyward-material")
}

async fn store(env: &TestEnv, key: &str) -> Secret {
    env.secret(&store_name(key))
        .await
        .unwrap_or_else(|| panic!("Key {key} has no material store"))
}

fn record_of(store: &Secret) -> KeyRecord {
    serde_json::from_slice(entry(store, "key.json")).expect("a readable key.json")
}

/// Creates an Opaque Secret with `entries`.
async fn put_secret(env: &TestEnv, name: &str, entries: &[(&str, &[u8])]) {
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
async fn wait_parameters(env: &TestEnv, name: &str) -> ImportParameters {
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
async fn warnings(env: &TestEnv, name: &str, reason: &str) -> Vec<String> {
    env.events_for(name)
        .await
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason))
        .map(|e| e.note.unwrap_or_default())
        .collect()
}

/// How many events on `name` have `reason`.
async fn count_events(env: &TestEnv, name: &str, reason: &str) -> usize {
    env.events_for(name)
        .await
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .count()
}

/// Waits for the consumer Secret to satisfy `done`.
async fn wait_consumer(env: &TestEnv, name: &str, what: &str, done: impl Fn(&Secret) -> bool) {
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

fn key_state_annotation(secret: &Secret) -> Option<&str> {
    secret
        .annotations()
        .get("keyward.dev/key-state")
        .map(String::as_str)
}

/// Compares key bytes without ever printing them.
fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    assert!(
        got == want,
        "{what}: {} bytes, not the {} bytes expected (contents not shown)",
        got.len(),
        want.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Time

/// The KMS time format: UTC to the second.
fn kms_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses `text`, insisting that it is in the KMS format exactly.
fn parse_kms(text: &str) -> Timestamp {
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
fn seconds_from_now(seconds: i64) -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second() + seconds).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Key material and OpenSSL

fn random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    getrandom::fill(&mut bytes).expect("OS RNG");
    bytes
}

/// A scratch directory only its owner can enter, removed (with its files) on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "keyward-import-e2e-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .expect("create scratch dir");
        Scratch(path)
    }

    /// Writes `bytes` readable by the owner only: some of them are key material.
    fn write(&self, name: &str, bytes: &[u8]) {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.0.join(name))
            .and_then(|mut file| file.write_all(bytes))
            .expect("write scratch file");
    }

    fn read(&self, name: &str) -> Vec<u8> {
        fs::read(self.0.join(name)).expect("read scratch file")
    }

    /// Runs `openssl` here, with a umask that keeps the files it writes private, and returns
    /// its stdout. No command here prints key material: material and ciphertexts go through
    /// files, and keys are only printed as their public halves.
    fn openssl(&self, what: &str, args: &[&str]) -> String {
        let output = Command::new("sh")
            .arg("-c")
            .arg("umask 077 && exec openssl \"$@\"")
            .arg("openssl")
            .args(args)
            .current_dir(&self.0)
            .output()
            .expect("run the openssl CLI");
        assert!(
            output.status.success(),
            "openssl failed to {what} ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Wraps `material` with `public_key` (SPKI PEM) as users are told to: RSAES-OAEP with `digest`
/// for the label hash and for MGF1 (keyward takes sha256 only), no label.
fn wrap_with(public_key: &str, material: &[u8], digest: &str) -> Vec<u8> {
    let dir = Scratch::new("wrap");
    dir.write("public.pem", public_key.as_bytes());
    dir.write("material", material);
    let oaep_md = format!("rsa_oaep_md:{digest}");
    let mgf1_md = format!("rsa_mgf1_md:{digest}");
    dir.openssl(
        "wrap the key material",
        &[
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            "public.pem",
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            &oaep_md,
            "-pkeyopt",
            &mgf1_md,
            "-in",
            "material",
            "-out",
            "wrapped",
        ],
    );
    let wrapped = dir.read("wrapped");
    assert_eq!(wrapped.len(), 256, "an RSA-2048 ciphertext");
    wrapped
}

fn wrap(parameters: &ImportParameters, material: &[u8]) -> Vec<u8> {
    wrap_with(&parameters.public_key, material, "sha256")
}

/// Import Secret entries: `material` wrapped for `parameters`, with their token.
fn wrapped_entries(parameters: &ImportParameters, material: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("encryptedKeyMaterial", wrap(parameters, material)),
        ("importToken", parameters.import_token.clone().into_bytes()),
    ]
}

async fn put_entries(env: &TestEnv, name: &str, entries: &[(&str, Vec<u8>)]) {
    let borrowed: Vec<(&str, &[u8])> = entries.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    put_secret(env, name, &borrowed).await;
}

// ---------------------------------------------------------------------------------------------
// What an imported or awaiting key looks like

/// The key is Enabled with `material` as its one version, published in its consumer Secret;
/// returns the version id.
async fn assert_imported(env: &TestEnv, name: &str, material: &[u8]) -> String {
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
struct Untouched {
    store_version: Option<String>,
    store_digest: String,
    parameters: ImportParameters,
    consumer: Option<String>,
    imports: usize,
}

async fn untouched(env: &TestEnv, name: &str) -> Untouched {
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
async fn assert_unchanged(env: &TestEnv, name: &str, before: &Untouched) {
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
async fn assert_refused(env: &TestEnv, name: &str, code: &str, says: &str) {
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

// ---------------------------------------------------------------------------------------------
// The tests

/// GetParametersForImport: a new EXTERNAL key has no material and shows how to wrap it.
#[tokio::test]
async fn a_new_external_key_awaits_material_with_rsa_2048_import_parameters() {
    let env = TestEnv::with_operator("import-parameters").await;
    let before = Timestamp::now();
    env.apply_key(&external("byok", "")).await;
    let parameters = wait_parameters(&env, "byok").await;
    let after = Timestamp::now();

    let key = env.key("byok").await;
    let m = metadata(&key);
    assert_eq!(m.key_state, KeyState::PendingImport);
    assert_eq!(m.key_spec, KeySpec::AliyunAes256);
    assert_eq!(
        (
            m.primary_key_version.as_ref(),
            m.last_rotation_date.as_ref()
        ),
        (None, None)
    );
    assert_eq!(m.material_expire_time, None);
    assert!(status(&key).key_versions.is_empty());
    assert_eq!(ready(&key).status, "False");
    assert!(
        ready_message(&key).contains("import key material"),
        "{}",
        ready_message(&key)
    );
    assert!(
        env.secret("byok").await.is_none(),
        "no consumer Secret without material"
    );
    let store = store(&env, "byok").await;
    assert_eq!(entry_names(&store), AWAITING, "no material in the store");
    assert_eq!(
        record_of(&store).import_parameters.as_ref(),
        Some(&parameters),
        "status shows the stored parameters"
    );

    // An RSA-2048 public key in SPKI PEM, the pair of the wrapping key in the store.
    assert!(
        parameters
            .public_key
            .starts_with("-----BEGIN PUBLIC KEY-----\n")
    );
    assert!(
        parameters
            .public_key
            .ends_with("-----END PUBLIC KEY-----\n")
    );
    let dir = Scratch::new("parameters");
    dir.write("public.pem", parameters.public_key.as_bytes());
    dir.write("wrapping.pem", entry(&store, "import.private.pem"));
    let text = dir.openssl(
        "read the public key",
        &["pkey", "-pubin", "-in", "public.pem", "-text_pub", "-noout"],
    );
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
    assert!(text.contains("Exponent: 65537"), "{text}");
    let derived = dir.openssl(
        "derive the wrapping key's public key",
        &["pkey", "-in", "wrapping.pem", "-pubout"],
    );
    assert_eq!(
        derived, parameters.public_key,
        "the wrapping key pairs with it"
    );
    drop(dir);

    // A token, and an expiry 24 hours after issue, in the KMS format.
    let token = &parameters.import_token;
    assert!(token.len() >= 32, "a token of {} characters", token.len());
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()), "{token}");
    let expires = parse_kms(&parameters.token_expire_time);
    let issued = expires - SignedDuration::from_hours(24);
    assert!(
        (before.as_second()..=after.as_second()).contains(&issued.as_second()),
        "tokenExpireTime {expires} is not 24 hours after an issue between {before} and {after}"
    );

    // One Normal event, naming the expiry; nothing here is a warning.
    let note = env.wait_event("byok", "ImportParametersIssued").await;
    assert!(note.contains(&parameters.token_expire_time), "{note}");
    let events = env.events_for("byok").await;
    let issued_events: Vec<_> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("ImportParametersIssued"))
        .collect();
    assert_eq!(issued_events.len(), 1);
    assert_eq!(issued_events[0].type_.as_deref(), Some("Normal"));
    let at = issued_events[0].event_time.as_ref().expect("eventTime").0;
    assert!(
        (issued.as_second()..=issued.as_second() + 5).contains(&at.as_second()),
        "the event at {at} is not the issue at {issued}"
    );
    assert!(
        events.iter().all(|e| e.type_.as_deref() == Some("Normal")),
        "awaiting an import is not a warning"
    );
}

/// ImportKeyMaterial with `encryptedKeyMaterial` + `importToken`, wrapped by OpenSSL.
#[tokio::test]
async fn material_wrapped_with_the_public_key_imports_and_enables_the_key() {
    let env = TestEnv::with_operator("import-wrapped").await;
    env.apply_key(&external("wrapped", "")).await;
    let parameters = wait_parameters(&env, "wrapped").await;
    let material = random(32);
    put_entries(
        &env,
        "wrapped-import",
        &wrapped_entries(&parameters, &material),
    )
    .await;

    env.apply_key(&external("wrapped", &material_in("wrapped-import")))
        .await;
    let version = assert_imported(&env, "wrapped", &material).await;
    let note = env.wait_event("wrapped", "KeyMaterialImported").await;
    assert!(note.contains(&version), "{note}");
    assert_eq!(
        count_events(&env, "wrapped", "KeyMaterialImported").await,
        1
    );
    assert!(
        env.events_for("wrapped")
            .await
            .iter()
            .all(|e| e.type_.as_deref() == Some("Normal")),
        "a good import raises no warning"
    );
    let key = env.key("wrapped").await;
    assert_eq!(
        metadata(&key).material_expire_time,
        None,
        "it does not expire"
    );

    // Deleting the import Secret (as one should, once imported) changes nothing.
    let consumer = data_digest(&env.secret("wrapped").await.unwrap());
    let stored = data_digest(&store(&env, "wrapped").await);
    env.secrets()
        .delete("wrapped-import", &Default::default())
        .await
        .unwrap();
    env.apply_key(&external(
        "wrapped",
        &format!("description: imported, {}", material_in("wrapped-import")),
    ))
    .await;
    let key = env.wait_ready("wrapped").await;
    assert_eq!(metadata(&key).description, "imported");
    assert_eq!(status(&key).key_versions[0].key_version_id, version);
    assert_eq!(data_digest(&env.secret("wrapped").await.unwrap()), consumer);
    assert_eq!(data_digest(&store(&env, "wrapped").await), stored);
}

/// ImportKeyMaterial with raw `keyMaterial` into an SM4 key, named when the Key is created.
#[tokio::test]
async fn raw_material_imports_into_an_sm4_key() {
    let env = TestEnv::with_operator("import-sm4").await;
    let material = random(16);
    put_secret(&env, "sm4-material", &[("keyMaterial", &material)]).await;
    env.apply_key(&external(
        "sm4",
        &format!("keySpec: Aliyun_SM4, {}", material_in("sm4-material")),
    ))
    .await;
    assert_imported(&env, "sm4", &material).await;
    let key = env.key("sm4").await;
    assert_eq!(metadata(&key).key_spec, KeySpec::AliyunSm4);
    env.wait_event("sm4", "ImportParametersIssued").await;
    env.wait_event("sm4", "KeyMaterialImported").await;
}

/// Every refusal: the key keeps awaiting its import, nothing is written, and the refusal is a
/// Ready=False condition and a Warning event that start with the code. Each case is its own
/// Key, refused at once; a retry 15 s later still changes nothing and repeats no event.
#[tokio::test]
async fn every_refused_import_leaves_the_key_pending_import_and_unchanged() {
    // (Key, key spec, code, what the message says)
    const CASES: [(&str, &str, &str, &str); 10] = [
        (
            "short",
            "Aliyun_AES_256",
            "InvalidKeyMaterial",
            "Aliyun_AES_256 key material must be exactly 32 bytes, but keyMaterial is 31 bytes",
        ),
        (
            "half",
            "Aliyun_AES_256",
            "InvalidKeyMaterial",
            "must be exactly 32 bytes, but keyMaterial is 16 bytes",
        ),
        (
            "sm4-long",
            "Aliyun_SM4",
            "InvalidKeyMaterial",
            "Aliyun_SM4 key material must be exactly 16 bytes, but keyMaterial is 32 bytes",
        ),
        (
            "wrapped-half",
            "Aliyun_AES_256",
            "InvalidKeyMaterial",
            "but the unwrapped encryptedKeyMaterial is 16 bytes",
        ),
        (
            "sha1",
            "Aliyun_AES_256",
            "InvalidKeyMaterial",
            "cannot be unwrapped",
        ),
        (
            "garbage",
            "Aliyun_AES_256",
            "InvalidKeyMaterial",
            "cannot be unwrapped",
        ),
        (
            "other-token",
            "Aliyun_AES_256",
            "InvalidImportToken",
            "importToken does not match status.importParameters.importToken",
        ),
        (
            "neither",
            "Aliyun_AES_256",
            "InvalidParameter",
            "holds neither keyMaterial nor encryptedKeyMaterial",
        ),
        (
            "both",
            "Aliyun_AES_256",
            "InvalidParameter",
            "holds both keyMaterial and encryptedKeyMaterial",
        ),
        (
            "no-token",
            "Aliyun_AES_256",
            "InvalidParameter",
            "holds encryptedKeyMaterial but no importToken",
        ),
    ];
    let env = TestEnv::with_operator("import-refused").await;
    for (name, spec, _, _) in CASES {
        env.apply_key(&external(name, &format!("keySpec: {spec}")))
            .await;
    }
    let mut parameters = BTreeMap::new();
    for (name, _, _, _) in CASES {
        parameters.insert(name, wait_parameters(&env, name).await);
    }

    for (name, _, _, _) in CASES {
        let own = &parameters[name];
        let entries: Vec<(&str, Vec<u8>)> = match name {
            "short" => vec![("keyMaterial", random(31))],
            "half" => vec![("keyMaterial", random(16))],
            "sm4-long" => vec![("keyMaterial", random(32))],
            "wrapped-half" => wrapped_entries(own, &random(16)),
            "sha1" => vec![
                (
                    "encryptedKeyMaterial",
                    wrap_with(&own.public_key, &random(32), "sha1"),
                ),
                ("importToken", own.import_token.clone().into_bytes()),
            ],
            "garbage" => vec![
                ("encryptedKeyMaterial", random(256)),
                ("importToken", own.import_token.clone().into_bytes()),
            ],
            // Wrapped and tokened for another key: the token is checked first.
            "other-token" => wrapped_entries(&parameters["garbage"], &random(32)),
            "neither" => vec![
                ("key", random(32)),
                ("token", own.import_token.clone().into_bytes()),
            ],
            "both" => {
                let mut entries = wrapped_entries(own, &random(32));
                entries.push(("keyMaterial", random(32)));
                entries
            }
            "no-token" => vec![("encryptedKeyMaterial", wrap(own, &random(32)))],
            other => unreachable!("{other}"),
        };
        put_entries(&env, &format!("{name}-material"), &entries).await;
    }
    let mut before = BTreeMap::new();
    for (name, _, _, _) in CASES {
        before.insert(name, untouched(&env, name).await);
    }

    for (name, spec, _, _) in CASES {
        env.apply_key(&external(
            name,
            &format!(
                "keySpec: {spec}, {}",
                material_in(&format!("{name}-material"))
            ),
        ))
        .await;
    }
    for (name, _, code, says) in CASES {
        assert_refused(&env, name, code, says).await;
        assert_unchanged(&env, name, &before[name]).await;
    }

    // The operator tries failed imports again every 15 s: still nothing changes, and an
    // unchanged refusal is not announced again.
    tokio::time::sleep(Duration::from_secs(17)).await;
    for (name, _, code, _) in CASES {
        assert_unchanged(&env, name, &before[name]).await;
        assert_eq!(
            common::ready_reason(&env.key(name).await).as_deref(),
            Some(code),
            "{name}"
        );
        assert_eq!(warnings(&env, name, code).await.len(), 1, "{name}");
    }
}

/// A Secret that does not exist yet is InvalidParameter; it is not watched, but the operator
/// looks again every 15 s, so creating it completes the import within about 30 s.
#[tokio::test]
async fn an_import_secret_that_appears_later_is_imported_by_the_retry() {
    let env = TestEnv::with_operator("import-late").await;
    env.apply_key(&external("late", "")).await;
    let parameters = wait_parameters(&env, "late").await;
    let before = untouched(&env, "late").await;
    env.apply_key(&external("late", &material_in("late-material")))
        .await;
    assert_refused(
        &env,
        "late",
        "InvalidParameter",
        "spec.keyMaterial.secretRef names Secret late-material, which does not exist",
    )
    .await;
    assert_unchanged(&env, "late", &before).await;

    let material = random(32);
    put_entries(
        &env,
        "late-material",
        &wrapped_entries(&parameters, &material),
    )
    .await;
    let created = Instant::now();
    env.wait_key("late", "imported", |k| {
        common::ready_reason(k).as_deref() == Some("KeyReady")
    })
    .await;
    let took = created.elapsed();
    eprintln!("the import Secret was found {took:?} after it was created");
    assert!(
        took < Duration::from_secs(30),
        "the import took {took:?} after its Secret appeared"
    );
    assert_imported(&env, "late", &material).await;
    env.wait_event("late", "KeyMaterialImported").await;
}

/// Expired parameters are replaced (a new wrapping key and token), and material wrapped for
/// the old ones is refused as InvalidImportToken. The 24 hours are skipped by backdating the
/// token's expiry in the material store; see the module comment for ExpiredImportToken.
#[tokio::test]
async fn expired_import_parameters_are_replaced_and_the_old_token_is_refused() {
    let env = TestEnv::with_operator("import-stale-token").await;
    env.apply_key(&external("stale", "")).await;
    let old = wait_parameters(&env, "stale").await;
    let material = random(32);
    put_entries(&env, "stale-material", &wrapped_entries(&old, &material)).await;

    // Backdate the token in the store's record; the store is watched, so this wakes the key.
    let mut current = store(&env, "stale").await;
    let mut record: serde_json::Value =
        serde_json::from_slice(entry(&current, "key.json")).unwrap();
    record["importParameters"]["tokenExpireTime"] = "2020-01-01T00:00:00Z".into();
    current.data.as_mut().unwrap().insert(
        "key.json".into(),
        ByteString(serde_json::to_vec(&record).unwrap()),
    );
    env.secrets()
        .replace(&store_name("stale"), &PostParams::default(), &current)
        .await
        .expect("backdate the token");

    let renewed = env
        .wait_key("stale", "given new import parameters", |k| {
            k.status
                .as_ref()
                .and_then(|s| s.import_parameters.as_ref())
                .is_some_and(|p| p.import_token != old.import_token)
        })
        .await;
    let new = status(&renewed).import_parameters.clone().unwrap();
    assert_ne!(new.public_key, old.public_key, "a new wrapping key");
    let expires = parse_kms(&new.token_expire_time);
    let issued = (expires - SignedDuration::from_hours(24)).as_second();
    let now = Timestamp::now().as_second();
    assert!(
        (now - 60..=now).contains(&issued),
        "issued at {issued}, now {now}"
    );
    assert_eq!(
        count_events(&env, "stale", "ImportParametersIssued").await,
        2
    );
    let before = untouched(&env, "stale").await;
    assert_eq!(before.parameters, new);

    // The material wrapped for the old parameters is refused, whatever its wrapping.
    env.apply_key(&external("stale", &material_in("stale-material")))
        .await;
    assert_refused(&env, "stale", "InvalidImportToken", "does not match").await;
    assert_unchanged(&env, "stale", &before).await;

    // Wrapped again for the new parameters, it imports.
    put_entries(&env, "fresh-material", &wrapped_entries(&new, &material)).await;
    env.apply_key(&external("stale", &material_in("fresh-material")))
        .await;
    assert_imported(&env, "stale", &material).await;
}

/// Material imported with an expiry is removed when it expires (DeleteKeyMaterial): the key
/// awaits its import again and its consumer Secret is withdrawn. The same material restores
/// the same version; other material is refused.
#[tokio::test]
async fn expired_material_is_removed_and_only_the_same_material_restores_it() {
    let env = TestEnv::with_operator("import-expiry").await;
    // "same" gets its own material back; "other" is offered other material first.
    let names = ["same", "other"];
    let mut materials = BTreeMap::new();
    let mut parameters = BTreeMap::new();
    for name in names {
        env.apply_key(&external(name, "")).await;
    }
    for name in names {
        let p = wait_parameters(&env, name).await;
        let material = random(32);
        put_entries(
            &env,
            &format!("{name}-material"),
            &wrapped_entries(&p, &material),
        )
        .await;
        materials.insert(name, material);
        parameters.insert(name, p);
    }

    let expire = seconds_from_now(15);
    let expire_text = kms_time(expire);
    for name in names {
        env.apply_key(&external(
            name,
            &material_until(&format!("{name}-material"), &expire_text),
        ))
        .await;
    }
    let mut versions = BTreeMap::new();
    for name in names {
        let version = assert_imported(&env, name, &materials[name]).await;
        let key = env.key(name).await;
        assert_eq!(
            metadata(&key).material_expire_time.as_deref(),
            Some(expire_text.as_str()),
            "{name}"
        );
        versions.insert(name, version);
    }

    // Removed when due, never before.
    let deadline = expire.as_second() + 30;
    loop {
        let mut present = 0;
        for name in names {
            let stored = store(&env, name).await;
            if entry_names(&stored).len() > AWAITING.len() {
                present += 1;
            }
        }
        // Read back before the expiry second began: the material must still be there.
        let now = Timestamp::now().as_second();
        if now < expire.as_second() {
            assert_eq!(
                present,
                names.len(),
                "material removed before {expire_text}"
            );
        } else if present == 0 {
            break;
        }
        assert!(
            now < deadline,
            "material not removed long after {expire_text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut after_expiry = BTreeMap::new();
    for name in names {
        let stored = store(&env, name).await;
        assert_eq!(entry_names(&stored), AWAITING, "{name}");
        let record = record_of(&stored);
        assert!(record.versions.is_empty(), "{name}");
        let imported = record.imported.expect("what was imported is remembered");
        assert_eq!(imported.key_version_id, versions[name], "{name}");
        assert_eq!(imported.expire_time.as_deref(), Some(expire_text.as_str()));

        wait_consumer(&env, name, "withdrawn", |s| {
            key_state_annotation(s) == Some("PendingImport")
        })
        .await;
        let consumer = env.secret(name).await.unwrap();
        assert_eq!(entry_names(&consumer), ["keyId"], "{name}: withdrawn");

        let key = env
            .wait_key(name, "PendingImport again", |k| {
                k.status
                    .as_ref()
                    .and_then(|s| s.key_metadata.as_ref())
                    .is_some_and(|m| m.key_state == KeyState::PendingImport)
            })
            .await;
        let m = metadata(&key);
        assert_eq!(
            (
                m.material_expire_time.as_ref(),
                m.primary_key_version.as_ref()
            ),
            (None, None)
        );
        assert!(status(&key).key_versions.is_empty(), "{name}");
        assert_eq!(
            status(&key).import_parameters.as_ref(),
            Some(&parameters[name]),
            "{name}: the same parameters are shown again"
        );
        assert_eq!(ready(&key).status, "False");
        let note = env.wait_event(name, "KeyMaterialExpired").await;
        assert!(note.contains(&m.key_id), "{note}");
        env.wait_event(name, "MaterialWithdrawn").await;
        // The spec still names the expired import: the condition says to move its expiry.
        assert_refused(&env, name, "InvalidParameter", "has passed").await;
        after_expiry.insert(name, untouched(&env, name).await);
    }

    // The same material with a later expiry: the same version and bytes, published again.
    let later = kms_time(seconds_from_now(3600));
    env.apply_key(&external("same", &material_until("same-material", &later)))
        .await;
    let version = assert_imported(&env, "same", &materials["same"]).await;
    assert_eq!(version, versions["same"], "the same version comes back");
    let key = env.key("same").await;
    assert_eq!(
        metadata(&key).material_expire_time.as_deref(),
        Some(later.as_str())
    );
    env.wait_event("same", "MaterialRestored").await;
    assert_eq!(count_events(&env, "same", "KeyMaterialImported").await, 2);
    // Removing the expiry keeps the material for good.
    env.apply_key(&external("same", &material_in("same-material")))
        .await;
    let key = env.wait_ready("same").await;
    assert_eq!(metadata(&key).material_expire_time, None);
    assert_eq!(
        record_of(&store(&env, "same").await)
            .imported
            .unwrap()
            .expire_time,
        None
    );

    // Other material, even wrapped for the same parameters, is refused and changes nothing.
    let different = random(32);
    put_entries(
        &env,
        "other-different",
        &wrapped_entries(&parameters["other"], &different),
    )
    .await;
    env.apply_key(&external("other", &material_in("other-different")))
        .await;
    assert_refused(
        &env,
        "other",
        "InvalidKeyMaterial",
        "was imported with other material",
    )
    .await;
    assert_unchanged(&env, "other", &after_expiry["other"]).await;
    // Its own material, without an expiry, is taken back.
    env.apply_key(&external("other", &material_in("other-material")))
        .await;
    let version = assert_imported(&env, "other", &materials["other"]).await;
    assert_eq!(version, versions["other"]);
    assert_eq!(metadata(&env.key("other").await).material_expire_time, None);
}

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
    assert!(env.secret(&store_name("rotating")).await.is_none());
    assert!(env.secret("rotating").await.is_none());

    // KeyVersions for an imported and for an awaiting EXTERNAL key are refused.
    let requests: Api<KeyVersion> = Api::namespaced(env.client.clone(), &env.namespace);
    for key in ["byok", "waiting"] {
        let request = format!("{key}-v2");
        env.apply_key_version(&format!(
            "apiVersion: keyward.dev/v1alpha1\nkind: KeyVersion\nmetadata: {{name: {request}}}\nspec: {{keyRef: {{name: {key}}}}}\n"
        ))
        .await;
        let deadline = Instant::now() + common::CONVERGE;
        let condition = loop {
            let found = requests.get(&request).await.unwrap();
            let ready = found
                .status
                .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"));
            if let Some(c) = ready.filter(|c| c.reason == "RejectedUnsupportedOperation") {
                break c;
            }
            assert!(Instant::now() < deadline, "{request} was not refused");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(condition.status, "False");
        assert!(
            condition
                .message
                .starts_with("Rejected.UnsupportedOperation: CreateKeyVersion is available only for asymmetric keys"),
            "{}",
            condition.message
        );
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

// ---------------------------------------------------------------------------------------------
// Bugs found once: each test states the behaviour expected.

/// An Enabled EXTERNAL key whose spec.keyMaterial is pointed at other material says that this
/// material cannot be imported (it never can: only the material a key was imported with may
/// come back), and goes on serving what it was imported with.
#[tokio::test]
async fn other_material_named_for_an_enabled_key_is_refused() {
    let env = TestEnv::with_operator("import-swap").await;
    let material = random(32);
    put_secret(&env, "first", &[("keyMaterial", &material)]).await;
    env.apply_key(&external("swap", &material_in("first")))
        .await;
    let version = assert_imported(&env, "swap", &material).await;
    let consumer = data_digest(&env.secret("swap").await.unwrap());

    put_secret(&env, "second", &[("keyMaterial", &random(32))]).await;
    env.apply_key(&external("swap", &material_in("second")))
        .await;
    let key = env
        .wait_key("swap", "reconciled at the new generation", |k| {
            common::ready_reason(k).is_some()
        })
        .await;
    // Kept, as it must be.
    assert_eq!(
        metadata(&key).primary_key_version.as_deref(),
        Some(version.as_str())
    );
    assert_eq!(data_digest(&env.secret("swap").await.unwrap()), consumer);
    assert_eq!(
        common::ready_reason(&key).as_deref(),
        Some("InvalidKeyMaterial"),
        "{}",
        ready_message(&key)
    );

    // The named Secret is not watched but read again while it holds the key back: given the
    // imported material, the key is Ready again, with nothing re-imported or changed.
    env.secrets()
        .delete("second", &Default::default())
        .await
        .expect("delete Secret second");
    put_secret(&env, "second", &[("keyMaterial", &material)]).await;
    let key = env.wait_reason("swap", "KeyReady").await;
    assert_eq!(
        metadata(&key).primary_key_version.as_deref(),
        Some(version.as_str())
    );
    assert_eq!(data_digest(&env.secret("swap").await.unwrap()), consumer);

    // Deleting the material's Secret once imported (as one should) changes nothing.
    env.secrets()
        .delete("second", &Default::default())
        .await
        .expect("delete Secret second");
    let changed = format!(
        "{}, description: its import Secret is gone",
        material_in("second")
    );
    env.apply_key(&external("swap", &changed)).await;
    let key = env
        .wait_key("swap", "reconciled after its Secret was deleted", |k| {
            k.status.as_ref().and_then(|s| s.observed_generation) == k.metadata.generation
        })
        .await;
    assert_eq!(
        common::ready_reason(&key).as_deref(),
        Some("KeyReady"),
        "{}",
        ready_message(&key)
    );
    assert_eq!(data_digest(&env.secret("swap").await.unwrap()), consumer);
}

/// A spec.keyMaterial.expireTime in the past is refused when material is imported
/// ("InvalidParameter: ... has passed; set a later time"), but the same value set on an
/// Enabled key removes its material at once: `plan_external` (src/plan.rs) copies the spec's
/// expireTime into the record without checking whether it has passed (`Plan::UpdateRecord`),
/// and the next plan finds the material expired (`Plan::RemoveMaterial`): KeyMaterialExpired,
/// the consumer Secret withdrawn, the key PendingImport. A typo in a date takes a key out of
/// service; only afterwards does the condition say the value is refused. (The
/// MaterialWithdrawn event also says the Secret "gets all 0 version(s) back".)
#[tokio::test]
async fn a_past_expire_time_for_an_enabled_key_is_refused() {
    let env = TestEnv::with_operator("import-past-expiry").await;
    let material = random(32);
    put_secret(&env, "past-material", &[("keyMaterial", &material)]).await;
    env.apply_key(&external("past", &material_in("past-material")))
        .await;
    let version = assert_imported(&env, "past", &material).await;
    let consumer = data_digest(&env.secret("past").await.unwrap());

    let past = kms_time(seconds_from_now(-3600));
    env.apply_key(&external("past", &material_until("past-material", &past)))
        .await;
    let key = env
        .wait_key("past", "reconciled at the new generation", |k| {
            common::ready_reason(k).is_some()
        })
        .await;
    assert_refused(&env, "past", "InvalidParameter", "has passed").await;
    // Fails here: the material is gone from the store and the consumer Secret.
    let stored = store(&env, "past").await;
    assert!(
        entry_names(&stored).contains(&format!("{version}.key")),
        "the material was removed: the store holds {:?}",
        entry_names(&stored)
    );
    assert_eq!(metadata(&key).key_state, KeyState::Enabled);
    assert_eq!(
        data_digest(&env.secret("past").await.unwrap()),
        consumer,
        "withdrawn"
    );
    assert_eq!(count_events(&env, "past", "KeyMaterialExpired").await, 0);
}
