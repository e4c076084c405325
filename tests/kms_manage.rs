//! Key management through the KMS API with the official SDKs: CreateKey makes a Key object,
//! the other actions change its spec or create KeyVersions, and the controller does the work.
//! Refusals leave nothing behind, and RBAC is asked per verb.

mod common;

use common::kms::*;
use common::{TestEnv, eventually};
use keyward::api::{Key, KeyVersion};
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

const OPERATOR_WITH_API: [&str; 3] = ["--kms-api-addr", "127.0.0.1:0", "--kms-api-insecure-http"];

/// Every verb of the key-management actions, as RBAC is asked for them.
const MANAGEMENT_VERBS: [&str; 13] = [
    "createkey",
    "describekey",
    "listkeys",
    "updatekeydescription",
    "enablekey",
    "disablekey",
    "schedulekeydeletion",
    "cancelkeydeletion",
    "updaterotationpolicy",
    "createkeyversion",
    "describekeyversion",
    "listkeyversions",
    "encrypt",
];

async fn key_count(env: &TestEnv) -> usize {
    env.keys()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len()
}

/// The Key object whose KeyMetadata has `key_id`.
async fn key_with_id(env: &TestEnv, key_id: &str) -> Key {
    let keys = env.keys().list(&ListParams::default()).await.unwrap().items;
    keys.into_iter()
        .find(|k| {
            k.status
                .as_ref()
                .and_then(|s| s.key_metadata.as_ref())
                .is_some_and(|m| m.key_id == key_id)
        })
        .unwrap_or_else(|| panic!("no Key object has KeyId {key_id}"))
}

fn code_of(outcome: Outcome) -> (String, String, Option<u64>) {
    outcome.expect_err("the call should have been refused")
}

#[tokio::test]
async fn create_key_makes_a_key_object_for_every_key_spec_and_refusals_leave_nothing() {
    let mut env = TestEnv::new("kms-create").await;
    // Room for exactly the six asymmetric keys below: the seventh is the controller's to refuse.
    let mut args = OPERATOR_WITH_API.to_vec();
    args.extend(["--max-asymmetric-key-versions", "6"]);
    env.start_operator(&args);
    for account in ["ops", "viewer"] {
        create_service_account(&env, account).await;
    }
    grant(
        &env,
        "ops",
        &["createkey", "describekey", "listkeys", "createkeyversion"],
    )
    .await;
    grant(&env, "viewer", &["describekey", "listkeys"]).await;
    let ops = access_key(&env, "ops-key", "ops").await;
    let viewer = access_key(&env, "viewer-key", "viewer").await;
    let endpoint = kms_api_endpoint(&env).await;
    let creator = format!("system:serviceaccount:{}:ops", env.namespace);

    let specs = [
        ("Aliyun_AES_256", "ENCRYPT/DECRYPT"),
        ("Aliyun_SM4", "ENCRYPT/DECRYPT"),
        ("RSA_2048", "ENCRYPT/DECRYPT"),
        ("RSA_2048", "SIGN/VERIFY"),
        ("EC_P256", "SIGN/VERIFY"),
        ("EC_P256K", "SIGN/VERIFY"),
        ("EC_SM2", "SIGN/VERIFY"),
        ("EC_SM2", "ENCRYPT/DECRYPT"),
    ];
    let mut created: Vec<(String, &str)> = Vec::new();
    for (i, (spec, usage)) in specs.iter().enumerate() {
        let (sdk, other_sdk) = (BOTH_SDKS[i % 2], BOTH_SDKS[(i + 1) % 2]);
        let body = call(
            sdk,
            &endpoint,
            &ops,
            "CreateKey",
            json!({"KeySpec": spec, "KeyUsage": usage, "Description": format!("{spec} {usage}")}),
        )
        .unwrap_or_else(|e| panic!("{sdk} CreateKey {spec} {usage}: {e:?}"));
        let metadata = &body["KeyMetadata"];
        assert_eq!(metadata["KeySpec"], *spec, "{sdk}: {body}");
        assert_eq!(metadata["KeyUsage"], *usage, "{sdk}: {body}");
        assert_eq!(metadata["KeyState"], "Enabled", "{sdk}: {body}");
        assert_eq!(metadata["Origin"], "Aliyun_KMS", "{sdk}: {body}");
        assert_eq!(metadata["ProtectionLevel"], "SOFTWARE", "{sdk}: {body}");
        assert_eq!(metadata["AutomaticRotation"], "Disabled", "{sdk}: {body}");
        let key_id = metadata["KeyId"].as_str().expect("a KeyId").to_string();
        assert!(body["RequestId"].as_str().is_some_and(|id| !id.is_empty()));

        // The key is a Key object like any other, saying who asked for it.
        let key = key_with_id(&env, &key_id).await;
        let annotations = key.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.get("keyward.dev/created-by"), Some(&creator));
        assert_eq!(key.spec.key_spec.as_deref(), Some(*spec));
        let described = call(
            other_sdk,
            &endpoint,
            &ops,
            "DescribeKey",
            json!({"KeyId": format!("alias/{}", kube::ResourceExt::name_any(&key))}),
        )
        .unwrap_or_else(|e| panic!("{other_sdk} DescribeKey: {e:?}"));
        assert_eq!(described["KeyMetadata"], body["KeyMetadata"], "{other_sdk}");
        created.push((key_id, spec));
    }
    assert_eq!(key_count(&env).await, specs.len());
    let listed = call("tea", &endpoint, &ops, "ListKeys", json!({"PageSize": 100})).unwrap();
    assert_eq!(listed["TotalCount"], specs.len(), "{listed}");

    // A rotating key: the interval normalised to seconds, as the seed's sample shows.
    let rotating = call(
        "v1",
        &endpoint,
        &ops,
        "CreateKey",
        json!({"EnableAutomaticRotation": true, "RotationInterval": "30d"}),
    )
    .unwrap_or_else(|e| panic!("v1 CreateKey with rotation: {e:?}"));
    assert_eq!(rotating["KeyMetadata"]["AutomaticRotation"], "Enabled");
    assert_eq!(rotating["KeyMetadata"]["RotationInterval"], "2592000s");
    assert_eq!(rotating["KeyMetadata"]["KeySpec"], "Aliyun_AES_256");
    let count = key_count(&env).await;

    // Refused by the seed's rules before anything is written.
    for sdk in BOTH_SDKS {
        for (params, code) in [
            (
                json!({"KeySpec": "EC_P256", "KeyUsage": "ENCRYPT/DECRYPT"}),
                "InvalidParameter",
            ),
            (json!({"KeySpec": "AES_256"}), "InvalidParameter"),
            (
                json!({"ProtectionLevel": "HSM"}),
                "Unsupported.ProtectionLevel",
            ),
            (
                json!({"KeySpec": "RSA_2048", "Origin": "EXTERNAL"}),
                "UnsupportedOperation",
            ),
            (json!({"EnableAutomaticRotation": true}), "MissingParameter"),
            (
                json!({"EnableAutomaticRotation": true, "RotationInterval": "1d"}),
                "InvalidParameter",
            ),
        ] {
            let (got, message, status) =
                code_of(call(sdk, &endpoint, &ops, "CreateKey", params.clone()));
            assert_eq!(
                (got.as_str(), status),
                (code, Some(400)),
                "{sdk} {params}: {message}"
            );
            assert!(!message.is_empty());
        }
        // RBAC: the viewer may describe, not create; the message names the verb.
        let (got, message, status) = code_of(call(sdk, &endpoint, &viewer, "CreateKey", json!({})));
        assert_eq!(
            (got.as_str(), status),
            ("Forbidden.NoPermission", Some(403)),
            "{sdk}"
        );
        assert!(message.contains("createkey"), "{sdk}: {message}");
    }
    assert_eq!(
        key_count(&env).await,
        count,
        "a refused CreateKey left a Key behind"
    );

    // The namespace's asymmetric limit is the controller's to judge: the seventh asymmetric
    // key is refused with the KMS's code, and its Key object is removed again.
    let (got, message, status) = code_of(call(
        "tea",
        &endpoint,
        &ops,
        "CreateKey",
        json!({"KeySpec": "EC_P256", "KeyUsage": "SIGN/VERIFY"}),
    ));
    assert_eq!(
        (got.as_str(), status),
        ("Rejected.LimitExceeded", Some(409)),
        "{message}"
    );
    eventually("the refused Key's object removed", || async {
        (key_count(&env).await == count).then_some(())
    })
    .await;

    // CreateKeyVersion within the seed's seven days of the last version: refused by the
    // controller, answered with its code.
    let (rsa_signing, _) = &created[3];
    let (got, message, status) = code_of(call(
        "v1",
        &endpoint,
        &ops,
        "CreateKeyVersion",
        json!({"KeyId": rsa_signing}),
    ));
    assert_eq!(
        (got.as_str(), status),
        ("Rejected.UnsupportedOperation", Some(409)),
        "{message}"
    );
    // A symmetric key never gets one by request: refused before a KeyVersion is made.
    let versions_before = key_versions(&env).await;
    let (aes, _) = &created[0];
    let (got, message, _) = code_of(call(
        "tea",
        &endpoint,
        &ops,
        "CreateKeyVersion",
        json!({"KeyId": aes}),
    ));
    assert_eq!(got, "Rejected.UnsupportedOperation", "{message}");
    assert!(message.contains("asymmetric"), "{message}");
    assert_eq!(key_versions(&env).await, versions_before);
}

async fn key_versions(env: &TestEnv) -> usize {
    let api: Api<KeyVersion> = Api::namespaced(env.client.clone(), &env.namespace);
    api.list(&ListParams::default()).await.unwrap().items.len()
}

/// DescribeKey's KeyMetadata, through `sdk`.
fn describe(sdk: &str, endpoint: &str, pair: &(String, String), key: &str) -> Value {
    call(sdk, endpoint, pair, "DescribeKey", json!({"KeyId": key}))
        .unwrap_or_else(|e| panic!("{sdk} DescribeKey {key}: {e:?}"))["KeyMetadata"]
        .clone()
}

#[tokio::test]
async fn management_actions_change_the_key_spec_and_answer_once_applied() {
    let mut env = TestEnv::new("kms-manage").await;
    // A version may follow the last after 1 s here (the seed's 7 days, shortened for the test).
    let mut args = OPERATOR_WITH_API.to_vec();
    args.extend(["--key-version-min-interval", "1s"]);
    env.start_operator(&args);
    for (name, spec) in [
        ("app", "{description: app data}"),
        ("other", "{keySpec: Aliyun_SM4}"),
        ("guarded", "{deletionProtection: true}"),
        ("signer", "{keySpec: RSA_2048, keyUsage: SIGN/VERIFY}"),
    ] {
        env.apply_key(&format!(
            "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        ))
        .await;
    }
    for name in ["app", "other", "guarded", "signer"] {
        env.wait_ready(name).await;
    }
    for account in ["ops", "limited"] {
        create_service_account(&env, account).await;
    }
    let mut verbs = MANAGEMENT_VERBS.to_vec();
    verbs.extend(["decrypt", "reencrypt"]);
    grant(&env, "ops", &verbs).await;
    grant(&env, "limited", &["describekey"]).await;
    let ops = access_key(&env, "ops-key", "ops").await;
    let limited = access_key(&env, "limited-key", "limited").await;
    let endpoint = kms_api_endpoint(&env).await;

    // UpdateKeyDescription: the spec changes, under the API's own field manager.
    call(
        "v1",
        &endpoint,
        &ops,
        "UpdateKeyDescription",
        json!({"KeyId": "alias/app", "Description": "new words"}),
    )
    .unwrap_or_else(|e| panic!("UpdateKeyDescription: {e:?}"));
    assert_eq!(
        describe("tea", &endpoint, &ops, "alias/app")["Description"],
        "new words"
    );
    let key = env.key("app").await;
    assert_eq!(key.spec.description.as_deref(), Some("new words"));
    let managers: Vec<String> = key
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| f.manager)
        .collect();
    assert!(
        managers.iter().any(|m| m == "keyward-kms-api"),
        "{managers:?}"
    );

    // DisableKey / EnableKey, through both SDKs; disabling twice writes nothing the second time.
    call(
        "tea",
        &endpoint,
        &ops,
        "DisableKey",
        json!({"KeyId": "alias/app"}),
    )
    .unwrap();
    assert_eq!(
        describe("v1", &endpoint, &ops, "alias/app")["KeyState"],
        "Disabled"
    );
    let (got, _, status) = code_of(call(
        "v1",
        &endpoint,
        &ops,
        "Encrypt",
        json!({"KeyId": "alias/app", "Plaintext": "x"}),
    ));
    assert_eq!((got.as_str(), status), ("Rejected.Disabled", Some(409)));
    let before = env.key("app").await.metadata.resource_version;
    call(
        "v1",
        &endpoint,
        &ops,
        "DisableKey",
        json!({"KeyId": "alias/app"}),
    )
    .unwrap();
    assert_eq!(
        env.key("app").await.metadata.resource_version,
        before,
        "a no-op was written"
    );
    call(
        "v1",
        &endpoint,
        &ops,
        "EnableKey",
        json!({"KeyId": "alias/app"}),
    )
    .unwrap();
    assert_eq!(
        describe("tea", &endpoint, &ops, "alias/app")["KeyState"],
        "Enabled"
    );
    call(
        "tea",
        &endpoint,
        &ops,
        "Encrypt",
        json!({"KeyId": "alias/app", "Plaintext": "x"}),
    )
    .unwrap_or_else(|e| panic!("Encrypt after EnableKey: {e:?}"));

    // ScheduleKeyDeletion and CancelKeyDeletion.
    for sdk in BOTH_SDKS {
        let (got, message, status) = code_of(call(
            sdk,
            &endpoint,
            &ops,
            "ScheduleKeyDeletion",
            json!({"KeyId": "alias/app", "PendingWindowInDays": 5}),
        ));
        assert_eq!(
            (got.as_str(), status),
            ("InvalidParameter", Some(400)),
            "{sdk}: {message}"
        );
        assert!(message.contains("7 to 30"), "{message}");
        call(
            sdk,
            &endpoint,
            &ops,
            "ScheduleKeyDeletion",
            json!({"KeyId": "alias/app", "PendingWindowInDays": 7}),
        )
        .unwrap_or_else(|e| panic!("{sdk} ScheduleKeyDeletion: {e:?}"));
        let metadata = describe(sdk, &endpoint, &ops, "alias/app");
        assert_eq!(metadata["KeyState"], "PendingDeletion", "{sdk}");
        assert!(
            metadata["DeleteDate"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{metadata}"
        );
        for action in ["EnableKey", "ScheduleKeyDeletion"] {
            let (got, message, status) = code_of(call(
                sdk,
                &endpoint,
                &ops,
                action,
                filtered(
                    action,
                    json!({"KeyId": "alias/app", "PendingWindowInDays": 7}),
                ),
            ));
            assert_eq!(
                (got.as_str(), status),
                ("Rejected.PendingDeletion", Some(409)),
                "{sdk} {action}: {message}"
            );
        }
        call(
            sdk,
            &endpoint,
            &ops,
            "CancelKeyDeletion",
            json!({"KeyId": "alias/app"}),
        )
        .unwrap_or_else(|e| panic!("{sdk} CancelKeyDeletion: {e:?}"));
        assert_eq!(
            describe(sdk, &endpoint, &ops, "alias/app")["KeyState"],
            "Enabled",
            "{sdk}"
        );
        let (got, _, status) = code_of(call(
            sdk,
            &endpoint,
            &ops,
            "CancelKeyDeletion",
            json!({"KeyId": "alias/app"}),
        ));
        assert_eq!(
            (got.as_str(), status),
            ("Rejected.Enabled", Some(409)),
            "{sdk}"
        );
    }
    // Deletion protection holds against the API as against kubectl.
    let (got, message, status) = code_of(call(
        "tea",
        &endpoint,
        &ops,
        "ScheduleKeyDeletion",
        json!({"KeyId": "alias/guarded", "PendingWindowInDays": 7}),
    ));
    assert_eq!(
        (got.as_str(), status),
        ("Forbidden.DeletionProtection", Some(403)),
        "{message}"
    );
    assert!(message.contains("deletionProtection"), "{message}");
    assert_eq!(env.key("guarded").await.spec.key_state, None);

    // UpdateRotationPolicy: on and off for a symmetric key; an asymmetric key cannot rotate.
    call(
        "v1",
        &endpoint,
        &ops,
        "UpdateRotationPolicy",
        json!({"KeyId": "alias/app", "EnableAutomaticRotation": true, "RotationInterval": "30d"}),
    )
    .unwrap_or_else(|e| panic!("UpdateRotationPolicy: {e:?}"));
    let metadata = describe("tea", &endpoint, &ops, "alias/app");
    assert_eq!(metadata["AutomaticRotation"], "Enabled", "{metadata}");
    assert_eq!(metadata["RotationInterval"], "2592000s", "{metadata}");
    assert!(
        metadata["NextRotationDate"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    call(
        "tea",
        &endpoint,
        &ops,
        "UpdateRotationPolicy",
        json!({"KeyId": "alias/app", "EnableAutomaticRotation": false}),
    )
    .unwrap();
    assert_eq!(
        describe("v1", &endpoint, &ops, "alias/app")["AutomaticRotation"],
        "Disabled"
    );
    let (got, message, status) = code_of(call(
        "v1",
        &endpoint,
        &ops,
        "UpdateRotationPolicy",
        json!({"KeyId": "alias/signer", "EnableAutomaticRotation": true, "RotationInterval": "30d"}),
    ));
    assert_eq!(
        (got.as_str(), status),
        ("UnsupportedOperation", Some(400)),
        "{message}"
    );

    // CreateKeyVersion, then the versions listed, paged and described.
    let signer = describe("v1", &endpoint, &ops, "alias/signer");
    let versions = call(
        "v1",
        &endpoint,
        &ops,
        "ListKeyVersions",
        json!({"KeyId": "alias/signer"}),
    )
    .unwrap();
    assert_eq!(versions["TotalCount"], 1, "{versions}");
    let first = versions["KeyVersions"]["KeyVersion"][0]["KeyVersionId"]
        .as_str()
        .unwrap()
        .to_string();
    let made = eventually(
        "a new version of signer once its interval passed",
        || async {
            call(
                "tea",
                &endpoint,
                &ops,
                "CreateKeyVersion",
                json!({"KeyId": "alias/signer"}),
            )
            .ok()
        },
    )
    .await;
    let second = made["KeyVersion"]["KeyVersionId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(made["KeyVersion"]["KeyId"], signer["KeyId"]);
    assert_ne!(second, first);
    for sdk in BOTH_SDKS {
        let listed = call(
            sdk,
            &endpoint,
            &ops,
            "ListKeyVersions",
            json!({"KeyId": "alias/signer"}),
        )
        .unwrap();
        assert_eq!(listed["TotalCount"], 2, "{sdk}: {listed}");
        let page = call(
            sdk,
            &endpoint,
            &ops,
            "ListKeyVersions",
            json!({"KeyId": "alias/signer", "PageSize": 1, "PageNumber": 2}),
        )
        .unwrap();
        assert_eq!(
            page["KeyVersions"]["KeyVersion"][0]["KeyVersionId"],
            second.as_str(),
            "{sdk}: {page}"
        );
        assert_eq!(
            (page["PageNumber"].clone(), page["PageSize"].clone()),
            (json!(2), json!(1))
        );
        let described = call(
            sdk,
            &endpoint,
            &ops,
            "DescribeKeyVersion",
            json!({"KeyId": "alias/signer", "KeyVersionId": first}),
        )
        .unwrap();
        assert_eq!(
            described["KeyVersion"]["KeyVersionId"],
            first.as_str(),
            "{sdk}"
        );
        assert!(
            described["KeyVersion"]["CreationDate"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
        let (got, _, status) = code_of(call(
            sdk,
            &endpoint,
            &ops,
            "DescribeKeyVersion",
            json!({"KeyId": "alias/signer", "KeyVersionId": "no-such-version"}),
        ));
        assert_eq!(
            (got.as_str(), status),
            ("Forbidden.KeyVersionNotFound", Some(404)),
            "{sdk}"
        );
    }

    // ReEncrypt: from one key to another without the plaintext leaving keyward.
    let sealed = call(
        "v1",
        &endpoint,
        &ops,
        "Encrypt",
        json!({"KeyId": "alias/app", "Plaintext": "moved between keys"}),
    )
    .unwrap();
    let moved = call(
        "tea",
        &endpoint,
        &ops,
        "ReEncrypt",
        json!({"CiphertextBlob": sealed["CiphertextBlob"], "DestinationKeyId": "alias/other"}),
    )
    .unwrap_or_else(|e| panic!("ReEncrypt: {e:?}"));
    assert_eq!(
        moved["KeyId"],
        describe("v1", &endpoint, &ops, "alias/other")["KeyId"]
    );
    let opened = call(
        "v1",
        &endpoint,
        &ops,
        "Decrypt",
        json!({"CiphertextBlob": moved["CiphertextBlob"]}),
    )
    .unwrap();
    assert_eq!(opened["Plaintext"], "moved between keys");

    // RBAC per verb: each action refused to a caller without its verb, naming it.
    let app = json!({"KeyId": "alias/app", "Description": "d", "PendingWindowInDays": 7, "EnableAutomaticRotation": false, "KeyVersionId": first});
    for (i, (action, verb)) in [
        ("UpdateKeyDescription", "updatekeydescription"),
        ("EnableKey", "enablekey"),
        ("DisableKey", "disablekey"),
        ("ScheduleKeyDeletion", "schedulekeydeletion"),
        ("CancelKeyDeletion", "cancelkeydeletion"),
        ("UpdateRotationPolicy", "updaterotationpolicy"),
        ("CreateKeyVersion", "createkeyversion"),
        ("DescribeKeyVersion", "describekeyversion"),
        ("ListKeyVersions", "listkeyversions"),
    ]
    .into_iter()
    .enumerate()
    {
        let sdk = BOTH_SDKS[i % 2];
        let mut params = app.clone();
        if action == "CreateKeyVersion"
            || action == "DescribeKeyVersion"
            || action == "ListKeyVersions"
        {
            params["KeyId"] = json!("alias/signer");
        }
        let params = filtered(action, params);
        let (got, message, status) = code_of(call(sdk, &endpoint, &limited, action, params));
        assert_eq!(
            (got.as_str(), status),
            ("Forbidden.NoPermission", Some(403)),
            "{sdk} {action}"
        );
        assert!(
            message.contains(&format!("\"{verb}\"")),
            "{action}: {message}"
        );
    }
    assert_eq!(
        env.key("app").await.spec.description.as_deref(),
        Some("new words")
    );
}

/// The parameters `action` takes, of the common set (the SDKs' typed requests refuse others).
fn filtered(action: &str, params: Value) -> Value {
    let takes: &[&str] = match action {
        "UpdateKeyDescription" => &["KeyId", "Description"],
        "ScheduleKeyDeletion" => &["KeyId", "PendingWindowInDays"],
        "UpdateRotationPolicy" => &["KeyId", "EnableAutomaticRotation"],
        "DescribeKeyVersion" => &["KeyId", "KeyVersionId"],
        _ => &["KeyId"],
    };
    let object = params.as_object().unwrap();
    Value::Object(
        object
            .iter()
            .filter(|(k, _)| takes.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}
