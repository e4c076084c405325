//! Proves `keyward::kms::crypto` against an independent implementation, OpenSSL 3 (the CLI for
//! signatures and public-key encryption, the in-process binding for the symmetric ciphers),
//! in both directions wherever OpenSSL can: what keyward signs or encrypts, OpenSSL verifies or
//! decrypts, and what OpenSSL signs or encrypts, keyward verifies or decrypts.
//!
//! * Signatures: keyward signs the *digest* (SHA-256 of the message, or SM3(Z(A) || M) for
//!   SM2DSA) and OpenSSL verifies the signature against the *message*, so the digest semantics
//!   are checked too. RSA-PSS with salt length 32, RSA-PKCS1 v1.5, ECDSA on P-256 and secp256k1,
//!   SM2 with the user id 1234567812345678 (`-pkeyopt distid:...`).
//! * Public-key encryption: RSAES-OAEP with SHA-256 / MGF1-SHA-256 and with SHA-1 / MGF1-SHA-1
//!   at their plaintext limits (190 and 214 bytes), SM2 encryption (OpenSSL's ciphertext is the
//!   GM/T 0009 DER form) at Alibaba's 6047-byte limit.
//! * Symmetric: the CiphertextBlob's inner AES-256-GCM ciphertext and tag are exactly OpenSSL's
//!   for the documented IV and AAD, and a blob assembled from OpenSSL's output decrypts with
//!   `crypto::decrypt`. OpenSSL 3.0 has no SM4-GCM; SM4-GCM is checked by composing GCM from
//!   OpenSSL's SM4 (ECB for H and E(J0), CTR for the ciphertext) with a GHASH written here, a
//!   composition first checked against OpenSSL's own AES-256-GCM.
//!
//! Keys are fresh per test; assertion messages carry OpenSSL's output, never key material.

mod common;

use common::openssl::{openssl_fails, openssl_ok};
use common::scratch::Scratch;
use keyward::api::{KeySpec, KeyUsage};
use keyward::kms::crypto::asymmetric::{self, Algorithm, PrivateKey, PublicKey, sm2_digest};
use keyward::kms::crypto::{self, EncryptionContext};
use keyward::kms::material::{Material, SecretBytes, generate};
use openssl::symm::{self, Cipher};
use sha2::{Digest, Sha256};

const MESSAGE: &[u8] = b"keyward: the same message for every implementation\n";
const TAMPERED: &[u8] = b"keyward: the same message for every implementation!\n";
const DISTID: &str = "distid:1234567812345678";

/// A fresh key version of `spec` with `usage`, parsed as the API parses it, its PEMs written as
/// `priv.pem` and `pub.pem` in a private scratch directory with `msg` and `tampered`.
struct Pair {
    private: PrivateKey,
    public: PublicKey,
    dir: Scratch,
}

fn pair(spec: KeySpec, usage: KeyUsage, what: &str) -> Pair {
    let Material::Asymmetric {
        private_pem,
        public_pem,
    } = generate(spec).expect("generate")
    else {
        panic!("{spec} gave symmetric material");
    };
    let dir = Scratch::new(what);
    dir.write("priv.pem", private_pem.expose());
    dir.write("pub.pem", public_pem.as_bytes());
    dir.write("msg", MESSAGE);
    dir.write("tampered", TAMPERED);
    Pair {
        private: PrivateKey::from_pkcs8_pem(spec, usage, &private_pem).expect("private key"),
        public: PublicKey::from_spki_pem(spec, usage, &public_pem).expect("public key"),
        dir,
    }
}

fn sha256(message: &[u8]) -> Vec<u8> {
    Sha256::digest(message).to_vec()
}

// ---------------------------------------------------------------------------------------------
// RSA_PSS_SHA_256

/// `openssl dgst -sha256 -verify` of `sig` over `file` with PSS options `pss`.
fn dgst_verify<'a>(file: &'a str, options: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig"];
    for option in options {
        args.extend(["-sigopt", option]);
    }
    args.push(file);
    args
}

const PSS: &str = "rsa_padding_mode:pss";
const MGF1_SHA256: &str = "rsa_mgf1_md:sha256";

#[test]
fn rsa_pss_signature_of_the_digest_verifies_with_openssl_with_salt_length_32() {
    let p = pair(KeySpec::Rsa2048, KeyUsage::SignVerify, "pss-ours");
    let signature =
        asymmetric::sign(&p.private, Algorithm::RsaPssSha256, &sha256(MESSAGE)).unwrap();
    assert_eq!(signature.len(), 256);
    p.dir.write("sig", &signature);
    for salt in ["rsa_pss_saltlen:32", "rsa_pss_saltlen:digest"] {
        openssl_ok(
            &p.dir,
            "PSS-verify with salt length 32",
            &dgst_verify("msg", &[PSS, salt, MGF1_SHA256]),
        );
    }
    // OpenSSL's default when verifying (auto-detect the salt length).
    openssl_ok(&p.dir, "PSS-verify, salt auto", &dgst_verify("msg", &[PSS]));
    // The salt length is 32 and nothing else.
    openssl_fails(
        &p.dir,
        "PSS-verify with salt length 20",
        &dgst_verify("msg", &[PSS, "rsa_pss_saltlen:20"]),
    );
    openssl_fails(
        &p.dir,
        "PSS-verify a tampered message",
        &dgst_verify("tampered", &[PSS, "rsa_pss_saltlen:32"]),
    );
}

#[test]
fn openssl_rsa_pss_signature_with_salt_length_32_verifies_with_keyward() {
    let p = pair(KeySpec::Rsa2048, KeyUsage::SignVerify, "pss-theirs");
    let sign = |salt: &str| {
        openssl_ok(
            &p.dir,
            "PSS-sign",
            &[
                "dgst",
                "-sha256",
                "-sign",
                "priv.pem",
                "-sigopt",
                PSS,
                "-sigopt",
                salt,
                "-sigopt",
                MGF1_SHA256,
                "-out",
                "sig",
                "msg",
            ],
        );
        p.dir.read("sig")
    };
    let alg = Algorithm::RsaPssSha256;
    let signature = sign("rsa_pss_saltlen:32");
    assert!(asymmetric::verify(&p.public, alg, &sha256(MESSAGE), &signature).unwrap());
    assert!(!asymmetric::verify(&p.public, alg, &sha256(TAMPERED), &signature).unwrap());
    // RSA_PSS_SHA_256 is defined with salt length 32: a maximal salt is another algorithm.
    let max_salt = sign("rsa_pss_saltlen:max");
    assert!(!asymmetric::verify(&p.public, alg, &sha256(MESSAGE), &max_salt).unwrap());
}

// ---------------------------------------------------------------------------------------------
// RSA_PKCS1_SHA_256

#[test]
fn rsa_pkcs1_signatures_verify_both_ways_and_equal_openssls_byte_for_byte() {
    let p = pair(KeySpec::Rsa2048, KeyUsage::SignVerify, "pkcs1");
    let alg = Algorithm::RsaPkcs1Sha256;
    let ours = asymmetric::sign(&p.private, alg, &sha256(MESSAGE)).unwrap();
    p.dir.write("sig", &ours);
    openssl_ok(&p.dir, "PKCS1-verify", &dgst_verify("msg", &[]));
    openssl_fails(
        &p.dir,
        "verify a tampered message",
        &dgst_verify("tampered", &[]),
    );

    openssl_ok(
        &p.dir,
        "PKCS1-sign",
        &["dgst", "-sha256", "-sign", "priv.pem", "-out", "sig", "msg"],
    );
    let theirs = p.dir.read("sig");
    assert!(asymmetric::verify(&p.public, alg, &sha256(MESSAGE), &theirs).unwrap());
    // RSASSA-PKCS1-v1_5 is deterministic: the same key and digest give the same signature.
    assert_eq!(ours, theirs);
}

// ---------------------------------------------------------------------------------------------
// ECDSA_SHA_256 on EC_P256 and EC_P256K

fn assert_ecdsa_both_ways(spec: KeySpec) {
    let p = pair(spec, KeyUsage::SignVerify, "ecdsa");
    let alg = Algorithm::EcdsaSha256;
    let ours = asymmetric::sign(&p.private, alg, &sha256(MESSAGE)).unwrap();
    p.dir.write("sig", &ours);
    openssl_ok(
        &p.dir,
        "ECDSA-verify keyward's DER signature",
        &dgst_verify("msg", &[]),
    );
    openssl_fails(
        &p.dir,
        "verify a tampered message",
        &dgst_verify("tampered", &[]),
    );

    // OpenSSL picks its nonce at random, so its `s` is high half of the time: several
    // signatures, all of which keyward must accept.
    for _ in 0..8 {
        openssl_ok(
            &p.dir,
            "ECDSA-sign",
            &["dgst", "-sha256", "-sign", "priv.pem", "-out", "sig", "msg"],
        );
        let theirs = p.dir.read("sig");
        assert!(asymmetric::verify(&p.public, alg, &sha256(MESSAGE), &theirs).unwrap());
        assert!(!asymmetric::verify(&p.public, alg, &sha256(TAMPERED), &theirs).unwrap());
    }
}

#[test]
fn ecdsa_p256_signatures_verify_both_ways() {
    assert_ecdsa_both_ways(KeySpec::EcP256);
}

#[test]
fn ecdsa_secp256k1_signatures_verify_both_ways() {
    assert_ecdsa_both_ways(KeySpec::EcP256K);
}

#[test]
fn ecdsa_secp256k1_high_s_signature_is_valid_for_openssl_and_keyward() {
    let p = pair(KeySpec::EcP256K, KeyUsage::SignVerify, "ecdsa-high-s");
    let digest = sha256(MESSAGE);
    let low = asymmetric::sign(&p.private, Algorithm::EcdsaSha256, &digest).unwrap();
    let low = k256::ecdsa::Signature::from_der(&low).unwrap();
    let (r, s) = low.split_scalars();
    let high = k256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
    let high = high.to_der().as_bytes().to_vec();
    p.dir.write("sig", &high);
    openssl_ok(
        &p.dir,
        "ECDSA-verify the high-S twin",
        &dgst_verify("msg", &[]),
    );
    assert!(asymmetric::verify(&p.public, Algorithm::EcdsaSha256, &digest, &high).unwrap());
}

// ---------------------------------------------------------------------------------------------
// SM2DSA

/// `openssl pkeyutl` SM2-verifying `sig` over the message `file` (it computes SM3(Z(A) || M)
/// itself) with the user id option `distid`.
fn sm2_verify<'a>(file: &'a str, distid: &'a str) -> Vec<&'a str> {
    vec![
        "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey", "pub.pem", "-in",
        file, "-sigfile", "sig", "-pkeyopt", distid,
    ]
}

#[test]
fn sm2dsa_signature_of_sm3_z_m_verifies_with_openssl_using_the_default_user_id() {
    let p = pair(KeySpec::EcSm2, KeyUsage::SignVerify, "sm2-ours");
    let digest = sm2_digest(&p.public, MESSAGE).unwrap();
    let signature = asymmetric::sign(&p.private, Algorithm::Sm2Dsa, &digest).unwrap();
    p.dir.write("sig", &signature);
    openssl_ok(&p.dir, "SM2-verify", &sm2_verify("msg", DISTID));
    openssl_fails(
        &p.dir,
        "verify a tampered message",
        &sm2_verify("tampered", DISTID),
    );
    // Z(A) binds the user id: another id is another digest.
    openssl_fails(
        &p.dir,
        "verify with another user id",
        &sm2_verify("msg", "distid:another"),
    );
}

#[test]
fn openssl_sm2dsa_signature_with_the_default_user_id_verifies_with_keyward() {
    let p = pair(KeySpec::EcSm2, KeyUsage::SignVerify, "sm2-theirs");
    openssl_ok(
        &p.dir,
        "SM2-sign",
        &[
            "pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-inkey", "priv.pem", "-in", "msg",
            "-out", "sig", "-pkeyopt", DISTID,
        ],
    );
    let theirs = p.dir.read("sig");
    let alg = Algorithm::Sm2Dsa;
    let digest = sm2_digest(&p.public, MESSAGE).unwrap();
    assert!(asymmetric::verify(&p.public, alg, &digest, &theirs).unwrap());
    let tampered = sm2_digest(&p.public, TAMPERED).unwrap();
    assert!(!asymmetric::verify(&p.public, alg, &tampered, &theirs).unwrap());
}

// ---------------------------------------------------------------------------------------------
// RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1, SM2PKE

/// OpenSSL's options for an algorithm's encryption padding.
fn padding(alg: Algorithm) -> Vec<&'static str> {
    let oaep = |md: &'static str, mgf1: &'static str| {
        vec![
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            md,
            "-pkeyopt",
            mgf1,
        ]
    };
    match alg {
        Algorithm::RsaesOaepSha256 => oaep("rsa_oaep_md:sha256", "rsa_mgf1_md:sha256"),
        Algorithm::RsaesOaepSha1 => oaep("rsa_oaep_md:sha1", "rsa_mgf1_md:sha1"),
        Algorithm::Sm2Pke => vec![],
        other => panic!("{other} is no encryption algorithm"),
    }
}

fn assert_encryption_both_ways(spec: KeySpec, alg: Algorithm) {
    let p = pair(spec, KeyUsage::EncryptDecrypt, "encrypt");
    let max = alg.max_plaintext_bytes().unwrap();
    let plaintext: Vec<u8> = (0..max).map(|i| (i * 31 % 256) as u8).collect();
    p.dir.write("plain", &plaintext);

    // keyward encrypts, OpenSSL decrypts.
    let ours = asymmetric::encrypt(&p.public, alg, &plaintext).unwrap();
    p.dir.write("ct", &ours);
    let decrypt = [
        &["pkeyutl", "-decrypt", "-inkey", "priv.pem", "-in", "ct"][..],
        &padding(alg),
    ]
    .concat();
    let opened = openssl_ok(&p.dir, "decrypt keyward's ciphertext", &decrypt);
    assert!(
        opened == plaintext,
        "{alg}: OpenSSL decrypted something else"
    );

    // OpenSSL encrypts, keyward decrypts.
    let encrypt = [
        &[
            "pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", "-in", "plain", "-out", "ct",
        ][..],
        &padding(alg),
    ]
    .concat();
    openssl_ok(&p.dir, "encrypt", &encrypt);
    let theirs = p.dir.read("ct");
    let opened = asymmetric::decrypt(&p.private, alg, &theirs).unwrap();
    assert!(
        opened.expose() == plaintext,
        "{alg}: keyward decrypted something else"
    );

    // A changed OpenSSL ciphertext does not decrypt.
    let mut changed = theirs.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    let rejection = asymmetric::decrypt(&p.private, alg, &changed).unwrap_err();
    assert_eq!(rejection.detail, asymmetric::CANNOT_DECRYPT);
}

#[test]
fn rsaes_oaep_sha256_at_190_bytes_decrypts_both_ways() {
    assert_encryption_both_ways(KeySpec::Rsa2048, Algorithm::RsaesOaepSha256);
}

#[test]
fn rsaes_oaep_sha1_at_214_bytes_decrypts_both_ways() {
    assert_encryption_both_ways(KeySpec::Rsa2048, Algorithm::RsaesOaepSha1);
}

#[test]
fn sm2pke_at_6047_bytes_decrypts_both_ways_in_gmt_0009_der() {
    assert_encryption_both_ways(KeySpec::EcSm2, Algorithm::Sm2Pke);
}

#[test]
fn openssl_cannot_oaep_encrypt_more_than_the_limits_either() {
    let p = pair(KeySpec::Rsa2048, KeyUsage::EncryptDecrypt, "oaep-limit");
    for (alg, len) in [
        (Algorithm::RsaesOaepSha256, 191),
        (Algorithm::RsaesOaepSha1, 215),
    ] {
        let plain = format!("plain-{len}");
        p.dir.write(&plain, &vec![1; len]);
        let encrypt = [
            &[
                "pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", "-in", &plain, "-out", "ct",
            ][..],
            &padding(alg),
        ]
        .concat();
        openssl_fails(&p.dir, "encrypt one byte over the limit", &encrypt);
        assert!(asymmetric::encrypt(&p.public, alg, &vec![1; len]).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Aliyun_AES_256 and Aliyun_SM4 CiphertextBlobs

const KEY_ID: &str = "3f1c2a4e-8d7b-4e0a-9c1d-2b3a4c5d6e7f";
const VERSION_ID: &str = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

fn symmetric(spec: KeySpec) -> SecretBytes {
    match generate(spec).expect("generate") {
        Material::Symmetric { key } => key,
        other => panic!("{spec} gave other material: {other:?}"),
    }
}

/// A blob's parts, found by the documented layout alone.
struct Parts<'a> {
    header: &'a [u8],
    iv: &'a [u8],
    ciphertext: &'a [u8],
    tag: &'a [u8],
}

fn parts(blob: &[u8]) -> Parts<'_> {
    let n = usize::from(blob[3]);
    let m = usize::from(blob[4 + n]);
    let header_len = 5 + n + m;
    Parts {
        header: &blob[..header_len],
        iv: &blob[header_len..header_len + 12],
        ciphertext: &blob[header_len + 12..blob.len() - 16],
        tag: &blob[blob.len() - 16..],
    }
}

fn context() -> EncryptionContext {
    EncryptionContext::from_param(Some(r#"{"department":"finance","purpose":"payroll"}"#)).unwrap()
}

#[test]
fn aes_256_gcm_blob_is_standard_gcm_that_openssl_decrypts_given_iv_and_aad() {
    let spec = KeySpec::AliyunAes256;
    let key = symmetric(spec);
    let blob = crypto::encrypt(spec, &key, KEY_ID, VERSION_ID, MESSAGE, &context()).unwrap();
    let parts = parts(&blob);
    assert_eq!(&parts.header[..3], &[b'K', 1, 1]);
    let aad = [parts.header, &context().canonical_bytes()].concat();
    let plaintext = symm::decrypt_aead(
        Cipher::aes_256_gcm(),
        key.expose(),
        Some(parts.iv),
        &aad,
        parts.ciphertext,
        parts.tag,
    )
    .expect("OpenSSL decrypts the blob's AES-256-GCM ciphertext");
    assert_eq!(plaintext, MESSAGE);

    // Without the context in the AAD, OpenSSL refuses it too: the context is authenticated.
    assert!(
        symm::decrypt_aead(
            Cipher::aes_256_gcm(),
            key.expose(),
            Some(parts.iv),
            parts.header,
            parts.ciphertext,
            parts.tag,
        )
        .is_err()
    );
}

#[test]
fn a_blob_assembled_from_openssl_aes_256_gcm_output_decrypts_with_keyward() {
    let spec = KeySpec::AliyunAes256;
    let key = symmetric(spec);
    // Take a blob's header and IV, and let OpenSSL encrypt another plaintext under them.
    let template = crypto::encrypt(spec, &key, KEY_ID, VERSION_ID, b"x", &context()).unwrap();
    let parts = parts(&template);
    let aad = [parts.header, &context().canonical_bytes()].concat();
    let mut tag = [0u8; 16];
    let ciphertext = symm::encrypt_aead(
        Cipher::aes_256_gcm(),
        key.expose(),
        Some(parts.iv),
        &aad,
        TAMPERED,
        &mut tag,
    )
    .unwrap();
    let blob = [parts.header, parts.iv, &ciphertext, &tag].concat();
    let opened = crypto::decrypt(spec, &key, &blob, &context()).unwrap();
    assert_eq!(opened.expose(), TAMPERED);
}

/// GHASH of NIST SP 800-38D over `aad` and `ciphertext` with hash key `h`, written here
/// independently of every library under test.
fn ghash(h: [u8; 16], aad: &[u8], ciphertext: &[u8]) -> [u8; 16] {
    fn multiply(x: u128, y: u128) -> u128 {
        const R: u128 = 0xE1 << 120;
        let (mut z, mut v) = (0u128, y);
        for i in 0..128 {
            if (x >> (127 - i)) & 1 == 1 {
                z ^= v;
            }
            v = if v & 1 == 1 { (v >> 1) ^ R } else { v >> 1 };
        }
        z
    }
    let h = u128::from_be_bytes(h);
    let mut y = 0u128;
    for part in [aad, ciphertext] {
        for chunk in part.chunks(16) {
            let mut block = [0u8; 16];
            block[..chunk.len()].copy_from_slice(chunk);
            y = multiply(y ^ u128::from_be_bytes(block), h);
        }
    }
    let lengths = ((aad.len() as u128 * 8) << 64) | (ciphertext.len() as u128 * 8);
    multiply(y ^ lengths, h).to_be_bytes()
}

/// GCM (96-bit IV) assembled from a block cipher's ECB and CTR modes in OpenSSL and [`ghash`]:
/// H = E(0), J0 = IV || 1, ciphertext = CTR from J0 + 1, tag = E(J0) xor GHASH(H, A, C).
/// (OpenSSL's CTR increments all 128 bits and GCM only the low 32; they agree for messages
/// shorter than 2^32 blocks.)
fn gcm_from_openssl_primitives(
    ecb: Cipher,
    ctr: Cipher,
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> (Vec<u8>, [u8; 16]) {
    let block = |input: [u8; 16]| -> [u8; 16] {
        let out = symm::encrypt(ecb, key, None, &input).unwrap();
        out[..16].try_into().unwrap()
    };
    let h = block([0; 16]);
    let counter = |n: u32| -> [u8; 16] {
        let mut j = [0u8; 16];
        j[..12].copy_from_slice(iv);
        j[12..].copy_from_slice(&n.to_be_bytes());
        j
    };
    let ciphertext = symm::encrypt(ctr, key, Some(&counter(2)), plaintext).unwrap();
    let mask = block(counter(1));
    let mut tag = ghash(h, aad, &ciphertext);
    for (t, m) in tag.iter_mut().zip(mask) {
        *t ^= m;
    }
    (ciphertext, tag)
}

#[test]
fn gcm_assembled_from_openssl_aes_primitives_equals_openssl_aes_256_gcm() {
    // Checks the composition (and the GHASH written here) before it is used for SM4.
    let key = symmetric(KeySpec::AliyunAes256);
    let (iv, aad) = ([0x42u8; 12], b"some associated data, not block aligned");
    for len in [0, 1, 16, 100] {
        let plaintext = vec![0xa5u8; len];
        let mut tag = [0u8; 16];
        let expected = symm::encrypt_aead(
            Cipher::aes_256_gcm(),
            key.expose(),
            Some(&iv),
            aad,
            &plaintext,
            &mut tag,
        )
        .unwrap();
        let (ciphertext, composed_tag) = gcm_from_openssl_primitives(
            Cipher::aes_256_ecb(),
            Cipher::aes_256_ctr(),
            key.expose(),
            &iv,
            aad,
            &plaintext,
        );
        assert_eq!(ciphertext, expected, "{len}");
        assert_eq!(composed_tag, tag, "{len}");
    }
}

#[test]
fn sm4_gcm_blob_equals_gcm_assembled_from_openssl_sm4() {
    let spec = KeySpec::AliyunSm4;
    let key = symmetric(spec);
    for plaintext in [&b""[..], b"a", MESSAGE, &[0x3c; 6144]] {
        let blob = crypto::encrypt(spec, &key, KEY_ID, VERSION_ID, plaintext, &context()).unwrap();
        let parts = parts(&blob);
        assert_eq!(&parts.header[..3], &[b'K', 1, 2]);
        let aad = [parts.header, &context().canonical_bytes()].concat();
        let (ciphertext, tag) = gcm_from_openssl_primitives(
            Cipher::sm4_ecb(),
            Cipher::sm4_ctr(),
            key.expose(),
            parts.iv,
            &aad,
            plaintext,
        );
        assert!(ciphertext == parts.ciphertext, "SM4-GCM ciphertext differs");
        assert_eq!(tag, parts.tag, "SM4-GCM tag differs");
    }
}
