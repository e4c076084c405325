//! Key material for imports: random bytes, wrapped as users are told to with the OpenSSL CLI,
//! and the import Secrets that carry them.

use keyward::api::ImportParameters;

use crate::common::TestEnv;
use crate::common::openssl::openssl_ok;
use crate::common::scratch::Scratch;
use crate::keys::put_secret;

pub fn random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    getrandom::fill(&mut bytes).expect("OS RNG");
    bytes
}

/// Wraps `material` with `public_key` (SPKI PEM) as users are told to: RSAES-OAEP with `digest`
/// for the label hash and for MGF1 (keyward takes sha256 only), no label.
pub fn wrap_with(public_key: &str, material: &[u8], digest: &str) -> Vec<u8> {
    let dir = Scratch::new("wrap");
    dir.write("public.pem", public_key.as_bytes());
    dir.write("material", material);
    let oaep_md = format!("rsa_oaep_md:{digest}");
    let mgf1_md = format!("rsa_mgf1_md:{digest}");
    openssl_ok(
        &dir,
        "wrap the key material",
        &[
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            "public.pem",
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            &oaep_md,
            "-pkeyopt",
            &mgf1_md,
            "-in",
            "material",
            "-out",
            "wrapped",
        ],
    );
    let wrapped = dir.read("wrapped");
    assert_eq!(wrapped.len(), 256, "an RSA-2048 ciphertext");
    wrapped
}

pub fn wrap(parameters: &ImportParameters, material: &[u8]) -> Vec<u8> {
    wrap_with(&parameters.public_key, material, "sha256")
}

/// Import Secret entries: `material` wrapped for `parameters`, with their token.
pub fn wrapped_entries(
    parameters: &ImportParameters,
    material: &[u8],
) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("encryptedKeyMaterial", wrap(parameters, material)),
        ("importToken", parameters.import_token.clone().into_bytes()),
    ]
}

pub async fn put_entries(env: &TestEnv, name: &str, entries: &[(&str, Vec<u8>)]) {
    let borrowed: Vec<(&str, &[u8])> = entries.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    put_secret(env, name, &borrowed).await;
}
