//! Which key specs the module can generate and use, read once at start-up.
//!
//! A spec is supported when the token lists every mechanism keyward needs for it (generation
//! and each KMS operation), and, for an elliptic curve, when a throw-away session key pair on
//! that curve can be generated: the mechanism list does not say which curves a module knows.
//! PKCS#11 defines no SM2 or SM4 mechanisms, so Aliyun_SM4 and EC_SM2 are never supported.

use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::Attribute;
use cryptoki::session::Session;

use super::object::curve;
use super::ops::{oaep, signing};
use crate::api::{KeySpec, KeyUsage};
use crate::kms::crypto::Algorithm;

/// The key specs a module supports, and the ones it does not with the reason; the KMS
/// algorithms of supported specs that it cannot run (SoftHSM2 2.6 has RSA-OAEP with SHA-1
/// only, say), found by trying each on a throw-away key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub supported: Vec<KeySpec>,
    pub unsupported: Vec<(KeySpec, String)>,
    pub unsupported_algorithms: Vec<(Algorithm, String)>,
}

impl Capabilities {
    pub fn supports(&self, spec: KeySpec) -> bool {
        self.supported.contains(&spec)
    }

    /// Why the module cannot run `algorithm`; `None` when it can.
    pub fn why_not_algorithm(&self, algorithm: Algorithm) -> Option<&str> {
        self.unsupported_algorithms
            .iter()
            .find(|(a, _)| *a == algorithm)
            .map(|(_, why)| why.as_str())
    }

    /// Why the module cannot hold keys of `spec`; `None` when it can.
    pub fn why_not(&self, spec: KeySpec) -> Option<&str> {
        self.unsupported
            .iter()
            .find(|(s, _)| *s == spec)
            .map(|(_, why)| why.as_str())
    }
}

/// The mechanisms each spec needs: generation first, then the KMS operations'.
fn needed(spec: KeySpec) -> &'static [MechanismType] {
    match spec {
        KeySpec::AliyunAes256 => &[MechanismType::AES_KEY_GEN, MechanismType::AES_GCM],
        KeySpec::Rsa2048 => &[
            MechanismType::RSA_PKCS_KEY_PAIR_GEN,
            MechanismType::RSA_PKCS,
            MechanismType::RSA_PKCS_PSS,
            MechanismType::RSA_PKCS_OAEP,
        ],
        KeySpec::EcP256 | KeySpec::EcP256K => {
            &[MechanismType::ECC_KEY_PAIR_GEN, MechanismType::ECDSA]
        }
        KeySpec::AliyunSm4 | KeySpec::EcSm2 => &[],
    }
}

/// Reads what the token behind `session` supports; `has` says whether the token offers a
/// mechanism.
pub(super) fn discover(session: &Session, has: impl Fn(MechanismType) -> bool) -> Capabilities {
    let mut capabilities = Capabilities {
        supported: Vec::new(),
        unsupported: Vec::new(),
        unsupported_algorithms: Vec::new(),
    };
    for &spec in KeySpec::ALL {
        match why_unsupported(session, &has, spec) {
            None => {
                capabilities.supported.push(spec);
            }
            Some(why) => capabilities.unsupported.push((spec, why)),
        }
    }
    if capabilities.supports(KeySpec::Rsa2048) {
        capabilities.unsupported_algorithms = rsa_algorithms_unsupported(session);
    }
    capabilities
}

/// Tries each RSA algorithm once on a throw-away session key pair: modules take the RSA
/// mechanisms with parameters they do not all accept (hash functions of OAEP and PSS).
fn rsa_algorithms_unsupported(session: &Session) -> Vec<(Algorithm, String)> {
    let public = [
        Attribute::Token(false),
        Attribute::ModulusBits(2048.into()),
        Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
        Attribute::Encrypt(true),
        Attribute::Verify(true),
    ];
    let private = [
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Sign(true),
        Attribute::Decrypt(true),
    ];
    let (public, private) =
        match session.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private) {
            Ok(pair) => pair,
            Err(e) => {
                let why = format!("the token cannot generate a throw-away RSA key pair ({e})");
                return RSA_ALGORITHMS.iter().map(|a| (*a, why.clone())).collect();
            }
        };
    let digest = [0x5a; 32];
    let mut unsupported = Vec::new();
    for &algorithm in RSA_ALGORITHMS {
        let tried = match algorithm.usage() {
            KeyUsage::EncryptDecrypt => session
                .encrypt(&oaep(algorithm), public, b"probe")
                .map(drop),
            KeyUsage::SignVerify => {
                let (mechanism, input) = signing(algorithm, &digest);
                session.sign(&mechanism, private, &input).map(drop)
            }
        };
        if let Err(e) = tried {
            unsupported.push((algorithm, format!("the token refused it ({e})")));
        }
    }
    let _ = session.destroy_object(private);
    let _ = session.destroy_object(public);
    unsupported
}

const RSA_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RsaesOaepSha256,
    Algorithm::RsaesOaepSha1,
    Algorithm::RsaPssSha256,
    Algorithm::RsaPkcs1Sha256,
];

fn why_unsupported(
    session: &Session,
    has: &impl Fn(MechanismType) -> bool,
    spec: KeySpec,
) -> Option<String> {
    if matches!(spec, KeySpec::AliyunSm4 | KeySpec::EcSm2) {
        return Some("PKCS#11 defines no SM2 or SM4 mechanisms".into());
    }
    let missing: Vec<String> = needed(spec)
        .iter()
        .filter(|m| !has(**m))
        .map(|m| m.to_string())
        .collect();
    if !missing.is_empty() {
        return Some(format!("the token lacks {}", missing.join(", ")));
    }
    let params = curve(spec)?;
    let public = [
        Attribute::Token(false),
        Attribute::EcParams(params.to_vec()),
        Attribute::Verify(true),
    ];
    let private = [
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Sign(true),
    ];
    match session.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private) {
        Ok((public, private)) => {
            // Session objects vanish with the session anyway; removed now to leave nothing.
            let _ = session.destroy_object(private);
            let _ = session.destroy_object(public);
            None
        }
        Err(e) => Some(format!(
            "the token cannot generate a key on the {spec} curve ({e})"
        )),
    }
}
