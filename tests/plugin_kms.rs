//! `kubectl keyward encrypt|decrypt|sign|verify` against a real API server and an operator
//! serving the KMS API: data round-trips, signatures verify with OpenSSL and the official SDK
//! agrees with what the plugin sealed, and refusals print the KMS's code with exit status 1.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::kms::*;
use common::openssl::{openssl_fails, openssl_ok};
use common::scratch::Scratch;
use common::{TestEnv, kubeconfig_path};
use serde_json::{Value, json};

/// What one run of the plugin did.
#[derive(Debug)]
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(self.status, 0, "the plugin failed: {self:?}");
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// A namespace with the KMS API served, keys of three specs, and two AccessKeys: `app`
/// (granted every verb the commands use) and `nobody` (granted none).
struct Fixture {
    env: TestEnv,
    endpoint: String,
    /// The official SDK's view of the `app` pair, to cross-check the plugin.
    app_pair: (String, String),
}

async fn fixture(test: &str) -> Fixture {
    let mut env = TestEnv::new(test).await;
    env.start_operator(&["--kms-api-addr", "127.0.0.1:0", "--kms-api-insecure-http"]);
    let keys = [
        ("secrets", "{}"),
        ("signer", "{keySpec: EC_P256, keyUsage: SIGN/VERIFY}"),
        ("gm", "{keySpec: EC_SM2, keyUsage: SIGN/VERIFY}"),
    ];
    for (name, spec) in keys {
        env.apply_key(&format!(
            "apiVersion: keyward.dev/v1alpha1\nkind: Key\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        ))
        .await;
    }
    for (name, _) in keys {
        env.wait_ready(name).await;
    }
    for account in ["app", "nobody"] {
        create_service_account(&env, account).await;
    }
    grant(
        &env,
        "app",
        &[
            "encrypt",
            "decrypt",
            "asymmetricsign",
            "asymmetricverify",
            "getpublickey",
        ],
    )
    .await;
    let app_pair = access_key(&env, "app", "app").await;
    access_key(&env, "nobody", "nobody").await;
    let endpoint = format!("http://{}", kms_api_endpoint(&env).await);
    Fixture {
        env,
        endpoint,
        app_pair,
    }
}

impl Fixture {
    /// `kubectl-keyward -n <namespace> ARGS --endpoint <the API>` with `stdin`.
    async fn plugin(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kubectl-keyward"));
        command
            .args(["-n", &self.env.namespace])
            .args(args)
            .env("KUBECONFIG", kubeconfig_path())
            .env("KEYWARD_KMS_ENDPOINT", &self.endpoint)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let stdin = stdin.to_vec();
        let output = tokio::task::spawn_blocking(move || {
            let mut child = command.spawn().expect("run kubectl-keyward");
            child.stdin.take().unwrap().write_all(&stdin).unwrap();
            child.wait_with_output()
        })
        .await
        .unwrap()
        .expect("kubectl-keyward");
        Run {
            status: output.status.code().expect("exited"),
            stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
        }
    }

    fn public_key(&self, key: &str) -> String {
        let answer = call(
            "tea",
            self.endpoint_authority(),
            &self.app_pair,
            "GetPublicKey",
            json!({"KeyId": key}),
        )
        .unwrap_or_else(|e| panic!("GetPublicKey {key}: {e:?}"));
        answer["PublicKey"].as_str().unwrap().to_string()
    }

    /// host:port, as the SDK harness takes the endpoint.
    fn endpoint_authority(&self) -> &str {
        self.endpoint.trim_start_matches("http://")
    }
}

#[tokio::test]
async fn encrypt_and_decrypt_round_trip_as_an_access_key_and_as_a_service_account() {
    let f = fixture("plugin-kms-crypt").await;
    // Every byte comes back, a final newline included.
    let plaintext = "card 4111 1111 1111 1111, é 密钥\n";
    let context = r#"{"order": "42"}"#;
    let sealed = f
        .plugin(
            &[
                "encrypt",
                "--key",
                "alias/secrets",
                "--access-key",
                "app",
                "--context",
                context,
            ],
            plaintext.as_bytes(),
        )
        .await
        .ok();
    let blob = sealed.stdout.trim().to_string();
    assert!(!blob.is_empty() && !blob.contains("4111"), "{sealed:?}");

    // The token of a TokenRequest acts as the same ServiceAccount.
    let opened = f
        .plugin(
            &["decrypt", "--service-account", "app", "--context", context],
            sealed.stdout.as_bytes(),
        )
        .await
        .ok();
    assert_eq!(opened.stdout, plaintext);

    // The official SDK opens what the plugin sealed.
    let by_sdk = call(
        "tea",
        f.endpoint_authority(),
        &f.app_pair,
        "Decrypt",
        json!({"CiphertextBlob": blob, "EncryptionContext": context}),
    )
    .unwrap_or_else(|e| panic!("the SDK's Decrypt: {e:?}"));
    assert_eq!(by_sdk["Plaintext"], plaintext);

    // -o json prints the whole document, addressed by KeyId as well as by alias.
    let key_id = f
        .env
        .key("secrets")
        .await
        .status
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let document = f
        .plugin(
            &[
                "encrypt",
                "--key",
                &key_id,
                "--plaintext",
                "short",
                "--access-key",
                "app",
                "-o",
                "json",
            ],
            b"",
        )
        .await
        .ok()
        .json();
    assert_eq!(document["KeyId"], key_id.as_str());
    assert!(
        document["KeyVersionId"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert!(
        document["RequestId"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    let blob = document["CiphertextBlob"].as_str().unwrap();

    // A token file works too; the wrong context is refused with the KMS's code.
    let scratch = Scratch::new("plugin-kms-token");
    let token = service_account_token(&f.env, "app", "keyward").await;
    let token_file = scratch.write("token", format!("{token}\n").as_bytes());
    let token_file = token_file.to_str().unwrap();
    let opened = f
        .plugin(
            &[
                "decrypt",
                "--token-file",
                token_file,
                "--ciphertext-blob",
                blob,
            ],
            b"",
        )
        .await
        .ok();
    assert_eq!(opened.stdout, "short");
    let refused = f
        .plugin(
            &[
                "decrypt",
                "--token-file",
                token_file,
                "--ciphertext-blob",
                blob,
                "--context",
                context,
            ],
            b"",
        )
        .await;
    assert_eq!(refused.status, 1, "{refused:?}");
    assert!(refused.stdout.is_empty(), "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("InvalidParameter: CiphertextBlob cannot be decrypted"),
        "{refused:?}"
    );
    assert!(
        !refused.stderr.contains(&token),
        "the error shows the token"
    );
}

#[tokio::test]
async fn signatures_made_by_the_plugin_verify_with_openssl_and_with_the_plugin() {
    let f = fixture("plugin-kms-sign").await;
    let message = b"ship order 42 to east\n";
    for (key, algorithm) in [("alias/signer", "ECDSA_SHA_256"), ("alias/gm", "SM2DSA")] {
        let scratch = Scratch::new("plugin-kms-sign");
        scratch.write("msg", message);
        scratch.write("tampered", b"ship order 43 to east\n");
        let signed = f
            .plugin(
                &[
                    "sign",
                    "--key",
                    key,
                    "--algorithm",
                    algorithm,
                    "--access-key",
                    "app",
                ],
                message,
            )
            .await
            .ok();
        let signature = signed.stdout.trim().to_string();
        let der = base64_decode(&signature);
        scratch.write("sig", &der);
        scratch.write("pub.pem", f.public_key(key).as_bytes());
        let verify = |file: &'static str| -> Vec<&'static str> {
            match algorithm {
                "SM2DSA" => vec![
                    "pkeyutl",
                    "-verify",
                    "-rawin",
                    "-digest",
                    "sm3",
                    "-pubin",
                    "-inkey",
                    "pub.pem",
                    "-in",
                    file,
                    "-sigfile",
                    "sig",
                    "-pkeyopt",
                    "distid:1234567812345678",
                ],
                _ => vec![
                    "dgst",
                    "-sha256",
                    "-verify",
                    "pub.pem",
                    "-signature",
                    "sig",
                    file,
                ],
            }
        };
        openssl_ok(
            &scratch,
            &format!("verify the plugin's {algorithm} signature"),
            &verify("msg"),
        );
        openssl_fails(
            &scratch,
            &format!("verify {algorithm} over another message"),
            &verify("tampered"),
        );

        let args = [
            "verify",
            "--key",
            key,
            "--algorithm",
            algorithm,
            "--signature",
            &signature,
            "--access-key",
            "app",
        ];
        let valid = f.plugin(&args, message).await.ok();
        assert_eq!(valid.stdout, "valid\n", "{algorithm}");
        let invalid = f.plugin(&args, b"ship order 43 to east\n").await;
        assert_eq!(
            (invalid.status, invalid.stdout.as_str()),
            (3, "invalid\n"),
            "{algorithm}: {invalid:?}"
        );
    }

    // An algorithm the key does not allow is the KMS's refusal, not a signature.
    let refused = f
        .plugin(
            &[
                "sign",
                "--key",
                "alias/signer",
                "--algorithm",
                "RSA_PSS_SHA_256",
                "--access-key",
                "app",
            ],
            message,
        )
        .await;
    assert_eq!(refused.status, 1, "{refused:?}");
    assert!(refused.stdout.is_empty(), "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("InvalidParameter: Algorithm RSA_PSS_SHA_256 is not valid"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_refused_call_prints_the_kms_code_and_exits_1() {
    let f = fixture("plugin-kms-refused").await;
    let denied = f
        .plugin(
            &[
                "encrypt",
                "--key",
                "alias/secrets",
                "--access-key",
                "nobody",
            ],
            b"hello",
        )
        .await;
    assert_eq!(denied.status, 1, "{denied:?}");
    assert!(denied.stdout.is_empty(), "{denied:?}");
    assert!(
        denied.stderr.contains("Forbidden.NoPermission"),
        "{denied:?}"
    );
    assert!(
        denied.stderr.contains("\"encrypt\""),
        "the verb to grant: {denied:?}"
    );
    assert!(denied.stderr.contains("RequestId"), "{denied:?}");

    let unknown = f
        .plugin(
            &["encrypt", "--key", "alias/none", "--access-key", "app"],
            b"hello",
        )
        .await;
    assert_eq!(unknown.status, 1, "{unknown:?}");
    assert!(
        unknown.stderr.contains("Forbidden.KeyNotFound"),
        "{unknown:?}"
    );

    let missing = f
        .plugin(
            &[
                "encrypt",
                "--key",
                "alias/secrets",
                "--access-key",
                "absent",
            ],
            b"hello",
        )
        .await;
    assert_eq!(missing.status, 1, "{missing:?}");
    assert!(
        missing.stderr.contains("no AccessKey absent"),
        "{missing:?}"
    );

    // The pair's secret is never printed, whatever happens.
    for run in [&denied, &unknown, &missing] {
        assert!(!run.stderr.contains(&f.app_pair.1), "{run:?}");
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("{text:?} is not base64: {e}"))
}
