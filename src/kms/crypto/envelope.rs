//! Encrypt and Decrypt with symmetric keys (and the CiphertextBlob of GenerateDataKey): the
//! versioned CiphertextBlob format.
//!
//! A CiphertextBlob names the key and the key version that made it, so Decrypt needs no KeyId
//! and data encrypted before a rotation still decrypts with the version that encrypted it:
//! [`peek`] reads which version to load (before any material is touched), [`decrypt`] checks
//! and opens the blob with that version's key.
//!
//! # Format, version 1
//!
//! The API base64-encodes these bytes. All lengths are in bytes.
//!
//! ```text
//! offset      size  field
//! 0           1     magic 0x4B ('K'): a keyward CiphertextBlob
//! 1           1     format version: 0x01
//! 2           1     cipher: 0x01 AES-256-GCM (Aliyun_AES_256), 0x02 SM4-GCM (Aliyun_SM4)
//! 3           1     n, the length of the KeyId (1..=255)
//! 4           n     KeyId, UTF-8
//! 4+n         1     m, the length of the KeyVersionId (1..=255)
//! 5+n         m     KeyVersionId, UTF-8
//! 5+n+m       12    IV (GCM nonce), fresh from the OS CSPRNG for every encryption
//! 17+n+m      p     ciphertext, as long as the plaintext (0..=6144)
//! 17+n+m+p    16    GCM tag
//! ```
//!
//! The **header** is bytes `0 .. 5+n+m` (magic to KeyVersionId). The GCM additional
//! authenticated data is `header || EncryptionContext::canonical_bytes()`: changing any header
//! byte (pointing the blob at another key version, or claiming another cipher) or decrypting
//! with another context fails the tag check like any tampering. The IV is authenticated by GCM
//! itself. The ciphertext and tag are standard GCM output: OpenSSL's `aes-256-gcm` decrypts
//! them given the key, the IV and this AAD (`tests/crypto_openssl.rs` checks it).
//!
//! With the 36-character UUIDs keyward uses as KeyId and KeyVersionId, a blob is the plaintext
//! plus 105 bytes.
//!
//! # Refusals
//!
//! * A blob that is not in this format (too short, another magic, an unknown version or
//!   cipher, lengths that do not add up): [`peek`] refuses it with `InvalidParameter`, saying
//!   what is wrong with the structure. That says nothing about any key or plaintext.
//! * A blob that parses but does not open (its tag does not verify): another EncryptionContext,
//!   any tampered byte, or another key are **one** refusal, `InvalidParameter` with the message
//!   [`CANNOT_DECRYPT`], so that a caller learns nothing about which one it was. Alibaba Cloud
//!   KMS documents no `InvalidCiphertext` code (that is AWS's); `InvalidParameter` is the
//!   gateway's code for "Specified parameter ... is not valid" (HTTP 400), which is what a
//!   CiphertextBlob that cannot be decrypted is, and SDKs treat it as a client error that is not
//!   retried. No new [`Code`] is needed.
//! * Plaintexts longer than [`MAX_PLAINTEXT_BYTES`] (6 KB): `InvalidParameter` naming
//!   GenerateDataKey (envelope encryption) as the way to encrypt more.

use zeroize::Zeroizing;

use super::context::EncryptionContext;
use super::symmetric::{Aead, Cipher, IV_LEN, SoftwareKey, TAG_LEN, fill_random};
use crate::api::KeySpec;
use crate::kms::error::{Code, Rejection, quote};
use crate::kms::material::SecretBytes;

/// The most plaintext a symmetric key encrypts in one Encrypt call (the seed's 6 KB).
pub const MAX_PLAINTEXT_BYTES: usize = 6144;

/// First byte of every blob.
const MAGIC: u8 = b'K';
/// The format this module writes.
const FORMAT_V1: u8 = 1;
/// Longest KeyId or KeyVersionId the format holds.
const MAX_ID_BYTES: usize = u8::MAX as usize;

/// The message of every blob that parses but does not open.
pub const CANNOT_DECRYPT: &str = "CiphertextBlob cannot be decrypted: it was not made by this \
     key version, it was changed, or the EncryptionContext differs from the one given to \
     Encrypt";

/// Which key version made a blob, read by [`peek`] before any material is loaded. Not yet
/// authenticated: [`decrypt`] is what proves the blob came from that version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobHeader {
    pub key_id: String,
    pub key_version_id: String,
}

/// A parsed blob: the header fields and where the parts are.
struct Parsed<'a> {
    cipher: Cipher,
    key_id: &'a str,
    key_version_id: &'a str,
    /// Bytes `0 .. 5+n+m`, authenticated as the start of the AAD.
    header: &'a [u8],
    iv: [u8; IV_LEN],
    ciphertext: &'a [u8],
    tag: [u8; TAG_LEN],
}

fn malformed(what: impl std::fmt::Display) -> Rejection {
    Rejection::new(
        Code::InvalidParameter,
        format!("CiphertextBlob is not a ciphertext of this KMS: {what}"),
    )
}

/// Reads a blob front to back, refusing it when it ends early.
struct Reader<'a> {
    blob: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], Rejection> {
        let part = self
            .blob
            .get(self.at..self.at + len)
            .ok_or_else(|| malformed(format!("it ends before its {what}")))?;
        self.at += len;
        Ok(part)
    }

    /// A length byte and that many bytes of UTF-8.
    fn id(&mut self, what: &str) -> Result<&'a str, Rejection> {
        let len = usize::from(self.take(1, what)?[0]);
        if len == 0 {
            return Err(malformed(format!("its {what} is empty")));
        }
        std::str::from_utf8(self.take(len, what)?)
            .map_err(|_| malformed(format!("its {what} is not UTF-8")))
    }
}

fn parse(blob: &[u8]) -> Result<Parsed<'_>, Rejection> {
    let mut reader = Reader { blob, at: 0 };
    let &[magic, version, cipher] = reader.take(3, "header")? else {
        unreachable!("take(3) returns 3 bytes")
    };
    if magic != MAGIC {
        return Err(malformed("it does not start with this KMS's marker"));
    }
    if version != FORMAT_V1 {
        return Err(malformed(format!(
            "format version {version} is not supported (this KMS reads version {FORMAT_V1})"
        )));
    }
    let cipher =
        Cipher::from_id(cipher).ok_or_else(|| malformed(format!("cipher {cipher} is unknown")))?;
    let key_id = reader.id("KeyId")?;
    let key_version_id = reader.id("KeyVersionId")?;
    let header = &blob[..reader.at];
    let iv: [u8; IV_LEN] = reader.take(IV_LEN, "IV")?.try_into().expect("IV_LEN bytes");
    let sealed = &blob[reader.at..];
    if sealed.len() < TAG_LEN {
        return Err(malformed("it ends before its authentication tag"));
    }
    if sealed.len() > MAX_PLAINTEXT_BYTES + TAG_LEN {
        return Err(malformed(format!(
            "it holds {} bytes of ciphertext, more than the {MAX_PLAINTEXT_BYTES} a symmetric \
             key encrypts",
            sealed.len() - TAG_LEN
        )));
    }
    let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    Ok(Parsed {
        cipher,
        key_id,
        key_version_id,
        header,
        iv,
        ciphertext,
        tag: tag.try_into().expect("TAG_LEN bytes"),
    })
}

/// Which key and key version made `blob`: what Decrypt loads before calling [`decrypt`].
/// Refuses, with `InvalidParameter` saying what is wrong, a blob that is not in this module's
/// format.
pub fn peek(blob: &[u8]) -> Result<BlobHeader, Rejection> {
    let parsed = parse(blob)?;
    Ok(BlobHeader {
        key_id: parsed.key_id.to_owned(),
        key_version_id: parsed.key_version_id.to_owned(),
    })
}

/// The header of a new blob (bytes `0 .. 5+n+m`).
fn header(cipher: Cipher, key_id: &str, key_version_id: &str) -> Result<Vec<u8>, Rejection> {
    for (name, id) in [("KeyId", key_id), ("KeyVersionId", key_version_id)] {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(Rejection::new(
                Code::InvalidParameter,
                format!(
                    "{name} {} cannot be written into a CiphertextBlob: it must be 1 to \
                     {MAX_ID_BYTES} bytes",
                    quote(id)
                ),
            ));
        }
    }
    let mut header = Vec::with_capacity(5 + key_id.len() + key_version_id.len());
    header.extend_from_slice(&[MAGIC, FORMAT_V1, cipher.id()]);
    for id in [key_id, key_version_id] {
        header.push(u8::try_from(id.len()).expect("checked above"));
        header.extend_from_slice(id.as_bytes());
    }
    Ok(header)
}

/// `header || canonical context`: the GCM additional authenticated data.
fn aad(header: &[u8], context: &EncryptionContext) -> Vec<u8> {
    [header, &context.canonical_bytes()].concat()
}

/// Encrypts `plaintext` (at most [`MAX_PLAINTEXT_BYTES`]) with the symmetric key `key` of
/// `spec`, which is version `key_version_id` of key `key_id`, binding `context`. Returns the
/// CiphertextBlob (see the module doc for its format).
///
/// Refusals: an asymmetric `spec` (`UnsupportedOperation`), a plaintext over 6 KB
/// (`InvalidParameter`, pointing to GenerateDataKey), key material of the wrong length
/// (`MaterialStoreInvalid`), ids that do not fit the format (`InvalidParameter`).
pub fn encrypt(
    spec: KeySpec,
    key: &SecretBytes,
    key_id: &str,
    key_version_id: &str,
    plaintext: &[u8],
    context: &EncryptionContext,
) -> Result<Vec<u8>, Rejection> {
    seal(
        &SoftwareKey::checked(spec, key)?,
        key_id,
        key_version_id,
        plaintext,
        context,
    )
}

/// [`encrypt`] with any [`Aead`]: key bytes held here, or a key in an HSM.
pub fn seal(
    key: &impl Aead,
    key_id: &str,
    key_version_id: &str,
    plaintext: &[u8],
    context: &EncryptionContext,
) -> Result<Vec<u8>, Rejection> {
    let cipher = key.cipher();
    if plaintext.len() > MAX_PLAINTEXT_BYTES {
        return Err(Rejection::new(
            Code::InvalidParameter,
            format!(
                "Plaintext is {} bytes; a symmetric key encrypts at most {MAX_PLAINTEXT_BYTES} \
                 bytes (6 KB). To protect more data, use envelope encryption: call \
                 GenerateDataKey, encrypt the data locally with the returned data key, and keep \
                 the data key's CiphertextBlob with it",
                plaintext.len()
            ),
        ));
    }
    let header = header(cipher, key_id, key_version_id)?;
    let aad = aad(&header, context);
    let mut iv = [0u8; IV_LEN];
    fill_random(&mut iv);

    // Laid out whole before encrypting in place; the capacity is exact, so the plaintext is
    // never copied by a reallocation.
    let mut blob = Vec::with_capacity(header.len() + IV_LEN + plaintext.len() + TAG_LEN);
    blob.extend_from_slice(&header);
    blob.extend_from_slice(&iv);
    let start = blob.len();
    blob.extend_from_slice(plaintext);
    match key.seal(&iv, &aad, &mut blob[start..]) {
        Ok(tag) => {
            blob.extend_from_slice(&tag);
            Ok(blob)
        }
        Err(_) => {
            // Never return or leave the plaintext.
            zeroize::Zeroize::zeroize(&mut blob);
            Err(Rejection::new(
                Code::MaterialStoreInvalid,
                format!(
                    "the {} key material of this key version cannot encrypt",
                    cipher.spec()
                ),
            ))
        }
    }
}

/// Decrypts a CiphertextBlob made by [`encrypt`] with version `key` of a `spec` key, checking
/// `context`. The caller loads `key` from the version that [`peek`] named.
///
/// Every blob that does not open (another key, any changed byte, another context, a cipher
/// that is not `spec`'s) is the same refusal: `InvalidParameter` with [`CANNOT_DECRYPT`].
pub fn decrypt(
    spec: KeySpec,
    key: &SecretBytes,
    blob: &[u8],
    context: &EncryptionContext,
) -> Result<SecretBytes, Rejection> {
    open(&SoftwareKey::checked(spec, key)?, blob, context)
}

/// [`decrypt`] with any [`Aead`]: key bytes held here, or a key in an HSM.
pub fn open(
    key: &impl Aead,
    blob: &[u8],
    context: &EncryptionContext,
) -> Result<SecretBytes, Rejection> {
    let parsed = parse(blob)?;
    let cannot = || Rejection::new(Code::InvalidParameter, CANNOT_DECRYPT);
    if parsed.cipher != key.cipher() {
        return Err(cannot());
    }
    let aad = aad(parsed.header, context);
    let mut plaintext = Zeroizing::new(parsed.ciphertext.to_vec());
    key.open(&parsed.iv, &aad, &mut plaintext, &parsed.tag)
        .map_err(|_| cannot())?;
    Ok(SecretBytes::new(std::mem::take(&mut *plaintext)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::material::{Material, generate};

    const KEY_ID: &str = "3f1c2a4e-8d7b-4e0a-9c1d-2b3a4c5d6e7f";
    const VERSION_A: &str = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    const VERSION_B: &str = "0e9d8c7b-6a5f-4e3d-9c2b-1a0f9e8d7c6b";
    const SPECS: [KeySpec; 2] = [KeySpec::AliyunAes256, KeySpec::AliyunSm4];

    fn key(spec: KeySpec) -> SecretBytes {
        match generate(spec).unwrap() {
            Material::Symmetric { key } => key,
            _ => unreachable!(),
        }
    }

    fn context() -> EncryptionContext {
        EncryptionContext::from_param(Some(r#"{"app":"billing","env":"prod"}"#)).unwrap()
    }

    fn assert_cannot_decrypt(result: Result<SecretBytes, Rejection>, what: &str) {
        let rejection = result.expect_err(what);
        assert_eq!(
            rejection,
            Rejection::new(Code::InvalidParameter, CANNOT_DECRYPT),
            "{what}"
        );
    }

    /// Offsets of the parts of a blob made with KEY_ID and a 36-byte version id.
    const HEADER_LEN: usize = 5 + 36 + 36;
    const IV_AT: usize = HEADER_LEN;
    const CIPHERTEXT_AT: usize = HEADER_LEN + IV_LEN;

    #[test]
    fn round_trip_for_every_symmetric_spec_and_size() {
        for spec in SPECS {
            let key = key(spec);
            for len in [0, 1, 15, 16, 17, 1024, MAX_PLAINTEXT_BYTES] {
                let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let blob = encrypt(spec, &key, KEY_ID, VERSION_A, &plaintext, &context()).unwrap();
                assert_eq!(blob.len(), CIPHERTEXT_AT + len + TAG_LEN, "{spec}");
                // The plaintext does not appear in the blob (checked where a chance match of
                // random bytes is negligible: a 1-byte plaintext is in most 100-byte blobs).
                if len >= 16 {
                    assert!(!blob.windows(len).any(|w| w == plaintext), "{spec}");
                }
                let opened = decrypt(spec, &key, &blob, &context()).unwrap();
                assert_eq!(opened.expose(), plaintext, "{spec} {len}");
            }
        }
    }

    #[test]
    fn blob_layout_is_the_documented_one() {
        for (spec, cipher_byte) in [(KeySpec::AliyunAes256, 1), (KeySpec::AliyunSm4, 2)] {
            let blob = encrypt(spec, &key(spec), KEY_ID, VERSION_A, b"x", &context()).unwrap();
            assert_eq!(&blob[..4], &[b'K', 1, cipher_byte, 36]);
            assert_eq!(&blob[4..40], KEY_ID.as_bytes());
            assert_eq!(blob[40], 36);
            assert_eq!(&blob[41..77], VERSION_A.as_bytes());
            assert_eq!(blob.len(), 77 + 12 + 1 + 16);
        }
    }

    #[test]
    fn two_encryptions_of_the_same_plaintext_use_different_ivs() {
        for spec in SPECS {
            let key = key(spec);
            let a = encrypt(spec, &key, KEY_ID, VERSION_A, b"same", &context()).unwrap();
            let b = encrypt(spec, &key, KEY_ID, VERSION_A, b"same", &context()).unwrap();
            assert_ne!(a[IV_AT..CIPHERTEXT_AT], b[IV_AT..CIPHERTEXT_AT], "{spec}");
            assert_ne!(a, b, "{spec}");
        }
    }

    #[test]
    fn peek_names_the_key_and_version_before_any_material() {
        for spec in SPECS {
            let blob = encrypt(spec, &key(spec), KEY_ID, VERSION_B, b"data", &context()).unwrap();
            assert_eq!(
                peek(&blob).unwrap(),
                BlobHeader {
                    key_id: KEY_ID.into(),
                    key_version_id: VERSION_B.into()
                }
            );
        }
    }

    #[test]
    fn blob_of_version_a_decrypts_with_version_a_after_rotation_to_b() {
        for spec in SPECS {
            let version_a = key(spec);
            let blob_a =
                encrypt(spec, &version_a, KEY_ID, VERSION_A, b"before", &context()).unwrap();
            // Rotation: version B is now the primary version and encrypts new data.
            let version_b = key(spec);
            let blob_b =
                encrypt(spec, &version_b, KEY_ID, VERSION_B, b"after", &context()).unwrap();
            let versions = [(VERSION_A, &version_a), (VERSION_B, &version_b)];
            let load = |blob: &[u8]| {
                let header = peek(blob).unwrap();
                assert_eq!(header.key_id, KEY_ID);
                versions
                    .iter()
                    .find(|(id, _)| *id == header.key_version_id)
                    .map(|(_, key)| *key)
                    .unwrap()
            };
            let opened = decrypt(spec, load(&blob_a), &blob_a, &context()).unwrap();
            assert_eq!(opened.expose(), b"before");
            let opened = decrypt(spec, load(&blob_b), &blob_b, &context()).unwrap();
            assert_eq!(opened.expose(), b"after");
            // And the other version's key does not open it.
            assert_cannot_decrypt(
                decrypt(spec, &version_b, &blob_a, &context()),
                "version B's key on A's blob",
            );
        }
    }

    #[test]
    fn wrong_context_is_refused_with_the_one_error() {
        for spec in SPECS {
            let key = key(spec);
            let blob = encrypt(spec, &key, KEY_ID, VERSION_A, b"data", &context()).unwrap();
            for other in [
                EncryptionContext::empty(),
                EncryptionContext::from_pairs([("app", "billing")]),
                EncryptionContext::from_pairs([("app", "billing"), ("env", "dev")]),
                EncryptionContext::from_pairs([("app", "billing"), ("env", "prod"), ("x", "")]),
            ] {
                assert_cannot_decrypt(decrypt(spec, &key, &blob, &other), "other context");
            }
            // The same pairs in another spelling decrypt.
            let respelled =
                EncryptionContext::from_param(Some(r#"{ "env" : "prod", "app" : "billing" }"#))
                    .unwrap();
            assert!(decrypt(spec, &key, &blob, &respelled).is_ok());
            // And a blob made without context needs none.
            let bare = encrypt(
                spec,
                &key,
                KEY_ID,
                VERSION_A,
                b"d",
                &EncryptionContext::empty(),
            )
            .unwrap();
            assert!(decrypt(spec, &key, &bare, &EncryptionContext::empty()).is_ok());
            assert_cannot_decrypt(decrypt(spec, &key, &bare, &context()), "added context");
        }
    }

    #[test]
    fn wrong_key_is_refused_with_the_one_error() {
        for spec in SPECS {
            let blob = encrypt(spec, &key(spec), KEY_ID, VERSION_A, b"data", &context()).unwrap();
            assert_cannot_decrypt(decrypt(spec, &key(spec), &blob, &context()), "other key");
        }
    }

    #[test]
    fn a_blob_of_the_other_cipher_is_refused_with_the_one_error() {
        let aes_blob = encrypt(
            KeySpec::AliyunAes256,
            &key(KeySpec::AliyunAes256),
            KEY_ID,
            VERSION_A,
            b"data",
            &context(),
        )
        .unwrap();
        assert_cannot_decrypt(
            decrypt(
                KeySpec::AliyunSm4,
                &key(KeySpec::AliyunSm4),
                &aes_blob,
                &context(),
            ),
            "AES blob, SM4 key",
        );
    }

    #[test]
    fn every_flipped_bit_of_header_iv_ciphertext_and_tag_is_refused() {
        for spec in SPECS {
            let key = key(spec);
            let blob = encrypt(
                spec,
                &key,
                KEY_ID,
                VERSION_A,
                b"sixteen bytes!!!",
                &context(),
            )
            .unwrap();
            for at in 0..blob.len() {
                for bit in [0x01, 0x80] {
                    let mut tampered = blob.clone();
                    tampered[at] ^= bit;
                    match decrypt(spec, &key, &tampered, &context()) {
                        // A header byte that breaks the structure is refused by the parser...
                        Err(r) if at < HEADER_LEN && r.detail != CANNOT_DECRYPT => {
                            assert_eq!(r.code, Code::InvalidParameter, "{spec} byte {at}")
                        }
                        // ...everything else by the tag.
                        result => assert_cannot_decrypt(result, &format!("{spec} byte {at}")),
                    }
                }
            }
        }
    }

    #[test]
    fn a_header_pointing_at_another_version_is_refused() {
        for spec in SPECS {
            let key = key(spec);
            let blob = encrypt(spec, &key, KEY_ID, VERSION_A, b"data", &context()).unwrap();
            // Rewrite the version id in place (same length): the blob now claims version B.
            let mut forged = blob.clone();
            forged[41..77].copy_from_slice(VERSION_B.as_bytes());
            assert_eq!(peek(&forged).unwrap().key_version_id, VERSION_B);
            assert_cannot_decrypt(decrypt(spec, &key, &forged, &context()), "forged version");
        }
    }

    #[test]
    fn truncated_or_extended_blobs_are_refused() {
        for spec in SPECS {
            let key = key(spec);
            let blob = encrypt(spec, &key, KEY_ID, VERSION_A, b"data", &context()).unwrap();
            for len in 0..blob.len() {
                let result = decrypt(spec, &key, &blob[..len], &context());
                assert_eq!(result.unwrap_err().code, Code::InvalidParameter, "{len}");
            }
            let mut longer = blob.clone();
            longer.push(0);
            assert_cannot_decrypt(decrypt(spec, &key, &longer, &context()), "extended");
        }
    }

    #[test]
    fn peek_refuses_what_is_not_a_blob_saying_why() {
        let cases: [(&[u8], &str); 6] = [
            (b"", "ends before its header"),
            (b"hello world, not a blob at all", "marker"),
            (&[b'K', 2, 1, 1, b'k', 1, b'v'], "format version 2"),
            (&[b'K', 1, 9, 1, b'k', 1, b'v'], "cipher 9"),
            (&[b'K', 1, 1, 0, 1, b'v'], "KeyId is empty"),
            (&[b'K', 1, 1, 1, b'k', 1, b'v', 0, 0], "ends before its IV"),
        ];
        for (blob, expected) in cases {
            let rejection = peek(blob).unwrap_err();
            assert_eq!(rejection.code, Code::InvalidParameter);
            assert!(
                rejection
                    .detail
                    .starts_with("CiphertextBlob is not a ciphertext of this KMS")
                    && rejection.detail.contains(expected),
                "{expected}: {rejection}"
            );
        }
        let no_tag = [&[b'K', 1, 1, 1, b'k', 1, b'v'][..], &[0; IV_LEN + 15]].concat();
        assert!(
            peek(&no_tag)
                .unwrap_err()
                .detail
                .contains("authentication tag")
        );
        let too_long = [
            &[b'K', 1, 1, 1, b'k', 1, b'v'][..],
            &vec![0; IV_LEN + MAX_PLAINTEXT_BYTES + TAG_LEN + 1],
        ]
        .concat();
        assert!(peek(&too_long).unwrap_err().detail.contains("6145 bytes"));
    }

    #[test]
    fn plaintext_of_6144_bytes_is_encrypted_and_6145_is_refused_naming_generate_data_key() {
        for spec in SPECS {
            let key = key(spec);
            assert!(encrypt(spec, &key, KEY_ID, VERSION_A, &[7; 6144], &context()).is_ok());
            let rejection =
                encrypt(spec, &key, KEY_ID, VERSION_A, &[7; 6145], &context()).unwrap_err();
            assert_eq!(rejection.code, Code::InvalidParameter);
            assert!(rejection.detail.contains("6145 bytes"), "{rejection}");
            assert!(rejection.detail.contains("GenerateDataKey"), "{rejection}");
        }
    }

    #[test]
    fn asymmetric_specs_and_wrong_key_lengths_are_refused() {
        let key32 = key(KeySpec::AliyunAes256);
        for spec in [
            KeySpec::Rsa2048,
            KeySpec::EcP256,
            KeySpec::EcP256K,
            KeySpec::EcSm2,
        ] {
            let rejection = encrypt(spec, &key32, KEY_ID, VERSION_A, b"x", &context()).unwrap_err();
            assert_eq!(rejection.code, Code::UnsupportedOperation, "{spec}");
        }
        let rejection = encrypt(
            KeySpec::AliyunSm4,
            &key32,
            KEY_ID,
            VERSION_A,
            b"x",
            &context(),
        )
        .unwrap_err();
        assert_eq!(rejection.code, Code::MaterialStoreInvalid);
        assert!(rejection.detail.contains("32 bytes"), "{rejection}");
    }

    #[test]
    fn ids_that_do_not_fit_the_format_are_refused() {
        let key = key(KeySpec::AliyunAes256);
        for (key_id, version) in [
            ("", VERSION_A),
            (KEY_ID, ""),
            (&*"k".repeat(256), VERSION_A),
        ] {
            let rejection = encrypt(
                KeySpec::AliyunAes256,
                &key,
                key_id,
                version,
                b"x",
                &context(),
            )
            .unwrap_err();
            assert_eq!(rejection.code, Code::InvalidParameter);
        }
        let long = "k".repeat(255);
        let blob = encrypt(KeySpec::AliyunAes256, &key, &long, &long, b"x", &context()).unwrap();
        assert_eq!(peek(&blob).unwrap().key_id, long);
    }

    #[test]
    fn refusals_and_debug_show_no_key_or_plaintext_bytes() {
        let key = key(KeySpec::AliyunAes256);
        let secret = b"the secret plaintext";
        let blob = encrypt(
            KeySpec::AliyunAes256,
            &key,
            KEY_ID,
            VERSION_A,
            secret,
            &context(),
        )
        .unwrap();
        let opened = decrypt(KeySpec::AliyunAes256, &key, &blob, &context()).unwrap();
        let other = decrypt(
            KeySpec::AliyunAes256,
            &key,
            &blob,
            &EncryptionContext::empty(),
        );
        let text = format!("{opened:?} {other:?} {key:?}");
        assert!(!text.contains("secret plaintext"), "{text}");
        assert!(!text.contains(&format!("{:?}", key.expose())), "{text}");
        assert!(!text.contains(&format!("{:?}", &secret[..])), "{text}");
    }
}
