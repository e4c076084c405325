use sha2::{Digest as _, Sha256};

use super::*;
use crate::kms::material::{Material, generate};

use Algorithm::*;
use KeySpec::*;
use KeyUsage::*;

const MESSAGE: &[u8] = b"keyward: a message to sign";

/// A fresh key version of `spec`: its private key and its public key, both parsed from PEM as
/// the API will (the public one from the SPKI PEM, not derived).
fn keys(spec: KeySpec, usage: KeyUsage) -> (PrivateKey, PublicKey) {
    let Material::Asymmetric {
        private_pem,
        public_pem,
    } = generate(spec).unwrap()
    else {
        unreachable!()
    };
    (
        PrivateKey::from_pkcs8_pem(spec, usage, &private_pem).unwrap(),
        PublicKey::from_spki_pem(spec, usage, &public_pem).unwrap(),
    )
}

fn sha256(message: &[u8]) -> [u8; 32] {
    Sha256::digest(message).into()
}

/// The digest AsymmetricSign takes for `alg`.
fn digest(alg: Algorithm, public: &PublicKey, message: &[u8]) -> [u8; 32] {
    if alg == Sm2Dsa {
        sm2_digest(public, message).unwrap()
    } else {
        sha256(message)
    }
}

/// Every (spec, signature algorithm) pair the KMS allows.
const SIGNING: [(KeySpec, Algorithm); 5] = [
    (Rsa2048, RsaPssSha256),
    (Rsa2048, RsaPkcs1Sha256),
    (EcP256, EcdsaSha256),
    (EcP256K, EcdsaSha256),
    (EcSm2, Sm2Dsa),
];

/// Every (spec, encryption algorithm, plaintext limit) the KMS allows.
const ENCRYPTING: [(KeySpec, Algorithm, usize); 3] = [
    (Rsa2048, RsaesOaepSha256, 190),
    (Rsa2048, RsaesOaepSha1, 214),
    (EcSm2, Sm2Pke, 6047),
];

#[test]
fn algorithm_names_are_the_kms_spellings() {
    let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.as_str()).collect();
    assert_eq!(
        names,
        [
            "RSAES_OAEP_SHA_256",
            "RSAES_OAEP_SHA_1",
            "SM2PKE",
            "RSA_PSS_SHA_256",
            "RSA_PKCS1_SHA_256",
            "ECDSA_SHA_256",
            "SM2DSA"
        ]
    );
    for &alg in Algorithm::ALL {
        assert_eq!(Algorithm::parse(alg.as_str()).unwrap(), alg);
        assert_eq!(alg.to_string(), alg.as_str());
    }
    for bad in [
        "rsa_pss_sha_256",
        "RSA_PSS_SHA256",
        "ECDSA_SHA_384",
        "",
        "SM2",
    ] {
        let rejection = Algorithm::parse(bad).unwrap_err();
        assert_eq!(rejection.code, Code::InvalidParameter, "{bad}");
        assert!(
            rejection.detail.contains("RSA_PSS_SHA_256, "),
            "{rejection}"
        );
    }
}

#[test]
fn algorithms_allowed_per_key_spec_and_usage_match_the_kms_table() {
    let table = [
        (
            Rsa2048,
            EncryptDecrypt,
            vec![RsaesOaepSha256, RsaesOaepSha1],
        ),
        (Rsa2048, SignVerify, vec![RsaPssSha256, RsaPkcs1Sha256]),
        (EcP256, SignVerify, vec![EcdsaSha256]),
        (EcP256K, SignVerify, vec![EcdsaSha256]),
        (EcSm2, EncryptDecrypt, vec![Sm2Pke]),
        (EcSm2, SignVerify, vec![Sm2Dsa]),
        (EcP256, EncryptDecrypt, vec![]),
        (EcP256K, EncryptDecrypt, vec![]),
        (AliyunAes256, EncryptDecrypt, vec![]),
        (AliyunSm4, EncryptDecrypt, vec![]),
    ];
    for (spec, usage, allowed) in table {
        assert_eq!(Algorithm::allowed(spec, usage), allowed, "{spec} {usage}");
        for &alg in Algorithm::ALL {
            assert_eq!(
                alg.check(spec, usage).is_ok(),
                allowed.contains(&alg),
                "{alg} {spec} {usage}"
            );
        }
    }
}

#[test]
fn an_algorithm_the_key_does_not_allow_is_refused_naming_those_it_allows() {
    let rejection = RsaPssSha256.check(EcP256, SignVerify).unwrap_err();
    assert_eq!(rejection.code, Code::InvalidParameter);
    assert_eq!(
        rejection.detail,
        "Algorithm RSA_PSS_SHA_256 is not valid for a EC_P256 key with KeyUsage SIGN/VERIFY: \
         use ECDSA_SHA_256"
    );
    let rejection = Sm2Pke.check(Rsa2048, EncryptDecrypt).unwrap_err();
    assert!(
        rejection
            .detail
            .ends_with("use RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1"),
        "{rejection}"
    );
}

#[test]
fn sign_and_verify_round_trip_for_every_signature_algorithm() {
    for (spec, alg) in SIGNING {
        let (private, public) = keys(spec, SignVerify);
        assert_eq!(private.public_key().spec(), spec);
        let digest = digest(alg, &public, MESSAGE);
        let signature = sign(&private, alg, &digest).unwrap();
        assert!(verify(&public, alg, &digest, &signature).unwrap(), "{alg}");
        // The public key derived from the private one verifies as well.
        assert!(verify(&private.public_key(), alg, &digest, &signature).unwrap());
        match spec {
            Rsa2048 => assert_eq!(signature.len(), 256, "{alg}: raw RSA signature"),
            _ => assert_eq!(signature[0], 0x30, "{alg}: DER SEQUENCE"),
        }
    }
}

#[test]
fn verify_is_false_for_another_digest_a_changed_signature_or_another_key() {
    for (spec, alg) in SIGNING {
        let (private, public) = keys(spec, SignVerify);
        let digest = digest(alg, &public, MESSAGE);
        let signature = sign(&private, alg, &digest).unwrap();

        let other_digest = self::digest(alg, &public, b"another message");
        assert!(
            !verify(&public, alg, &other_digest, &signature).unwrap(),
            "{alg}"
        );

        for at in [0, signature.len() / 2, signature.len() - 1] {
            let mut changed = signature.clone();
            changed[at] ^= 0x01;
            assert!(
                !verify(&public, alg, &digest, &changed).unwrap(),
                "{alg} {at}"
            );
        }
        assert!(!verify(&public, alg, &digest, &[]).unwrap(), "{alg} empty");
        assert!(
            !verify(&public, alg, &digest, &[0x30; 300]).unwrap(),
            "{alg}"
        );

        let (_, other_public) = keys(spec, SignVerify);
        let other_key_digest = self::digest(alg, &other_public, MESSAGE);
        assert!(
            !verify(&other_public, alg, &other_key_digest, &signature).unwrap(),
            "{alg} other key"
        );
    }
}

#[test]
fn rsa_signatures_of_one_padding_do_not_verify_as_the_other() {
    let (private, public) = keys(Rsa2048, SignVerify);
    let digest = sha256(MESSAGE);
    let pss = sign(&private, RsaPssSha256, &digest).unwrap();
    let pkcs1 = sign(&private, RsaPkcs1Sha256, &digest).unwrap();
    assert!(!verify(&public, RsaPkcs1Sha256, &digest, &pss).unwrap());
    assert!(!verify(&public, RsaPssSha256, &digest, &pkcs1).unwrap());
    // PSS is randomised by its salt; PKCS#1 v1.5 is deterministic.
    assert_ne!(pss, sign(&private, RsaPssSha256, &digest).unwrap());
    assert_eq!(pkcs1, sign(&private, RsaPkcs1Sha256, &digest).unwrap());
}

#[test]
fn a_high_s_secp256k1_signature_verifies_as_ecdsa_allows() {
    let (private, public) = keys(EcP256K, SignVerify);
    let digest = sha256(MESSAGE);
    let der = sign(&private, EcdsaSha256, &digest).unwrap();
    let low = k256::ecdsa::Signature::from_der(&der).unwrap();
    let (r, s) = low.split_scalars();
    let high = k256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
    assert_ne!(high, low);
    let high_der = high.to_der().as_bytes().to_vec();
    assert!(verify(&public, EcdsaSha256, &digest, &high_der).unwrap());
}

/// Also proves the curve constants of `Z(A)` (a, b, G): the crate computes `Z(A)` from its own.
#[test]
fn sm2_digest_is_the_one_the_sm2_crate_signs_for_the_message_with_the_default_id() {
    use sm2::dsa::signature::{Signer, Verifier};

    let (private, public) = keys(EcSm2, SignVerify);
    let Private::Sm2 { signing, .. } = &private.inner else {
        unreachable!()
    };
    // The crate hashes Z(A) || M itself with the id the key was made with.
    let theirs: sm2::dsa::Signature = signing.sign(MESSAGE);
    let theirs = theirs.to_der().to_vec();
    let digest = sm2_digest(&public, MESSAGE).unwrap();
    assert!(verify(&public, Sm2Dsa, &digest, &theirs).unwrap());

    let ours = sign(&private, Sm2Dsa, &digest).unwrap();
    let Public::Sm2 { verifying, .. } = &public.inner else {
        unreachable!()
    };
    let ours = sm2::dsa::Signature::from_der(&ours).unwrap();
    verifying.verify(MESSAGE, &ours).unwrap();
    assert!(verifying.verify(b"another message", &ours).is_err());
}

#[test]
fn digest_of_the_wrong_length_is_refused() {
    for (spec, alg) in SIGNING {
        let (private, public) = keys(spec, SignVerify);
        for len in [0, 20, 31, 33, 64] {
            let digest = vec![1u8; len];
            let rejection = sign(&private, alg, &digest).unwrap_err();
            assert_eq!(rejection.code, Code::InvalidParameter, "{alg} {len}");
            assert!(rejection.detail.contains("32-byte"), "{rejection}");
            let rejection = verify(&public, alg, &digest, &[0; 64]).unwrap_err();
            assert_eq!(rejection.code, Code::InvalidParameter, "{alg} {len}");
        }
    }
}

#[test]
fn encrypt_and_decrypt_round_trip_at_the_plaintext_limits() {
    for (spec, alg, max) in ENCRYPTING {
        let (private, public) = keys(spec, EncryptDecrypt);
        for len in [1, 16, max] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let ciphertext = encrypt(&public, alg, &plaintext).unwrap();
            assert_ne!(ciphertext, plaintext);
            let opened = decrypt(&private, alg, &ciphertext).unwrap();
            assert_eq!(opened.expose(), plaintext, "{alg} {len}");
            // Randomised: the same plaintext encrypts differently each time.
            assert_ne!(
                ciphertext,
                encrypt(&public, alg, &plaintext).unwrap(),
                "{alg}"
            );
        }
        for len in [0, max + 1] {
            let rejection = encrypt(&public, alg, &vec![1; len]).unwrap_err();
            assert_eq!(rejection.code, Code::InvalidParameter, "{alg} {len}");
            assert!(
                rejection.detail.contains(&format!("1 to {max} bytes")),
                "{rejection}"
            );
        }
    }
}

#[test]
fn plaintext_limits_are_alibabas() {
    assert_eq!(RsaesOaepSha256.max_plaintext_bytes(), Some(190));
    assert_eq!(RsaesOaepSha1.max_plaintext_bytes(), Some(214));
    assert_eq!(Sm2Pke.max_plaintext_bytes(), Some(6047));
    for alg in [RsaPssSha256, RsaPkcs1Sha256, EcdsaSha256, Sm2Dsa] {
        assert_eq!(alg.max_plaintext_bytes(), None);
    }
}

/// A DER element at `at`: (tag, content range).
fn der_element(bytes: &[u8], at: usize) -> (u8, std::ops::Range<usize>) {
    let tag = bytes[at];
    let (len, header) = match bytes[at + 1] {
        n if n < 0x80 => (usize::from(n), 2),
        0x81 => (usize::from(bytes[at + 2]), 3),
        0x82 => (
            usize::from(bytes[at + 2]) << 8 | usize::from(bytes[at + 3]),
            4,
        ),
        other => panic!("unexpected DER length byte {other:#x}"),
    };
    (tag, at + header..at + header + len)
}

#[test]
fn sm2_ciphertext_is_gmt_0009_der_x_y_c3_c2() {
    let (_, public) = keys(EcSm2, EncryptDecrypt);
    let plaintext = [0x5a; 200];
    let ciphertext = encrypt(&public, Sm2Pke, &plaintext).unwrap();
    let (tag, body) = der_element(&ciphertext, 0);
    assert_eq!(tag, 0x30, "SEQUENCE");
    assert_eq!(body.end, ciphertext.len());
    let (x_tag, x) = der_element(&ciphertext, body.start);
    let (y_tag, y) = der_element(&ciphertext, x.end);
    let (c3_tag, c3) = der_element(&ciphertext, y.end);
    let (c2_tag, c2) = der_element(&ciphertext, c3.end);
    assert_eq!((x_tag, y_tag, c3_tag, c2_tag), (0x02, 0x02, 0x04, 0x04));
    assert!(x.len() <= 33 && y.len() <= 33);
    assert_eq!(c3.len(), 32, "C3 is the SM3 hash");
    assert_eq!(c2.len(), plaintext.len(), "C2 is as long as the plaintext");
    assert_eq!(c2.end, ciphertext.len());
}

#[test]
fn ciphertexts_that_do_not_decrypt_are_one_refusal() {
    for (spec, alg, _) in ENCRYPTING {
        let (private, public) = keys(spec, EncryptDecrypt);
        let ciphertext = encrypt(&public, alg, b"secret").unwrap();
        let mut cases = vec![Vec::new(), ciphertext[..ciphertext.len() - 1].to_vec()];
        for at in [0, ciphertext.len() / 2, ciphertext.len() - 1] {
            let mut changed = ciphertext.clone();
            changed[at] ^= 0x01;
            cases.push(changed);
        }
        let (other, _) = keys(spec, EncryptDecrypt);
        for case in &cases {
            let rejection = decrypt(&private, alg, case).unwrap_err();
            assert_eq!(
                rejection,
                Rejection::new(Code::InvalidParameter, CANNOT_DECRYPT),
                "{alg}"
            );
        }
        let rejection = decrypt(&other, alg, &ciphertext).unwrap_err();
        assert_eq!(rejection.detail, CANNOT_DECRYPT, "{alg} other key");
    }
    // An OAEP-SHA-256 ciphertext does not decrypt as OAEP-SHA-1.
    let (private, public) = keys(Rsa2048, EncryptDecrypt);
    let ciphertext = encrypt(&public, RsaesOaepSha256, b"secret").unwrap();
    let rejection = decrypt(&private, RsaesOaepSha1, &ciphertext).unwrap_err();
    assert_eq!(rejection.detail, CANNOT_DECRYPT);
}

#[test]
fn operations_refuse_keys_of_the_other_usage_and_algorithms_of_the_other_kind() {
    let (sign_private, sign_public) = keys(Rsa2048, SignVerify);
    let (enc_private, enc_public) = keys(Rsa2048, EncryptDecrypt);
    let digest = sha256(MESSAGE);

    // A key of the other usage: UnsupportedOperation, whatever the algorithm.
    let rejection = sign(&enc_private, RsaPssSha256, &digest).unwrap_err();
    assert_eq!(rejection.code, Code::UnsupportedOperation);
    assert_eq!(
        rejection.detail,
        "AsymmetricSign needs a key with KeyUsage SIGN/VERIFY; this RSA_2048 key's KeyUsage is \
         ENCRYPT/DECRYPT"
    );
    let rejection = verify(&enc_public, RsaPssSha256, &digest, &[0; 256]).unwrap_err();
    assert_eq!(rejection.code, Code::UnsupportedOperation);
    let rejection = encrypt(&sign_public, RsaesOaepSha256, b"x").unwrap_err();
    assert_eq!(rejection.code, Code::UnsupportedOperation);
    let rejection = decrypt(&sign_private, RsaesOaepSha256, &[0; 256]).unwrap_err();
    assert_eq!(rejection.code, Code::UnsupportedOperation);

    // The right key, an algorithm of the other kind: InvalidParameter naming the allowed ones.
    let rejection = sign(&sign_private, RsaesOaepSha256, &digest).unwrap_err();
    assert_eq!(rejection.code, Code::InvalidParameter);
    assert!(
        rejection
            .detail
            .ends_with("use RSA_PSS_SHA_256, RSA_PKCS1_SHA_256"),
        "{rejection}"
    );
    let rejection = encrypt(&enc_public, RsaPssSha256, b"x").unwrap_err();
    assert_eq!(rejection.code, Code::InvalidParameter);

    // The right kind, another key spec's algorithm.
    let (ec_private, _) = keys(EcP256, SignVerify);
    let rejection = sign(&ec_private, Sm2Dsa, &digest).unwrap_err();
    assert_eq!(rejection.code, Code::InvalidParameter);
    assert!(
        rejection.detail.ends_with("use ECDSA_SHA_256"),
        "{rejection}"
    );
}

#[test]
fn keys_refuse_symmetric_specs_impossible_usages_and_material_of_another_spec() {
    let Material::Asymmetric {
        private_pem,
        public_pem,
    } = generate(EcP256).unwrap()
    else {
        unreachable!()
    };
    for spec in [AliyunAes256, AliyunSm4] {
        let rejection = PrivateKey::from_pkcs8_pem(spec, EncryptDecrypt, &private_pem).unwrap_err();
        assert_eq!(rejection.code, Code::UnsupportedOperation, "{spec}");
    }
    let rejection = PublicKey::from_spki_pem(EcP256, EncryptDecrypt, &public_pem).unwrap_err();
    assert_eq!(rejection.code, Code::InvalidParameter);
    for spec in [Rsa2048, EcP256K, EcSm2] {
        let rejection = PrivateKey::from_pkcs8_pem(spec, SignVerify, &private_pem).unwrap_err();
        assert_eq!(rejection.code, Code::MaterialStoreInvalid, "{spec}");
        let rejection = PublicKey::from_spki_pem(spec, SignVerify, &public_pem).unwrap_err();
        assert_eq!(rejection.code, Code::MaterialStoreInvalid, "{spec}");
    }
    let garbage = SecretBytes::new(b"-----BEGIN PRIVATE KEY-----\nAAAA\n".to_vec());
    let rejection = PrivateKey::from_pkcs8_pem(EcP256, SignVerify, &garbage).unwrap_err();
    assert_eq!(rejection.code, Code::MaterialStoreInvalid);
}

#[test]
fn debug_of_keys_shows_no_key_bytes() {
    for spec in [Rsa2048, EcP256, EcP256K, EcSm2] {
        let Material::Asymmetric {
            private_pem,
            public_pem,
        } = generate(spec).unwrap()
        else {
            unreachable!()
        };
        let private = PrivateKey::from_pkcs8_pem(spec, SignVerify, &private_pem).unwrap();
        let public = PublicKey::from_spki_pem(spec, SignVerify, &public_pem).unwrap();
        let debug = format!("{private:?} {private:#?} {public:?} {public:#?}");
        assert!(
            debug.starts_with(&format!("PrivateKey({spec}, SIGN/VERIFY, <redacted>)")),
            "{debug}"
        );
        let pem = std::str::from_utf8(private_pem.expose()).unwrap();
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!debug.contains(line), "{spec}: Debug leaks a PEM line");
        }
        // No long run of hex or decimal digits (a scalar, a prime, a modulus).
        let longest_digits = debug
            .split(|c: char| !c.is_ascii_hexdigit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(longest_digits < 16, "{spec}: {debug}");
    }
}
