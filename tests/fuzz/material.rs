//! `material::generate`: for each key spec, material that the RustCrypto crates decode back:
//! key sizes for symmetric keys, PKCS#8 and SPKI PEM of matching keys for the others.

use keyward::api::KeySpec;
use keyward::kms::material::{Material, generate};
use proptest::prelude::*;

use crate::budget;

fn decode_pem(pem: &[u8], label: &str) -> Result<Vec<u8>, TestCaseError> {
    let text = std::str::from_utf8(pem).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(!text.contains('\r'), "LF line endings");
    prop_assert!(text.ends_with('\n'));
    for line in text.lines() {
        prop_assert!(line.len() <= 64, "PEM lines are at most 64 characters");
    }
    let (found, der) = pkcs8::der::pem::decode_vec(pem)
        .map_err(|e| TestCaseError::fail(format!("{label} PEM does not decode: {e}")))?;
    prop_assert_eq!(found, label);
    Ok(der)
}

fn oid(text: &str) -> pkcs8::ObjectIdentifier {
    pkcs8::ObjectIdentifier::new_unwrap(text)
}

/// The algorithm and (for EC keys) curve OIDs of a key spec's PKCS#8 and SPKI documents.
fn expected_oids(spec: KeySpec) -> (pkcs8::ObjectIdentifier, Option<pkcs8::ObjectIdentifier>) {
    let ec = oid("1.2.840.10045.2.1");
    match spec {
        KeySpec::Rsa2048 => (oid("1.2.840.113549.1.1.1"), None),
        KeySpec::EcP256 => (ec, Some(oid("1.2.840.10045.3.1.7"))),
        KeySpec::EcP256K => (ec, Some(oid("1.3.132.0.10"))),
        KeySpec::EcSm2 => (ec, Some(oid("1.2.156.10197.1.301"))),
        symmetric => panic!("{symmetric} is symmetric"),
    }
}

fn check_material(spec: KeySpec) -> Result<(), TestCaseError> {
    let material = generate(spec).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let (private_pem, public_pem) = match (&material, spec.is_symmetric()) {
        (Material::Symmetric { key }, true) => {
            let want = if spec == KeySpec::AliyunSm4 { 16 } else { 32 };
            prop_assert_eq!(key.len(), want, "{}", spec);
            prop_assert!(key.expose().iter().any(|b| *b != 0), "{}: all zero", spec);
            return Ok(());
        }
        (
            Material::Asymmetric {
                private_pem,
                public_pem,
            },
            false,
        ) => (private_pem.expose(), public_pem.as_bytes()),
        _ => {
            return Err(TestCaseError::fail(format!(
                "{spec}: wrong kind of material"
            )));
        }
    };
    let private_der = decode_pem(private_pem, "PRIVATE KEY")?;
    let public_der = decode_pem(public_pem, "PUBLIC KEY")?;

    check_documents(spec, &private_der, &public_der)?;
    check_typed_keys(spec, &private_der, &public_der)
}

/// The generic documents: PKCS#8 v1 and SPKI with the key spec's algorithm and curve.
fn check_documents(
    spec: KeySpec,
    private_der: &[u8],
    public_der: &[u8],
) -> Result<(), TestCaseError> {
    let info = pkcs8::PrivateKeyInfoRef::try_from(private_der)
        .map_err(|e| TestCaseError::fail(format!("{spec}: PKCS#8: {e}")))?;
    let spki = spki::SubjectPublicKeyInfoRef::try_from(public_der)
        .map_err(|e| TestCaseError::fail(format!("{spec}: SPKI: {e}")))?;
    let (algorithm, curve) = expected_oids(spec);
    prop_assert_eq!(info.algorithm.oid, algorithm, "{}", spec);
    prop_assert_eq!(spki.algorithm.oid, algorithm, "{}", spec);
    let curve_of = |params: Option<pkcs8::der::asn1::AnyRef<'_>>| {
        params.and_then(|p| p.decode_as::<pkcs8::ObjectIdentifier>().ok())
    };
    if let Some(curve) = curve {
        prop_assert_eq!(curve_of(info.algorithm.parameters), Some(curve), "{}", spec);
        prop_assert_eq!(curve_of(spki.algorithm.parameters), Some(curve), "{}", spec);
    }
    prop_assert!(info.public_key.is_none(), "PKCS#8 v1");
    Ok(())
}

/// The typed keys: the private key's public half is the public key, and both re-encode to the
/// same bytes (DER is canonical).
fn check_typed_keys(
    spec: KeySpec,
    private_der: &[u8],
    public_der: &[u8],
) -> Result<(), TestCaseError> {
    use pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
    macro_rules! ec {
        ($curve:ident) => {{
            let secret = $curve::SecretKey::from_pkcs8_der(private_der)
                .map_err(|e| TestCaseError::fail(format!("{spec}: {e}")))?;
            let public = $curve::PublicKey::from_public_key_der(public_der)
                .map_err(|e| TestCaseError::fail(format!("{spec}: {e}")))?;
            prop_assert_eq!(secret.public_key(), public, "{}", spec);
            let again = secret
                .to_pkcs8_der()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(again.as_bytes() == private_der, "{}", spec);
            let again = public
                .to_public_key_der()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(again.as_bytes() == public_der, "{}", spec);
        }};
    }
    match spec {
        KeySpec::Rsa2048 => {
            use rsa::traits::PublicKeyParts;
            let secret = rsa::RsaPrivateKey::from_pkcs8_der(private_der)
                .map_err(|e| TestCaseError::fail(format!("{spec}: {e}")))?;
            let public = rsa::RsaPublicKey::from_public_key_der(public_der)
                .map_err(|e| TestCaseError::fail(format!("{spec}: {e}")))?;
            secret
                .validate()
                .map_err(|e| TestCaseError::fail(format!("{spec}: {e}")))?;
            prop_assert_eq!(public.size(), 256, "2048-bit modulus");
            prop_assert_eq!(&secret.to_public_key(), &public);
            let again = public
                .to_public_key_der()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(again.as_bytes() == public_der);
        }
        KeySpec::EcP256 => ec!(p256),
        KeySpec::EcP256K => ec!(k256),
        KeySpec::EcSm2 => ec!(sm2),
        _ => unreachable!(),
    }
    Ok(())
}

proptest! {
    #![proptest_config(budget(100))]

    /// Symmetric and elliptic-curve keys: cheap to generate.
    #[test]
    fn generated_material_decodes_back(spec in prop::sample::select(vec![
        KeySpec::AliyunAes256,
        KeySpec::AliyunSm4,
        KeySpec::EcP256,
        KeySpec::EcP256K,
        KeySpec::EcSm2,
    ])) {
        check_material(spec)?;
    }
}

proptest! {
    #![proptest_config(budget(6))]

    /// RSA-2048: each key costs a prime search.
    #[test]
    fn generated_rsa_material_decodes_back(spec in Just(KeySpec::Rsa2048)) {
        check_material(spec)?;
    }
}
