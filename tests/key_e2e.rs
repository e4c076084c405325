//! The Key resource on a real API server: material, status, the seed's rules, the Secret
//! layout, and that nothing is ever minted twice, overwritten, or written when nothing changed.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::openssl::openssl;
use common::{TestEnv, data_digest, entry, entry_names, ready_message};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use keyward::api::{AutomaticRotation, Key, KeySpec, KeyState};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

const UTC_SECOND: &str = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$";

fn is_utc_second(text: &str) -> bool {
    let b = text.as_bytes();
    text.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && text.parse::<jiff::Timestamp>().is_ok()
}

fn is_uuid(text: &str) -> bool {
    uuid::Uuid::parse_str(text).is_ok_and(|u| u.hyphenated().to_string() == text)
}

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

        // The consumer Secret.
        let secret_name = key.spec.secret_name.clone().unwrap_or_else(|| name.clone());
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
        assert_eq!(labels.get("keyward.dev/key"), Some(name));
        assert_eq!(
            secret.annotations().get("keyward.dev/key-id"),
            Some(&m.key_id)
        );
        assert!(
            secret.owner_references().is_empty(),
            "material must not cascade with the Key"
        );
        assert_eq!(entry(&secret, "keyId"), m.key_id.as_bytes());
        let version = String::from_utf8(entry(&secret, "keyVersionId").to_vec()).unwrap();
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
            assert_eq!(entry_names(&secret), expected);
            let bytes = entry(&secret, "key");
            assert_eq!(bytes, entry(&secret, &format!("{version}.key")));
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
            assert_eq!(entry_names(&secret), expected);
            let private = entry(&secret, "private.pem");
            assert_eq!(private, entry(&secret, &format!("{version}.private.pem")));
            assert_eq!(
                entry(&secret, "public.pem"),
                entry(&secret, &format!("{version}.public.pem"))
            );
            openssl(&["pkey", "-check", "-noout"], private);
            let derived = openssl(&["pkey", "-pubout"], private);
            assert_eq!(
                derived,
                entry(&secret, "public.pem"),
                "{}: public PEM matches OpenSSL's",
                m.key_spec
            );
        }
    }
    specs_seen.sort_by_key(|s| s.as_str());
    specs_seen.dedup();
    assert_eq!(specs_seen.len(), 6, "all six key specs: {specs_seen:?}");

    // The KeyVersion example: a second RSA version, served by default, the first kept.
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

/// The rules the schema cannot express: each gets Ready=False with the code's reason, a Warning
/// event whose message starts with the KMS code, and no material.
#[tokio::test]
async fn invalid_keys_get_a_condition_and_a_warning_event_and_no_material() {
    let env = TestEnv::with_operator("invalid-keys").await;
    let cases = [
        (
            "ec-default-usage",
            "keySpec: EC_P256",
            "InvalidParameter",
            "InvalidParameter: spec.keyUsage defaults to ENCRYPT/DECRYPT",
        ),
        (
            "aes-sign",
            "keyUsage: SIGN/VERIFY",
            "InvalidParameter",
            "InvalidParameter: spec.keyUsage SIGN/VERIFY is not supported by key spec Aliyun_AES_256",
        ),
        (
            "p256k-encrypt",
            "{keySpec: EC_P256K, keyUsage: ENCRYPT/DECRYPT}",
            "InvalidParameter",
            "InvalidParameter: spec.keyUsage ENCRYPT/DECRYPT",
        ),
        (
            "rsa-external",
            "{keySpec: RSA_2048, origin: EXTERNAL}",
            "UnsupportedOperation",
            "UnsupportedOperation: spec.origin EXTERNAL is not available",
        ),
        (
            "rsa-rotation",
            "{keySpec: RSA_2048, enableAutomaticRotation: true, rotationInterval: 30d}",
            "UnsupportedOperation",
            "UnsupportedOperation: automatic rotation is not available for the asymmetric",
        ),
        (
            "external-rotation",
            "{origin: EXTERNAL, enableAutomaticRotation: true, rotationInterval: 30d}",
            "UnsupportedOperation",
            "UnsupportedOperation: automatic rotation is not available for keys with origin EXTERNAL",
        ),
        (
            "no-interval",
            "{enableAutomaticRotation: true}",
            "MissingParameter",
            "MissingParameter: spec.rotationInterval is required",
        ),
        (
            "short-interval",
            "{enableAutomaticRotation: true, rotationInterval: 6d}",
            "InvalidParameter",
            "InvalidParameter: spec.rotationInterval \"6d\" is out of range; it must be from 7d to 730d",
        ),
        (
            "long-interval",
            "{enableAutomaticRotation: true, rotationInterval: 731d}",
            "InvalidParameter",
            "InvalidParameter: spec.rotationInterval \"731d\" is out of range",
        ),
        (
            "hsm",
            "{protectionLevel: HSM}",
            "UnsupportedProtectionLevel",
            "Unsupported.ProtectionLevel: spec.protectionLevel HSM is not supported",
        ),
    ];
    for (name, spec, _, _) in &cases {
        let spec = if spec.starts_with('{') {
            spec.to_string()
        } else {
            format!("{{{spec}}}")
        };
        env.apply_key(&format!("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: {name}}}\nspec: {spec}\n")).await;
    }
    for (name, _, reason, message) in &cases {
        let key = env.wait_reason(name, reason).await;
        let condition_message = ready_message(&key);
        assert!(
            condition_message.starts_with(message),
            "{name}: {condition_message}"
        );
        assert!(
            key.status.as_ref().unwrap().key_metadata.is_none(),
            "{name}: no key exists"
        );
        let event = env.wait_event(name, reason).await;
        assert_eq!(
            event, condition_message,
            "{name}: the event says what the condition says"
        );
        let warning = env
            .events_for(name)
            .await
            .iter()
            .any(|e| e.type_.as_deref() == Some("Warning"));
        assert!(warning, "{name}: a Warning event");
    }
    assert!(
        env.managed_secrets().await.is_empty(),
        "no material for invalid keys"
    );
}

/// What the CRD schema can say, the API server refuses before the controller sees it.
#[tokio::test]
async fn the_schema_refuses_what_it_can_up_front() {
    let env = TestEnv::new("schema").await;
    let long = "x".repeat(8193);
    let cases = [
        "keySpec: aliyun_aes_256".to_string(),
        "keyUsage: encrypt".to_string(),
        "origin: External".to_string(),
        "protectionLevel: hsm".to_string(),
        "rotationInterval: 7D".to_string(),
        "rotationInterval: 7 d".to_string(),
        "rotationInterval: '-7d'".to_string(),
        "secretName: Not_A_Name".to_string(),
        format!("description: {long}"),
    ];
    for (i, spec) in cases.iter().enumerate() {
        let manifest = format!(
            "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: k{i}}}\nspec:\n  {spec}\n"
        );
        let key: Key = serde_yaml::from_str(&manifest).unwrap();
        let result = env.keys().create(&PostParams::default(), &key).await;
        match result {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{spec:.60}: {}", status.message)
            }
            other => panic!("{spec:.60} was accepted: {:?}", other.map(|k| k.name_any())),
        }
    }
}

/// A Secret that keyward did not create is never adopted, overwritten or deleted, and no
/// material is minted for a Key that cannot publish it.
#[tokio::test]
async fn a_foreign_secret_with_the_consumer_name_is_never_touched() {
    let env = TestEnv::with_operator("foreign-secret").await;
    let foreign = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("taken".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "password".into(),
            ByteString(b"hunter2".to_vec()),
        )])),
        ..Default::default()
    };
    let foreign = env
        .secrets()
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: clash}\nspec: {secretName: taken}\n").await;
    let key = env.wait_reason("clash", "SecretNameConflict").await;
    assert!(
        ready_message(&key).starts_with("SecretNameConflict: Secret taken already exists"),
        "{}",
        ready_message(&key)
    );
    env.wait_event("clash", "SecretNameConflict").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = env.secret("taken").await.unwrap();
    assert_eq!(
        after.resource_version(),
        foreign.resource_version(),
        "the foreign Secret was written"
    );
    assert_eq!(entry(&after, "password"), b"hunter2");
    assert!(
        env.managed_secrets().await.is_empty(),
        "no material minted for a Key that cannot publish it"
    );

    // Pointing the Key elsewhere resolves it, and the foreign Secret still stands.
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: clash}\nspec: {secretName: clash-key}\n").await;
    env.wait_ready("clash").await;
    assert_eq!(
        env.secret("taken").await.unwrap().resource_version(),
        foreign.resource_version()
    );
}

/// After convergence nothing is written: not the Key, not its Secrets, not even across an
/// operator restart; and a restart never mints new material.
#[tokio::test]
async fn converged_keys_cause_no_writes_and_restarts_mint_nothing() {
    let mut env = TestEnv::with_operator("idempotence").await;
    let names = ["idle-aes", "idle-rsa", "idle-sm2"];
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: idle-aes}\nspec: {enableAutomaticRotation: true, rotationInterval: 30d}\n").await;
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: idle-rsa}\nspec: {keySpec: RSA_2048}\n").await;
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: idle-sm2}\nspec: {keySpec: EC_SM2, keyUsage: SIGN/VERIFY}\n").await;
    for name in names {
        env.wait_ready(name).await;
    }
    // Let the operator see its own writes come back before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = snapshot(&env, &names).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        snapshot(&env, &names).await,
        before,
        "a converged key was written to"
    );

    env.kill_operators();
    env.start_operator(&[]);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        snapshot(&env, &names).await,
        before,
        "a restarted operator wrote to converged keys"
    );
    assert!(
        env.operator_log(1).contains("keyward starting"),
        "the second operator ran"
    );
}

/// Resource versions and data digests of each Key and its two Secrets.
async fn snapshot(env: &TestEnv, names: &[&str]) -> Vec<[String; 5]> {
    let mut state = Vec::new();
    for name in names {
        let key = env.key(name).await;
        let store = env
            .secret(&format!("{name}.keyward-material"))
            .await
            .unwrap();
        let consumer = env.secret(name).await.unwrap();
        state.push([
            key.resource_version().unwrap(),
            store.resource_version().unwrap(),
            consumer.resource_version().unwrap(),
            data_digest(&store),
            data_digest(&consumer),
        ]);
    }
    state
}

/// A consumer Secret deleted or edited by hand is rebuilt from the store with the same bytes.
#[tokio::test]
async fn a_deleted_or_edited_consumer_secret_is_rebuilt_with_the_same_bytes() {
    let env = TestEnv::with_operator("rebuild").await;
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: rebuilt}\nspec: {keySpec: EC_P256, keyUsage: SIGN/VERIFY}\n").await;
    env.wait_ready("rebuilt").await;
    let original = data_digest(&env.secret("rebuilt").await.unwrap());

    env.secrets()
        .delete("rebuilt", &DeleteParams::default())
        .await
        .unwrap();
    let restored = wait_secret_digest(&env, "rebuilt", &original).await;
    let note = env.wait_event("rebuilt", "SecretRestored").await;
    assert!(
        note.starts_with("Secret rebuilt was deleted; rebuilt it"),
        "{note}"
    );
    assert_eq!(restored.type_.as_deref(), Some("keyward.dev/key"));

    let patch = serde_json::json!({"data": {"private.pem": "Z2FyYmFnZQ==", "extra": "eA=="}});
    env.secrets()
        .patch("rebuilt", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_secret_digest(&env, "rebuilt", &original).await;
    let note = env
        .wait_event_saying(
            "rebuilt",
            "SecretRestored",
            "differed from the material store",
        )
        .await;
    assert!(note.contains("rebuilt it with all 1 version(s)"), "{note}");

    // Labels others add are kept.
    let patch = serde_json::json!({"metadata": {"labels": {"team": "payments"}}});
    env.secrets()
        .patch("rebuilt", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let secret = env.secret("rebuilt").await.unwrap();
    assert_eq!(
        secret.labels().get("team").map(String::as_str),
        Some("payments")
    );
    assert_eq!(data_digest(&secret), original);
}

async fn wait_secret_digest(env: &TestEnv, name: &str, digest: &str) -> Secret {
    let deadline = std::time::Instant::now() + common::CONVERGE;
    loop {
        if let Some(secret) = env.secret(name).await
            && data_digest(&secret) == digest
        {
            return secret;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Secret {name} was not rebuilt"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// If the material store is lost, the key says so and keyward never mints replacement
/// material for it.
#[tokio::test]
async fn a_lost_material_store_is_reported_and_never_replaced() {
    let env = TestEnv::with_operator("lost-store").await;
    env.apply_key(
        "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: orphan}\nspec: {}\n",
    )
    .await;
    let key = env.wait_ready("orphan").await;
    let key_id = key.status.unwrap().key_metadata.unwrap().key_id;
    let consumer = env.secret("orphan").await.unwrap();

    env.secrets()
        .delete("orphan.keyward-material", &DeleteParams::default())
        .await
        .unwrap();
    let key = env.wait_reason("orphan", "MaterialStoreMissing").await;
    let message = ready_message(&key);
    assert!(
        message.starts_with(
            "MaterialStoreMissing: the material store Secret orphan.keyward-material of key"
        ),
        "{message}"
    );
    assert!(message.contains(&key_id), "{message}");
    assert_eq!(
        key.status.unwrap().key_metadata.unwrap().key_id,
        key_id,
        "the key is still reported"
    );
    env.wait_event("orphan", "MaterialStoreMissing").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        env.secret("orphan.keyward-material").await.is_none(),
        "replacement material was minted"
    );
    let after = env.secret("orphan").await.unwrap();
    assert_eq!(
        after.resource_version(),
        consumer.resource_version(),
        "the consumer Secret was written"
    );
}

/// keySpec, keyUsage, origin and protectionLevel cannot change once the key exists (the 1.20
/// test server drops the CRD's CEL rules, so this is the controller's own check).
#[tokio::test]
async fn immutable_fields_cannot_change_once_the_key_exists() {
    let env = TestEnv::with_operator("immutable").await;
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: fixed}\nspec: {keySpec: RSA_2048, keyUsage: SIGN/VERIFY}\n").await;
    let before = env.wait_ready("fixed").await;
    let store_before = data_digest(&env.secret("fixed.keyward-material").await.unwrap());
    let consumer_before = env.secret("fixed").await.unwrap().resource_version();

    for (spec, field) in [
        ("{keySpec: EC_P256, keyUsage: SIGN/VERIFY}", "keySpec"),
        ("{keySpec: RSA_2048, keyUsage: ENCRYPT/DECRYPT}", "keyUsage"),
        ("{keySpec: RSA_2048}", "keyUsage"),
    ] {
        env.apply_key(&format!(
            "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: fixed}}\nspec: {spec}\n"
        ))
        .await;
        let key = env.wait_reason("fixed", "ImmutableField").await;
        let message = ready_message(&key);
        assert!(
            message.starts_with(&format!(
                "ImmutableField: spec.{field} is immutable once the key exists"
            )),
            "{message}"
        );
        assert_eq!(
            key.status.as_ref().unwrap().key_metadata,
            before.status.as_ref().unwrap().key_metadata
        );
    }
    assert_eq!(
        data_digest(&env.secret("fixed.keyward-material").await.unwrap()),
        store_before
    );
    assert_eq!(
        env.secret("fixed").await.unwrap().resource_version(),
        consumer_before
    );

    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: fixed}\nspec: {keySpec: RSA_2048, keyUsage: SIGN/VERIFY, description: back}\n").await;
    let key = env.wait_ready("fixed").await;
    assert_eq!(
        key.status.unwrap().key_metadata.unwrap().description,
        "back"
    );
}

/// Deleting a Key keeps its material; applying it again restores the same key.
#[tokio::test]
async fn deleting_a_key_keeps_its_material_and_reapplying_restores_it() {
    let env = TestEnv::with_operator("delete-keeps").await;
    let manifest = "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: kept}\nspec: {keySpec: Aliyun_SM4}\n";
    env.apply_key(manifest).await;
    let key_id = env
        .wait_ready("kept")
        .await
        .status
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;

    let material_before: Vec<Vec<u8>> = env
        .secret("kept.keyward-material")
        .await
        .unwrap()
        .data
        .iter()
        .flatten()
        .filter(|(n, _)| n.ends_with(".key"))
        .map(|(_, b)| b.0.clone())
        .collect();
    let consumer = data_digest(&env.secret("kept").await.unwrap());

    delete_key(&env, "kept").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The material is kept (the lifecycle issue adds the pending window it now waits in).
    let kept = env
        .secret("kept.keyward-material")
        .await
        .expect("store kept");
    let material = |secret: &k8s_openapi::api::core::v1::Secret| -> Vec<Vec<u8>> {
        secret
            .data
            .iter()
            .flatten()
            .filter(|(n, _)| n.ends_with(".key"))
            .map(|(_, b)| b.0.clone())
            .collect()
    };
    assert_eq!(
        material(&kept),
        material_before,
        "the material is unchanged"
    );
    assert!(env.secret("kept").await.is_some(), "consumer Secret kept");

    assert_eq!(
        reapply(&env, manifest).await,
        key_id,
        "the same key came back"
    );
    let deadline = std::time::Instant::now() + common::CONVERGE;
    while data_digest(&env.secret("kept").await.unwrap()) != consumer {
        assert!(
            std::time::Instant::now() < deadline,
            "the consumer Secret was not restored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Again, with the consumer Secret deleted too: nothing but the store tells that the key
    // existed (a Key with neither status nor consumer Secret is created without reading its
    // store first), and still the same key comes back, with the same bytes.
    delete_key(&env, "kept").await;
    env.secrets()
        .delete("kept", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        reapply(&env, manifest).await,
        key_id,
        "the same key came back"
    );
    assert_eq!(data_digest(&env.secret("kept").await.unwrap()), consumer);
    let store = env.secret("kept.keyward-material").await.unwrap();
    assert_eq!(material(&store), material_before, "nothing was minted");
    let created = env
        .events_for("kept")
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("KeyCreated"))
        .count();
    assert_eq!(created, 1, "one KeyCreated event, for the first creation");
}

/// Deletes Key `name` and waits until it is gone (no finalizer holds it).
async fn delete_key(env: &TestEnv, name: &str) {
    env.keys()
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + common::CONVERGE;
    while env.keys().get_opt(name).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "Key {name} was not deleted promptly"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Applies `manifest` again and returns the KeyId the Key reports once Ready.
async fn reapply(env: &TestEnv, manifest: &str) -> String {
    let name = env.apply_key(manifest).await.name_any();
    let key = env.wait_ready(&name).await;
    key.status.unwrap().key_metadata.unwrap().key_id
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
    let store = env
        .secret("byok.keyward-material")
        .await
        .expect("the key's record");
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

/// Two operators at once (no leader election): the write path alone keeps one key per Key.
#[tokio::test]
async fn two_operators_at_once_still_mint_exactly_one_key_each() {
    let mut env = TestEnv::new("two-operators").await;
    env.start_operator(&[]);
    env.start_operator(&[]);
    let names: Vec<String> = (0..8).map(|i| format!("race-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let spec = if i % 2 == 0 {
            "{keySpec: RSA_2048}"
        } else {
            "{}"
        };
        env.apply_key(&format!("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: {name}}}\nspec: {spec}\n")).await;
    }
    for name in &names {
        let key = env.wait_ready(name).await;
        let key_id = key.status.unwrap().key_metadata.unwrap().key_id;
        let store = env
            .secret(&format!("{name}.keyward-material"))
            .await
            .unwrap();
        assert_eq!(store.annotations().get("keyward.dev/key-id"), Some(&key_id));
        let record: serde_json::Value = serde_json::from_slice(entry(&store, "key.json")).unwrap();
        assert_eq!(
            record["versions"].as_array().unwrap().len(),
            1,
            "{name}: one version"
        );
        let consumer = env.secret(name).await.unwrap();
        assert_eq!(entry(&consumer, "keyId"), key_id.as_bytes());
    }
    assert_eq!(env.managed_secrets().await.len(), 16);
}
