//! Key material per key spec: fresh bytes from the OS CSPRNG, wrapped so they never print and
//! are wiped from memory when dropped.
//!
//! Symmetric keys are raw bytes; asymmetric keys are PKCS#8 / SPKI PEM, the encodings every
//! crypto library (OpenSSL, Go, Java, RustCrypto) reads without conversion.

mod asymmetric;

use std::fmt;

use p256::elliptic_curve::{pkcs8, subtle::ConstantTimeEq};
use zeroize::Zeroizing;

use crate::api::KeySpec;

/// Key bytes that never print: `Debug` shows only a length; zeroized on drop.
///
/// There is deliberately no `Display` and no `Serialize`, so key bytes cannot leak through logs,
/// error messages or status fields by accident; [`SecretBytes::expose`] is the one way out.
#[derive(Clone)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`; they are wiped when this value drops.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw key bytes. Named so that every call site reads as a deliberate disclosure.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes; safe to log.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<redacted, {} bytes>)", self.len())
    }
}

/// Constant time in the contents (the length is not secret), so comparing keys leaks no timing.
impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.expose().ct_eq(other.expose()).into()
    }
}

impl Eq for SecretBytes {}

/// Freshly minted material of one key version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Material {
    /// Aliyun_AES_256: 32 raw bytes; Aliyun_SM4: 16 raw bytes.
    Symmetric { key: SecretBytes },
    /// Private key as PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----"), public key as SPKI PEM
    /// ("-----BEGIN PUBLIC KEY-----"), LF line endings. The public key is not secret.
    Asymmetric {
        private_pem: SecretBytes,
        public_pem: String,
    },
    /// Generated inside an HSM, where it stays: only an asymmetric key's public key (SPKI
    /// PEM) comes out.
    InToken { public_pem: Option<String> },
}

/// Why minting failed. Messages name the failing step only, never key bytes.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    #[error("the OS random number generator failed: {0}")]
    Rng(#[from] getrandom::Error),
    #[error("RSA key generation failed: {0}")]
    Rsa(#[from] rsa::Error),
    #[error("encoding the private key as PKCS#8 failed: {0}")]
    PrivateKeyEncoding(#[from] pkcs8::Error),
    #[error("encoding the public key as SPKI failed: {0}")]
    PublicKeyEncoding(#[from] pkcs8::spki::Error),
}

/// Mints new material for `spec` from the OS CSPRNG.
///
/// Synchronous on purpose: RSA takes hundreds of milliseconds of CPU, so callers run this on a
/// blocking thread rather than stall the async runtime.
pub fn generate(spec: KeySpec) -> Result<Material, MaterialError> {
    match spec {
        KeySpec::AliyunAes256 => symmetric(32),
        KeySpec::AliyunSm4 => symmetric(16),
        KeySpec::Rsa2048 => asymmetric::rsa_2048(),
        KeySpec::EcP256 => asymmetric::ec_p256(),
        KeySpec::EcP256K => asymmetric::ec_p256k(),
        KeySpec::EcSm2 => asymmetric::ec_sm2(),
    }
}

/// `len` raw random bytes, written straight into the buffer that will own them.
fn symmetric(len: usize) -> Result<Material, MaterialError> {
    let mut key = SecretBytes::new(vec![0; len]);
    getrandom::fill(&mut key.0)?;
    Ok(Material::Symmetric { key })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symmetric_key(spec: KeySpec) -> SecretBytes {
        match generate(spec).unwrap() {
            Material::Symmetric { key } => key,
            other => panic!("{spec} gave asymmetric material: {other:?}"),
        }
    }

    fn asymmetric_pems(spec: KeySpec) -> (SecretBytes, String) {
        match generate(spec).unwrap() {
            Material::Asymmetric {
                private_pem,
                public_pem,
            } => (private_pem, public_pem),
            other => panic!("{spec} gave symmetric material: {other:?}"),
        }
    }

    fn asymmetric_specs() -> impl Iterator<Item = KeySpec> {
        KeySpec::ALL
            .iter()
            .copied()
            .filter(|spec| !spec.is_symmetric())
    }

    /// Standard base64 without padding of `bytes`, to check that no encoding of a key shows up in Debug output.
    fn base64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn symmetric_keys_have_the_spec_length() {
        assert_eq!(symmetric_key(KeySpec::AliyunAes256).len(), 32);
        assert_eq!(symmetric_key(KeySpec::AliyunSm4).len(), 16);
    }

    #[test]
    fn two_calls_give_different_material() {
        for spec in [KeySpec::AliyunAes256, KeySpec::AliyunSm4] {
            assert_ne!(symmetric_key(spec), symmetric_key(spec), "{spec}");
        }
        for spec in asymmetric_specs() {
            let (first, first_public) = asymmetric_pems(spec);
            let (second, second_public) = asymmetric_pems(spec);
            assert_ne!(first, second, "{spec}");
            assert_ne!(first_public, second_public, "{spec}");
        }
    }

    #[test]
    fn secret_bytes_debug_shows_only_the_length() {
        let key = SecretBytes::new(vec![0xab; 32]);
        assert_eq!(format!("{key:?}"), "SecretBytes(<redacted, 32 bytes>)");
        assert_eq!(format!("{key:#?}"), "SecretBytes(<redacted, 32 bytes>)");
    }

    #[test]
    fn symmetric_debug_contains_no_key_bytes() {
        for spec in [KeySpec::AliyunAes256, KeySpec::AliyunSm4] {
            let key = symmetric_key(spec);
            let bytes = key.expose().to_vec();
            let debug = format!("{:?} {:#?}", Material::Symmetric { key: key.clone() }, key);
            for encoding in [hex(&bytes), hex(&bytes).to_uppercase(), base64(&bytes)] {
                assert!(!debug.contains(&encoding), "{spec}: Debug leaks the key");
            }
            // Debug of a byte slice would print the decimal values.
            assert!(
                !debug.contains(&format!("{bytes:?}")),
                "{spec}: Debug leaks the key"
            );
        }
    }

    #[test]
    fn asymmetric_debug_contains_no_private_key() {
        for spec in asymmetric_specs() {
            let material = generate(spec).unwrap();
            let debug = format!("{material:?} {material:#?}");
            let Material::Asymmetric { private_pem, .. } = &material else {
                unreachable!()
            };
            let pem = std::str::from_utf8(private_pem.expose()).unwrap();
            let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            assert!(!debug.contains(pem), "{spec}: Debug leaks the private PEM");
            for line in &body {
                assert!(!debug.contains(line), "{spec}: Debug leaks a PEM line");
            }
            assert!(
                !debug.contains(&body.concat()),
                "{spec}: Debug leaks the PEM body"
            );
            assert!(debug.contains("redacted"), "{spec}");
        }
    }

    #[test]
    fn asymmetric_material_is_pkcs8_and_spki_pem_with_lf() {
        for spec in asymmetric_specs() {
            let (private_pem, public_pem) = asymmetric_pems(spec);
            let private = std::str::from_utf8(private_pem.expose()).unwrap();
            assert!(
                private.starts_with("-----BEGIN PRIVATE KEY-----\n"),
                "{spec}"
            );
            assert!(private.ends_with("-----END PRIVATE KEY-----\n"), "{spec}");
            assert!(
                public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"),
                "{spec}"
            );
            assert!(public_pem.ends_with("-----END PUBLIC KEY-----\n"), "{spec}");
            assert!(
                !private.contains('\r') && !public_pem.contains('\r'),
                "{spec}"
            );
        }
    }

    #[test]
    fn secret_bytes_compare_by_content() {
        assert_eq!(
            SecretBytes::new(vec![1, 2, 3]),
            SecretBytes::new(vec![1, 2, 3])
        );
        assert_ne!(
            SecretBytes::new(vec![1, 2, 3]),
            SecretBytes::new(vec![1, 2, 4])
        );
        assert_ne!(
            SecretBytes::new(vec![1, 2]),
            SecretBytes::new(vec![1, 2, 3])
        );
        assert!(SecretBytes::new(Vec::new()).is_empty());
    }
}
