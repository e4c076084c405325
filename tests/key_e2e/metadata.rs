//! What every Key gets: material that works in OpenSSL, in the consumer Secret, and the seed's
//! KeyMetadata in status (formats, presence rules, the ARN from the flags); also for names at
//! the length limit, and for EXTERNAL keys awaiting their material.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use keyward::api::{AutomaticRotation, Key, KeySpec, KeyState};
use kube::{Api, ResourceExt};

use crate::common::openssl::openssl;
use crate::common::{self, TestEnv, entry, entry_names};
use crate::{UTC_SECOND, is_utc_second, is_uuid};

async fn kube_system_uid(env: &TestEnv) -> String {
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    namespaces.get("kube-system").await.unwrap().uid().unwrap()
}

/// Every example is applied; each key spec gets working material and the seed's KeyMetadata.
#[tokio::test]
async fn every_key_spec_gets_material_in_its_secret_and_metadata_in_status() {
    let mut env = TestEnv::new("every-key-spec").await;
    // The KeyVersion example is applied with its Key: allow it without the KMS's 7 days.
    env.start_operator(&["--key-version-min-interval", "0s"]);
    let names = env.apply_examples("Key").await;
    assert_eq!(
        names.len(),
        7,
        "one example per key spec and a rotating key: {names:?}"
    );
    let account = kube_system_uid(&env).await;

    let mut specs_seen = Vec::new();
    for name in &names {
        let key = env.wait_ready(name).await;
        let status = key.status.as_ref().unwrap();
        let m = status.key_metadata.as_ref().unwrap();
        specs_seen.push(m.key_spec);
        assert_seed_metadata(&key, &account);
        let secret = assert_consumer_secret(&env, name, &key).await;
        assert_material(&key, &secret);
    }
    specs_seen.sort_by_key(|s| s.as_str());
    specs_seen.dedup();
    assert_eq!(specs_seen.len(), 6, "all six key specs: {specs_seen:?}");

    // The KeyVersion example: a second RSA version, served by default, the first kept.
    assert_key_version_example_served(&env).await;
}

/// The seed's KeyMetadata: its formats, and which fields are present.
fn assert_seed_metadata(key: &Key, account: &str) {
    let status = key.status.as_ref().unwrap();
    let m = status.key_metadata.as_ref().unwrap();
    // Formats, as in the seed.
    assert!(is_uuid(&m.key_id), "keyId {}", m.key_id);
    assert_eq!(m.arn, format!("acs:kms:local:{account}:key/{}", m.key_id));
    assert_eq!(m.creator, account);
    assert!(
        is_utc_second(&m.creation_date),
        "creationDate {} ~ {UTC_SECOND}",
        m.creation_date
    );
    assert_eq!(
        m.last_rotation_date.as_deref(),
        Some(m.creation_date.as_str())
    );
    assert_eq!(m.key_state, KeyState::Enabled);
    assert_eq!(m.delete_date, None);
    assert_eq!(m.material_expire_time, None);
    assert_eq!(
        m.description,
        key.spec.description.clone().unwrap_or_default()
    );
    assert_eq!(status.observed_generation, key.metadata.generation);

    // Presence rules.
    let rotating = key.spec.enable_automatic_rotation == Some(true);
    if rotating {
        assert_eq!(m.automatic_rotation, AutomaticRotation::Enabled);
        assert_eq!(m.rotation_interval.as_deref(), Some("7776000s"));
        let last: jiff::Timestamp = m.creation_date.parse().unwrap();
        let next = last
            .checked_add(jiff::SignedDuration::from_hours(90 * 24))
            .unwrap();
        assert_eq!(
            m.next_rotation_date,
            Some(keyward::kms::schedule::format_kms_time(next))
        );
    } else {
        assert_eq!(m.automatic_rotation, AutomaticRotation::Disabled);
        assert_eq!(
            (m.rotation_interval.as_ref(), m.next_rotation_date.as_ref()),
            (None, None)
        );
    }
}

/// The consumer Secret is where the status says, keyward's, owned by nothing; returns it.
async fn assert_consumer_secret(env: &TestEnv, name: &str, key: &Key) -> Secret {
    let status = key.status.as_ref().unwrap();
    let m = status.key_metadata.as_ref().unwrap();
    let secret_name = key
        .spec
        .secret_name
        .clone()
        .unwrap_or_else(|| name.to_string());
    assert_eq!(status.secret_name.as_deref(), Some(secret_name.as_str()));
    let secret = env.secret(&secret_name).await.expect("consumer Secret");
    assert_eq!(secret.type_.as_deref(), Some("keyward.dev/key"));
    let labels = secret.labels();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("keyward")
    );
    assert_eq!(
        labels.get("keyward.dev/key").map(String::as_str),
        Some(name)
    );
    assert_eq!(
        secret.annotations().get("keyward.dev/key-id"),
        Some(&m.key_id)
    );
    assert!(
        secret.owner_references().is_empty(),
        "material must not cascade with the Key"
    );
    assert_eq!(entry(&secret, "keyId"), m.key_id.as_bytes());
    secret
}

/// The Secret serves one version of working material: symmetric bytes of the key spec's
/// length, or a private and public PEM that OpenSSL finds consistent.
fn assert_material(key: &Key, secret: &Secret) {
    let m = key.status.as_ref().unwrap().key_metadata.as_ref().unwrap();
    let version = String::from_utf8(entry(secret, "keyVersionId").to_vec()).unwrap();
    assert!(is_uuid(&version), "keyVersionId {version}");

    if m.key_spec.is_symmetric() {
        assert_eq!(m.primary_key_version.as_deref(), Some(version.as_str()));
        let mut expected = vec![
            format!("{version}.key"),
            "key".into(),
            "keyId".into(),
            "keyVersionId".into(),
        ];
        expected.sort();
        assert_eq!(entry_names(secret), expected);
        let bytes = entry(secret, "key");
        assert_eq!(bytes, entry(secret, &format!("{version}.key")));
        let want = if m.key_spec == KeySpec::AliyunSm4 {
            16
        } else {
            32
        };
        assert_eq!(bytes.len(), want, "{} key length", m.key_spec);
        prove_symmetric(m.key_spec, bytes);
    } else {
        assert_eq!(
            m.primary_key_version, None,
            "not applicable to asymmetric keys"
        );
        let mut expected = vec![
            format!("{version}.private.pem"),
            format!("{version}.public.pem"),
            "keyId".into(),
            "keyVersionId".into(),
            "private.pem".into(),
            "public.pem".into(),
        ];
        expected.sort();
        assert_eq!(entry_names(secret), expected);
        let private = entry(secret, "private.pem");
        assert_eq!(private, entry(secret, &format!("{version}.private.pem")));
        assert_eq!(
            entry(secret, "public.pem"),
            entry(secret, &format!("{version}.public.pem"))
        );
        openssl(&["pkey", "-check", "-noout"], private);
        let derived = openssl(&["pkey", "-pubout"], private);
        assert_eq!(
            derived,
            entry(secret, "public.pem"),
            "{}: public PEM matches OpenSSL's",
            m.key_spec
        );
    }
}

/// The KeyVersion example: a second RSA version, served by default, the first kept.
async fn assert_key_version_example_served(env: &TestEnv) {
    assert_eq!(env.apply_examples("KeyVersion").await, ["envelope-rsa-v2"]);
    let rsa = env
        .wait_key("envelope-rsa", "with two versions", |k| {
            k.status.as_ref().is_some_and(|s| s.key_versions.len() == 2)
        })
        .await;
    let versions = rsa.status.unwrap().key_versions;
    let deadline = std::time::Instant::now() + common::CONVERGE;
    loop {
        let secret = env.secret("envelope-rsa").await.unwrap();
        if entry(&secret, "keyVersionId") == versions[1].key_version_id.as_bytes() {
            let first = format!("{}.private.pem", versions[0].key_version_id);
            openssl(&["pkey", "-check", "-noout"], entry(&secret, &first));
            openssl(&["pkey", "-check", "-noout"], entry(&secret, "private.pem"));
            assert_ne!(entry(&secret, &first), entry(&secret, "private.pem"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new version is not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Secret's symmetric bytes work as a key of their algorithm in OpenSSL.
fn prove_symmetric(spec: KeySpec, key: &[u8]) {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let cipher = if spec == KeySpec::AliyunSm4 {
        "-sm4-cbc"
    } else {
        "-aes-256-cbc"
    };
    let iv = "00112233445566778899aabbccddeeff";
    let plain = b"keyward round trip";
    let sealed = openssl(&["enc", cipher, "-K", &hex, "-iv", iv], plain);
    let opened = openssl(&["enc", "-d", cipher, "-K", &hex, "-iv", iv], &sealed);
    assert_eq!(opened, plain);
}

/// An EXTERNAL key exists without material until it is imported.
#[tokio::test]
async fn external_keys_wait_for_imported_material() {
    let env = TestEnv::with_operator("external").await;
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: byok}\nspec: {origin: EXTERNAL}\n").await;
    let key = env.wait_reason("byok", "PendingImport").await;
    let m = key.status.as_ref().unwrap().key_metadata.as_ref().unwrap();
    assert_eq!(m.key_state, KeyState::PendingImport);
    assert_eq!(m.last_rotation_date, None);
    assert_eq!(m.primary_key_version, None);
    assert!(is_uuid(&m.key_id));
    let store = env.store("byok").await.expect("the key's record");
    assert_eq!(
        entry_names(&store),
        ["import.private.pem", "key.json"],
        "no material, only the wrapping key"
    );
    assert!(
        env.secret("byok").await.is_none(),
        "no consumer Secret without material"
    );
    let normal = env
        .events_for("byok")
        .await
        .iter()
        .all(|e| e.type_.as_deref() == Some("Normal"));
    assert!(normal, "waiting for an import is not a warning");
}

/// --region and --account-id make the ARN and Creator.
#[tokio::test]
async fn arn_and_creator_come_from_the_region_and_account_flags() {
    let mut env = TestEnv::new("arn").await;
    env.start_operator(&["--region", "cn-hangzhou", "--account-id", "123456"]);
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: arn}\nspec: {}\n")
        .await;
    let m = env
        .wait_ready("arn")
        .await
        .status
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(
        m.arn,
        format!("acs:kms:cn-hangzhou:123456:key/{}", m.key_id)
    );
    assert_eq!(m.creator, "123456");
}

/// Key names up to the 253-character limit still get deterministic, valid Secret names and
/// label values.
#[tokio::test]
async fn keys_with_names_at_the_length_limit_work() {
    let env = TestEnv::with_operator("long-name").await;
    let name = format!("{}.{}", "a".repeat(190), "b".repeat(62));
    assert_eq!(name.len(), 253);
    env.apply_key(&format!(
        "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: {name}}}\nspec: {{}}\n"
    ))
    .await;
    env.wait_ready(&name).await;
    let consumer = env
        .secret(&name)
        .await
        .expect("consumer Secret named after the Key");
    let label = consumer.labels().get("keyward.dev/key").unwrap();
    assert!(label.len() <= 63, "{label}");
    assert_eq!(env.managed_secrets().await.len(), 2);
}
