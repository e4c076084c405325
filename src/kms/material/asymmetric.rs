//! Asymmetric key pairs, encoded as PKCS#8 (private) and SPKI (public) PEM.

use getrandom::SysRng;
use p256::elliptic_curve::{
    Generate,
    pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding},
};
use rand_core::UnwrapErr;
use rsa::RsaPrivateKey;

use super::{Material, MaterialError, SecretBytes};

/// RSA with a 2048-bit modulus and e = 65537 (the default exponent of `RsaPrivateKey::new`).
///
/// `rsa` only takes an infallible RNG, so an OS RNG failure here panics instead of returning
/// `MaterialError::Rng`; on Linux getrandom(2) does not fail once the kernel pool is seeded.
pub(super) fn rsa_2048() -> Result<Material, MaterialError> {
    let key = RsaPrivateKey::new(&mut UnwrapErr(SysRng), 2048)?;
    pem_pair(&key, &key.to_public_key())
}

/// ECDSA over NIST P-256 (secp256r1, OpenSSL's prime256v1).
pub(super) fn ec_p256() -> Result<Material, MaterialError> {
    let key = p256::SecretKey::try_generate_from_rng(&mut SysRng)?;
    pem_pair(&key, &key.public_key())
}

/// ECDSA over secp256k1.
pub(super) fn ec_p256k() -> Result<Material, MaterialError> {
    let key = k256::SecretKey::try_generate_from_rng(&mut SysRng)?;
    pem_pair(&key, &key.public_key())
}

/// The SM2 curve of GB/T 32918 (SM2 signatures and SM2 encryption).
pub(super) fn ec_sm2() -> Result<Material, MaterialError> {
    let key = sm2::SecretKey::try_generate_from_rng(&mut SysRng)?;
    pem_pair(&key, &key.public_key())
}

/// Encodes both halves. The private PEM moves from its `Zeroizing<String>` into `SecretBytes`
/// without a copy, so no unwiped duplicate is left behind.
fn pem_pair(
    private: &impl EncodePrivateKey,
    public: &impl EncodePublicKey,
) -> Result<Material, MaterialError> {
    let mut private_pem = private.to_pkcs8_pem(LineEnding::LF)?;
    let private_pem = SecretBytes::new(std::mem::take(&mut *private_pem).into_bytes());
    let public_pem = public.to_public_key_pem(LineEnding::LF)?;
    Ok(Material::Asymmetric {
        private_pem,
        public_pem,
    })
}
