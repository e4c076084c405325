//! The KMS API through the official Alibaba Cloud KMS SDKs from PyPI (hack/kms-sdk.py), on a
//! real API server: requests signed with an AccessKey pair act as its ServiceAccount, RBAC
//! (a SubjectAccessReview per verb) decides, and errors carry the KMS's codes.

mod common;

use std::process::Command;

use common::kms::*;
use common::{CONVERGE, TestEnv};
use keyward::api::AccessKey;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

#[tokio::test]
async fn the_official_sdks_describe_and_list_keys_as_rbac_allows() {
    let mut env = TestEnv::new("kms-api").await;
    env.start_operator(&["--kms-api-addr", "127.0.0.1:0", "--kms-api-insecure-http"]);
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: payments}\nspec: {description: card data}\n")
        .await;
    let key = env.wait_ready("payments").await;
    let metadata = key.status.unwrap().key_metadata.unwrap();
    for account in ["api", "nobody"] {
        create_service_account(&env, account).await;
    }
    grant(&env, "api", &["describekey", "listkeys"]).await;
    let allowed = access_key(&env, "api-key", "api").await;
    let denied = access_key(&env, "nobody-key", "nobody").await;
    let endpoint = kms_api_endpoint(&env).await;

    for sdk in BOTH_SDKS {
        // Addressed by alias, KeyId and ARN: the seed's KeyMetadata.
        for key_id in [
            "alias/payments".to_string(),
            metadata.key_id.clone(),
            metadata.arn.clone(),
        ] {
            let body = call(
                sdk,
                &endpoint,
                &allowed,
                "DescribeKey",
                json!({"KeyId": key_id}),
            )
            .unwrap_or_else(|e| panic!("{sdk} DescribeKey {key_id}: {e:?}"));
            let described = &body["KeyMetadata"];
            assert_eq!(described["KeyId"], metadata.key_id.as_str(), "{sdk}");
            assert_eq!(described["KeySpec"], "Aliyun_AES_256", "{sdk}");
            assert_eq!(described["KeyState"], "Enabled", "{sdk}");
            assert_eq!(described["Description"], "card data", "{sdk}");
            assert_eq!(described["Arn"], metadata.arn.as_str(), "{sdk}");
            assert!(body["RequestId"].as_str().is_some_and(|id| !id.is_empty()));
        }
        let listed = call(sdk, &endpoint, &allowed, "ListKeys", json!({})).unwrap();
        assert_eq!(listed["TotalCount"], 1, "{sdk}: {listed}");
        assert_eq!(listed["Keys"]["Key"][0]["KeyId"], metadata.key_id.as_str());
        assert_eq!(listed["Keys"]["Key"][0]["KeyArn"], metadata.arn.as_str());

        // RBAC denies the other ServiceAccount, naming the verb to grant.
        let (code, message, status) = call(
            sdk,
            &endpoint,
            &denied,
            "DescribeKey",
            json!({"KeyId": "alias/payments"}),
        )
        .unwrap_err();
        assert_eq!(
            (code.as_str(), status),
            ("Forbidden.NoPermission", Some(403)),
            "{sdk}"
        );
        assert!(message.contains("\"describekey\""), "{sdk}: {message}");

        // Unknown keys, unknown AccessKeys, wrong secrets: the KMS's codes.
        let unknown = call(
            sdk,
            &endpoint,
            &allowed,
            "DescribeKey",
            json!({"KeyId": "alias/none"}),
        );
        assert_eq!(unknown.unwrap_err().0, "Forbidden.KeyNotFound", "{sdk}");
        let stranger = ("KWAKnobodyhasthisid0000".to_string(), "x".repeat(30));
        let (code, _, status) = call(sdk, &endpoint, &stranger, "ListKeys", json!({})).unwrap_err();
        assert_eq!(
            (code.as_str(), status),
            ("InvalidAccessKeyId.NotFound", Some(404)),
            "{sdk}"
        );
        let forged = (allowed.0.clone(), "y".repeat(30));
        let (code, message, _) = call(sdk, &endpoint, &forged, "ListKeys", json!({})).unwrap_err();
        // The v1 SDK reports a mismatch over its own string to sign as a wrong secret.
        let expected = if sdk == "v1" {
            "InvalidAccessKeySecret"
        } else {
            "SignatureDoesNotMatch"
        };
        assert_eq!(code, expected, "{sdk}: {message}");
        assert!(
            !message.contains(&allowed.1),
            "{sdk}: the error shows the secret"
        );
    }

    // A ServiceAccount token for the audience keyward acts as its ServiceAccount; one for
    // another audience is refused.
    let token = service_account_token(&env, "api", "keyward").await;
    let listed = call_with_token(&endpoint, &token, "ListKeys", json!({}))
        .unwrap_or_else(|e| panic!("ListKeys with a bearer token: {e:?}"));
    assert_eq!(listed["TotalCount"], 1, "{listed}");
    let other = service_account_token(&env, "api", "someone-else").await;
    let (code, message, status) =
        call_with_token(&endpoint, &other, "ListKeys", json!({})).unwrap_err();
    assert_eq!(
        (code.as_str(), status),
        ("InvalidBearerToken", Some(401)),
        "{message}"
    );
    assert!(!message.contains(&other), "the error shows the token");

    // Deleting the AccessKey revokes the pair.
    let api: Api<AccessKey> = Api::namespaced(env.client.clone(), &env.namespace);
    api.delete("api-key", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + CONVERGE;
    loop {
        match call("tea", &endpoint, &allowed, "ListKeys", json!({})) {
            Err((code, _, _)) if code == "InvalidAccessKeyId.NotFound" => break,
            other => assert!(
                std::time::Instant::now() < deadline,
                "the pair still works after its AccessKey was deleted: {other:?}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn symmetric_and_signing_keys_are_used_through_both_sdks() {
    let mut env = TestEnv::new("kms-api-crypto").await;
    env.start_operator(&["--kms-api-addr", "127.0.0.1:0", "--kms-api-insecure-http"]);
    for (name, spec) in [
        ("aes", "{}"),
        ("sm4", "{keySpec: Aliyun_SM4}"),
        ("ec", "{keySpec: EC_P256, keyUsage: SIGN/VERIFY}"),
    ] {
        env.apply_key(&format!(
            "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        ))
        .await;
    }
    for name in ["aes", "sm4", "ec"] {
        env.wait_ready(name).await;
    }
    create_service_account(&env, "worker").await;
    grant(
        &env,
        "worker",
        &[
            "encrypt",
            "decrypt",
            "generatedatakey",
            "getpublickey",
            "asymmetricsign",
            "asymmetricverify",
        ],
    )
    .await;
    let pair = access_key(&env, "worker-key", "worker").await;
    let endpoint = kms_api_endpoint(&env).await;
    let context = r#"{"order": "42", "shop": "east"}"#;

    for sdk in BOTH_SDKS {
        for key in ["alias/aes", "alias/sm4"] {
            let sealed = call(
                sdk,
                &endpoint,
                &pair,
                "Encrypt",
                json!({"KeyId": key, "Plaintext": "hello world", "EncryptionContext": context}),
            )
            .unwrap_or_else(|e| panic!("{sdk} Encrypt {key}: {e:?}"));
            let blob = sealed["CiphertextBlob"].as_str().unwrap().to_string();
            assert!(!blob.contains("hello"), "{sdk}");
            let opened = call(
                sdk,
                &endpoint,
                &pair,
                "Decrypt",
                json!({"CiphertextBlob": blob, "EncryptionContext": context}),
            )
            .unwrap_or_else(|e| panic!("{sdk} Decrypt {key}: {e:?}"));
            assert_eq!(opened["Plaintext"], "hello world", "{sdk} {key}");
            assert_eq!(
                opened["KeyVersionId"], sealed["KeyVersionId"],
                "{sdk} {key}"
            );
            // Another context is another key: refused, whatever differs.
            let other = call(
                sdk,
                &endpoint,
                &pair,
                "Decrypt",
                json!({"CiphertextBlob": blob, "EncryptionContext": r#"{"order": "43"}"#}),
            );
            assert_eq!(other.unwrap_err().0, "InvalidParameter", "{sdk} {key}");
        }
        // The seed's limit: 6 KB of plaintext; beyond, GenerateDataKey is the way.
        let (code, message, _) = call(
            sdk,
            &endpoint,
            &pair,
            "Encrypt",
            json!({"KeyId": "alias/aes", "Plaintext": "x".repeat(6145)}),
        )
        .unwrap_err();
        assert_eq!(code, "InvalidParameter", "{sdk}");
        assert!(message.contains("GenerateDataKey"), "{sdk}: {message}");
        // A data key: its plaintext once, and Decrypt of its blob gives the same.
        let data_key = call(
            sdk,
            &endpoint,
            &pair,
            "GenerateDataKey",
            json!({"KeyId": "alias/aes", "NumberOfBytes": 32}),
        )
        .unwrap_or_else(|e| panic!("{sdk} GenerateDataKey: {e:?}"));
        let plaintext = data_key["Plaintext"].as_str().unwrap();
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(plaintext)
            .unwrap();
        assert_eq!(bytes.len(), 32, "{sdk}");
        let opened = call(
            sdk,
            &endpoint,
            &pair,
            "Decrypt",
            json!({"CiphertextBlob": data_key["CiphertextBlob"]}),
        )
        .unwrap();
        assert_eq!(opened["Plaintext"].as_str(), Some(plaintext), "{sdk}");
        // A signing key cannot encrypt.
        let (code, _, status) = call(
            sdk,
            &endpoint,
            &pair,
            "Encrypt",
            json!({"KeyId": "alias/ec", "Plaintext": "x"}),
        )
        .unwrap_err();
        assert_eq!(
            (code.as_str(), status),
            ("UnsupportedOperation", Some(400)),
            "{sdk}"
        );

        // AsymmetricSign of a SHA-256 digest; verified by the API and by OpenSSL.
        let message = format!("sign me through {sdk}");
        let digest = openssl_digest(message.as_bytes());
        let encoded = base64::engine::general_purpose::STANDARD.encode(&digest);
        let signed = call(
            sdk,
            &endpoint,
            &pair,
            "AsymmetricSign",
            json!({"KeyId": "alias/ec", "Algorithm": "ECDSA_SHA_256", "Digest": encoded}),
        )
        .unwrap_or_else(|e| panic!("{sdk} AsymmetricSign: {e:?}"));
        let value = signed["Value"].as_str().unwrap();
        let verified = call(
            sdk,
            &endpoint,
            &pair,
            "AsymmetricVerify",
            json!({"KeyId": "alias/ec", "Algorithm": "ECDSA_SHA_256", "Digest": encoded,
                   "Value": value}),
        )
        .unwrap();
        assert_eq!(verified["Value"], true, "{sdk}");
        let public = call(
            sdk,
            &endpoint,
            &pair,
            "GetPublicKey",
            json!({"KeyId": "alias/ec"}),
        )
        .unwrap();
        let pem = public["PublicKey"].as_str().unwrap();
        let signature = base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap();
        assert!(
            openssl_verifies(pem, message.as_bytes(), &signature),
            "{sdk}: OpenSSL refused"
        );
    }

    // A Disabled key refuses cryptography with the KMS's code.
    let patch = json!({"spec": {"keyState": "Disabled"}});
    env.keys()
        .patch("aes", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.wait_key("aes", "Disabled", |k| {
        k.status
            .as_ref()
            .and_then(|s| s.key_metadata.as_ref())
            .is_some_and(|m| m.key_state.as_str() == "Disabled")
    })
    .await;
    for sdk in BOTH_SDKS {
        let (code, _, status) = call(
            sdk,
            &endpoint,
            &pair,
            "Encrypt",
            json!({"KeyId": "alias/aes", "Plaintext": "x"}),
        )
        .unwrap_err();
        assert_eq!(
            (code.as_str(), status),
            ("Rejected.Disabled", Some(409)),
            "{sdk}"
        );
    }
}

#[tokio::test]
async fn rsa_encryption_keys_decrypt_what_openssl_encrypts_with_their_public_key() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut env = TestEnv::new("kms-api-rsa").await;
    env.start_operator(&["--kms-api-addr", "127.0.0.1:0", "--kms-api-insecure-http"]);
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: rsa}\nspec: {keySpec: RSA_2048, keyUsage: ENCRYPT/DECRYPT}\n")
        .await;
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: aes}\nspec: {}\n")
        .await;
    env.wait_ready("rsa").await;
    env.wait_ready("aes").await;
    create_service_account(&env, "vault").await;
    grant(
        &env,
        "vault",
        &[
            "asymmetricencrypt",
            "asymmetricdecrypt",
            "getpublickey",
            "reencrypt",
            "decrypt",
        ],
    )
    .await;
    let pair = access_key(&env, "vault-key", "vault").await;
    let endpoint = kms_api_endpoint(&env).await;
    let secret = b"a 32-byte wrapped data key here!";

    for sdk in BOTH_SDKS {
        let sealed = call(
            sdk,
            &endpoint,
            &pair,
            "AsymmetricEncrypt",
            json!({"KeyId": "alias/rsa", "Algorithm": "RSAES_OAEP_SHA_256",
                   "Plaintext": b64.encode(secret)}),
        )
        .unwrap_or_else(|e| panic!("{sdk} AsymmetricEncrypt: {e:?}"));
        let opened = call(
            sdk,
            &endpoint,
            &pair,
            "AsymmetricDecrypt",
            json!({"KeyId": "alias/rsa", "Algorithm": "RSAES_OAEP_SHA_256",
                   "CiphertextBlob": sealed["CiphertextBlob"]}),
        )
        .unwrap_or_else(|e| panic!("{sdk} AsymmetricDecrypt: {e:?}"));
        assert_eq!(
            b64.decode(opened["Plaintext"].as_str().unwrap()).unwrap(),
            secret
        );

        // OpenSSL encrypts with the published public key; keyward decrypts.
        let public = call(
            sdk,
            &endpoint,
            &pair,
            "GetPublicKey",
            json!({"KeyId": "alias/rsa"}),
        )
        .unwrap();
        let scratch = common::scratch::Scratch::new("kms-api-rsa");
        let key = scratch.write(
            "public.pem",
            public["PublicKey"].as_str().unwrap().as_bytes(),
        );
        let plain = scratch.write("plain", secret);
        let out = scratch.path("sealed");
        let status = Command::new("openssl")
            .args(["pkeyutl", "-encrypt", "-pubin", "-inkey"])
            .arg(&key)
            .args([
                "-pkeyopt",
                "rsa_padding_mode:oaep",
                "-pkeyopt",
                "rsa_oaep_md:sha256",
                "-pkeyopt",
                "rsa_mgf1_md:sha256",
                "-in",
            ])
            .arg(&plain)
            .arg("-out")
            .arg(&out)
            .status()
            .expect("run openssl");
        assert!(status.success());
        let opened = call(
            sdk,
            &endpoint,
            &pair,
            "AsymmetricDecrypt",
            json!({"KeyId": "alias/rsa", "Algorithm": "RSAES_OAEP_SHA_256",
                   "CiphertextBlob": b64.encode(scratch.read("sealed"))}),
        )
        .unwrap_or_else(|e| panic!("{sdk} AsymmetricDecrypt of OpenSSL's: {e:?}"));
        assert_eq!(
            b64.decode(opened["Plaintext"].as_str().unwrap()).unwrap(),
            secret
        );

        // ReEncrypt moves OpenSSL's ciphertext under a symmetric key, the plaintext staying
        // inside keyward: the source is named with its version and algorithm.
        let source = json!({"SourceKeyId": "alias/rsa",
            "SourceKeyVersionId": public["KeyVersionId"],
            "SourceEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
            "CiphertextBlob": b64.encode(scratch.read("sealed")), "DestinationKeyId": "alias/aes"});
        let moved = call(sdk, &endpoint, &pair, "ReEncrypt", source.clone())
            .unwrap_or_else(|e| panic!("{sdk} ReEncrypt from RSA: {e:?}"));
        let opened = call(
            sdk,
            &endpoint,
            &pair,
            "Decrypt",
            json!({"CiphertextBlob": moved["CiphertextBlob"]}),
        )
        .unwrap_or_else(|e| panic!("{sdk} Decrypt of the moved blob: {e:?}"));
        assert_eq!(opened["Plaintext"].as_str().unwrap().as_bytes(), secret);
        let mut unversioned = source.clone();
        unversioned
            .as_object_mut()
            .unwrap()
            .remove("SourceKeyVersionId");
        let (code, message, _) = call(sdk, &endpoint, &pair, "ReEncrypt", unversioned).unwrap_err();
        assert_eq!(code, "MissingSourceKeyVersionId", "{sdk}: {message}");

        // Past the algorithm's limit: refused, naming it.
        let (code, message, _) = call(
            sdk,
            &endpoint,
            &pair,
            "AsymmetricEncrypt",
            json!({"KeyId": "alias/rsa", "Algorithm": "RSAES_OAEP_SHA_256",
                   "Plaintext": b64.encode([7u8; 191])}),
        )
        .unwrap_err();
        assert_eq!(code, "InvalidParameter", "{sdk}: {message}");
    }
}

#[tokio::test]
async fn the_api_is_served_over_tls_from_pem_files() {
    let scratch = common::scratch::Scratch::new("kms-api-tls");
    let (cert, key) = (scratch.path("tls.crt"), scratch.path("tls.key"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=keyward-kms"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut env = TestEnv::new("kms-api-tls").await;
    env.start_operator(&[
        "--kms-api-addr",
        "127.0.0.1:0",
        "--kms-api-tls-cert",
        cert.to_str().unwrap(),
        "--kms-api-tls-key",
        key.to_str().unwrap(),
    ]);
    create_service_account(&env, "reader").await;
    grant(&env, "reader", &["listkeys"]).await;
    let pair = access_key(&env, "reader-key", "reader").await;
    let endpoint = kms_api_endpoint(&env).await;
    let job = json!({
        "sdk": "v1", "endpoint": endpoint, "access_key_id": pair.0,
        "access_key_secret": pair.1, "action": "ListKeys", "params": {},
        "ca_bundle": cert.to_str().unwrap(),
    });
    let listed = run_sdk(job).unwrap_or_else(|e| panic!("ListKeys over HTTPS: {e:?}"));
    assert_eq!(listed["TotalCount"], 0, "{listed}");
    assert!(
        env.operator_log(0).contains("serving the KMS API (HTTPS)"),
        "the operator says it serves HTTPS"
    );
}

#[tokio::test]
async fn data_encrypted_before_a_rotation_still_decrypts_after_it() {
    let mut env = TestEnv::new("kms-api-rotation").await;
    env.start_operator(&[
        "--kms-api-addr",
        "127.0.0.1:0",
        "--kms-api-insecure-http",
        "--min-rotation-interval",
        "1s",
    ]);
    env.apply_key("apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: turning}\nspec: {enableAutomaticRotation: true, rotationInterval: 2s}\n")
        .await;
    env.wait_ready("turning").await;
    create_service_account(&env, "app").await;
    grant(&env, "app", &["encrypt", "decrypt"]).await;
    let pair = access_key(&env, "app-key", "app").await;
    let endpoint = kms_api_endpoint(&env).await;

    let before = call(
        "tea",
        &endpoint,
        &pair,
        "Encrypt",
        json!({"KeyId": "alias/turning", "Plaintext": "sealed before"}),
    )
    .unwrap_or_else(|e| panic!("Encrypt: {e:?}"));
    let first_version = before["KeyVersionId"].as_str().unwrap().to_string();
    // Proof of a rotation: the key's newest version is another one.
    env.wait_key("turning", "rotated", |k| {
        k.status
            .as_ref()
            .and_then(|s| s.key_metadata.as_ref())
            .is_some_and(|m| {
                m.primary_key_version
                    .as_deref()
                    .is_some_and(|v| v != first_version)
            })
    })
    .await;
    let after = call(
        "tea",
        &endpoint,
        &pair,
        "Encrypt",
        json!({"KeyId": "alias/turning", "Plaintext": "sealed after"}),
    )
    .unwrap();
    assert_ne!(
        after["KeyVersionId"], before["KeyVersionId"],
        "encrypts under the new version"
    );
    for sdk in BOTH_SDKS {
        for (sealed, text) in [(&before, "sealed before"), (&after, "sealed after")] {
            let opened = call(
                sdk,
                &endpoint,
                &pair,
                "Decrypt",
                json!({"CiphertextBlob": sealed["CiphertextBlob"]}),
            )
            .unwrap_or_else(|e| panic!("{sdk} Decrypt after the rotation: {e:?}"));
            assert_eq!(opened["Plaintext"], text, "{sdk}");
            assert_eq!(opened["KeyVersionId"], sealed["KeyVersionId"], "{sdk}");
        }
    }
}

/// The value of the series `name{labels}` in a /metrics exposition (0 when absent).
fn series(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |value| value.parse().expect("a counter"))
}

#[tokio::test]
async fn a_hot_key_costs_the_api_server_one_read_and_one_review_per_window() {
    const CALLS: u64 = 40;
    let mut env = TestEnv::new("kms-api-hot").await;
    let client = kms_with_keys(&mut env, &[("hot", "{}")]).await;
    let addr = env.operator_http_addr(0).await;
    let started = std::time::Instant::now();
    for n in 0..CALLS {
        let sealed = client
            .call(
                "tea",
                "Encrypt",
                json!({"KeyId": "alias/hot", "Plaintext": format!("n{n}")}),
            )
            .unwrap_or_else(|e| panic!("Encrypt {n}: {e:?}"));
        assert!(sealed["CiphertextBlob"].is_string());
    }
    create_service_account(&env, "bearer").await;
    grant(&env, "bearer", &["describekey"]).await;
    let token = service_account_token(&env, "bearer", "keyward").await;
    for n in 0..CALLS {
        let described = client.run(json!({"sdk": "tea", "bearer_token": token,
            "action": "DescribeKey", "params": {"KeyId": "alias/hot"}}));
        assert!(
            described.get("error").is_none(),
            "DescribeKey {n}: {described}"
        );
    }
    let windows = started.elapsed().as_secs() / 5 + 1;

    let (status, metrics) = common::http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    // Every answer is counted, by action and outcome.
    let encrypted = r#"keyward_kms_api_requests_total{action="Encrypt",code="OK"}"#;
    assert_eq!(series(&metrics, encrypted), CALLS, "{metrics}");
    let described = r#"keyward_kms_api_requests_total{action="DescribeKey",code="OK"}"#;
    assert_eq!(series(&metrics, described), CALLS, "{metrics}");
    // The material: read once (again only if the store's watch lagged its first read).
    let read = series(
        &metrics,
        r#"keyward_kms_api_store_reads_total{from="cluster"}"#,
    );
    let kept = series(
        &metrics,
        r#"keyward_kms_api_store_reads_total{from="cache"}"#,
    );
    assert!(
        (1..=2).contains(&read),
        "{read} live reads of the store:\n{metrics}"
    );
    assert_eq!(read + kept, CALLS, "{metrics}");
    // RBAC and TokenReview: asked at most once per 5-second window each, not per call.
    for review in ["SubjectAccessReview", "TokenReview"] {
        let asked = series(
            &metrics,
            &format!(r#"keyward_kms_api_reviews_total{{review="{review}",from="cluster"}}"#),
        );
        assert!(
            (1..=windows * 2).contains(&asked),
            "{asked} {review}s in {windows} windows:\n{metrics}"
        );
    }
}
