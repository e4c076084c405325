//! The KMS API's cryptography for every key spec, through both official SDKs (hack/kms-sdk.py):
//! each operation the seed's usage table allows works and its output is checked by OpenSSL
//! against GetPublicKey; each operation a key's spec or usage does not allow is refused with
//! the KMS's code and HTTP status. Every plaintext sent is registered with the leak check, which
//! runs when each test's namespace is dropped (operator log, events, statuses, error bodies).

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::TestEnv;
use common::kms::*;
use common::openssl::{openssl_fails, openssl_ok};
use common::scratch::Scratch;
use keyward::api::{KeySpec, KeyUsage};
use keyward::kms::crypto::{PublicKey, asymmetric::sm2_digest};
use serde_json::{Value, json};

/// SDK calls in flight at once: each is a Python process.
const PARALLEL: usize = 6;

type Scenario = Box<dyn FnOnce() + Send>;

/// The response body of a call that must succeed.
fn ok(outcome: Outcome, what: &str) -> Value {
    outcome.unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

/// Asserts that a call was refused with `code` and HTTP `status`.
fn refused(outcome: Outcome, code: &str, status: u64, what: &str) {
    let (got, message, got_status) = outcome.expect_err(what);
    assert_eq!(
        (got.as_str(), got_status),
        (code, Some(status)),
        "{what}: {message}"
    );
}

fn decoded(body: &Value, field: &str) -> Vec<u8> {
    B64.decode(
        body[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} in {body}")),
    )
    .unwrap()
}

#[tokio::test]
async fn symmetric_keys_encrypt_and_make_data_keys_through_both_sdks() {
    let mut env = TestEnv::new("kms-crypto-symmetric").await;
    let keys = [("aes", "{}"), ("sm4", "{keySpec: Aliyun_SM4}")];
    let kms = kms_with_keys(&mut env, &keys).await;
    let mut scenarios: Vec<Scenario> = Vec::new();
    for sdk in BOTH_SDKS {
        for (key, _) in keys {
            let (first, second) = (kms.clone(), kms.clone());
            scenarios.push(Box::new(move || encrypt_and_decrypt(&first, sdk, key)));
            scenarios.push(Box::new(move || data_keys(&second, sdk, key)));
        }
    }
    concurrently(PARALLEL, scenarios).await;
}

/// Encrypt and Decrypt with and without an EncryptionContext; another context is refused.
fn encrypt_and_decrypt(kms: &KmsClient, sdk: &str, key: &str) {
    let alias = format!("alias/{key}");
    let what = format!("{sdk} {key}");
    let context = r#"{"order": "42", "shop": "east"}"#;
    for (bound, plaintext) in [
        (
            Some(context),
            format!("{sdk} seals card 4111 under {key} with a context"),
        ),
        (
            None,
            format!("{sdk} seals card 4111 under {key} without one"),
        ),
    ] {
        kms.watch("Encrypt plaintext", plaintext.as_bytes());
        let mut params = json!({"KeyId": alias, "Plaintext": plaintext});
        if let Some(context) = bound {
            params["EncryptionContext"] = json!(context);
        }
        let sealed = ok(kms.call(sdk, "Encrypt", params), &format!("{what} Encrypt"));
        let blob = decoded(&sealed, "CiphertextBlob");
        assert!(
            !blob
                .windows(plaintext.len())
                .any(|w| w == plaintext.as_bytes()),
            "{what}: the blob holds the plaintext"
        );
        let decrypt = |context: Option<&str>| {
            let mut params = json!({"CiphertextBlob": sealed["CiphertextBlob"]});
            if let Some(context) = context {
                params["EncryptionContext"] = json!(context);
            }
            kms.call(sdk, "Decrypt", params)
        };
        // The same pairs in another order and spacing are the same context.
        let same = bound.map(|_| r#"{"shop":"east","order":"42"}"#);
        let opened = ok(decrypt(same), &format!("{what} Decrypt"));
        assert_eq!(opened["Plaintext"], plaintext.as_str(), "{what}");
        assert_eq!(opened["KeyId"], sealed["KeyId"], "{what}");
        assert_eq!(opened["KeyVersionId"], sealed["KeyVersionId"], "{what}");
        // Another context, or none where there was one (or one where there was none).
        let wrong = match bound {
            Some(_) => vec![Some(r#"{"order": "43", "shop": "east"}"#), None],
            None => vec![Some(context)],
        };
        for context in wrong {
            let what = format!("{what} Decrypt with context {context:?}");
            refused(decrypt(context), "InvalidParameter", 400, &what);
        }
    }
    // What a symmetric key is not for.
    let digest = sha256_digest_param(b"not for a symmetric key");
    for (action, params) in [
        (
            "AsymmetricSign",
            json!({"KeyId": alias, "Algorithm": "ECDSA_SHA_256", "Digest": digest}),
        ),
        (
            "AsymmetricEncrypt",
            json!({"KeyId": alias, "Algorithm": "RSAES_OAEP_SHA_256", "Plaintext": "AAEC"}),
        ),
        ("GetPublicKey", json!({"KeyId": alias})),
    ] {
        let what = format!("{what} {action}");
        refused(
            kms.call(sdk, action, params),
            "UnsupportedOperation",
            400,
            &what,
        );
    }
}

/// GenerateDataKey (KeySpec, NumberOfBytes, EncryptionContext) and
/// GenerateDataKeyWithoutPlaintext; Decrypt of each blob gives the data key.
fn data_keys(kms: &KmsClient, sdk: &str, key: &str) {
    let alias = format!("alias/{key}");
    let context = r#"{"purpose": "data key"}"#;
    for (action, extra, bytes) in [
        ("GenerateDataKey", json!({}), 32),
        ("GenerateDataKey", json!({"KeySpec": "AES_256"}), 32),
        ("GenerateDataKey", json!({"KeySpec": "AES_128"}), 16),
        ("GenerateDataKey", json!({"NumberOfBytes": 64}), 64),
        // NumberOfBytes wins over KeySpec.
        (
            "GenerateDataKey",
            json!({"KeySpec": "AES_128", "NumberOfBytes": 24}),
            24,
        ),
        (
            "GenerateDataKey",
            json!({"KeySpec": "AES_128", "EncryptionContext": context}),
            16,
        ),
        ("GenerateDataKeyWithoutPlaintext", json!({}), 32),
        (
            "GenerateDataKeyWithoutPlaintext",
            json!({"NumberOfBytes": 48, "EncryptionContext": context}),
            48,
        ),
    ] {
        let what = format!("{sdk} {key} {action} {extra}");
        let mut params = extra.clone();
        params["KeyId"] = json!(alias);
        let made = ok(kms.call(sdk, action, params), &what);
        assert!(made["KeyVersionId"].as_str().is_some_and(|v| !v.is_empty()));
        let mut params = json!({"CiphertextBlob": made["CiphertextBlob"]});
        if let Some(context) = extra.get("EncryptionContext") {
            params["EncryptionContext"] = context.clone();
        }
        let opened = ok(
            kms.call(sdk, "Decrypt", params),
            &format!("{what}: Decrypt"),
        );
        let text = opened["Plaintext"].as_str().unwrap();
        kms.watch("data key", text.as_bytes());
        let data_key = B64.decode(text).unwrap();
        assert_eq!(data_key.len(), bytes, "{what}");
        if bytes >= 16 {
            kms.watch("data key bytes", &data_key);
        }
        match action {
            "GenerateDataKey" => assert_eq!(made["Plaintext"], text, "{what}"),
            _ => assert!(made.get("Plaintext").is_none_or(Value::is_null), "{what}"),
        }
        assert_eq!(opened["KeyVersionId"], made["KeyVersionId"], "{what}");
    }
}

#[tokio::test]
async fn signing_keys_sign_digests_that_openssl_verifies_against_get_public_key() {
    let mut env = TestEnv::new("kms-crypto-sign").await;
    let keys = [
        ("rsa", "{keySpec: RSA_2048, keyUsage: SIGN/VERIFY}"),
        ("p256", "{keySpec: EC_P256, keyUsage: SIGN/VERIFY}"),
        ("p256k", "{keySpec: EC_P256K, keyUsage: SIGN/VERIFY}"),
        ("sm2", "{keySpec: EC_SM2, keyUsage: SIGN/VERIFY}"),
    ];
    let kms = kms_with_keys(&mut env, &keys).await;
    let mut scenarios: Vec<Scenario> = Vec::new();
    for sdk in BOTH_SDKS {
        for (key, algorithm) in [
            ("rsa", "RSA_PSS_SHA_256"),
            ("rsa", "RSA_PKCS1_SHA_256"),
            ("p256", "ECDSA_SHA_256"),
            ("p256k", "ECDSA_SHA_256"),
            ("sm2", "SM2DSA"),
        ] {
            let kms = kms.clone();
            scenarios.push(Box::new(move || sign_and_verify(&kms, sdk, key, algorithm)));
        }
        let kms = kms.clone();
        scenarios.push(Box::new(move || signing_keys_refuse(&kms, sdk)));
    }
    concurrently(PARALLEL, scenarios).await;
}

/// HSM keys (a SoftHSM2 token of the test's own): the same scenarios as the SOFTWARE keys'
/// above, each operation run by the module, with the same answers and refusals.
#[tokio::test]
async fn hsm_keys_answer_every_operation_from_the_module_through_both_sdks() {
    let mut env = TestEnv::new("kms-crypto-hsm").await;
    let hsm = common::hsm::SoftHsm::init("kms-crypto-hsm");
    hsm.attach(&mut env);
    let keys = [
        ("aes", "{protectionLevel: HSM}"),
        (
            "rsa",
            "{protectionLevel: HSM, keySpec: RSA_2048, keyUsage: SIGN/VERIFY}",
        ),
        (
            "rsa-enc",
            "{protectionLevel: HSM, keySpec: RSA_2048, keyUsage: ENCRYPT/DECRYPT}",
        ),
        (
            "p256",
            "{protectionLevel: HSM, keySpec: EC_P256, keyUsage: SIGN/VERIFY}",
        ),
        (
            "p256k",
            "{protectionLevel: HSM, keySpec: EC_P256K, keyUsage: SIGN/VERIFY}",
        ),
    ];
    let kms = kms_with_keys(&mut env, &keys).await;
    let mut scenarios: Vec<Scenario> = Vec::new();
    for sdk in BOTH_SDKS {
        let (first, second) = (kms.clone(), kms.clone());
        scenarios.push(Box::new(move || encrypt_and_decrypt(&first, sdk, "aes")));
        scenarios.push(Box::new(move || data_keys(&second, sdk, "aes")));
        for (key, algorithm) in [
            ("rsa", "RSA_PSS_SHA_256"),
            ("rsa", "RSA_PKCS1_SHA_256"),
            ("p256", "ECDSA_SHA_256"),
            ("p256k", "ECDSA_SHA_256"),
        ] {
            let kms = kms.clone();
            scenarios.push(Box::new(move || sign_and_verify(&kms, sdk, key, algorithm)));
        }
        let encrypting = kms.clone();
        scenarios.push(Box::new(move || {
            encrypt_and_decrypt_asymmetric(
                &encrypting,
                sdk,
                "rsa-enc",
                "RSAES_OAEP_SHA_1",
                "UnsupportedOperation",
            )
        }));
        // SoftHSM2 2.6 (Debian bookworm) runs RSA-OAEP with SHA-1 only: RSAES_OAEP_SHA_256 is
        // refused before any key is used, naming the module and what the key can use.
        let refusing = kms.clone();
        scenarios.push(Box::new(move || {
            let sealed = refusing.call(
                sdk,
                "AsymmetricEncrypt",
                json!({"KeyId": "alias/rsa-enc", "Algorithm": "RSAES_OAEP_SHA_256",
                       "Plaintext": B64.encode(b"refused")}),
            );
            let (code, message, status) = sealed.expect_err("RSAES_OAEP_SHA_256 on SoftHSM2");
            assert_eq!(
                (code.as_str(), status),
                ("UnsupportedOperation", Some(400)),
                "{message}"
            );
            assert!(
                message.contains("/usr/lib/softhsm/libsofthsm2.so"),
                "{message}"
            );
            assert!(message.contains("use RSAES_OAEP_SHA_1"), "{message}");
        }));
    }
    concurrently(PARALLEL, scenarios).await;
    // A Disabled HSM key is refused before the module is asked, as a SOFTWARE key is.
    let disabled = env
        .apply_key(
            "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {name: aes}\n\
             spec: {protectionLevel: HSM, keyState: Disabled}\n",
        )
        .await;
    env.wait_key("aes", "Disabled", |k| {
        k.status.as_ref().and_then(|s| s.observed_generation) == disabled.metadata.generation
    })
    .await;
    for sdk in BOTH_SDKS {
        // The API's Key cache follows the status write by a watch event.
        let deadline = std::time::Instant::now() + common::CONVERGE;
        let outcome = loop {
            let kms = kms.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                kms.call(
                    sdk,
                    "Encrypt",
                    json!({"KeyId": "alias/aes", "Plaintext": "refused"}),
                )
            })
            .await
            .unwrap();
            if outcome.is_err() || std::time::Instant::now() > deadline {
                break outcome;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        refused(
            outcome,
            "Rejected.Disabled",
            409,
            &format!("{sdk} Encrypt, Disabled"),
        );
    }
    // Nothing of these keys is in a Secret to have been used instead of the module.
    for secret in env.managed_secrets().await {
        for entry in common::entry_names(&secret) {
            assert!(
                !entry.ends_with(".key") && !entry.ends_with("private.pem"),
                "{:?} holds {entry}",
                secret.metadata.name
            );
        }
    }
}

/// AsymmetricSign of a digest; AsymmetricVerify says true for it and false for another digest
/// or a changed signature; OpenSSL verifies it over the message with the published key.
fn sign_and_verify(kms: &KmsClient, sdk: &str, key: &str, algorithm: &str) {
    let alias = format!("alias/{key}");
    let what = format!("{sdk} {key} {algorithm}");
    let public = ok(
        kms.call(sdk, "GetPublicKey", json!({"KeyId": alias})),
        &format!("{what} GetPublicKey"),
    );
    let pem = public["PublicKey"].as_str().unwrap();
    let version = public["KeyVersionId"].as_str().unwrap();
    let message = format!("{what}: the message").into_bytes();
    let digest = |message: &[u8]| match algorithm {
        // SM3(Z(A) || M): OpenSSL computes Z(A) on its own when it verifies, so a wrong digest
        // here fails there.
        "SM2DSA" => {
            let key = PublicKey::from_spki_pem(KeySpec::EcSm2, KeyUsage::SignVerify, pem).unwrap();
            B64.encode(sm2_digest(&key, message).unwrap())
        }
        _ => sha256_digest_param(message),
    };
    let sign_params = json!({"KeyId": alias, "KeyVersionId": version, "Algorithm": algorithm,
                             "Digest": digest(&message)});
    let signed = ok(
        kms.call(sdk, "AsymmetricSign", sign_params.clone()),
        &format!("{what} AsymmetricSign"),
    );
    assert_eq!(signed["KeyVersionId"], version, "{what}");
    let signature = decoded(&signed, "Value");
    if algorithm.starts_with("RSA") {
        assert_eq!(signature.len(), 256, "{what}: a raw RSA-2048 signature");
    } else {
        assert_eq!(signature[0], 0x30, "{what}: a DER SEQUENCE");
    }
    let verify = |digest: String, value: String| {
        let params = json!({"KeyId": alias, "KeyVersionId": version, "Algorithm": algorithm,
                            "Digest": digest, "Value": value});
        let verified = ok(
            kms.call(sdk, "AsymmetricVerify", params),
            &format!("{what} AsymmetricVerify"),
        );
        verified["Value"].as_bool().expect("a boolean Value")
    };
    assert!(verify(digest(&message), B64.encode(&signature)), "{what}");
    assert!(
        !verify(digest(b"another message"), B64.encode(&signature)),
        "{what}: another digest verified"
    );
    let mut changed = signature.clone();
    let last = changed.len() - 2;
    changed[last] ^= 0x01;
    assert!(
        !verify(digest(&message), B64.encode(&changed)),
        "{what}: a changed signature verified"
    );

    let scratch = Scratch::new("kms-crypto-verify");
    scratch.write("public.pem", pem.as_bytes());
    scratch.write("signature", &signature);
    scratch.write("message", &message);
    scratch.write("other", b"another message");
    for (file, holds) in [("message", true), ("other", false)] {
        let mut args = match algorithm {
            "SM2DSA" => vec![
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                "public.pem",
                "-rawin",
                "-digest",
                "sm3",
                "-pkeyopt",
                "distid:1234567812345678",
                "-sigfile",
                "signature",
                "-in",
            ],
            _ => vec![
                "dgst",
                "-sha256",
                "-verify",
                "public.pem",
                "-signature",
                "signature",
            ],
        };
        if algorithm == "RSA_PSS_SHA_256" {
            // The salt is as long as the digest: OpenSSL checks that length exactly.
            args.extend([
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
            ]);
        }
        args.push(file);
        match holds {
            true => drop(openssl_ok(&scratch, &format!("verify {what}"), &args)),
            false => openssl_fails(&scratch, &format!("verify {what} over another"), &args),
        }
    }
}

/// What signing keys are not for: data keys, encryption, other algorithms.
fn signing_keys_refuse(kms: &KmsClient, sdk: &str) {
    let digest = sha256_digest_param(b"refused");
    for (action, params, code) in [
        (
            "GenerateDataKey",
            json!({"KeyId": "alias/rsa"}),
            "UnsupportedOperation",
        ),
        (
            "GenerateDataKeyWithoutPlaintext",
            json!({"KeyId": "alias/p256"}),
            "UnsupportedOperation",
        ),
        (
            "Encrypt",
            json!({"KeyId": "alias/sm2", "Plaintext": "refused"}),
            "UnsupportedOperation",
        ),
        (
            "AsymmetricEncrypt",
            json!({"KeyId": "alias/rsa", "Algorithm": "RSAES_OAEP_SHA_256", "Plaintext": "AAEC"}),
            "UnsupportedOperation",
        ),
        (
            "AsymmetricDecrypt",
            json!({"KeyId": "alias/sm2", "Algorithm": "SM2PKE", "CiphertextBlob": "AAEC"}),
            "UnsupportedOperation",
        ),
        (
            "AsymmetricSign",
            json!({"KeyId": "alias/rsa", "Algorithm": "ECDSA_SHA_256", "Digest": digest}),
            "InvalidParameter",
        ),
        (
            "AsymmetricSign",
            json!({"KeyId": "alias/p256", "Algorithm": "SM2DSA", "Digest": digest}),
            "InvalidParameter",
        ),
        (
            "AsymmetricVerify",
            json!({"KeyId": "alias/p256k", "Algorithm": "RSA_PSS_SHA_256", "Digest": digest,
                   "Value": "AAEC"}),
            "InvalidParameter",
        ),
    ] {
        let what = format!("{sdk} {action} {params}");
        refused(kms.call(sdk, action, params), code, 400, &what);
    }
}

#[tokio::test]
async fn encryption_keys_decrypt_what_openssl_encrypts_with_get_public_key() {
    let mut env = TestEnv::new("kms-crypto-asym-encrypt").await;
    let keys = [
        ("rsa", "{keySpec: RSA_2048, keyUsage: ENCRYPT/DECRYPT}"),
        ("sm2", "{keySpec: EC_SM2, keyUsage: ENCRYPT/DECRYPT}"),
    ];
    let kms = kms_with_keys(&mut env, &keys).await;
    let mut scenarios: Vec<Scenario> = Vec::new();
    for sdk in BOTH_SDKS {
        for (key, algorithm) in [
            ("rsa", "RSAES_OAEP_SHA_256"),
            ("rsa", "RSAES_OAEP_SHA_1"),
            ("sm2", "SM2PKE"),
        ] {
            let kms = kms.clone();
            scenarios.push(Box::new(move || {
                encrypt_and_decrypt_asymmetric(&kms, sdk, key, algorithm, "InvalidParameter")
            }));
        }
        let kms = kms.clone();
        scenarios.push(Box::new(move || encryption_keys_refuse(&kms, sdk)));
    }
    concurrently(PARALLEL, scenarios).await;
}

/// AsymmetricEncrypt then AsymmetricDecrypt, and AsymmetricDecrypt of what OpenSSL encrypted
/// with the published key; another algorithm cannot decrypt it. (OpenSSL cannot check what
/// AsymmetricEncrypt makes: that takes the private key, which never leaves keyward.)
///
/// `other_refused` is the code that refusal carries: `InvalidParameter` (the ciphertext does not
/// open), or `UnsupportedOperation` where the HSM's module cannot run the other algorithm.
fn encrypt_and_decrypt_asymmetric(
    kms: &KmsClient,
    sdk: &str,
    key: &str,
    algorithm: &str,
    other_refused: &str,
) {
    let alias = format!("alias/{key}");
    let what = format!("{sdk} {key} {algorithm}");
    let secret = format!("{what}: a wrapped data key").into_bytes();
    kms.watch("AsymmetricEncrypt plaintext", &secret);
    let public = ok(
        kms.call(sdk, "GetPublicKey", json!({"KeyId": alias})),
        &format!("{what} GetPublicKey"),
    );
    let version = public["KeyVersionId"].as_str().unwrap();
    let decrypt = |blob: String, algorithm: &str| {
        let params = json!({"KeyId": alias, "KeyVersionId": version, "Algorithm": algorithm,
                            "CiphertextBlob": blob});
        kms.call(sdk, "AsymmetricDecrypt", params)
    };
    let sealed = ok(
        kms.call(
            sdk,
            "AsymmetricEncrypt",
            json!({"KeyId": alias, "KeyVersionId": version, "Algorithm": algorithm,
                   "Plaintext": B64.encode(&secret)}),
        ),
        &format!("{what} AsymmetricEncrypt"),
    );
    let blob = sealed["CiphertextBlob"].as_str().unwrap().to_string();
    let opened = ok(
        decrypt(blob, algorithm),
        &format!("{what} AsymmetricDecrypt"),
    );
    assert_eq!(decoded(&opened, "Plaintext"), secret, "{what}");

    let scratch = Scratch::new("kms-crypto-encrypt");
    scratch.write(
        "public.pem",
        public["PublicKey"].as_str().unwrap().as_bytes(),
    );
    scratch.write("plain", &secret);
    let mut args = vec!["pkeyutl", "-encrypt", "-pubin", "-inkey", "public.pem"];
    let md = match algorithm {
        "RSAES_OAEP_SHA_256" => Some("sha256"),
        "RSAES_OAEP_SHA_1" => Some("sha1"),
        _ => None,
    };
    let (oaep_md, mgf1_md) = md.map_or((String::new(), String::new()), |md| {
        (format!("rsa_oaep_md:{md}"), format!("rsa_mgf1_md:{md}"))
    });
    if md.is_some() {
        args.extend(["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", &oaep_md]);
        args.extend(["-pkeyopt", &mgf1_md]);
    }
    args.extend(["-in", "plain", "-out", "sealed"]);
    openssl_ok(&scratch, &format!("encrypt for {what}"), &args);
    let by_openssl = B64.encode(scratch.read("sealed"));
    let opened = ok(
        decrypt(by_openssl.clone(), algorithm),
        &format!("{what} AsymmetricDecrypt of OpenSSL's"),
    );
    assert_eq!(decoded(&opened, "Plaintext"), secret, "{what}");
    let other = match algorithm {
        "RSAES_OAEP_SHA_256" => "RSAES_OAEP_SHA_1",
        "RSAES_OAEP_SHA_1" => "RSAES_OAEP_SHA_256",
        _ => return,
    };
    let what = format!("{what}: decrypted as {other}");
    refused(decrypt(by_openssl, other), other_refused, 400, &what);
}

/// What encryption keys are not for: signing, symmetric operations, other algorithms.
fn encryption_keys_refuse(kms: &KmsClient, sdk: &str) {
    let digest = sha256_digest_param(b"refused");
    for (action, params, code) in [
        (
            "AsymmetricSign",
            json!({"KeyId": "alias/rsa", "Algorithm": "RSA_PSS_SHA_256", "Digest": digest}),
            "UnsupportedOperation",
        ),
        (
            "AsymmetricVerify",
            json!({"KeyId": "alias/sm2", "Algorithm": "SM2DSA", "Digest": digest,
                   "Value": "AAEC"}),
            "UnsupportedOperation",
        ),
        (
            "Encrypt",
            json!({"KeyId": "alias/rsa", "Plaintext": "refused"}),
            "UnsupportedOperation",
        ),
        (
            "GenerateDataKey",
            json!({"KeyId": "alias/sm2"}),
            "UnsupportedOperation",
        ),
        (
            "AsymmetricEncrypt",
            json!({"KeyId": "alias/rsa", "Algorithm": "SM2PKE", "Plaintext": "AAEC"}),
            "InvalidParameter",
        ),
        (
            "AsymmetricEncrypt",
            json!({"KeyId": "alias/sm2", "Algorithm": "RSAES_OAEP_SHA_1", "Plaintext": "AAEC"}),
            "InvalidParameter",
        ),
    ] {
        let what = format!("{sdk} {action} {params}");
        refused(kms.call(sdk, action, params), code, 400, &what);
    }
}
