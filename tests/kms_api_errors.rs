//! Bad input to the KMS API, through both official SDKs (hack/kms-sdk.py): bad signatures,
//! stale timestamps, replayed nonces, unknown AccessKeys, unknown and disabled keys, oversized
//! and malformed parameters each get the KMS's code and HTTP status. The leak check run when
//! each test's namespace is dropped reads every error body collected here for key material,
//! AccessKey secrets and the plaintexts sent.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::kms::*;
use common::{TestEnv, eventually};
use jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

/// SDK calls in flight at once: each worker is a Python process.
const PARALLEL: usize = 6;

type Scenario = Box<dyn FnOnce() + Send>;

/// The error of one answer of hack/kms-sdk.py: code, HTTP status, and message with body.
fn error_of(answer: &Value, what: &str) -> (String, Option<u64>, String) {
    let error = answer
        .get("error")
        .unwrap_or_else(|| panic!("{what}: not refused: {answer}"));
    let text = format!("{} {}", error["message"], error["body"]);
    (
        error["code"].as_str().unwrap_or_default().to_string(),
        error["status"].as_u64(),
        text,
    )
}

fn assert_refused(answer: &Value, code: &str, status: u64, what: &str) -> String {
    let (got, got_status, text) = error_of(answer, what);
    assert_eq!(
        (got.as_str(), got_status),
        (code, Some(status)),
        "{what}: {text}"
    );
    text
}

fn assert_ok(answer: &Value, what: &str) {
    assert!(answer.get("ok").is_some(), "{what}: {answer}");
}

/// A signed DescribeKey of `alias/aes`; "raw" makes the v1 SDK's request go out as it signed
/// it and report the server's own code.
fn describe(sdk: &str) -> Value {
    json!({"sdk": sdk, "raw": true, "action": "DescribeKey", "params": {"KeyId": "alias/aes"}})
}

/// A timestamp as both SDKs write it: UTC to the second.
fn kms_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[tokio::test]
async fn signatures_timestamps_nonces_and_access_keys_are_checked_with_the_kms_codes() {
    let mut env = TestEnv::new("kms-errors-auth").await;
    let kms = kms_with_keys(&mut env, &[("aes", "{}")]).await;
    let mut scenarios: Vec<Scenario> = Vec::new();
    for sdk in BOTH_SDKS {
        let kms_ = kms.clone();
        scenarios.push(Box::new(move || {
            // Signed with another secret: the server's code, whatever the SDK makes of it.
            let forged = kms_.with_pair((kms_.pair.0.clone(), "z".repeat(30)));
            let answer = forged.run(describe(sdk));
            let what = format!("{sdk} signed with a wrong secret");
            let text = assert_refused(&answer, "SignatureDoesNotMatch", 400, &what);
            assert!(
                !text.contains(&kms_.pair.1),
                "{what}: the error shows the secret"
            );
        }));
        let kms_ = kms.clone();
        scenarios.push(Box::new(move || {
            let stranger = kms_.with_pair(("KWAKnobodyhasthisid0000".into(), "x".repeat(30)));
            let answer = stranger.run(describe(sdk));
            let what = format!("{sdk} with an unknown AccessKeyId");
            assert_refused(&answer, "InvalidAccessKeyId.NotFound", 404, &what);
        }));
        for (minutes, accepted) in [(-16, false), (16, false), (-14, true), (14, true)] {
            let kms_ = kms.clone();
            scenarios.push(Box::new(move || {
                let at = Timestamp::now() + SignedDuration::from_mins(minutes);
                let mut job = describe(sdk);
                job["timestamp"] = json!(kms_time(at));
                let answer = kms_.run(job);
                let what = format!("{sdk} signed {minutes} minutes from now");
                match accepted {
                    true => assert_ok(&answer, &what),
                    false => drop(assert_refused(
                        &answer,
                        "InvalidTimeStamp.Expired",
                        400,
                        &what,
                    )),
                }
            }));
        }
        let kms_ = kms.clone();
        scenarios.push(Box::new(move || {
            // The same signed request twice: the second is a replay.
            let nonce = uuid::Uuid::new_v4().to_string();
            let mut job = describe(sdk);
            job["nonce"] = json!(nonce);
            job["timestamp"] = json!(kms_time(Timestamp::now()));
            job["repeat"] = json!(2);
            let answer = kms_.run(job);
            let outcomes = answer["outcomes"].as_array().expect("two outcomes");
            assert_ok(&outcomes[0], &format!("{sdk} first sending"));
            let what = format!("{sdk} the same request again");
            assert_refused(&outcomes[1], "SignatureNonceUsed", 400, &what);
            // The nonce is spent for any request of this AccessKey, signed anew or not.
            let mut other = json!({"sdk": sdk, "raw": true, "action": "ListKeys", "params": {}});
            other["nonce"] = json!(nonce);
            let what = format!("{sdk} another request with a used nonce");
            assert_refused(&kms_.run(other), "SignatureNonceUsed", 400, &what);
        }));
    }
    concurrently(PARALLEL, scenarios).await;
}

/// One call expected to be refused: SDK, action, parameters, code, HTTP status, and a text the
/// message must hold (if any).
struct Refusal {
    sdk: &'static str,
    action: &'static str,
    params: Value,
    code: &'static str,
    status: u64,
    says: Option<&'static str>,
}

#[tokio::test]
async fn unknown_disabled_oversized_and_malformed_input_gets_the_kms_codes() {
    let mut env = TestEnv::new("kms-errors-input").await;
    let keys = [
        ("aes", "{}"),
        ("off", "{}"),
        ("ec", "{keySpec: EC_P256, keyUsage: SIGN/VERIFY}"),
    ];
    let kms = kms_with_keys(&mut env, &keys).await;
    let call = |sdk: &str, action: &str, params: Value| {
        kms.call(sdk, action, params)
            .unwrap_or_else(|e| panic!("{sdk} {action}: {e:?}"))
    };
    let sealed_by_off = call(
        "tea",
        "Encrypt",
        json!({"KeyId": "alias/off", "Plaintext": "sealed before the key was disabled"}),
    );
    let sealed = call(
        "tea",
        "Encrypt",
        json!({"KeyId": "alias/aes", "Plaintext": "sealed to be tampered with"}),
    );
    disable(&env, &kms, "off").await;

    let blob = B64
        .decode(sealed["CiphertextBlob"].as_str().unwrap())
        .unwrap();
    let mut tampered = blob.clone();
    let body = tampered.len() - 20;
    tampered[body] ^= 0x01;
    // The header names another (not existing) version of the same key.
    let version = sealed["KeyVersionId"].as_str().unwrap();
    let at = blob
        .windows(version.len())
        .position(|w| w == version.as_bytes())
        .expect("the blob names its version");
    let mut other_version = blob.clone();
    other_version[at] = if blob[at] == b'0' { b'1' } else { b'0' };
    let unknown_key = uuid::Uuid::new_v4().to_string();
    let short_digest = B64.encode([7u8; 31]);
    let long_digest = B64.encode([7u8; 64]);
    let digest = sha256_digest_param(b"malformed");

    let mut refusals = Vec::new();
    for sdk in BOTH_SDKS {
        let oversized = format!("{sdk} oversized plaintext ").repeat(300);
        assert!(oversized.len() > 6144);
        kms.watch("oversized Encrypt plaintext", oversized.as_bytes());
        let plaintext = format!("{sdk} plaintext with a bad context");
        kms.watch("Encrypt plaintext", plaintext.as_bytes());
        let mut cases = vec![
            // Unknown keys, by alias, KeyId and ARN.
            (
                "Encrypt",
                json!({"KeyId": "alias/none", "Plaintext": "x"}),
                "Forbidden.KeyNotFound",
                404,
                None,
            ),
            (
                "Encrypt",
                json!({"KeyId": unknown_key, "Plaintext": "x"}),
                "Forbidden.KeyNotFound",
                404,
                None,
            ),
            (
                "AsymmetricSign",
                json!({"KeyId": format!("acs:kms:cn-hangzhou:1234:key/{unknown_key}"),
                       "Algorithm": "ECDSA_SHA_256", "Digest": digest}),
                "Forbidden.KeyNotFound",
                404,
                None,
            ),
            // A disabled key: nothing in, nothing out, not even what it sealed before.
            (
                "Encrypt",
                json!({"KeyId": "alias/off", "Plaintext": "x"}),
                "Rejected.Disabled",
                409,
                None,
            ),
            (
                "GenerateDataKey",
                json!({"KeyId": "alias/off"}),
                "Rejected.Disabled",
                409,
                None,
            ),
            (
                "Decrypt",
                json!({"CiphertextBlob": sealed_by_off["CiphertextBlob"]}),
                "Rejected.Disabled",
                409,
                None,
            ),
            // The seed's 6 KB, naming the way to encrypt more.
            (
                "Encrypt",
                json!({"KeyId": "alias/aes", "Plaintext": oversized}),
                "InvalidParameter",
                400,
                Some("GenerateDataKey"),
            ),
            // CiphertextBlobs: not base64, changed, pointing at a version that is not, cut.
            (
                "Decrypt",
                json!({"CiphertextBlob": "not base64!"}),
                "InvalidParameter",
                400,
                Some("base64"),
            ),
            (
                "Decrypt",
                json!({"CiphertextBlob": B64.encode(&tampered)}),
                "InvalidParameter",
                400,
                None,
            ),
            (
                "Decrypt",
                json!({"CiphertextBlob": B64.encode(&other_version)}),
                "InvalidParameter",
                400,
                None,
            ),
            (
                "Decrypt",
                json!({"CiphertextBlob": B64.encode(&blob[..20])}),
                "InvalidParameter",
                400,
                None,
            ),
            (
                "Decrypt",
                json!({"CiphertextBlob": B64.encode(blob.iter().map(|b| b ^ 0xff).collect::<Vec<_>>())}),
                "InvalidParameter",
                400,
                None,
            ),
            // An EncryptionContext that is not a map of strings.
            (
                "Encrypt",
                json!({"KeyId": "alias/aes", "Plaintext": plaintext, "EncryptionContext": r#"{"n": 1}"#}),
                "InvalidParameter",
                400,
                Some("EncryptionContext"),
            ),
            // Digests of the wrong length, unknown algorithms.
            (
                "AsymmetricSign",
                json!({"KeyId": "alias/ec", "Algorithm": "ECDSA_SHA_256", "Digest": short_digest}),
                "InvalidParameter",
                400,
                Some("Digest"),
            ),
            (
                "AsymmetricVerify",
                json!({"KeyId": "alias/ec", "Algorithm": "ECDSA_SHA_256", "Digest": long_digest,
                       "Value": "MAYCAQECAQE="}),
                "InvalidParameter",
                400,
                Some("Digest"),
            ),
            (
                "AsymmetricSign",
                json!({"KeyId": "alias/ec", "Algorithm": "ECDSA_SHA_384", "Digest": digest}),
                "InvalidParameter",
                400,
                Some("Algorithm"),
            ),
            // Missing parameters: Missing<Name>.
            (
                "Encrypt",
                json!({"KeyId": "alias/aes"}),
                "MissingPlaintext",
                400,
                None,
            ),
            (
                "Encrypt",
                json!({"Plaintext": "x"}),
                "MissingKeyId",
                400,
                None,
            ),
            ("Decrypt", json!({}), "MissingCiphertextBlob", 400, None),
            (
                "AsymmetricSign",
                json!({"KeyId": "alias/ec", "Digest": digest}),
                "MissingAlgorithm",
                400,
                None,
            ),
            (
                "AsymmetricSign",
                json!({"KeyId": "alias/ec", "Algorithm": "ECDSA_SHA_256"}),
                "MissingDigest",
                400,
                None,
            ),
            // Numbers out of range.
            (
                "ListKeys",
                json!({"PageSize": 0}),
                "InvalidParameter",
                400,
                Some("PageSize"),
            ),
            (
                "ListKeys",
                json!({"PageSize": 101}),
                "InvalidParameter",
                400,
                Some("PageSize"),
            ),
            (
                "ListKeys",
                json!({"PageNumber": 0}),
                "InvalidParameter",
                400,
                Some("PageNumber"),
            ),
            (
                "GenerateDataKey",
                json!({"KeyId": "alias/aes", "NumberOfBytes": 1025}),
                "InvalidParameter",
                400,
                Some("NumberOfBytes"),
            ),
            (
                "GenerateDataKey",
                json!({"KeyId": "alias/aes", "NumberOfBytes": 0}),
                "InvalidParameter",
                400,
                Some("NumberOfBytes"),
            ),
            (
                "GenerateDataKey",
                json!({"KeyId": "alias/aes", "KeySpec": "AES_512"}),
                "InvalidParameter",
                400,
                Some("KeySpec"),
            ),
        ];
        if sdk == "v1" {
            // The tea SDK takes an EncryptionContext as a map and writes its JSON itself.
            for context in ["not json", r#"["a", "b"]"#, r#"{"a": "b""#] {
                cases.push((
                    "Encrypt",
                    json!({"KeyId": "alias/aes", "Plaintext": plaintext, "EncryptionContext": context}),
                    "InvalidParameter", 400, Some("EncryptionContext"),
                ));
            }
        }
        refusals.extend(
            cases
                .into_iter()
                .map(|(action, params, code, status, says)| Refusal {
                    sdk,
                    action,
                    params,
                    code,
                    status,
                    says,
                }),
        );
    }
    let mut scenarios: Vec<Scenario> = Vec::new();
    for refusal in refusals {
        let kms = kms.clone();
        scenarios.push(Box::new(move || {
            let what = format!(
                "{} {} {}",
                refusal.sdk,
                refusal.action,
                short(&refusal.params)
            );
            let (code, message, status) = kms
                .call(refusal.sdk, refusal.action, refusal.params)
                .expect_err(&what);
            assert_eq!(
                (code.as_str(), status),
                (refusal.code, Some(refusal.status)),
                "{what}: {message}"
            );
            if let Some(says) = refusal.says {
                assert!(message.contains(says), "{what}: {message}");
            }
        }));
    }
    // The limits' own edges are accepted: 6 KB exactly, 100 keys a page.
    for sdk in BOTH_SDKS {
        let kms = kms.clone();
        scenarios.push(Box::new(move || {
            let at_limit = format!("{sdk} 6 KB exactly ").repeat(400)[..6144].to_string();
            kms.watch("Encrypt plaintext of 6 KB", at_limit.as_bytes());
            let params = json!({"KeyId": "alias/aes", "Plaintext": at_limit});
            kms.call(sdk, "Encrypt", params)
                .expect("6 KB is within the limit");
            let listed = kms.call(sdk, "ListKeys", json!({"PageSize": 100})).unwrap();
            assert_eq!(listed["TotalCount"], 3, "{sdk}: {listed}");
        }));
    }
    // A body past 64 KiB (only the v1 SDK sends parameters in a form body it signs).
    let kms_ = kms.clone();
    scenarios.push(Box::new(move || {
        let job = json!({"sdk": "v1", "raw": true, "action": "ListKeys", "params": {},
                         "body_params": {"Padding": "p".repeat(70 * 1024)}});
        assert_refused(&kms_.run(job), "RequestBodyTooLarge", 413, "a 70 KiB body");
    }));
    concurrently(PARALLEL, scenarios).await;
}

/// Parameters for a message: long values cut.
fn short(params: &Value) -> String {
    let text = params.to_string();
    match text.char_indices().nth(160) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// Disables Key `name` and waits until the API says so.
async fn disable(env: &TestEnv, kms: &KmsClient, name: &str) {
    let patch = json!({"spec": {"keyState": "Disabled"}});
    env.keys()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually(
        &format!("the API refusing Key {name} as Disabled"),
        || async {
            let (kms, key) = (kms.clone(), format!("alias/{name}"));
            let params = json!({"KeyId": key, "Plaintext": "probe"});
            let outcome = tokio::task::spawn_blocking(move || kms.call("tea", "Encrypt", params))
                .await
                .unwrap();
            matches!(outcome, Err((code, _, _)) if code == "Rejected.Disabled").then_some(())
        },
    )
    .await;
}
