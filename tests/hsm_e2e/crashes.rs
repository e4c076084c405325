//! Crash safety of token objects: minted once, as Secrets are.
//!
//! HSM version ids are derived from the Key's UID and the version's ordinal, so the state a
//! crash between generating a version's objects and recording it leaves can be made exactly
//! (objects under the ids the next attempt will use, by pkcs11-tool) and its completion
//! checked; kill -9 at varying points checks the same end to end.

use keyward::hsm::{VersionObjects, derived_key_id, derived_version_id};
use kube::ResourceExt;

use super::{
    assert_published_public_keys_are_the_tokens, assert_token_holds_exactly_the_recorded_versions,
    hex, hsm_env, record, token_public_der,
};
use crate::common::pauses::Pauses;
use crate::common::{eventually, http_get, key_manifest, key_version_manifest};

/// Generates, with pkcs11-tool, the objects of `objects` as keyward would: what a crash after
/// generating them and before recording them leaves on the token.
fn generate_as_a_crashed_attempt(
    hsm: &crate::common::hsm::SoftHsm,
    objects: &VersionObjects,
    key_type: &str,
) {
    let id = hex(&objects.id());
    let label = objects.label();
    let mut args = vec![
        "--id",
        &id,
        "--label",
        &label,
        "--key-type",
        key_type,
        "--sensitive",
    ];
    match key_type.starts_with("AES") {
        true => args.extend(["--keygen", "--usage-decrypt"]),
        false => args.extend(["--keypairgen", "--usage-sign"]),
    }
    let (ok, text) = hsm.pkcs11_tool(&args);
    assert!(ok, "pkcs11-tool generating {objects}: {text}");
}

#[tokio::test]
async fn a_crash_after_generating_objects_is_completed_by_adopting_them() {
    let (mut env, hsm) = hsm_env("hsm-adopt").await;
    // Creation: the Key exists, its version's objects were generated, nothing was recorded.
    let key = env
        .apply_key(&key_manifest(
            "early",
            "{protectionLevel: HSM, keySpec: EC_P256, keyUsage: SIGN/VERIFY}",
        ))
        .await;
    let key_id = derived_key_id(&key.uid().unwrap());
    let initial = VersionObjects::new(&key_id, &derived_version_id(&key_id, 0));
    generate_as_a_crashed_attempt(&hsm, &initial, "EC:prime256v1");
    let generated = token_public_der(&hsm, &hex(&initial.id()));

    let operator = env.start_operator(&["--min-rotation-interval", "1s"]);
    env.wait_ready("early").await;
    let created = record(&env, "early").await;
    assert_eq!(created.key_id, key_id);
    assert_eq!(created.versions.len(), 1);
    assert_eq!(created.versions[0].key_version_id, initial.key_version_id);
    assert_token_holds_exactly_the_recorded_versions(&hsm, &created);
    let store = env.store("early").await.unwrap();
    assert_published_public_keys_are_the_tokens(&hsm, &created, &store);
    assert_eq!(
        super::pem_der(
            std::str::from_utf8(crate::common::entry(
                &store,
                &format!("{}.public.pem", initial.key_version_id)
            ))
            .unwrap()
        ),
        generated,
        "the key published is the one generated before the crash"
    );
    assert!(
        env.operator_log(operator)
            .contains("the HSM already holds this version's objects"),
        "the operator says it adopted them"
    );

    // Rotation: the next version's secret key was generated, then the operator died.
    env.apply_key(&key_manifest(
        "rotor",
        "{protectionLevel: HSM, enableAutomaticRotation: true, rotationInterval: 3s}",
    ))
    .await;
    env.wait_ready("rotor").await;
    env.kill_operators();
    let before = record(&env, "rotor").await;
    let next = VersionObjects::new(
        &before.key_id,
        &derived_version_id(&before.key_id, before.versions.len()),
    );
    generate_as_a_crashed_attempt(&hsm, &next, "AES:32");
    env.start_operator(&["--min-rotation-interval", "1s"]);
    let rotated = eventually("the rotation after the restart", || async {
        let record = record(&env, "rotor").await;
        (record.versions.len() > before.versions.len()).then_some(record)
    })
    .await;
    assert_eq!(
        rotated.versions[before.versions.len()].key_version_id,
        next.key_version_id,
        "the rotation adopted the objects of the crashed one"
    );
    // Compared while it holds still.
    super::stop_rotation(&env, "rotor").await;
    assert_token_holds_exactly_the_recorded_versions(&hsm, &record(&env, "rotor").await);
}

const CRASH_FLAGS: [&str; 4] = [
    "--min-rotation-interval",
    "1s",
    "--key-version-min-interval",
    "1s",
];

#[tokio::test]
async fn kill_nine_during_creation_and_rotation_loses_or_doubles_no_version() {
    let (mut env, hsm) = hsm_env("hsm-kill-nine").await;
    env.apply_key(&key_manifest(
        "rotor",
        "{protectionLevel: HSM, enableAutomaticRotation: true, rotationInterval: 1s}",
    ))
    .await;
    env.apply_key(&key_manifest(
        "signer",
        "{protectionLevel: HSM, keySpec: EC_P256, keyUsage: SIGN/VERIFY}",
    ))
    .await;
    let mut keys = vec!["rotor".to_string(), "signer".to_string()];
    let mut requests = Vec::new();
    let mut pauses = Pauses(0x68736d2d6b696c6c);
    for trial in 0..12 {
        // RSA generation takes SoftHSM2 long enough for kills to land inside it.
        let name = format!("rsa-{trial}");
        env.apply_key(&key_manifest(
            &name,
            "{protectionLevel: HSM, keySpec: RSA_2048, keyUsage: SIGN/VERIFY}",
        ))
        .await;
        keys.push(name);
        if trial % 3 == 2 {
            let request = format!("signer-{trial}");
            env.apply_key_version(&key_version_manifest(&request, "signer"))
                .await;
            requests.push(request);
        }
        env.start_operator(&CRASH_FLAGS);
        tokio::time::sleep(pauses.next(30, 1229)).await;
        env.kill_operators();
    }

    env.start_operator(&CRASH_FLAGS);
    for name in &keys {
        env.wait_ready(name).await;
    }
    let mut created = 0;
    for request in &requests {
        let settled = env
            .wait_key_version(request, "settled", |r| {
                r == "Created" || r.starts_with("Rejected")
            })
            .await;
        let reason = &settled.status.unwrap().conditions[0].reason;
        created += usize::from(reason == "Created");
    }
    // The rotor rotates at least once more, which completes a rotation a kill interrupted;
    // then it stops, so that its store holds still.
    let restarted = record(&env, "rotor").await.versions.len();
    eventually("a rotation after the last restart", || async {
        (record(&env, "rotor").await.versions.len() > restarted).then_some(())
    })
    .await;
    super::stop_rotation(&env, "rotor").await;

    for name in &keys {
        let record = record(&env, name).await;
        assert_token_holds_exactly_the_recorded_versions(&hsm, &record);
        if !record.key_spec.is_symmetric() {
            let store = env.store(name).await.unwrap();
            assert_published_public_keys_are_the_tokens(&hsm, &record, &store);
        }
        let consumer = env.secret(name).await.unwrap();
        let published =
            String::from_utf8(crate::common::entry(&consumer, "keyVersionId").to_vec()).unwrap();
        assert_eq!(
            Some(published.as_str()),
            record.versions.last().map(|v| v.key_version_id.as_str()),
            "{name}: the consumer serves the newest version"
        );
    }
    let signer = record(&env, "signer").await;
    assert_eq!(
        signer.versions.len(),
        1 + created,
        "signer: one version per request created, and the initial one"
    );
}

#[tokio::test]
async fn objects_no_store_records_are_reported_at_start_up_and_left_in_place() {
    let (mut env, hsm) = hsm_env("hsm-audit").await;
    let stray = VersionObjects::new(
        &uuid::Uuid::new_v4().to_string(),
        &uuid::Uuid::new_v4().to_string(),
    );
    generate_as_a_crashed_attempt(&hsm, &stray, "AES:32");
    let operator = env.start_operator(&[]);
    // A Key made after the audit is no orphan.
    env.apply_key(&key_manifest("kept", "{protectionLevel: HSM}"))
        .await;
    env.wait_ready("kept").await;
    let addr = env.operator_http_addr(operator).await;
    let (status, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("\nkeyward_hsm_orphaned_objects 1\n"),
        "{metrics}"
    );
    for (spec, supported) in [
        ("Aliyun_AES_256", 1),
        ("RSA_2048", 1),
        ("EC_P256", 1),
        ("EC_P256K", 1),
        ("Aliyun_SM4", 0),
        ("EC_SM2", 0),
    ] {
        let line = format!("keyward_hsm_key_spec_supported{{key_spec=\"{spec}\"}} {supported}\n");
        assert!(metrics.contains(&line), "{line}");
    }
    let log = env.operator_log(operator);
    let reported = log
        .lines()
        .find(|l| l.contains("no store records"))
        .expect("the audit reports the stray object");
    assert!(reported.contains(&stray.key_id), "{reported}");
    assert!(reported.contains(&hex(&stray.id())), "{reported}");
    assert_eq!(
        hsm.version_objects(&stray.key_id, &stray.key_version_id)
            .len(),
        1,
        "left in place"
    );
}
