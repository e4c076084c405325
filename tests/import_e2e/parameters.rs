//! GetParametersForImport: the import parameters a new EXTERNAL key shows (an RSA-2048
//! wrapping key and a token valid for 24 hours), and their replacement once expired.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use keyward::api::{ImportParameters, KeySpec, KeyState};
use kube::api::PostParams;

use crate::checks::{assert_imported, assert_refused, assert_unchanged, untouched};
use crate::common::openssl::openssl_text;
use crate::common::scratch::Scratch;
use crate::common::{TestEnv, entry, entry_names, ready_message, record_of};
use crate::keys::{
    AWAITING, count_events, external, material_in, metadata, parse_kms, ready, status, store,
    wait_parameters,
};
use crate::material::{put_entries, random, wrapped_entries};

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
    assert_wrapping_key_pair(&parameters, &store);

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
    assert_issued_once(&env, "byok", &parameters, issued).await;
}

/// The parameters' public key is an RSA-2048 key in SPKI PEM, and the pair of the wrapping key
/// in the store.
fn assert_wrapping_key_pair(parameters: &ImportParameters, store: &Secret) {
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
    dir.write("wrapping.pem", entry(store, "import.private.pem"));
    let text = openssl_text(
        &dir,
        "read the public key",
        &["pkey", "-pubin", "-in", "public.pem", "-text_pub", "-noout"],
    );
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
    assert!(text.contains("Exponent: 65537"), "{text}");
    let derived = openssl_text(
        &dir,
        "derive the wrapping key's public key",
        &["pkey", "-in", "wrapping.pem", "-pubout"],
    );
    assert_eq!(
        derived, parameters.public_key,
        "the wrapping key pairs with it"
    );
}

/// One ImportParametersIssued event on `name`, Normal, naming the expiry, at the issue; and no
/// event on `name` is a warning.
async fn assert_issued_once(
    env: &TestEnv,
    name: &str,
    parameters: &ImportParameters,
    issued: Timestamp,
) {
    let note = env.wait_event(name, "ImportParametersIssued").await;
    assert!(note.contains(&parameters.token_expire_time), "{note}");
    let events = env.events_for(name).await;
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

/// Expired parameters are replaced (a new wrapping key and token), and material wrapped for
/// the old ones is refused as InvalidImportToken. The 24 hours are skipped by backdating the
/// token's expiry in the material store; see main.rs for ExpiredImportToken.
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
    env.stores()
        .replace(&env.store_name("stale"), &PostParams::default(), &current)
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
