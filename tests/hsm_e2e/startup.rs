//! Start-up with an HSM: a token that cannot be used stops keyward at once, saying why (a
//! misconfiguration is a crash loop with the reason, never keys that fail later); the PIN never
//! appears in what it prints.

use std::time::Duration;

use crate::common::TestEnv;
use crate::common::hsm::SoftHsm;

/// Starts an operator with `env` and `flags`; its log once it has exited, non-zero.
async fn refused_start(test: &str, env_vars: Vec<(String, String)>, flags: &[&str]) -> String {
    let mut env = TestEnv::new(test).await;
    env.operator_env = env_vars;
    let operator = env.start_operator(flags);
    let status = env
        .operator_exit_within(operator, Duration::from_secs(30))
        .await
        .expect("keyward exits when its HSM cannot be used");
    assert!(!status.success(), "{status:?}");
    env.operator_log(operator)
}

fn without(vars: Vec<(String, String)>, name: &str) -> Vec<(String, String)> {
    vars.into_iter().filter(|(k, _)| k != name).collect()
}

#[tokio::test]
async fn an_unusable_token_stops_keyward_at_start_up_saying_why() {
    let hsm = SoftHsm::init("hsm-startup");
    let pin = hsm.pin();

    // A wrong PIN, in the file.
    let scratch = crate::common::scratch::Scratch::new("hsm-wrong-pin");
    let wrong = scratch.write("pin", b"00000000\n");
    let mut vars = without(hsm.env(), "KEYWARD_PKCS11_PIN_FILE");
    vars.push((
        "KEYWARD_PKCS11_PIN_FILE".into(),
        wrong.display().to_string(),
    ));
    let log = refused_start("hsm-wrong-pin", vars, &[]).await;
    assert!(log.contains("C_Login"), "{log}");
    assert!(log.contains("opening the HSM token \"keyward\""), "{log}");

    // A token label no slot has: the labels there are are named.
    let log = refused_start(
        "hsm-wrong-label",
        without(hsm.env(), "KEYWARD_PKCS11_TOKEN_LABEL"),
        &["--pkcs11-token-label", "production"],
    )
    .await;
    assert!(
        log.contains("holds a token labelled \"production\" (tokens: \"keyward\")"),
        "{log}"
    );

    // No PIN at all.
    let log = refused_start(
        "hsm-no-pin",
        without(hsm.env(), "KEYWARD_PKCS11_PIN_FILE"),
        &[],
    )
    .await;
    assert!(
        log.contains("--pkcs11-module needs the token's user PIN: set --pkcs11-pin-file"),
        "{log}"
    );

    // The PIN from the environment works, and is never printed.
    let mut env = TestEnv::new("hsm-pin-env").await;
    env.operator_env = without(hsm.env(), "KEYWARD_PKCS11_PIN_FILE");
    env.operator_env
        .push(("KEYWARD_PKCS11_PIN".into(), pin.clone()));
    env.start_operator(&[]);
    env.apply_key(&crate::common::key_manifest(
        "aes",
        "{protectionLevel: HSM}",
    ))
    .await;
    env.wait_ready("aes").await;
    assert!(!env.operator_log(0).contains(&pin), "the PIN is in the log");
}
