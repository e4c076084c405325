//! AsymmetricSign, AsymmetricVerify, AsymmetricEncrypt and AsymmetricDecrypt: the KMS's
//! algorithm names, which key spec and usage each is allowed for, keys parsed once from PEM, and
//! the operations with the KMS's semantics.
//!
//! | Algorithm | KeySpec | KeyUsage | what it is |
//! |---|---|---|---|
//! | `RSAES_OAEP_SHA_256` | RSA_2048 | ENCRYPT/DECRYPT | RSAES-OAEP, SHA-256, MGF1 with SHA-256, no label; at most 190 bytes |
//! | `RSAES_OAEP_SHA_1` | RSA_2048 | ENCRYPT/DECRYPT | RSAES-OAEP, SHA-1, MGF1 with SHA-1, no label; at most 214 bytes |
//! | `SM2PKE` | EC_SM2 | ENCRYPT/DECRYPT | SM2 encryption (GB/T 32918.4) with SM3; at most 6047 bytes (Alibaba's limit); ciphertext in the ASN.1 DER form of GM/T 0009 (`SEQUENCE { x, y, C3, C2 }`), the form OpenSSL writes and reads |
//! | `RSA_PSS_SHA_256` | RSA_2048 | SIGN/VERIFY | RSASSA-PSS, SHA-256, MGF1 with SHA-256, salt length 32 (the digest length); raw 256-byte signature |
//! | `RSA_PKCS1_SHA_256` | RSA_2048 | SIGN/VERIFY | RSASSA-PKCS1-v1_5 with SHA-256; raw 256-byte signature |
//! | `ECDSA_SHA_256` | EC_P256, EC_P256K | SIGN/VERIFY | ECDSA over P-256 or secp256k1; DER `SEQUENCE { r, s }` |
//! | `SM2DSA` | EC_SM2 | SIGN/VERIFY | SM2 signature (GB/T 32918.2); DER `SEQUENCE { r, s }` |
//!
//! **Sign a digest, not a message.** AsymmetricSign and AsymmetricVerify receive `Digest`: the
//! SHA-256 digest of the message (32 bytes), computed by the caller. For SM2DSA it is, as
//! Alibaba documents after GB/T 32918.2, `SM3(Z(A) || M)` where `Z(A)` binds the public key and
//! the user id; keyward uses the default id `1234567812345678` ([`SM2_DEFAULT_USER_ID`]), and
//! [`sm2_digest`] computes this value from a message. The signature is over that digest exactly
//! as if the message had been hashed by the signer, so `openssl dgst -sha256 -verify` (or
//! `pkeyutl -verify -rawin -digest sm3` with `distid:1234567812345678` for SM2) verifies it
//! against the message.
//!
//! This is why these operations use RustCrypto (`rsa`, `p256`, `k256`, `sm2`) and not `ring`:
//! `ring`'s signature API (`ring::signature::RsaKeyPair::sign`, `EcdsaKeyPair::sign`,
//! `UnparsedPublicKey::verify`) takes the *message* and hashes it itself, and offers no way to
//! sign or verify a digest that was computed elsewhere; it cannot serve the `Digest` interface.
//! RustCrypto's prehash traits (`signature::hazmat::PrehashSigner` / `PrehashVerifier`) and
//! `rsa`'s `sign(padding, digest)` take the digest as given.
//!
//! **RSA-PSS salt length.** Alibaba's API pages describe `RSA_PSS_SHA_256` as "RSASSA-PSS using
//! SHA-256 and MGF1 with SHA-256" without naming the salt length; keyward uses the digest length
//! (32 bytes), the convention of RFC 8017's recommendation, AWS KMS and JCA's
//! `PSSParameterSpec("SHA-256", "MGF1", SHA256, 32, 1)`, and OpenSSL's `rsa_pss_saltlen:digest`
//! (`-1`). Verification requires that salt length too. OpenSSL 3's `dgst -verify` with
//! `rsa_padding_mode:pss` and no salt option (`auto`) verifies keyward's signatures; but
//! OpenSSL 3.0's `dgst -sign` with PSS defaults to the *maximal* salt (222 bytes for RSA-2048
//! with SHA-256), which AsymmetricVerify refuses: sign with `-sigopt rsa_pss_saltlen:32`.
//!
//! **ECDSA low-S.** Signatures are made with RFC 6979 deterministic nonces. `k256` makes low-S
//! signatures and refuses high-S ones when verifying; ECDSA itself accepts both `s` and `n - s`
//! (OpenSSL signs with either), so [`verify`] normalises `s` first and a secp256k1 signature
//! from any ECDSA implementation verifies.
//!
//! **Keys.** [`PrivateKey`] and [`PublicKey`] are parsed once from the stored PEM (PKCS#8 and
//! SPKI), so the API can cache them per key version. `PrivateKey`'s `Debug` prints its spec and
//! usage only. `rsa`'s and the ECDSA keys wipe their secret on drop; `sm2`'s signing and
//! decrypting keys do not (the crate gives no mutable access to their scalar), so an SM2 private
//! scalar may remain in freed memory after the key is dropped.

use std::fmt;

use getrandom::SysRng;
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rand_core::UnwrapErr;
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, Pkcs1v15Sign, Pss, RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;
use sha2::Sha256;
use sm3::{Digest, Sm3};

use crate::api::{KeySpec, KeyUsage};
use crate::kms::error::{Code, Rejection, quote};
use crate::kms::material::SecretBytes;

/// The SM2 user id (distinguishing identifier) of `Z(A)`: the default of GB/T 32918 and GM/T
/// 0009, which Alibaba Cloud KMS uses.
pub const SM2_DEFAULT_USER_ID: &str = "1234567812345678";

/// Length of every `Digest` these algorithms sign: SHA-256, or SM3 for SM2DSA.
pub const DIGEST_LEN: usize = 32;

/// Size of an RSA_2048 modulus, signature and ciphertext, in bytes.
const RSA_2048_BYTES: usize = 256;

/// The message of every ciphertext that does not decrypt.
pub const CANNOT_DECRYPT: &str = "CiphertextBlob cannot be decrypted with this key version and \
     Algorithm: it was made with another key or algorithm, or it was changed";

/// An asymmetric algorithm, spelled as the KMS spells it in the `Algorithm` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `RSAES_OAEP_SHA_256`
    RsaesOaepSha256,
    /// `RSAES_OAEP_SHA_1`
    RsaesOaepSha1,
    /// `SM2PKE`
    Sm2Pke,
    /// `RSA_PSS_SHA_256`
    RsaPssSha256,
    /// `RSA_PKCS1_SHA_256`
    RsaPkcs1Sha256,
    /// `ECDSA_SHA_256`
    EcdsaSha256,
    /// `SM2DSA`
    Sm2Dsa,
}

impl Algorithm {
    /// Every algorithm: encryption first, then signatures.
    pub const ALL: &'static [Algorithm] = &[
        Algorithm::RsaesOaepSha256,
        Algorithm::RsaesOaepSha1,
        Algorithm::Sm2Pke,
        Algorithm::RsaPssSha256,
        Algorithm::RsaPkcs1Sha256,
        Algorithm::EcdsaSha256,
        Algorithm::Sm2Dsa,
    ];

    /// The KMS spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::RsaesOaepSha256 => "RSAES_OAEP_SHA_256",
            Algorithm::RsaesOaepSha1 => "RSAES_OAEP_SHA_1",
            Algorithm::Sm2Pke => "SM2PKE",
            Algorithm::RsaPssSha256 => "RSA_PSS_SHA_256",
            Algorithm::RsaPkcs1Sha256 => "RSA_PKCS1_SHA_256",
            Algorithm::EcdsaSha256 => "ECDSA_SHA_256",
            Algorithm::Sm2Dsa => "SM2DSA",
        }
    }

    /// Parses the exact (case-sensitive) KMS spelling; anything else is `InvalidParameter`
    /// listing the algorithms.
    pub fn parse(text: &str) -> Result<Algorithm, Rejection> {
        Algorithm::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == text)
            .ok_or_else(|| {
                Rejection::new(
                    Code::InvalidParameter,
                    format!(
                        "Algorithm {} is not valid: use one of {}",
                        quote(text),
                        names(Algorithm::ALL)
                    ),
                )
            })
    }

    /// ENCRYPT/DECRYPT for the encryption algorithms, SIGN/VERIFY for the signature ones.
    pub const fn usage(self) -> KeyUsage {
        match self {
            Algorithm::RsaesOaepSha256 | Algorithm::RsaesOaepSha1 | Algorithm::Sm2Pke => {
                KeyUsage::EncryptDecrypt
            }
            Algorithm::RsaPssSha256
            | Algorithm::RsaPkcs1Sha256
            | Algorithm::EcdsaSha256
            | Algorithm::Sm2Dsa => KeyUsage::SignVerify,
        }
    }

    /// The key specs this algorithm works with.
    pub const fn key_specs(self) -> &'static [KeySpec] {
        match self {
            Algorithm::RsaesOaepSha256
            | Algorithm::RsaesOaepSha1
            | Algorithm::RsaPssSha256
            | Algorithm::RsaPkcs1Sha256 => &[KeySpec::Rsa2048],
            Algorithm::EcdsaSha256 => &[KeySpec::EcP256, KeySpec::EcP256K],
            Algorithm::Sm2Pke | Algorithm::Sm2Dsa => &[KeySpec::EcSm2],
        }
    }

    /// The most plaintext an encryption algorithm takes with its key spec, in bytes; `None` for
    /// signature algorithms.
    pub const fn max_plaintext_bytes(self) -> Option<usize> {
        match self {
            // k - 2 * hLen - 2 (RFC 8017 §7.1.1) with k = 256.
            Algorithm::RsaesOaepSha256 => Some(RSA_2048_BYTES - 2 * 32 - 2),
            Algorithm::RsaesOaepSha1 => Some(RSA_2048_BYTES - 2 * 20 - 2),
            // Alibaba's documented limit (6144 bytes of ciphertext less C1 and C3).
            Algorithm::Sm2Pke => Some(6047),
            Algorithm::RsaPssSha256
            | Algorithm::RsaPkcs1Sha256
            | Algorithm::EcdsaSha256
            | Algorithm::Sm2Dsa => None,
        }
    }

    /// The algorithms a key of `spec` with `usage` allows, in [`Algorithm::ALL`]'s order.
    pub fn allowed(spec: KeySpec, usage: KeyUsage) -> Vec<Algorithm> {
        Algorithm::ALL
            .iter()
            .copied()
            .filter(|a| a.usage() == usage && a.key_specs().contains(&spec))
            .collect()
    }

    /// Whether a key of `spec` with `usage` may use this algorithm; `InvalidParameter` naming
    /// the algorithms it allows when not.
    pub fn check(self, spec: KeySpec, usage: KeyUsage) -> Result<(), Rejection> {
        let allowed = Algorithm::allowed(spec, usage);
        if allowed.contains(&self) {
            return Ok(());
        }
        let instead = if allowed.is_empty() {
            "it allows no asymmetric algorithm".to_owned()
        } else {
            format!("use {}", names(&allowed))
        };
        Err(Rejection::new(
            Code::InvalidParameter,
            format!(
                "Algorithm {self} is not valid for a {spec} key with KeyUsage {usage}: {instead}"
            ),
        ))
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn names(algorithms: &[Algorithm]) -> String {
    algorithms
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A private key of one asymmetric key version, parsed once from its PKCS#8 PEM.
pub struct PrivateKey {
    spec: KeySpec,
    usage: KeyUsage,
    inner: Private,
}

enum Private {
    Rsa(Box<RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    K256(k256::ecdsa::SigningKey),
    Sm2 {
        signing: Box<sm2::dsa::SigningKey>,
        decrypting: Box<sm2::pke::DecryptingKey>,
    },
}

/// Only the spec and usage: never key bytes (several of the wrapped types print their secret
/// scalar in `Debug`).
impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, {}, <redacted>)", self.spec, self.usage)
    }
}

/// A public key of one asymmetric key version, parsed once from its SPKI PEM.
#[derive(Clone)]
pub struct PublicKey {
    spec: KeySpec,
    usage: KeyUsage,
    inner: Public,
}

#[derive(Clone)]
enum Public {
    Rsa(Box<RsaPublicKey>),
    P256(p256::ecdsa::VerifyingKey),
    K256(k256::ecdsa::VerifyingKey),
    Sm2 {
        verifying: Box<sm2::dsa::VerifyingKey>,
        encrypting: Box<sm2::pke::EncryptingKey>,
    },
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, {})", self.spec, self.usage)
    }
}

/// Refuses symmetric specs and usages the spec does not have.
fn check_key(spec: KeySpec, usage: KeyUsage) -> Result<(), Rejection> {
    if spec.is_symmetric() {
        return Err(Rejection::new(
            Code::UnsupportedOperation,
            format!(
                "a {spec} key is symmetric; the Asymmetric* operations need an RSA_2048, EC_P256, \
                 EC_P256K or EC_SM2 key (use Encrypt / Decrypt with {spec} keys)"
            ),
        ));
    }
    if !spec.supported_usages().contains(&usage) {
        return Err(Rejection::new(
            Code::InvalidParameter,
            format!("a {spec} key cannot have KeyUsage {usage}"),
        ));
    }
    Ok(())
}

fn unreadable(spec: KeySpec, what: &str) -> Rejection {
    Rejection::new(
        Code::MaterialStoreInvalid,
        format!("the stored {what} of this {spec} key version is not a {spec} key in {what} PEM"),
    )
}

impl PrivateKey {
    /// Parses the stored private key (PKCS#8 PEM) of a key version of `spec` and `usage`.
    /// Material that is not a `spec` key (wrong type, wrong curve, an RSA modulus other than
    /// 2048 bits) is `MaterialStoreInvalid`; messages never hold the PEM.
    pub fn from_pkcs8_pem(
        spec: KeySpec,
        usage: KeyUsage,
        pem: &SecretBytes,
    ) -> Result<PrivateKey, Rejection> {
        check_key(spec, usage)?;
        let bad = || unreadable(spec, "PKCS#8");
        let pem = std::str::from_utf8(pem.expose()).map_err(|_| bad())?;
        let inner = match spec {
            KeySpec::Rsa2048 => {
                let key = RsaPrivateKey::from_pkcs8_pem(pem).map_err(|_| bad())?;
                if key.size() != RSA_2048_BYTES {
                    return Err(bad());
                }
                Private::Rsa(Box::new(key))
            }
            KeySpec::EcP256 => {
                Private::P256(p256::ecdsa::SigningKey::from_pkcs8_pem(pem).map_err(|_| bad())?)
            }
            KeySpec::EcP256K => {
                Private::K256(k256::ecdsa::SigningKey::from_pkcs8_pem(pem).map_err(|_| bad())?)
            }
            KeySpec::EcSm2 => {
                let secret = sm2::SecretKey::from_pkcs8_pem(pem).map_err(|_| bad())?;
                let signing =
                    sm2::dsa::SigningKey::new(SM2_DEFAULT_USER_ID, &secret).map_err(|_| bad())?;
                Private::Sm2 {
                    signing: Box::new(signing),
                    decrypting: Box::new(sm2::pke::DecryptingKey::new(secret)),
                }
            }
            KeySpec::AliyunAes256 | KeySpec::AliyunSm4 => unreachable!("checked above"),
        };
        Ok(PrivateKey { spec, usage, inner })
    }

    pub fn spec(&self) -> KeySpec {
        self.spec
    }

    pub fn usage(&self) -> KeyUsage {
        self.usage
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let inner = match &self.inner {
            Private::Rsa(key) => Public::Rsa(Box::new(key.to_public_key())),
            Private::P256(key) => Public::P256(*key.verifying_key()),
            Private::K256(key) => Public::K256(*key.verifying_key()),
            Private::Sm2 {
                signing,
                decrypting,
            } => Public::Sm2 {
                verifying: Box::new(signing.verifying_key().clone()),
                encrypting: Box::new(decrypting.encrypting_key().clone()),
            },
        };
        PublicKey {
            spec: self.spec,
            usage: self.usage,
            inner,
        }
    }
}

impl PublicKey {
    /// Parses the stored public key (SPKI PEM, "-----BEGIN PUBLIC KEY-----") of a key version
    /// of `spec` and `usage`. Material that is not a `spec` key is `MaterialStoreInvalid`.
    pub fn from_spki_pem(
        spec: KeySpec,
        usage: KeyUsage,
        pem: &str,
    ) -> Result<PublicKey, Rejection> {
        check_key(spec, usage)?;
        let bad = || unreadable(spec, "SPKI");
        let inner = match spec {
            KeySpec::Rsa2048 => {
                let key = RsaPublicKey::from_public_key_pem(pem).map_err(|_| bad())?;
                if key.size() != RSA_2048_BYTES {
                    return Err(bad());
                }
                Public::Rsa(Box::new(key))
            }
            KeySpec::EcP256 => Public::P256(
                p256::ecdsa::VerifyingKey::from_public_key_pem(pem).map_err(|_| bad())?,
            ),
            KeySpec::EcP256K => Public::K256(
                k256::ecdsa::VerifyingKey::from_public_key_pem(pem).map_err(|_| bad())?,
            ),
            KeySpec::EcSm2 => {
                let public = sm2::PublicKey::from_public_key_pem(pem).map_err(|_| bad())?;
                let verifying =
                    sm2::dsa::VerifyingKey::new(SM2_DEFAULT_USER_ID, public).map_err(|_| bad())?;
                Public::Sm2 {
                    verifying: Box::new(verifying),
                    encrypting: Box::new(sm2::pke::EncryptingKey::new(public)),
                }
            }
            KeySpec::AliyunAes256 | KeySpec::AliyunSm4 => unreachable!("checked above"),
        };
        Ok(PublicKey { spec, usage, inner })
    }

    pub fn spec(&self) -> KeySpec {
        self.spec
    }

    pub fn usage(&self) -> KeyUsage {
        self.usage
    }
}

/// Checks that `operation` may run with `alg` on a key of `spec` and `usage`: the key's usage
/// first (`UnsupportedOperation`: the wrong kind of key for the operation), then the algorithm
/// (`InvalidParameter` naming those the key allows).
fn require(
    operation: &str,
    needed: KeyUsage,
    spec: KeySpec,
    usage: KeyUsage,
    alg: Algorithm,
) -> Result<(), Rejection> {
    if usage != needed {
        return Err(Rejection::new(
            Code::UnsupportedOperation,
            format!(
                "{operation} needs a key with KeyUsage {needed}; this {spec} key's KeyUsage is \
                 {usage}"
            ),
        ));
    }
    alg.check(spec, usage)
}

fn check_digest(alg: Algorithm, digest: &[u8]) -> Result<(), Rejection> {
    if digest.len() == DIGEST_LEN {
        return Ok(());
    }
    let what = if alg == Algorithm::Sm2Dsa {
        "the 32-byte SM3 digest of Z(A) || M (GB/T 32918.2, user id 1234567812345678)"
    } else {
        "the 32-byte SHA-256 digest of the message"
    };
    Err(Rejection::new(
        Code::InvalidParameter,
        format!(
            "Digest is {} bytes; {alg} signs {what}, not the message itself",
            digest.len()
        ),
    ))
}

/// What [`sign`] checks before it uses a key: the key's usage, the algorithm and the digest's
/// length. Keys held elsewhere (in an HSM) are checked the same way.
pub fn check_sign(
    spec: KeySpec,
    usage: KeyUsage,
    alg: Algorithm,
    digest: &[u8],
) -> Result<(), Rejection> {
    require("AsymmetricSign", KeyUsage::SignVerify, spec, usage, alg)?;
    check_digest(alg, digest)
}

/// What [`verify`] checks before it uses a key.
pub fn check_verify(
    spec: KeySpec,
    usage: KeyUsage,
    alg: Algorithm,
    digest: &[u8],
) -> Result<(), Rejection> {
    require("AsymmetricVerify", KeyUsage::SignVerify, spec, usage, alg)?;
    check_digest(alg, digest)
}

/// What [`encrypt`] checks before it uses a key: usage, algorithm, and the plaintext's length
/// (1 byte up to the algorithm's limit).
pub fn check_encrypt(
    spec: KeySpec,
    usage: KeyUsage,
    alg: Algorithm,
    plaintext: &[u8],
) -> Result<(), Rejection> {
    require(
        "AsymmetricEncrypt",
        KeyUsage::EncryptDecrypt,
        spec,
        usage,
        alg,
    )?;
    let max = alg.max_plaintext_bytes().expect("an encryption algorithm");
    if plaintext.is_empty() || plaintext.len() > max {
        return Err(Rejection::new(
            Code::InvalidParameter,
            format!(
                "Plaintext is {} bytes; {alg} with a {spec} key encrypts 1 to {max} bytes. To \
                 protect more data, encrypt it with a symmetric data key and encrypt that key \
                 (envelope encryption)",
                plaintext.len(),
            ),
        ));
    }
    Ok(())
}

/// What [`decrypt`] checks before it uses a key.
pub fn check_decrypt(spec: KeySpec, usage: KeyUsage, alg: Algorithm) -> Result<(), Rejection> {
    require(
        "AsymmetricDecrypt",
        KeyUsage::EncryptDecrypt,
        spec,
        usage,
        alg,
    )
}

/// AsymmetricSign: signs `digest` (see the module doc) with `key`. RSA signatures are the raw
/// 256 bytes; ECDSA and SM2 signatures are DER `SEQUENCE { r, s }`.
pub fn sign(key: &PrivateKey, alg: Algorithm, digest: &[u8]) -> Result<Vec<u8>, Rejection> {
    check_sign(key.spec, key.usage, alg, digest)?;
    let failed = || {
        Rejection::new(
            Code::MaterialStoreInvalid,
            format!(
                "signing with the stored {} key of this key version failed",
                key.spec
            ),
        )
    };
    match (&key.inner, alg) {
        (Private::Rsa(key), Algorithm::RsaPssSha256) => key
            .sign_with_rng(&mut UnwrapErr(SysRng), Pss::<Sha256>::new(), digest)
            .map_err(|_| failed()),
        (Private::Rsa(key), Algorithm::RsaPkcs1Sha256) => key
            .sign_with_rng(
                &mut UnwrapErr(SysRng),
                Pkcs1v15Sign::new::<Sha256>(),
                digest,
            )
            .map_err(|_| failed()),
        (Private::P256(key), Algorithm::EcdsaSha256) => {
            let signature: p256::ecdsa::Signature =
                key.sign_prehash(digest).map_err(|_| failed())?;
            Ok(signature.to_der().as_bytes().to_vec())
        }
        (Private::K256(key), Algorithm::EcdsaSha256) => {
            let signature: k256::ecdsa::Signature =
                key.sign_prehash(digest).map_err(|_| failed())?;
            Ok(signature.to_der().as_bytes().to_vec())
        }
        (Private::Sm2 { signing, .. }, Algorithm::Sm2Dsa) => {
            let signature: sm2::dsa::Signature =
                signing.sign_prehash(digest).map_err(|_| failed())?;
            Ok(signature.to_der().to_vec())
        }
        _ => unreachable!("require() checked {alg} against {}", key.spec),
    }
}

/// AsymmetricVerify: whether `signature` (in [`sign`]'s encoding) is `key`'s signature of
/// `digest`. A malformed signature is `false`, not an error; refusals are only for an algorithm
/// the key does not allow and a digest of the wrong length.
pub fn verify(
    key: &PublicKey,
    alg: Algorithm,
    digest: &[u8],
    signature: &[u8],
) -> Result<bool, Rejection> {
    check_verify(key.spec, key.usage, alg, digest)?;
    let valid = match (&key.inner, alg) {
        (Public::Rsa(key), Algorithm::RsaPssSha256) => {
            key.verify(Pss::<Sha256>::new(), digest, signature).is_ok()
        }
        (Public::Rsa(key), Algorithm::RsaPkcs1Sha256) => key
            .verify(Pkcs1v15Sign::new::<Sha256>(), digest, signature)
            .is_ok(),
        (Public::P256(key), Algorithm::EcdsaSha256) => p256::ecdsa::Signature::from_der(signature)
            .is_ok_and(|s| key.verify_prehash(digest, &s.normalize_s()).is_ok()),
        (Public::K256(key), Algorithm::EcdsaSha256) => k256::ecdsa::Signature::from_der(signature)
            .is_ok_and(|s| key.verify_prehash(digest, &s.normalize_s()).is_ok()),
        (Public::Sm2 { verifying, .. }, Algorithm::Sm2Dsa) => {
            sm2::dsa::Signature::from_der(signature)
                .is_ok_and(|s| verifying.verify_prehash(digest, &s).is_ok())
        }
        _ => unreachable!("require() checked {alg} against {}", key.spec),
    };
    Ok(valid)
}

/// AsymmetricEncrypt: encrypts `plaintext` (1 byte up to the algorithm's
/// [`Algorithm::max_plaintext_bytes`]) with `key`. OAEP ciphertexts are the raw 256 bytes; SM2
/// ciphertexts are GM/T 0009 DER.
pub fn encrypt(key: &PublicKey, alg: Algorithm, plaintext: &[u8]) -> Result<Vec<u8>, Rejection> {
    check_encrypt(key.spec, key.usage, alg, plaintext)?;
    let failed = || {
        Rejection::new(
            Code::MaterialStoreInvalid,
            format!(
                "encrypting with the stored {} public key of this key version failed",
                key.spec
            ),
        )
    };
    match (&key.inner, alg) {
        (Public::Rsa(key), Algorithm::RsaesOaepSha256) => key
            .encrypt(&mut UnwrapErr(SysRng), Oaep::<Sha256>::new(), plaintext)
            .map_err(|_| failed()),
        (Public::Rsa(key), Algorithm::RsaesOaepSha1) => key
            .encrypt(&mut UnwrapErr(SysRng), Oaep::<Sha1>::new(), plaintext)
            .map_err(|_| failed()),
        (Public::Sm2 { encrypting, .. }, Algorithm::Sm2Pke) => encrypting
            .encrypt_der(&mut SysRng, plaintext)
            .map_err(|_| failed()),
        _ => unreachable!("require() checked {alg} against {}", key.spec),
    }
}

/// AsymmetricDecrypt: decrypts a ciphertext made by [`encrypt`] (or by any implementation of
/// the same algorithm, e.g. OpenSSL). Every ciphertext that does not decrypt is the same
/// refusal, `InvalidParameter` with [`CANNOT_DECRYPT`].
pub fn decrypt(
    key: &PrivateKey,
    alg: Algorithm,
    ciphertext: &[u8],
) -> Result<SecretBytes, Rejection> {
    check_decrypt(key.spec, key.usage, alg)?;
    let cannot = || Rejection::new(Code::InvalidParameter, CANNOT_DECRYPT);
    let plaintext = match (&key.inner, alg) {
        (Private::Rsa(_), _) if ciphertext.len() != RSA_2048_BYTES => None,
        (Private::Rsa(key), Algorithm::RsaesOaepSha256) => {
            key.decrypt(Oaep::<Sha256>::new(), ciphertext).ok()
        }
        (Private::Rsa(key), Algorithm::RsaesOaepSha1) => {
            key.decrypt(Oaep::<Sha1>::new(), ciphertext).ok()
        }
        (Private::Sm2 { decrypting, .. }, Algorithm::Sm2Pke) => {
            decrypting.decrypt_der(ciphertext).ok()
        }
        _ => unreachable!("require() checked {alg} against {}", key.spec),
    };
    plaintext.map(SecretBytes::new).ok_or_else(cannot)
}

/// The `Digest` that AsymmetricSign takes for SM2DSA: `SM3(Z(A) || message)`, with
/// `Z(A) = SM3(ENTL || ID || a || b || xG || yG || xA || yA)` of GB/T 32918.2 for `key` and the
/// user id [`SM2_DEFAULT_USER_ID`]. What a client computes before calling AsymmetricSign.
pub fn sm2_digest(key: &PublicKey, message: &[u8]) -> Result<[u8; DIGEST_LEN], Rejection> {
    let Public::Sm2 { encrypting, .. } = &key.inner else {
        return Err(Rejection::new(
            Code::InvalidParameter,
            format!(
                "the SM2 digest needs an EC_SM2 key; this key is {}",
                key.spec
            ),
        ));
    };
    let point = encrypting.as_affine().to_sec1_point(false);
    // 0x04 || x || y
    let (x, y) = point.as_bytes()[1..].split_at(32);
    let id = SM2_DEFAULT_USER_ID.as_bytes();
    let entl = u16::try_from(id.len() * 8).expect("a short user id");
    let z = Sm3::new()
        .chain_update(entl.to_be_bytes())
        .chain_update(id)
        .chain_update(SM2_A)
        .chain_update(SM2_B)
        .chain_update(SM2_GX)
        .chain_update(SM2_GY)
        .chain_update(x)
        .chain_update(y)
        .finalize();
    Ok(Sm3::new()
        .chain_update(z)
        .chain_update(message)
        .finalize()
        .into())
}

/// The SM2 curve (GB/T 32918.5): `a`, `b` and the base point, big-endian.
const SM2_A: [u8; 32] = hex32("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC");
const SM2_B: [u8; 32] = hex32("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93");
const SM2_GX: [u8; 32] = hex32("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7");
const SM2_GY: [u8; 32] = hex32("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0");

const fn hex32(text: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not an upper-case hex digit"),
        }
    }
    let text = text.as_bytes();
    assert!(text.len() == 64);
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(text[2 * i]) << 4 | nibble(text[2 * i + 1]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests;
