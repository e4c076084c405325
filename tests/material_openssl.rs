//! Proves every key spec of `keyward::kms::material::generate` against an independent
//! implementation: OpenSSL 3 (the `openssl` CLI, and the in-process binding where the CLI
//! cannot do the operation, e.g. AEAD ciphers).
//!
//! Every check is an operation that only succeeds if the material is right: a key OpenSSL cannot
//! parse, a public key that does not belong to the private key, or a wrong curve makes a test
//! fail. Assertion messages carry OpenSSL's stderr and public data only, never key material.

mod common;

use common::openssl::{openssl_fails, openssl_ok};
use common::scratch::Scratch;
use keyward::api::KeySpec;
use keyward::kms::material::{Material, SecretBytes, generate};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};

const MESSAGE: &[u8] = b"keyward: the same message for every implementation\n";
const TAMPERED: &[u8] = b"keyward: the same message for every implementation!\n";
/// The default SM2 distinguishing identifier of GM/T 0009; OpenSSL 3.0 defaults to an empty one.
const SM2_DISTID: &str = "1234567812345678";

fn symmetric(spec: KeySpec) -> SecretBytes {
    match generate(spec).expect("generate") {
        Material::Symmetric { key } => key,
        other => panic!("{spec} gave other material: {other:?}"),
    }
}

/// Generates a key pair for `spec` and writes it as `priv.pem` and `pub.pem`, plus the message
/// as `msg` and its tampered twin as `tampered`.
fn asymmetric(spec: KeySpec, dir: &Scratch) -> (SecretBytes, String) {
    let Material::Asymmetric {
        private_pem,
        public_pem,
    } = generate(spec).expect("generate")
    else {
        panic!("{spec} gave symmetric material");
    };
    dir.write("priv.pem", private_pem.expose());
    dir.write("pub.pem", public_pem.as_bytes());
    dir.write("msg", MESSAGE);
    dir.write("tampered", TAMPERED);
    (private_pem, public_pem)
}

fn private_pem_str(private_pem: &SecretBytes) -> &str {
    std::str::from_utf8(private_pem.expose()).expect("PEM is UTF-8")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// OpenSSL parses the private key, finds it consistent (`-check`: the public point or modulus
/// matches the private part), and its public description contains every `expected` line.
/// Only the public text (`-text_pub`) is read, so it may appear in assertion messages.
fn assert_openssl_reads(spec: KeySpec, expected: &[&str]) {
    let dir = Scratch::new("reads");
    asymmetric(spec, &dir);
    openssl_ok(
        &dir,
        "check the private key",
        &["pkey", "-in", "priv.pem", "-check", "-noout"],
    );
    let text = openssl_ok(
        &dir,
        "read the private key",
        &["pkey", "-in", "priv.pem", "-noout", "-text_pub"],
    );
    let text = String::from_utf8_lossy(&text);
    for line in expected {
        assert!(text.contains(line), "{spec}: expected {line:?} in:\n{text}");
    }
}

#[test]
fn public_pem_equals_openssl_derivation_from_private_key_for_every_asymmetric_spec() {
    for spec in KeySpec::ALL.iter().copied().filter(|s| !s.is_symmetric()) {
        let dir = Scratch::new("pubout");
        let (_, public_pem) = asymmetric(spec, &dir);
        let derived = openssl_ok(
            &dir,
            "derive the public key",
            &["pkey", "-in", "priv.pem", "-pubout"],
        );
        assert_eq!(
            String::from_utf8_lossy(&derived),
            public_pem,
            "{spec}: public PEM differs from the one OpenSSL derives from the private key"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// RSA_2048

#[test]
fn rsa_2048_is_read_by_openssl_with_2048_bit_modulus_and_exponent_65537() {
    assert_openssl_reads(
        KeySpec::Rsa2048,
        &["Public-Key: (2048 bit)", "Exponent: 65537 (0x10001)"],
    );
}

#[test]
fn rsa_2048_oaep_sha256_round_trip_with_openssl() {
    let dir = Scratch::new("rsa-oaep");
    asymmetric(KeySpec::Rsa2048, &dir);
    let oaep = [
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        "rsa_oaep_md:sha256",
    ];
    let encrypt = [
        &[
            "pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", "-in", "msg", "-out", "ct",
        ][..],
        &oaep,
    ]
    .concat();
    openssl_ok(&dir, "OAEP-encrypt with the public key", &encrypt);
    assert_ne!(dir.read("ct"), MESSAGE);
    let decrypt = [
        &["pkeyutl", "-decrypt", "-inkey", "priv.pem", "-in", "ct"][..],
        &oaep,
    ]
    .concat();
    let plaintext = openssl_ok(&dir, "OAEP-decrypt with the private key", &decrypt);
    assert_eq!(plaintext, MESSAGE);
}

#[test]
fn rsa_2048_pss_signature_verifies_with_openssl_and_tampered_message_fails() {
    let dir = Scratch::new("rsa-pss");
    asymmetric(KeySpec::Rsa2048, &dir);
    let pss = ["-sigopt", "rsa_padding_mode:pss"];
    let sign = [
        &["dgst", "-sha256", "-sign", "priv.pem", "-out", "sig"][..],
        &pss,
        &["msg"],
    ]
    .concat();
    openssl_ok(&dir, "PSS-sign with the private key", &sign);
    let verify = |file| {
        [
            &["dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig"][..],
            &pss,
            &[file],
        ]
        .concat()
    };
    openssl_ok(&dir, "PSS-verify with the public key", &verify("msg"));
    openssl_fails(&dir, "verify a tampered message", &verify("tampered"));
}

// ---------------------------------------------------------------------------------------------
// EC_P256 and EC_P256K (ECDSA)

#[test]
fn ec_p256_is_read_by_openssl_as_prime256v1() {
    assert_openssl_reads(
        KeySpec::EcP256,
        &["ASN1 OID: prime256v1", "NIST CURVE: P-256"],
    );
}

#[test]
fn ec_p256k_is_read_by_openssl_as_secp256k1() {
    assert_openssl_reads(KeySpec::EcP256K, &["ASN1 OID: secp256k1"]);
}

/// OpenSSL signs with our private PEM and verifies with our public PEM; a tampered message fails.
fn assert_openssl_ecdsa_sha256_round_trip(spec: KeySpec) {
    let dir = Scratch::new("ecdsa-openssl");
    asymmetric(spec, &dir);
    openssl_ok(
        &dir,
        "ECDSA-sign with the private key",
        &["dgst", "-sha256", "-sign", "priv.pem", "-out", "sig", "msg"],
    );
    assert_openssl_verifies_ecdsa_sha256(&dir);
}

/// `sig` (DER ECDSA over SHA-256) verifies against `pub.pem` for `msg` but not for `tampered`.
fn assert_openssl_verifies_ecdsa_sha256(dir: &Scratch) {
    let verify = |file| {
        [
            "dgst",
            "-sha256",
            "-verify",
            "pub.pem",
            "-signature",
            "sig",
            file,
        ]
    };
    openssl_ok(dir, "ECDSA-verify with the public key", &verify("msg"));
    openssl_fails(dir, "verify a tampered message", &verify("tampered"));
}

#[test]
fn ec_p256_ecdsa_sha256_round_trip_with_openssl() {
    assert_openssl_ecdsa_sha256_round_trip(KeySpec::EcP256);
}

#[test]
fn ec_p256k_ecdsa_sha256_round_trip_with_openssl() {
    assert_openssl_ecdsa_sha256_round_trip(KeySpec::EcP256K);
}

#[test]
fn ec_p256_rustcrypto_signature_verifies_with_openssl() {
    let dir = Scratch::new("p256-rustcrypto");
    let (private_pem, _) = asymmetric(KeySpec::EcP256, &dir);
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(private_pem_str(&private_pem))
        .expect("p256 parses our private PEM");
    let signature: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&key, MESSAGE);
    dir.write("sig", signature.to_der().as_bytes());
    assert_openssl_verifies_ecdsa_sha256(&dir);
}

#[test]
fn ec_p256k_rustcrypto_signature_verifies_with_openssl() {
    let dir = Scratch::new("k256-rustcrypto");
    let (private_pem, _) = asymmetric(KeySpec::EcP256K, &dir);
    let key = k256::ecdsa::SigningKey::from_pkcs8_pem(private_pem_str(&private_pem))
        .expect("k256 parses our private PEM");
    let signature: k256::ecdsa::Signature = k256::ecdsa::signature::Signer::sign(&key, MESSAGE);
    dir.write("sig", signature.to_der().as_bytes());
    assert_openssl_verifies_ecdsa_sha256(&dir);
}

// ---------------------------------------------------------------------------------------------
// EC_SM2 (SM2 signatures with SM3, SM2 encryption)

#[test]
fn ec_sm2_is_read_by_openssl_as_sm2_curve() {
    assert_openssl_reads(KeySpec::EcSm2, &["ASN1 OID: SM2"]);
}

/// `openssl pkeyutl` arguments that SM2-verify `sig` over `file` with SM3 and `pub.pem`.
fn sm2_verify_args<'a>(file: &'a str, distid: &'a [&'a str]) -> Vec<&'a str> {
    let verify = [
        "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey", "pub.pem", "-in",
        file, "-sigfile", "sig",
    ];
    [&verify[..], distid].concat()
}

#[test]
fn ec_sm2_sm3_signature_round_trip_with_openssl() {
    let dir = Scratch::new("sm2-sign");
    asymmetric(KeySpec::EcSm2, &dir);
    openssl_ok(
        &dir,
        "SM2-sign with the private key",
        &[
            "pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-inkey", "priv.pem", "-in", "msg",
            "-out", "sig",
        ],
    );
    openssl_ok(
        &dir,
        "SM2-verify with the public key",
        &sm2_verify_args("msg", &[]),
    );
    openssl_fails(
        &dir,
        "verify a tampered message",
        &sm2_verify_args("tampered", &[]),
    );
}

#[test]
fn ec_sm2_rustcrypto_signature_verifies_with_openssl() {
    let dir = Scratch::new("sm2-rustcrypto-sign");
    let (private_pem, _) = asymmetric(KeySpec::EcSm2, &dir);
    let secret = sm2::SecretKey::from_pkcs8_pem(private_pem_str(&private_pem))
        .expect("sm2 parses our private PEM");
    let key = sm2::dsa::SigningKey::new(SM2_DISTID, &secret).expect("SM2 signing key");
    let signature: sm2::dsa::Signature = sm2::dsa::signature::Signer::sign(&key, MESSAGE);
    dir.write("sig", signature.to_der().as_bytes());
    let distid = format!("distid:{SM2_DISTID}");
    let distid = ["-pkeyopt", distid.as_str()];
    openssl_ok(
        &dir,
        "SM2-verify the RustCrypto signature",
        &sm2_verify_args("msg", &distid),
    );
    openssl_fails(
        &dir,
        "verify a tampered message",
        &sm2_verify_args("tampered", &distid),
    );
}

#[test]
fn ec_sm2_encryption_round_trip_with_openssl() {
    let dir = Scratch::new("sm2-encrypt");
    asymmetric(KeySpec::EcSm2, &dir);
    openssl_ok(
        &dir,
        "SM2-encrypt with the public key",
        &[
            "pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", "-in", "msg", "-out", "ct",
        ],
    );
    assert_ne!(dir.read("ct"), MESSAGE);
    let plaintext = openssl_ok(
        &dir,
        "SM2-decrypt with the private key",
        &["pkeyutl", "-decrypt", "-inkey", "priv.pem", "-in", "ct"],
    );
    assert_eq!(plaintext, MESSAGE);
}

#[test]
fn ec_sm2_rustcrypto_ciphertext_decrypts_with_openssl() {
    let dir = Scratch::new("sm2-rustcrypto-encrypt");
    let (_, public_pem) = asymmetric(KeySpec::EcSm2, &dir);
    let public = sm2::PublicKey::from_public_key_pem(&public_pem).expect("sm2 parses our SPKI");
    let ciphertext = sm2::pke::EncryptingKey::new(public)
        .encrypt_der(&mut getrandom::SysRng, MESSAGE)
        .expect("SM2 encryption");
    dir.write("ct", &ciphertext);
    let plaintext = openssl_ok(
        &dir,
        "SM2-decrypt the RustCrypto ciphertext",
        &["pkeyutl", "-decrypt", "-inkey", "priv.pem", "-in", "ct"],
    );
    assert_eq!(plaintext, MESSAGE);
}

// ---------------------------------------------------------------------------------------------
// Aliyun_AES_256 and Aliyun_SM4

#[test]
fn aliyun_aes_256_is_a_32_byte_aes_256_gcm_key_in_openssl_and_tag_mismatch_fails() {
    use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};

    let key = symmetric(KeySpec::AliyunAes256);
    assert_eq!(key.len(), 32);
    let cipher = Cipher::aes_256_gcm();
    assert_eq!(cipher.key_len(), key.len());
    let mut iv = [0u8; 12];
    openssl::rand::rand_bytes(&mut iv).expect("random IV");
    let aad = b"keyward aad";
    let mut tag = [0u8; 16];
    let ciphertext = encrypt_aead(cipher, key.expose(), Some(&iv), aad, MESSAGE, &mut tag)
        .expect("AES-256-GCM encrypt");
    assert_ne!(ciphertext, MESSAGE);
    let plaintext = decrypt_aead(cipher, key.expose(), Some(&iv), aad, &ciphertext, &tag)
        .expect("AES-256-GCM decrypt");
    assert_eq!(plaintext, MESSAGE);

    let mut bad_tag = tag;
    bad_tag[0] ^= 1;
    assert!(decrypt_aead(cipher, key.expose(), Some(&iv), aad, &ciphertext, &bad_tag).is_err());
    let other = symmetric(KeySpec::AliyunAes256);
    assert!(
        decrypt_aead(cipher, other.expose(), Some(&iv), aad, &ciphertext, &tag).is_err(),
        "a different key must not decrypt"
    );
}

#[test]
fn aliyun_sm4_cbc_round_trip_with_openssl_cli() {
    let key = symmetric(KeySpec::AliyunSm4);
    assert_eq!(key.len(), 16);
    let dir = Scratch::new("sm4-cbc");
    dir.write("msg", MESSAGE);
    let (key_hex, iv_hex) = (hex(key.expose()), hex(&[7u8; 16]));
    let sm4 = ["-sm4-cbc", "-K", key_hex.as_str(), "-iv", iv_hex.as_str()];
    openssl_ok(
        &dir,
        "SM4-CBC encrypt",
        &[&["enc"][..], &sm4, &["-in", "msg", "-out", "ct"]].concat(),
    );
    assert_ne!(dir.read("ct"), MESSAGE);
    let plaintext = openssl_ok(
        &dir,
        "SM4-CBC decrypt",
        &[&["enc", "-d"][..], &sm4, &["-in", "ct"]].concat(),
    );
    assert_eq!(plaintext, MESSAGE);
}

#[test]
fn aliyun_sm4_block_from_openssl_ecb_equals_rustcrypto_sm4() {
    use sm4::cipher::{Block, BlockCipherEncrypt, KeyInit};

    let key = symmetric(KeySpec::AliyunSm4);
    assert_eq!(key.len(), 16);
    let plaintext: [u8; 16] = MESSAGE[..16].try_into().unwrap();

    let dir = Scratch::new("sm4-ecb");
    dir.write("block", &plaintext);
    let key_hex = hex(key.expose());
    let from_openssl = openssl_ok(
        &dir,
        "SM4-ECB encrypt one block",
        &["enc", "-sm4-ecb", "-nopad", "-K", &key_hex, "-in", "block"],
    );

    let cipher = sm4::Sm4::new_from_slice(key.expose()).expect("16-byte SM4 key");
    let mut block = Block::<sm4::Sm4>::from(plaintext);
    cipher.encrypt_block(&mut block);

    assert_eq!(from_openssl.len(), 16);
    assert_ne!(from_openssl, plaintext);
    assert_eq!(
        from_openssl,
        block.as_slice(),
        "OpenSSL and RustCrypto SM4 disagree"
    );
}
