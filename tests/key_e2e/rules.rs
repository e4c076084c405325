//! What a Key may not be: the rules the schema cannot express (a condition, a Warning event,
//! no material), what the schema refuses up front, and fields that cannot change once the key
//! exists.

use keyward::api::Key;
use kube::ResourceExt;
use kube::api::PostParams;

use crate::common::{TestEnv, data_digest, ready_message};

/// Keys the controller refuses: (name, spec, the condition's reason, how its message starts).
const INVALID: [(&str, &str, &str, &str); 10] = [
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
        "Unsupported.ProtectionLevel: spec.protectionLevel HSM is not available: this keyward runs without a hardware security module",
    ),
];

/// The rules the schema cannot express: each gets Ready=False with the code's reason, a Warning
/// event whose message starts with the KMS code, and no material.
#[tokio::test]
async fn invalid_keys_get_a_condition_and_a_warning_event_and_no_material() {
    let env = TestEnv::with_operator("invalid-keys").await;
    let cases = INVALID;
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

/// keySpec, keyUsage, origin and protectionLevel cannot change once the key exists (the 1.20
/// test server drops the CRD's CEL rules, so this is the controller's own check).
#[tokio::test]
async fn immutable_fields_cannot_change_once_the_key_exists() {
    let env = TestEnv::with_operator("immutable").await;
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: fixed}\nspec: {keySpec: RSA_2048, keyUsage: SIGN/VERIFY}\n").await;
    let before = env.wait_ready("fixed").await;
    let store_before = data_digest(&env.store("fixed").await.unwrap());
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
        data_digest(&env.store("fixed").await.unwrap()),
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
