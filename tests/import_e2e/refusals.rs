//! Refused imports: every malformed import leaves the key awaiting its import and unchanged,
//! reported by a condition and a Warning event; and, found once as bugs, other material or a
//! past expiry named for an Enabled key.

use std::collections::BTreeMap;
use std::time::Duration;

use keyward::api::{ImportParameters, KeyState};

use crate::checks::{assert_imported, assert_refused, assert_unchanged, untouched};
use crate::common::{self, TestEnv, data_digest, entry_names, ready_message};
use crate::keys::{
    count_events, external, kms_time, material_in, material_until, metadata, put_secret,
    seconds_from_now, store, wait_parameters, warnings,
};
use crate::material::{put_entries, random, wrap, wrap_with, wrapped_entries};

/// The refused imports: (Key, key spec, code, what the message says).
const CASES: [(&str, &str, &str, &str); 10] = [
    (
        "short",
        "Aliyun_AES_256",
        "InvalidKeyMaterial",
        "Aliyun_AES_256 key material must be exactly 32 bytes, but keyMaterial is 31 bytes",
    ),
    (
        "half",
        "Aliyun_AES_256",
        "InvalidKeyMaterial",
        "must be exactly 32 bytes, but keyMaterial is 16 bytes",
    ),
    (
        "sm4-long",
        "Aliyun_SM4",
        "InvalidKeyMaterial",
        "Aliyun_SM4 key material must be exactly 16 bytes, but keyMaterial is 32 bytes",
    ),
    (
        "wrapped-half",
        "Aliyun_AES_256",
        "InvalidKeyMaterial",
        "but the unwrapped encryptedKeyMaterial is 16 bytes",
    ),
    (
        "sha1",
        "Aliyun_AES_256",
        "InvalidKeyMaterial",
        "cannot be unwrapped",
    ),
    (
        "garbage",
        "Aliyun_AES_256",
        "InvalidKeyMaterial",
        "cannot be unwrapped",
    ),
    (
        "other-token",
        "Aliyun_AES_256",
        "InvalidImportToken",
        "importToken does not match status.importParameters.importToken",
    ),
    (
        "neither",
        "Aliyun_AES_256",
        "InvalidParameter",
        "holds neither keyMaterial nor encryptedKeyMaterial",
    ),
    (
        "both",
        "Aliyun_AES_256",
        "InvalidParameter",
        "holds both keyMaterial and encryptedKeyMaterial",
    ),
    (
        "no-token",
        "Aliyun_AES_256",
        "InvalidParameter",
        "holds encryptedKeyMaterial but no importToken",
    ),
];

/// Every refusal: the key keeps awaiting its import, nothing is written, and the refusal is a
/// Ready=False condition and a Warning event that start with the code. Each case is its own
/// Key, refused at once; a retry 15 s later still changes nothing and repeats no event.
#[tokio::test]
async fn every_refused_import_leaves_the_key_pending_import_and_unchanged() {
    let env = TestEnv::with_operator("import-refused").await;
    for (name, spec, _, _) in CASES {
        env.apply_key(&external(name, &format!("keySpec: {spec}")))
            .await;
    }
    let mut parameters = BTreeMap::new();
    for (name, _, _, _) in CASES {
        parameters.insert(name, wait_parameters(&env, name).await);
    }

    for (name, _, _, _) in CASES {
        let entries = refused_entries(name, &parameters);
        put_entries(&env, &format!("{name}-material"), &entries).await;
    }
    let mut before = BTreeMap::new();
    for (name, _, _, _) in CASES {
        before.insert(name, untouched(&env, name).await);
    }

    for (name, spec, _, _) in CASES {
        env.apply_key(&external(
            name,
            &format!(
                "keySpec: {spec}, {}",
                material_in(&format!("{name}-material"))
            ),
        ))
        .await;
    }
    for (name, _, code, says) in CASES {
        assert_refused(&env, name, code, says).await;
        assert_unchanged(&env, name, &before[name]).await;
    }

    // The operator tries failed imports again every 15 s: still nothing changes, and an
    // unchanged refusal is not announced again.
    tokio::time::sleep(Duration::from_secs(17)).await;
    for (name, _, code, _) in CASES {
        assert_unchanged(&env, name, &before[name]).await;
        assert_eq!(
            common::ready_reason(&env.key(name).await).as_deref(),
            Some(code),
            "{name}"
        );
        assert_eq!(warnings(&env, name, code).await.len(), 1, "{name}");
    }
}

/// The entries of case `name`'s import Secret, made with the import parameters of each case.
fn refused_entries(
    name: &str,
    parameters: &BTreeMap<&str, ImportParameters>,
) -> Vec<(&'static str, Vec<u8>)> {
    let own = &parameters[name];
    match name {
        "short" => vec![("keyMaterial", random(31))],
        "half" => vec![("keyMaterial", random(16))],
        "sm4-long" => vec![("keyMaterial", random(32))],
        "wrapped-half" => wrapped_entries(own, &random(16)),
        "sha1" => vec![
            (
                "encryptedKeyMaterial",
                wrap_with(&own.public_key, &random(32), "sha1"),
            ),
            ("importToken", own.import_token.clone().into_bytes()),
        ],
        "garbage" => vec![
            ("encryptedKeyMaterial", random(256)),
            ("importToken", own.import_token.clone().into_bytes()),
        ],
        // Wrapped and tokened for another key: the token is checked first.
        "other-token" => wrapped_entries(&parameters["garbage"], &random(32)),
        "neither" => vec![
            ("key", random(32)),
            ("token", own.import_token.clone().into_bytes()),
        ],
        "both" => {
            let mut entries = wrapped_entries(own, &random(32));
            entries.push(("keyMaterial", random(32)));
            entries
        }
        "no-token" => vec![("encryptedKeyMaterial", wrap(own, &random(32)))],
        other => unreachable!("{other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Bugs found once: each test states the behaviour expected.

/// An Enabled EXTERNAL key whose spec.keyMaterial is pointed at other material says that this
/// material cannot be imported (it never can: only the material a key was imported with may
/// come back), and goes on serving what it was imported with.
#[tokio::test]
async fn other_material_named_for_an_enabled_key_is_refused() {
    let env = TestEnv::with_operator("import-swap").await;
    let material = random(32);
    put_secret(&env, "first", &[("keyMaterial", &material)]).await;
    env.apply_key(&external("swap", &material_in("first")))
        .await;
    let version = assert_imported(&env, "swap", &material).await;
    let consumer = data_digest(&env.secret("swap").await.unwrap());

    put_secret(&env, "second", &[("keyMaterial", &random(32))]).await;
    env.apply_key(&external("swap", &material_in("second")))
        .await;
    let key = env
        .wait_key("swap", "reconciled at the new generation", |k| {
            common::ready_reason(k).is_some()
        })
        .await;
    // Kept, as it must be.
    assert_eq!(
        metadata(&key).primary_key_version.as_deref(),
        Some(version.as_str())
    );
    assert_eq!(data_digest(&env.secret("swap").await.unwrap()), consumer);
    assert_eq!(
        common::ready_reason(&key).as_deref(),
        Some("InvalidKeyMaterial"),
        "{}",
        ready_message(&key)
    );

    // The named Secret is not watched but read again while it holds the key back: given the
    // imported material, the key is Ready again, with nothing re-imported or changed.
    env.secrets()
        .delete("second", &Default::default())
        .await
        .expect("delete Secret second");
    put_secret(&env, "second", &[("keyMaterial", &material)]).await;
    let key = env.wait_reason("swap", "KeyReady").await;
    assert_eq!(
        metadata(&key).primary_key_version.as_deref(),
        Some(version.as_str())
    );
    assert_eq!(data_digest(&env.secret("swap").await.unwrap()), consumer);

    // Deleting the material's Secret once imported (as one should) changes nothing.
    env.secrets()
        .delete("second", &Default::default())
        .await
        .expect("delete Secret second");
    let changed = format!(
        "{}, description: its import Secret is gone",
        material_in("second")
    );
    env.apply_key(&external("swap", &changed)).await;
    let key = env
        .wait_key("swap", "reconciled after its Secret was deleted", |k| {
            k.status.as_ref().and_then(|s| s.observed_generation) == k.metadata.generation
        })
        .await;
    assert_eq!(
        common::ready_reason(&key).as_deref(),
        Some("KeyReady"),
        "{}",
        ready_message(&key)
    );
    assert_eq!(data_digest(&env.secret("swap").await.unwrap()), consumer);
}

/// A spec.keyMaterial.expireTime in the past is refused on an Enabled key as it is when
/// material is imported ("InvalidParameter: ... has passed; set a later time"), and the key
/// keeps its material: a typo in a date must not take a key out of service. (Once a bug: the
/// value was copied into the record and the next plan removed the material as expired.)
#[tokio::test]
async fn a_past_expire_time_for_an_enabled_key_is_refused() {
    let env = TestEnv::with_operator("import-past-expiry").await;
    let material = random(32);
    put_secret(&env, "past-material", &[("keyMaterial", &material)]).await;
    env.apply_key(&external("past", &material_in("past-material")))
        .await;
    let version = assert_imported(&env, "past", &material).await;
    let consumer = data_digest(&env.secret("past").await.unwrap());

    let past = kms_time(seconds_from_now(-3600));
    env.apply_key(&external("past", &material_until("past-material", &past)))
        .await;
    let key = env
        .wait_key("past", "reconciled at the new generation", |k| {
            common::ready_reason(k).is_some()
        })
        .await;
    assert_refused(&env, "past", "InvalidParameter", "has passed").await;
    let stored = store(&env, "past").await;
    assert!(
        entry_names(&stored).contains(&format!("{version}.key")),
        "the material was removed: the store holds {:?}",
        entry_names(&stored)
    );
    assert_eq!(metadata(&key).key_state, KeyState::Enabled);
    assert_eq!(
        data_digest(&env.secret("past").await.unwrap()),
        consumer,
        "withdrawn"
    );
    assert_eq!(count_events(&env, "past", "KeyMaterialExpired").await, 0);
}
