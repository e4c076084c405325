//! Importing key material into keys with origin EXTERNAL (pure, apart from the OS CSPRNG):
//! the KMS's GetParametersForImport and ImportKeyMaterial.
//!
//! keyward issues [`ImportParameters`]: an RSA-2048 wrapping public key (SPKI PEM), a random
//! import token and the time the token expires (24 hours after issue). The user puts a Secret in
//! the Key's namespace holding either `encryptedKeyMaterial` (the key material wrapped with the
//! public key by RSAES-OAEP with SHA-256, MGF1 with SHA-256 and no label, as raw ciphertext
//! bytes) together with `importToken`, or `keyMaterial` (the raw key bytes). [`unwrap`] checks
//! that Secret and returns the material; every refusal is a [`Rejection`] whose message says
//! what to put in the Secret and never holds key bytes.

use std::collections::BTreeMap;

use getrandom::SysRng;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use p256::elliptic_curve::subtle::ConstantTimeEq;
use rand_core::UnwrapErr;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey};
use sha2::{Digest, Sha256};

use crate::api::ImportParameters;
use crate::api::KeySpec;
use crate::kms::error::{Code, Rejection, quote};
use crate::kms::material::{MaterialError, SecretBytes};
use crate::kms::schedule::{format_kms_time, parse_kms_time, truncate_to_second};

/// The import Secret's entry holding the wrapped key material (raw ciphertext bytes).
pub const ENCRYPTED_KEY_MATERIAL: &str = "encryptedKeyMaterial";
/// The import Secret's entry holding the import token that came with the wrapping public key.
pub const IMPORT_TOKEN: &str = "importToken";
/// The import Secret's entry holding the raw key material (no wrapping, no token).
pub const KEY_MATERIAL: &str = "keyMaterial";

/// How long an import token (and the wrapping key it came with) may be used.
pub const TOKEN_VALIDITY: SignedDuration = SignedDuration::from_hours(24);
/// Size of the wrapping key's modulus.
pub const WRAPPING_KEY_BITS: usize = 2048;
/// Random bytes in an import token (shown as twice as many hex digits).
const TOKEN_BYTES: usize = 32;

/// How to wrap material, for messages: the one algorithm [`unwrap`] accepts.
const WRAPPING_ALGORITHM: &str = "RSAES-OAEP with SHA-256, MGF1 with SHA-256 and no label";
/// Where the user finds the import parameters.
const PARAMETERS_FIELD: &str = "status.importParameters";

/// Fresh parameters issued at `now` (valid 24 hours), and the wrapping private key as PKCS#8 PEM
/// (secret: keep it in the material store).
///
/// Uses the OS CSPRNG; CPU-heavy (RSA-2048 key generation): callers run it on a blocking thread.
/// As in [`crate::kms::material::generate`], `rsa` only takes an infallible RNG, so an OS RNG failure
/// during key generation panics rather than returning [`MaterialError::Rng`].
pub fn issue_parameters(now: Timestamp) -> Result<(ImportParameters, SecretBytes), MaterialError> {
    let key = RsaPrivateKey::new(&mut UnwrapErr(SysRng), WRAPPING_KEY_BITS)?;
    let mut private_pem = key.to_pkcs8_pem(LineEnding::LF)?;
    // Moves the PEM out of its `Zeroizing<String>` without leaving an unwiped copy.
    let private_pem = SecretBytes::new(std::mem::take(&mut *private_pem).into_bytes());
    let public_key = key.to_public_key().to_public_key_pem(LineEnding::LF)?;

    let mut token = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut token)?;
    let import_token = hex(&token);

    let expire = truncate_to_second(now)
        .checked_add(TOKEN_VALIDITY)
        .unwrap_or(Timestamp::MAX);
    let parameters = ImportParameters {
        public_key,
        import_token,
        token_expire_time: format_kms_time(truncate_to_second(expire)),
    };
    Ok((parameters, private_pem))
}

/// Reads the import Secret's data and returns the key material to import:
/// - `keyMaterial` alone: the raw bytes (length-checked for `key_spec`); an `importToken` next
///   to it is ignored;
/// - `encryptedKeyMaterial` + `importToken`: token checked against `parameters` (equal, and
///   `now` before tokenExpireTime), then RSAES-OAEP (SHA-256) unwrapped with
///   `wrapping_private_pem` (blinded, with the OS RNG), then length-checked.
///
/// Checks run in that order: key spec, the Secret's shape, token, expiry, unwrap, length.
pub fn unwrap(
    secret_data: &BTreeMap<String, ByteString>,
    key_spec: KeySpec,
    parameters: Option<&ImportParameters>,
    wrapping_private_pem: Option<&[u8]>,
    now: Timestamp,
) -> Result<SecretBytes, Rejection> {
    let Some(expected_len) = material_len(key_spec) else {
        return Err(Rejection::new(
            Code::InvalidParameter,
            format!(
                "keys of spec {key_spec} take no imported material: only {} and {} keys can have \
             origin EXTERNAL",
                KeySpec::AliyunAes256,
                KeySpec::AliyunSm4
            ),
        ));
    };
    let raw = secret_data.get(KEY_MATERIAL).map(|b| b.0.as_slice());
    let wrapped = secret_data
        .get(ENCRYPTED_KEY_MATERIAL)
        .map(|b| b.0.as_slice());
    let token = secret_data.get(IMPORT_TOKEN).map(|b| b.0.as_slice());

    match (raw, wrapped, token) {
        (Some(_), Some(_), _) => Err(Rejection::new(
            Code::InvalidParameter,
            format!(
                "the import Secret holds both {KEY_MATERIAL} and {ENCRYPTED_KEY_MATERIAL}: keep only \
             one, either {KEY_MATERIAL} with the raw key bytes, or {ENCRYPTED_KEY_MATERIAL} with \
             the wrapped key bytes together with {IMPORT_TOKEN}"
            ),
        )),
        // The Secret's other entry names are not repeated: they are the user's, not ours to
        // publish in a condition or event.
        (None, None, _) => Err(Rejection::new(
            Code::InvalidParameter,
            format!(
                "the import Secret holds neither {KEY_MATERIAL} nor {ENCRYPTED_KEY_MATERIAL} \
             (entry names are case-sensitive): put the raw {expected_len}-byte key in \
             {KEY_MATERIAL}, or the key wrapped with {PARAMETERS_FIELD}.publicKey \
             ({WRAPPING_ALGORITHM}) in {ENCRYPTED_KEY_MATERIAL} and \
             {PARAMETERS_FIELD}.importToken in {IMPORT_TOKEN}"
            ),
        )),
        (None, Some(_), None) => Err(Rejection::new(
            Code::InvalidParameter,
            format!(
                "the import Secret holds {ENCRYPTED_KEY_MATERIAL} but no {IMPORT_TOKEN}: add \
             {IMPORT_TOKEN} with the value of {PARAMETERS_FIELD}.importToken issued with the \
             public key that wrapped the material"
            ),
        )),
        (Some(raw), None, _) => {
            check_len(key_spec, expected_len, raw.len(), KEY_MATERIAL)?;
            Ok(SecretBytes::new(raw.to_vec()))
        }
        (None, Some(wrapped), Some(token)) => {
            let parameters = parameters.ok_or_else(|| {
                Rejection::new(
                    Code::InvalidImportToken,
                    format!(
                        "keyward has issued no import parameters for this key: wait for \
                     {PARAMETERS_FIELD}, then wrap the key material with its publicKey and put \
                     its importToken in {IMPORT_TOKEN}"
                    ),
                )
            })?;
            check_token(parameters, token, now)?;
            let material = unwrap_with(parameters, wrapping_private_pem, wrapped)?;
            check_len(
                key_spec,
                expected_len,
                material.len(),
                "the unwrapped encryptedKeyMaterial",
            )?;
            Ok(material)
        }
    }
}

/// A fingerprint of imported material: SHA-256, lowercase hex (what `sha256sum` prints for the
/// raw key bytes). Lets a re-import be recognised as the same material without keeping a second
/// copy; for 128- and 256-bit random keys it reveals nothing usable about the key.
pub fn fingerprint(material: &[u8]) -> String {
    hex(&Sha256::digest(material))
}

/// The raw material length of a key spec that can be imported.
fn material_len(key_spec: KeySpec) -> Option<usize> {
    match key_spec {
        KeySpec::AliyunAes256 => Some(32),
        KeySpec::AliyunSm4 => Some(16),
        KeySpec::Rsa2048 | KeySpec::EcP256 | KeySpec::EcP256K | KeySpec::EcSm2 => None,
    }
}

fn check_len(key_spec: KeySpec, expected: usize, got: usize, what: &str) -> Result<(), Rejection> {
    if got == expected {
        return Ok(());
    }
    let hint = if got == WRAPPING_KEY_BITS / 8 {
        format!(
            " ({got} bytes is the size of an RSA-2048 ciphertext: wrapped material goes in \
             {ENCRYPTED_KEY_MATERIAL}, with {IMPORT_TOKEN})"
        )
    } else if text_encoded_lengths(expected).contains(&got) {
        " (is it hex or base64 text? Secret data must hold the raw bytes, base64-encoded only \
         once, as every Secret's data is)"
            .to_string()
    } else {
        String::new()
    };
    Err(Rejection::new(
        Code::InvalidKeyMaterial,
        format!(
            "{key_spec} key material must be exactly {expected} bytes, but {what} is {got} \
         bytes{hint}"
        ),
    ))
}

/// Lengths of `len` bytes written as text: hex, padded and unpadded base64, each with or without
/// the trailing newline a file or `echo` adds.
fn text_encoded_lengths(len: usize) -> [usize; 6] {
    let hex = 2 * len;
    let padded = len.div_ceil(3) * 4;
    let unpadded = (4 * len).div_ceil(3);
    [hex, hex + 1, padded, padded + 1, unpadded, unpadded + 1]
}

/// The token must be the current one (compared in constant time) and not yet expired: at
/// tokenExpireTime exactly it is expired.
fn check_token(
    parameters: &ImportParameters,
    token: &[u8],
    now: Timestamp,
) -> Result<(), Rejection> {
    // `kubectl create secret --from-file` keeps a trailing newline; tokens have no whitespace.
    let token = token.trim_ascii();
    let matches: bool = token.ct_eq(parameters.import_token.as_bytes()).into();
    if !matches {
        return Err(Rejection::new(
            Code::InvalidImportToken,
            format!(
                "{IMPORT_TOKEN} does not match {PARAMETERS_FIELD}.importToken: import parameters are \
             replaced when they expire, so wrap the key material with the current publicKey \
             and put the importToken issued with it in {IMPORT_TOKEN}"
            ),
        ));
    }
    let expired = match parse_kms_time(&parameters.token_expire_time) {
        Some(expire) => now >= expire,
        // Unreadable: fail closed, with the same remedy as an expired token.
        None => true,
    };
    if expired {
        return Err(Rejection::new(
            Code::ExpiredImportToken,
            format!(
                "the import token expired at {}: once keyward has issued new import parameters in \
             {PARAMETERS_FIELD}, wrap the key material again with the new publicKey and put the \
             new importToken in {IMPORT_TOKEN}",
                quote(&parameters.token_expire_time)
            ),
        ));
    }
    Ok(())
}

/// RSAES-OAEP (SHA-256, MGF1 SHA-256, no label) decryption with blinding from the OS RNG.
fn unwrap_with(
    parameters: &ImportParameters,
    wrapping_private_pem: Option<&[u8]>,
    wrapped: &[u8],
) -> Result<SecretBytes, Rejection> {
    let unavailable = || {
        Rejection::new(
            Code::InvalidImportToken,
            format!(
                "the wrapping key of the current import parameters is missing or unreadable in \
             keyward's material store: wait for keyward to issue new import parameters in \
             {PARAMETERS_FIELD}, then wrap the key material with the new publicKey"
            ),
        )
    };
    let pem = wrapping_private_pem
        .and_then(|pem| std::str::from_utf8(pem).ok())
        .ok_or_else(unavailable)?;
    let key = RsaPrivateKey::from_pkcs8_pem(pem).map_err(|_| unavailable())?;
    // The published public key must be this private key's: otherwise every unwrap would fail
    // with a misleading "wrong material".
    let public_matches = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .is_ok_and(|public| public.trim() == parameters.public_key.trim());
    if !public_matches {
        return Err(unavailable());
    }

    let ciphertext_len = key.size();
    if wrapped.len() != ciphertext_len {
        let hint = if wrapped.len() > ciphertext_len {
            " (is it base64 text? Secret data must hold the raw ciphertext bytes, base64-encoded \
             only once, as every Secret's data is)"
        } else {
            ""
        };
        return Err(Rejection::new(
            Code::InvalidKeyMaterial,
            format!(
                "{ENCRYPTED_KEY_MATERIAL} is {} bytes, but a ciphertext of the RSA-2048 wrapping key \
             is exactly {ciphertext_len} bytes{hint}: wrap the key material with \
             {PARAMETERS_FIELD}.publicKey using {WRAPPING_ALGORITHM}",
                wrapped.len()
            ),
        ));
    }
    key.decrypt_blinded(&mut UnwrapErr(SysRng), Oaep::<Sha256>::new(), wrapped)
        .map(SecretBytes::new)
        .map_err(|_| {
            Rejection::new(
                Code::InvalidKeyMaterial,
                format!(
                    "{ENCRYPTED_KEY_MATERIAL} cannot be unwrapped with the wrapping key of the \
                 current import parameters: wrap the key material with \
                 {PARAMETERS_FIELD}.publicKey using {WRAPPING_ALGORITHM} (openssl pkeyutl \
                 -encrypt -pubin -inkey public.pem -pkeyopt rsa_padding_mode:oaep -pkeyopt \
                 rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256), and put the raw ciphertext in \
                 {ENCRYPTED_KEY_MATERIAL}"
                ),
            )
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use rsa::RsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    use sha2::{Sha384, Sha512};

    use super::*;

    /// Issue time of the shared parameters; they expire 24 hours later.
    const ISSUED: &str = "2026-11-23T08:34:59Z";
    const EXPIRES: &str = "2026-11-24T08:34:59Z";

    /// One set of parameters for all tests: RSA key generation is the slow part.
    static ISSUED_PARAMETERS: LazyLock<(ImportParameters, SecretBytes)> =
        LazyLock::new(|| issue_parameters(ts(ISSUED)).expect("issue parameters"));

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn parameters() -> &'static ImportParameters {
        &ISSUED_PARAMETERS.0
    }

    fn wrapping_pem() -> Option<&'static [u8]> {
        Some(ISSUED_PARAMETERS.1.expose())
    }

    fn an_hour_after_issue() -> Timestamp {
        ts("2026-11-23T09:34:59Z")
    }

    fn public_key(parameters: &ImportParameters) -> RsaPublicKey {
        RsaPublicKey::from_public_key_pem(&parameters.public_key).unwrap()
    }

    /// Wraps `material` as a user would, with any OAEP variant.
    fn wrap_with<D, M>(
        parameters: &ImportParameters,
        padding: Oaep<D, M>,
        material: &[u8],
    ) -> Vec<u8>
    where
        D: Digest + sha2::digest::FixedOutputReset,
        M: Digest + sha2::digest::FixedOutputReset,
    {
        public_key(parameters)
            .encrypt(&mut UnwrapErr(SysRng), padding, material)
            .unwrap()
    }

    fn wrap(material: &[u8]) -> Vec<u8> {
        wrap_with(parameters(), Oaep::<Sha256>::new(), material)
    }

    fn data(entries: &[(&str, &[u8])]) -> BTreeMap<String, ByteString> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
            .collect()
    }

    fn wrapped_data(wrapped: &[u8], token: &str) -> BTreeMap<String, ByteString> {
        data(&[
            (ENCRYPTED_KEY_MATERIAL, wrapped),
            (IMPORT_TOKEN, token.as_bytes()),
        ])
    }

    fn random(len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        getrandom::fill(&mut bytes).unwrap();
        bytes
    }

    fn unwrap_now(
        secret_data: &BTreeMap<String, ByteString>,
        key_spec: KeySpec,
        now: Timestamp,
    ) -> Result<SecretBytes, Rejection> {
        unwrap(
            secret_data,
            key_spec,
            Some(parameters()),
            wrapping_pem(),
            now,
        )
    }

    fn unwrap_an_hour_in(
        secret_data: &BTreeMap<String, ByteString>,
        key_spec: KeySpec,
    ) -> Result<SecretBytes, Rejection> {
        unwrap_now(secret_data, key_spec, an_hour_after_issue())
    }

    /// Standard base64 without padding, to check that no encoding of key bytes shows up in messages.
    fn base64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
    }

    /// Asserts that neither Display nor Debug of `error` holds `bytes` in any common encoding.
    fn assert_no_bytes(error: &Rejection, bytes: &[u8], what: &str) {
        let shown = format!("{error} {error:?} {error:#?}");
        for encoding in [
            hex(bytes),
            hex(bytes).to_uppercase(),
            base64(bytes),
            format!("{bytes:?}"),
            // A run of decimal values, as a partial slice Debug would show.
            format!("{:?}", &bytes[..bytes.len().min(4)])
                .trim_matches(['[', ']'])
                .to_string(),
        ] {
            assert!(!shown.contains(&encoding), "{what} leaks into {shown}");
        }
        assert!(
            !shown.contains(&String::from_utf8_lossy(bytes).to_string()),
            "{what} leaks as text"
        );
    }

    #[test]
    fn parameters_are_an_rsa_2048_spki_pem_a_long_token_and_24_hours() {
        let (parameters, private_pem) = &*ISSUED_PARAMETERS;
        assert!(
            parameters
                .public_key
                .starts_with("-----BEGIN PUBLIC KEY-----\n")
        );
        assert!(
            parameters
                .public_key
                .ends_with("-----END PUBLIC KEY-----\n")
        );
        let public = public_key(parameters);
        assert_eq!(public.size() * 8, 2048);
        assert_eq!(public.e().to_be_bytes_trimmed_vartime().as_ref(), [1, 0, 1]);

        let private = std::str::from_utf8(private_pem.expose()).unwrap();
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let private = RsaPrivateKey::from_pkcs8_pem(private).unwrap();
        assert_eq!(private.to_public_key(), public, "the pair belongs together");

        // 256 random bits as lowercase hex: URL-safe, at least 128 bits.
        assert_eq!(parameters.import_token.len(), 64);
        assert!(
            parameters
                .import_token
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(parameters.token_expire_time, EXPIRES);
    }

    #[test]
    fn expiry_is_24_hours_after_the_issuing_second() {
        let (parameters, _) = issue_parameters(ts("2026-02-28T23:59:59.999Z")).unwrap();
        assert_eq!(parameters.token_expire_time, "2026-03-01T23:59:59Z");
    }

    #[test]
    fn each_issue_gives_a_new_token_and_key() {
        let (second, second_private) = issue_parameters(ts(ISSUED)).unwrap();
        assert_ne!(second.import_token, parameters().import_token);
        assert_ne!(second.public_key, parameters().public_key);
        assert_ne!(&second_private, &ISSUED_PARAMETERS.1);
    }

    #[test]
    fn parameters_serialize_in_camel_case() {
        let json = serde_json::to_value(parameters()).unwrap();
        let mut fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, ["importToken", "publicKey", "tokenExpireTime"]);
        let back: ImportParameters = serde_json::from_value(json).unwrap();
        assert_eq!(&back, parameters());
    }

    #[test]
    fn parameters_debug_holds_no_private_key() {
        let private = std::str::from_utf8(ISSUED_PARAMETERS.1.expose()).unwrap();
        let debug = format!("{:?} {:#?}", parameters(), ISSUED_PARAMETERS);
        for line in private.lines().filter(|l| !l.starts_with("-----")) {
            assert!(
                !debug.contains(line),
                "Debug leaks the wrapping private key"
            );
        }
        assert!(debug.contains("redacted"));
    }

    #[test]
    fn wrapped_material_unwraps_for_both_specs() {
        for (spec, len) in [(KeySpec::AliyunAes256, 32), (KeySpec::AliyunSm4, 16)] {
            let material = random(len);
            let secret = wrapped_data(&wrap(&material), &parameters().import_token);
            let got = unwrap_an_hour_in(&secret, spec).unwrap();
            assert!(
                got.expose() == material.as_slice(),
                "{spec}: wrong material"
            );
        }
    }

    #[test]
    fn raw_material_is_taken_as_is_without_a_token() {
        for (spec, len) in [(KeySpec::AliyunAes256, 32), (KeySpec::AliyunSm4, 16)] {
            let material = random(len);
            let secret = data(&[(KEY_MATERIAL, &material)]);
            // No parameters and no wrapping key needed, and any time will do.
            let got = unwrap(&secret, spec, None, None, ts("2099-01-01T00:00:00Z")).unwrap();
            assert!(
                got.expose() == material.as_slice(),
                "{spec}: wrong material"
            );
        }
    }

    #[test]
    fn a_token_next_to_raw_material_is_ignored() {
        let material = random(32);
        let secret = data(&[(KEY_MATERIAL, &material), (IMPORT_TOKEN, b"whatever")]);
        let got = unwrap_an_hour_in(&secret, KeySpec::AliyunAes256).unwrap();
        assert!(got.expose() == material.as_slice());
    }

    #[test]
    fn a_token_with_a_trailing_newline_is_accepted() {
        let material = random(32);
        let token = format!("{}\n", parameters().import_token);
        let secret = wrapped_data(&wrap(&material), &token);
        let got = unwrap_an_hour_in(&secret, KeySpec::AliyunAes256).unwrap();
        assert!(got.expose() == material.as_slice());
    }

    #[test]
    fn wrong_lengths_are_invalid_key_material() {
        for (spec, wrong) in [
            (KeySpec::AliyunAes256, 16),
            (KeySpec::AliyunAes256, 31),
            (KeySpec::AliyunAes256, 33),
            (KeySpec::AliyunAes256, 0),
            (KeySpec::AliyunSm4, 32),
            (KeySpec::AliyunSm4, 15),
        ] {
            let material = random(wrong);
            let raw = unwrap_an_hour_in(&data(&[(KEY_MATERIAL, &material)]), spec).unwrap_err();
            let wrapped = unwrap_an_hour_in(
                &wrapped_data(&wrap(&material), &parameters().import_token),
                spec,
            )
            .unwrap_err();
            for error in [raw, wrapped] {
                assert!(
                    error.code == Code::InvalidKeyMaterial,
                    "{spec} {wrong}: {error}"
                );
                let expected = if spec == KeySpec::AliyunAes256 {
                    32
                } else {
                    16
                };
                assert!(
                    error.to_string().contains(&format!(
                        "{spec} key material must be exactly {expected} bytes"
                    )),
                    "{error}"
                );
                assert!(
                    error.to_string().contains(&format!("is {wrong} bytes")),
                    "{error}"
                );
                if wrong > 0 {
                    assert_no_bytes(&error, &material, "the material");
                }
            }
        }
    }

    #[test]
    fn length_hints_name_the_likely_mistake() {
        let ciphertext = wrap(&random(32));
        let error = unwrap_an_hour_in(&data(&[(KEY_MATERIAL, &ciphertext)]), KeySpec::AliyunAes256)
            .unwrap_err();
        assert!(
            error.to_string().contains(ENCRYPTED_KEY_MATERIAL),
            "{error}"
        );
        assert_no_bytes(&error, &ciphertext, "the ciphertext");

        let material = random(32);
        let as_hex = hex(&material);
        let error = unwrap_an_hour_in(
            &data(&[(KEY_MATERIAL, as_hex.as_bytes())]),
            KeySpec::AliyunAes256,
        )
        .unwrap_err();
        assert!(error.to_string().contains("hex or base64"), "{error}");
        assert!(!error.to_string().contains(&as_hex));
        for as_base64 in [base64(&material), format!("{}=\n", base64(&material))] {
            let error = unwrap_an_hour_in(
                &data(&[(KEY_MATERIAL, as_base64.as_bytes())]),
                KeySpec::AliyunAes256,
            )
            .unwrap_err();
            assert!(error.to_string().contains("hex or base64"), "{error}");
            assert!(!error.to_string().contains(&base64(&material)));
        }
    }

    #[test]
    fn material_wrapped_any_other_way_is_invalid_key_material() {
        let material = random(32);
        let token = &parameters().import_token;
        let (other_parameters, _) = issue_parameters(ts(ISSUED)).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "SHA-384 OAEP",
                wrap_with(parameters(), Oaep::<Sha384>::new(), &material),
            ),
            (
                "MGF1 with SHA-512",
                wrap_with(
                    parameters(),
                    Oaep::<Sha256, Sha512>::new_with_mgf_hash(),
                    &material,
                ),
            ),
            (
                "a label",
                wrap_with(
                    parameters(),
                    Oaep::<Sha256>::new_with_label(&b"keyward"[..]),
                    &material,
                ),
            ),
            (
                "PKCS#1 v1.5",
                public_key(parameters())
                    .encrypt(&mut UnwrapErr(SysRng), rsa::Pkcs1v15Encrypt, &material)
                    .unwrap(),
            ),
            (
                "another wrapping key",
                wrap_with(&other_parameters, Oaep::<Sha256>::new(), &material),
            ),
            ("the raw material", material.clone()),
            ("a truncated ciphertext", wrap(&material)[..255].to_vec()),
            (
                "base64 text of a ciphertext",
                base64(&wrap(&material)).into_bytes(),
            ),
            ("zeros", vec![0; 256]),
            ("a flipped bit", {
                let mut c = wrap(&material);
                c[100] ^= 1;
                c
            }),
        ];
        for (what, ciphertext) in cases {
            let error = unwrap_an_hour_in(&wrapped_data(&ciphertext, token), KeySpec::AliyunAes256)
                .unwrap_err();
            assert!(error.code == Code::InvalidKeyMaterial, "{what}: {error}");
            assert_eq!(error.code.as_str(), "InvalidKeyMaterial");
            assert!(
                error.to_string().contains("RSAES-OAEP with SHA-256"),
                "{what}: {error}"
            );
            assert_no_bytes(&error, &material, what);
            assert_no_bytes(&error, &ciphertext, what);
        }
    }

    #[test]
    fn a_wrong_token_is_invalid_import_token() {
        let material = random(32);
        let wrapped = wrap(&material);
        let (other, _) = issue_parameters(ts(ISSUED)).unwrap();
        let mut almost = parameters().import_token.clone();
        almost.pop();
        for token in [
            other.import_token.as_str(),
            almost.as_str(),
            "",
            &parameters().import_token.to_uppercase(),
        ] {
            let error = unwrap_an_hour_in(&wrapped_data(&wrapped, token), KeySpec::AliyunAes256)
                .unwrap_err();
            assert!(error.code == Code::InvalidImportToken, "{token:?}: {error}");
            if !token.is_empty() {
                assert!(!error.to_string().contains(token), "{error}");
            }
            assert!(!error.to_string().contains(&parameters().import_token));
            assert_no_bytes(&error, &material, "the material");
        }
    }

    #[test]
    fn a_wrong_token_is_refused_even_when_expired() {
        let error = unwrap_now(
            &wrapped_data(&wrap(&random(32)), "not-the-token"),
            KeySpec::AliyunAes256,
            ts("2030-01-01T00:00:00Z"),
        )
        .unwrap_err();
        assert!(error.code == Code::InvalidImportToken, "{error}");
    }

    #[test]
    fn a_token_expires_at_its_expire_time_exactly() {
        let material = random(32);
        let secret = wrapped_data(&wrap(&material), &parameters().import_token);
        for now in ["2026-11-24T08:34:58Z", "2026-11-24T08:34:58.999999999Z"] {
            let got = unwrap_now(&secret, KeySpec::AliyunAes256, ts(now)).unwrap();
            assert!(got.expose() == material.as_slice(), "{now}");
        }
        for now in [
            EXPIRES,
            "2026-11-24T08:34:59.000000001Z",
            "2027-01-01T00:00:00Z",
        ] {
            let error = unwrap_now(&secret, KeySpec::AliyunAes256, ts(now)).unwrap_err();
            assert!(error.code == Code::ExpiredImportToken, "{now}: {error}");
            assert_eq!(error.code.reason(), "ExpiredImportToken");
            assert!(error.to_string().contains(EXPIRES), "{error}");
            assert_no_bytes(&error, &material, "the material");
        }
    }

    #[test]
    fn an_unreadable_expire_time_counts_as_expired() {
        let mut broken = parameters().clone();
        broken.token_expire_time = "tomorrow".to_string();
        let secret = wrapped_data(&wrap(&random(32)), &broken.import_token);
        let error = unwrap(
            &secret,
            KeySpec::AliyunAes256,
            Some(&broken),
            wrapping_pem(),
            an_hour_after_issue(),
        )
        .unwrap_err();
        assert!(error.code == Code::ExpiredImportToken, "{error}");
    }

    #[test]
    fn without_parameters_or_wrapping_key_the_token_is_invalid() {
        let secret = wrapped_data(&wrap(&random(32)), &parameters().import_token);
        let now = an_hour_after_issue();
        let (other_parameters, other_pem) = issue_parameters(ts(ISSUED)).unwrap();
        type Case<'a> = (&'a str, Option<&'a ImportParameters>, Option<&'a [u8]>);
        let cases: [Case; 5] = [
            ("no parameters", None, wrapping_pem()),
            ("no wrapping key", Some(parameters()), None),
            (
                "a garbage wrapping key",
                Some(parameters()),
                Some(b"garbage"),
            ),
            (
                "a non-UTF-8 wrapping key",
                Some(parameters()),
                Some(&[0xff, 0xfe]),
            ),
            (
                "another parameter set's wrapping key",
                Some(parameters()),
                Some(other_pem.expose()),
            ),
        ];
        for (what, parameters, pem) in cases {
            let error = unwrap(&secret, KeySpec::AliyunAes256, parameters, pem, now).unwrap_err();
            assert!(error.code == Code::InvalidImportToken, "{what}: {error}");
        }
        // The mirror image: published parameters that are not the held key's.
        let mut mismatched = other_parameters;
        mismatched.import_token = parameters().import_token.clone();
        mismatched.token_expire_time = EXPIRES.to_string();
        let error = unwrap(
            &secret,
            KeySpec::AliyunAes256,
            Some(&mismatched),
            wrapping_pem(),
            now,
        )
        .unwrap_err();
        assert!(error.code == Code::InvalidImportToken, "{error}");
    }

    #[test]
    fn secret_shape_errors_are_invalid_parameter_and_say_what_to_put() {
        let material = random(32);
        let wrapped = wrap(&material);
        let token = parameters().import_token.as_bytes();
        let cases: [(&str, BTreeMap<String, ByteString>, &str); 5] = [
            ("an empty Secret", data(&[]), "neither"),
            (
                "unrelated entries",
                data(&[
                    ("payments-admin-password", &material),
                    ("Keymaterial", token),
                ]),
                "case-sensitive",
            ),
            (
                "both forms",
                data(&[
                    (KEY_MATERIAL, &material),
                    (ENCRYPTED_KEY_MATERIAL, &wrapped),
                ]),
                "both",
            ),
            (
                "both forms and a token",
                data(&[
                    (KEY_MATERIAL, &material),
                    (ENCRYPTED_KEY_MATERIAL, &wrapped),
                    (IMPORT_TOKEN, token),
                ]),
                "keep only one",
            ),
            (
                "wrapped material without a token",
                data(&[(ENCRYPTED_KEY_MATERIAL, &wrapped)]),
                "no importToken",
            ),
        ];
        for (what, secret, says) in cases {
            let error = unwrap_an_hour_in(&secret, KeySpec::AliyunAes256).unwrap_err();
            assert!(error.code == Code::InvalidParameter, "{what}: {error}");
            let message = error.to_string();
            assert!(message.starts_with("InvalidParameter: "), "{message}");
            assert!(message.contains(says), "{what}: {message}");
            assert!(message.contains(IMPORT_TOKEN), "{what}: {message}");
            assert!(
                message.contains(ENCRYPTED_KEY_MATERIAL),
                "{what}: {message}"
            );
            assert_no_bytes(&error, &material, what);
            assert_no_bytes(&error, &wrapped, what);
        }
    }

    #[test]
    fn errors_name_the_entries_expected_never_the_secrets_own() {
        // Entry names are the Secret owner's business; a condition or an event is read by
        // whoever may read the Key.
        let own = [
            "payments-admin-password",
            "db.prod.example.com",
            "Keymaterial",
        ];
        let material = random(32);
        let token = parameters().import_token.as_bytes();
        let wrapped = wrap(&material);
        let with_own = |entries: &[(&str, &[u8])]| {
            let mut all: Vec<(&str, &[u8])> = own.iter().map(|o| (*o, &b"x"[..])).collect();
            all.extend_from_slice(entries);
            data(&all)
        };
        let secrets = [
            with_own(&[]),
            with_own(&[
                (KEY_MATERIAL, &material),
                (ENCRYPTED_KEY_MATERIAL, &wrapped),
            ]),
            with_own(&[(ENCRYPTED_KEY_MATERIAL, &wrapped)]),
            with_own(&[(KEY_MATERIAL, &material[..16])]),
            with_own(&[(ENCRYPTED_KEY_MATERIAL, &wrapped), (IMPORT_TOKEN, b"other")]),
            with_own(&[
                (ENCRYPTED_KEY_MATERIAL, &wrapped[1..]),
                (IMPORT_TOKEN, token),
            ]),
        ];
        for secret in &secrets {
            let error = unwrap_an_hour_in(secret, KeySpec::AliyunAes256).unwrap_err();
            let message = error.to_string();
            for name in own {
                assert!(!message.contains(name), "{name} in {message}");
            }
        }
    }

    #[test]
    fn asymmetric_specs_take_no_imported_material() {
        for spec in [
            KeySpec::Rsa2048,
            KeySpec::EcP256,
            KeySpec::EcP256K,
            KeySpec::EcSm2,
        ] {
            let error = unwrap_an_hour_in(&data(&[(KEY_MATERIAL, &random(32))]), spec).unwrap_err();
            assert!(error.code == Code::InvalidParameter, "{spec}: {error}");
            assert!(error.to_string().contains(spec.as_str()), "{error}");
        }
    }

    #[test]
    fn fingerprint_is_sha256_hex() {
        // FIPS 180-2 test vector.
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let material = random(32);
        assert_eq!(fingerprint(&material), fingerprint(&material.clone()));
        assert_ne!(fingerprint(&material), fingerprint(&random(32)));
        assert!(!fingerprint(&material).contains(&hex(&material)));
    }
}
