//! Proves `keyward::kms::import` against an independent implementation: key material wrapped by the
//! OpenSSL 3 CLI with the published public key unwraps to the same bytes, and material wrapped
//! any other way is refused. No cluster needed.
//!
//! The wrapping command is the one users are told to run:
//! `openssl pkeyutl -encrypt -pubin -inkey pub.pem -pkeyopt rsa_padding_mode:oaep
//!  -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in material -out wrapped`.
//!
//! Scratch files are owner-only (0700 directory, 0600 files) and removed when each test ends.
//! Assertion messages carry OpenSSL's output, error messages and lengths, never key bytes.

mod common;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use common::openssl::openssl_ok;
use common::scratch::Scratch;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use keyward::api::ImportParameters;
use keyward::api::KeySpec;
use keyward::kms::error::{Code, Rejection};
use keyward::kms::import::{ENCRYPTED_KEY_MATERIAL, IMPORT_TOKEN, issue_parameters, unwrap};
use keyward::kms::material::SecretBytes;

/// The parameters are issued at this time and used an hour later, well before they expire.
const ISSUED: &str = "2026-11-23T08:34:59Z";
const USED: &str = "2026-11-23T09:34:59Z";

/// One set of parameters for every test: RSA key generation is the slow part.
static PARAMETERS: LazyLock<(ImportParameters, SecretBytes)> = LazyLock::new(|| {
    issue_parameters(ISSUED.parse().expect("timestamp")).expect("issue import parameters")
});

/// The wrapping options users are told to pass: OAEP, SHA-256 for the label hash and for MGF1,
/// no label.
const OAEP_SHA256: &[&str] = &[
    "-pkeyopt",
    "rsa_padding_mode:oaep",
    "-pkeyopt",
    "rsa_oaep_md:sha256",
    "-pkeyopt",
    "rsa_mgf1_md:sha256",
];

fn random(len: usize) -> SecretBytes {
    let mut bytes = vec![0; len];
    getrandom::fill(&mut bytes).expect("OS RNG");
    SecretBytes::new(bytes)
}

fn parameters() -> &'static ImportParameters {
    &PARAMETERS.0
}

/// Writes the published public key and `material` into `dir` and wraps the material with the
/// OpenSSL CLI, with `padding` options; returns the raw ciphertext.
fn openssl_wrap(dir: &Scratch, material: &SecretBytes, padding: &[&str]) -> Vec<u8> {
    dir.write("pub.pem", parameters().public_key.as_bytes());
    dir.write("material", material.expose());
    let args = [
        &[
            "pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", "-in", "material", "-out",
            "wrapped",
        ][..],
        padding,
    ]
    .concat();
    openssl_ok(dir, "wrap the key material with the public key", &args);
    dir.read("wrapped")
}

/// The import Secret's data: the ciphertext as raw bytes, and the token.
fn import_secret(wrapped: Vec<u8>, token: &str) -> BTreeMap<String, ByteString> {
    BTreeMap::from([
        (ENCRYPTED_KEY_MATERIAL.to_string(), ByteString(wrapped)),
        (
            IMPORT_TOKEN.to_string(),
            ByteString(token.as_bytes().to_vec()),
        ),
    ])
}

fn import(
    secret_data: &BTreeMap<String, ByteString>,
    key_spec: KeySpec,
) -> Result<SecretBytes, Rejection> {
    unwrap(
        secret_data,
        key_spec,
        Some(parameters()),
        Some(PARAMETERS.1.expose()),
        USED.parse::<Timestamp>().expect("timestamp"),
    )
}

/// Wraps `len` random bytes with OpenSSL and imports them as `key_spec`.
fn assert_openssl_wrapped_material_imports(key_spec: KeySpec, len: usize) {
    let dir = Scratch::new("round-trip");
    let material = random(len);
    let wrapped = openssl_wrap(&dir, &material, OAEP_SHA256);
    assert_eq!(wrapped.len(), 256, "an RSA-2048 ciphertext is 256 bytes");
    let imported = import(
        &import_secret(wrapped, &parameters().import_token),
        key_spec,
    )
    .unwrap_or_else(|error| panic!("{key_spec}: import refused: {error}"));
    // SecretBytes compares in constant time and prints only its length.
    assert_eq!(imported, material, "{key_spec}: different bytes came out");
}

#[test]
fn openssl_wrapped_aes_256_material_unwraps_to_the_same_32_bytes() {
    assert_openssl_wrapped_material_imports(KeySpec::AliyunAes256, 32);
}

#[test]
fn openssl_wrapped_sm4_material_unwraps_to_the_same_16_bytes() {
    assert_openssl_wrapped_material_imports(KeySpec::AliyunSm4, 16);
}

/// Wraps 32 bytes with OpenSSL using `padding` and asserts the import is InvalidKeyMaterial.
fn assert_openssl_wrapping_is_refused(what: &str, padding: &[&str]) {
    let dir = Scratch::new("wrong-padding");
    let wrapped = openssl_wrap(&dir, &random(32), padding);
    let error = import(
        &import_secret(wrapped, &parameters().import_token),
        KeySpec::AliyunAes256,
    )
    .expect_err(what);
    assert!(
        error.code == Code::InvalidKeyMaterial,
        "{what}: expected InvalidKeyMaterial, got {error}"
    );
    assert!(
        error.to_string().contains("RSAES-OAEP with SHA-256"),
        "{what}: the message should say how to wrap: {error}"
    );
}

#[test]
fn openssl_oaep_with_sha1_is_invalid_key_material() {
    assert_openssl_wrapping_is_refused(
        "OAEP with SHA-1",
        &[
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha1",
            "-pkeyopt",
            "rsa_mgf1_md:sha1",
        ],
    );
}

/// SHA-256 OAEP with MGF1 over SHA-1 (what Java's "OAEPWithSHA-256AndMGF1Padding" does by
/// default) is a different padding and is refused.
#[test]
fn openssl_oaep_sha256_with_mgf1_sha1_is_invalid_key_material() {
    assert_openssl_wrapping_is_refused(
        "OAEP SHA-256 with MGF1 SHA-1",
        &[
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha1",
        ],
    );
}

#[test]
fn openssl_pkcs1_v1_5_is_invalid_key_material() {
    assert_openssl_wrapping_is_refused("PKCS#1 v1.5", &["-pkeyopt", "rsa_padding_mode:pkcs1"]);
}

#[test]
fn a_wrong_token_is_invalid_import_token() {
    let dir = Scratch::new("wrong-token");
    let wrapped = openssl_wrap(&dir, &random(32), OAEP_SHA256);
    let (other, _) = issue_parameters(ISSUED.parse().expect("timestamp")).expect("issue");
    let error = import(
        &import_secret(wrapped, &other.import_token),
        KeySpec::AliyunAes256,
    )
    .expect_err("a wrong token");
    assert!(
        error.code == Code::InvalidImportToken,
        "expected InvalidImportToken, got {error}"
    );
}

#[test]
fn openssl_reads_the_public_key_as_rsa_2048() {
    let dir = Scratch::new("text-pub");
    dir.write("pub.pem", parameters().public_key.as_bytes());
    let text = openssl_ok(
        &dir,
        "read the public key",
        &["pkey", "-pubin", "-in", "pub.pem", "-text_pub", "-noout"],
    );
    let text = String::from_utf8_lossy(&text);
    for line in ["Public-Key: (2048 bit)", "Exponent: 65537 (0x10001)"] {
        assert!(text.contains(line), "expected {line:?} in:\n{text}");
    }
}

/// The wrapping private key keyward keeps is PKCS#8 that OpenSSL reads, and it is the private
/// half of the published public key.
#[test]
fn openssl_derives_the_published_public_key_from_the_kept_private_key() {
    let dir = Scratch::new("pubout");
    dir.write("priv.pem", PARAMETERS.1.expose());
    openssl_ok(
        &dir,
        "check the wrapping private key",
        &["pkey", "-in", "priv.pem", "-check", "-noout"],
    );
    let derived = openssl_ok(
        &dir,
        "derive the public key",
        &["pkey", "-in", "priv.pem", "-pubout"],
    );
    assert_eq!(
        String::from_utf8_lossy(&derived),
        parameters().public_key,
        "the published public key is not the kept private key's"
    );
}
