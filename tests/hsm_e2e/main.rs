//! protectionLevel HSM on the real control plane, with a SoftHSM2 token per test made by
//! `hack/softhsm.sh` and checked with OpenSC's `pkcs11-tool`, an independent PKCS#11 client:
//!
//! * [`custody`]: every supported key spec generated in the token, sensitive and never
//!   extractable; no Secret holds its material; specs the module lacks refused, nothing minted;
//! * [`lifecycle`]: rotation and KeyVersions make one token object per version; objects are
//!   destroyed only when the pending window ends;
//! * [`crashes`]: a crash between generating and recording is completed by adopting the
//!   objects; kill -9 during creation and rotation loses or doubles no version; objects no
//!   store records are reported at start-up and left in place;
//! * [`startup`]: a token that cannot be used stops keyward at start-up, saying why.
//!
//! The KMS API's operations with HSM keys are in tests/kms_api_crypto.rs, beside the same
//! scenarios with SOFTWARE keys.

#[path = "../common/mod.rs"]
mod common;

mod crashes;
mod custody;
mod lifecycle;
mod startup;

use base64::Engine;
use common::hsm::{SoftHsm, TokenObject};
use common::scratch::Scratch;
use common::{TestEnv, entry, record_of};
use keyward::hsm::VersionObjects;
use keyward::store::KeyRecord;

/// A test's namespace and its own token, attached to every operator the test starts.
async fn hsm_env(test: &str) -> (TestEnv, SoftHsm) {
    let mut env = TestEnv::new(test).await;
    let hsm = SoftHsm::init(test);
    hsm.attach(&mut env);
    (env, hsm)
}

/// The record of Key `name`'s store, which must exist.
async fn record(env: &TestEnv, name: &str) -> KeyRecord {
    let store = env
        .store(name)
        .await
        .unwrap_or_else(|| panic!("{name} has a store"));
    record_of(&store)
}

/// Turns Key `name`'s rotation off (an HSM AES key) and waits until the operator observed it,
/// so that its store holds still while the token is compared with it.
async fn stop_rotation(env: &TestEnv, name: &str) {
    let stopped = env
        .apply_key(&common::key_manifest(name, "{protectionLevel: HSM}"))
        .await;
    env.wait_key(name, "observed without rotation", |k| {
        k.status.as_ref().and_then(|s| s.observed_generation) == stopped.metadata.generation
    })
    .await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The DER inside a PEM document.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM base64")
}

/// The public key object `id` (hex) as pkcs11-tool reads it: SPKI DER.
fn token_public_der(hsm: &SoftHsm, id: &str) -> Vec<u8> {
    let scratch = Scratch::new("hsm-public");
    let out = scratch.path("public.der");
    let (ok, text) = hsm.pkcs11_tool(&[
        "--read-object",
        "--type",
        "pubkey",
        "--id",
        id,
        "--output-file",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "pkcs11-tool --read-object pubkey {id}: {text}");
    std::fs::read(out).unwrap()
}

/// Asserts that the token holds exactly the objects of the versions `record` lists: per
/// version, one secret key (symmetric) or one private and one public key (asymmetric), under
/// the version's CKA_ID, the private and secret ones sensitive and never extractable; and no
/// other object of the key.
fn assert_token_holds_exactly_the_recorded_versions(hsm: &SoftHsm, record: &KeyRecord) {
    let key_objects = hsm.key_objects(&record.key_id);
    let symmetric = record.key_spec.is_symmetric();
    let per_version = if symmetric { 1 } else { 2 };
    for version in &record.versions {
        let objects = VersionObjects::new(&record.key_id, &version.key_version_id);
        let found: Vec<&TokenObject> = key_objects
            .iter()
            .filter(|o| o.label == objects.label())
            .collect();
        let mut classes: Vec<&str> = found.iter().map(|o| o.class.as_str()).collect();
        classes.sort();
        let expected = match symmetric {
            true => vec!["Secret Key"],
            false => vec!["Private Key", "Public Key"],
        };
        assert_eq!(classes, expected, "{objects}: {found:?}");
        for object in found {
            assert_eq!(object.id, hex(&objects.id()), "{objects}: CKA_ID");
            if object.class != "Public Key" {
                assert!(object.kept_in_token(), "{objects}: {object:?}");
            }
        }
    }
    assert_eq!(
        key_objects.len(),
        per_version * record.versions.len(),
        "key {}: objects of unrecorded versions, or doubled ones: {key_objects:?}",
        record.key_id
    );
}

/// Asserts that the public keys the store publishes are the token's own.
fn assert_published_public_keys_are_the_tokens(
    hsm: &SoftHsm,
    record: &KeyRecord,
    store: &k8s_openapi::api::core::v1::Secret,
) {
    for version in &record.versions {
        let id = hex(&VersionObjects::new(&record.key_id, &version.key_version_id).id());
        let pem = std::str::from_utf8(entry(
            store,
            &format!("{}.public.pem", version.key_version_id),
        ))
        .unwrap()
        .to_string();
        assert_eq!(
            pem_der(&pem),
            token_public_der(hsm, &id),
            "version {}: the published public key is not the token's",
            version.key_version_id
        );
    }
}
