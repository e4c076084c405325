//! What keyward does with a token: generate a version's objects (or find those a crashed
//! attempt left), read a public key, and run the KMS operations inside the module.
//!
//! Arguments are checked by the caller (the KMS API checks algorithm, usage and lengths the
//! same way for both protection levels); these functions only translate to PKCS#11.

use std::cell::RefCell;

use cryptoki::error::{Error as Pkcs11Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use p256::elliptic_curve::pkcs8::{EncodePublicKey, LineEnding};

use super::object::{VersionObjects, key_pair_templates, secret_key_template};
use super::{Hsm, HsmError, failed};
use crate::api::{KeySpec, KeyUsage};
use crate::kms::crypto::Algorithm;
use crate::kms::crypto::symmetric::{Aead, Cipher, Failed, IV_LEN, TAG_LEN};
use crate::kms::material::SecretBytes;

/// DER of SHA-256's DigestInfo up to the digest (RFC 8017 §9.2 note 1): what RSASSA-PKCS1-v1_5
/// signs before a SHA-256 digest.
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// What generating a version gave: its public key (asymmetric specs), and whether the objects
/// were already on the token (left by an attempt that crashed before recording them).
#[derive(Debug)]
pub struct Generated {
    pub public_pem: Option<String>,
    pub adopted: bool,
}

/// A session of the process's token, used by this thread only.
pub struct Token<'a> {
    hsm: &'a Hsm,
    session: &'a Session,
}

impl<'a> Token<'a> {
    pub(super) fn new(hsm: &'a Hsm, session: &'a Session) -> Self {
        Token { hsm, session }
    }

    /// The objects of `objects`'s version, generating them unless a previous attempt did:
    /// generating twice for one version would leave two keys under one name.
    pub fn generate(
        &self,
        spec: KeySpec,
        usage: KeyUsage,
        objects: &VersionObjects,
    ) -> Result<Generated, HsmError> {
        let capabilities = self.hsm.capabilities();
        if let Some(why) = capabilities.why_not(spec) {
            return Err(HsmError::Unsupported {
                module: self.hsm.module().to_string(),
                spec,
                why: why.to_string(),
            });
        }
        let _one_at_a_time = self.hsm.0.generating.lock().expect("generation lock");
        if spec.is_symmetric() {
            if self.find(objects, ObjectClass::SECRET_KEY)?.is_some() {
                return Ok(Generated {
                    public_pem: None,
                    adopted: true,
                });
            }
            let template = secret_key_template(objects, 32);
            self.session
                .generate_key(&Mechanism::AesKeyGen, &template)
                .map_err(failed("C_GenerateKey"))?;
            return Ok(Generated {
                public_pem: None,
                adopted: false,
            });
        }
        let private = self.find(objects, ObjectClass::PRIVATE_KEY)?;
        let public = self.find(objects, ObjectClass::PUBLIC_KEY)?;
        let adopted = match (private, public) {
            (Some(_), Some(_)) => true,
            (Some(_), None) => return Err(HsmError::HalfPair(objects.clone())),
            (None, stray) => {
                // A public key alone is no key: an interrupted destruction. It holds nothing
                // secret; removed so that the new pair is the only one under this id.
                if let Some(stray) = stray {
                    self.session
                        .destroy_object(stray)
                        .map_err(failed("C_DestroyObject"))?;
                    self.hsm.forget_handles(&objects.id());
                }
                let (mechanism, public, private) = key_pair_templates(objects, spec, usage)
                    .expect("capabilities exclude specs without a template");
                self.session
                    .generate_key_pair(&mechanism, &public, &private)
                    .map_err(failed("C_GenerateKeyPair"))?;
                false
            }
        };
        Ok(Generated {
            public_pem: Some(self.public_pem(spec, objects)?),
            adopted,
        })
    }

    /// The version's public key as SPKI PEM, read from its public key object.
    pub fn public_pem(&self, spec: KeySpec, objects: &VersionObjects) -> Result<String, HsmError> {
        let public = self.require(objects, ObjectClass::PUBLIC_KEY)?;
        let pem = match spec {
            KeySpec::Rsa2048 => {
                let attributes = self
                    .session
                    .get_attributes(
                        public,
                        &[AttributeType::Modulus, AttributeType::PublicExponent],
                    )
                    .map_err(failed("C_GetAttributeValue"))?;
                let (mut n, mut e) = (None, None);
                for attribute in attributes {
                    match attribute {
                        Attribute::Modulus(bytes) => n = Some(bytes),
                        Attribute::PublicExponent(bytes) => e = Some(bytes),
                        _ => {}
                    }
                }
                let (Some(n), Some(e)) = (n, e) else {
                    return Err(malformed("reading the RSA public key"));
                };
                let key = rsa::RsaPublicKey::new(
                    rsa::BoxedUint::from_be_slice_vartime(&n),
                    rsa::BoxedUint::from_be_slice_vartime(&e),
                )
                .map_err(|_| malformed("reading the RSA public key"))?;
                key.to_public_key_pem(LineEnding::LF)
                    .map_err(|_| malformed("encoding the RSA public key"))?
            }
            KeySpec::EcP256 | KeySpec::EcP256K => {
                let point = self.ec_point(public)?;
                let encoded = match spec {
                    KeySpec::EcP256 => p256::PublicKey::from_sec1_bytes(&point)
                        .ok()
                        .and_then(|k| k.to_public_key_pem(LineEnding::LF).ok()),
                    _ => k256::PublicKey::from_sec1_bytes(&point)
                        .ok()
                        .and_then(|k| k.to_public_key_pem(LineEnding::LF).ok()),
                };
                encoded.ok_or_else(|| malformed("reading the EC public key"))?
            }
            KeySpec::AliyunAes256 | KeySpec::AliyunSm4 | KeySpec::EcSm2 => {
                return Err(HsmError::ObjectMissing(objects.clone()));
            }
        };
        Ok(pem)
    }

    /// `CKA_EC_POINT` as the SEC1 point: tokens give it DER-wrapped in an OCTET STRING (as
    /// PKCS#11 says), some raw.
    fn ec_point(&self, public: ObjectHandle) -> Result<Vec<u8>, HsmError> {
        let attributes = self
            .session
            .get_attributes(public, &[AttributeType::EcPoint])
            .map_err(failed("C_GetAttributeValue"))?;
        let Some(Attribute::EcPoint(point)) = attributes.into_iter().next() else {
            return Err(malformed("reading CKA_EC_POINT"));
        };
        Ok(match point.as_slice() {
            [0x04, len, rest @ ..] if usize::from(*len) == rest.len() && rest.len() == 65 => {
                rest.to_vec()
            }
            _ => point,
        })
    }

    /// AsymmetricSign of a 32-byte digest: DER `SEQUENCE { r, s }` for ECDSA, the raw
    /// signature for RSA, as the software keys give.
    pub fn sign(
        &self,
        spec: KeySpec,
        objects: &VersionObjects,
        algorithm: Algorithm,
        digest: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let (mechanism, input) = signing(algorithm, digest);
        let raw = self.with_key(objects, ObjectClass::PRIVATE_KEY, |key| {
            self.session.sign(&mechanism, key, &input)
        })?;
        let der = match spec {
            KeySpec::EcP256 => p256::ecdsa::Signature::from_slice(&raw)
                .ok()
                .map(|s| s.to_der().as_bytes().to_vec()),
            KeySpec::EcP256K => k256::ecdsa::Signature::from_slice(&raw)
                .ok()
                .map(|s| s.to_der().as_bytes().to_vec()),
            _ => Some(raw),
        };
        der.ok_or_else(|| malformed("reading the ECDSA signature"))
    }

    /// AsymmetricVerify: whether `signature` (in [`Token::sign`]'s encoding) verifies; a
    /// malformed signature is `false`.
    pub fn verify(
        &self,
        spec: KeySpec,
        objects: &VersionObjects,
        algorithm: Algorithm,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool, HsmError> {
        let raw = match spec {
            KeySpec::EcP256 => p256::ecdsa::Signature::from_der(signature)
                .ok()
                .map(|s| s.normalize_s().to_bytes().to_vec()),
            KeySpec::EcP256K => k256::ecdsa::Signature::from_der(signature)
                .ok()
                .map(|s| s.normalize_s().to_bytes().to_vec()),
            _ => Some(signature.to_vec()),
        };
        let Some(raw) = raw else {
            return Ok(false);
        };
        let (mechanism, input) = signing(algorithm, digest);
        match self.with_key(objects, ObjectClass::PUBLIC_KEY, |key| {
            self.session.verify(&mechanism, key, &input, &raw)
        }) {
            Ok(()) => Ok(true),
            Err(HsmError::Module {
                source:
                    Pkcs11Error::Pkcs11(RvError::SignatureInvalid | RvError::SignatureLenRange, _),
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// AsymmetricEncrypt with RSAES-OAEP under the version's public key.
    pub fn encrypt(
        &self,
        objects: &VersionObjects,
        algorithm: Algorithm,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let mechanism = oaep(algorithm);
        self.with_key(objects, ObjectClass::PUBLIC_KEY, |key| {
            self.session.encrypt(&mechanism, key, plaintext)
        })
    }

    /// AsymmetricDecrypt with RSAES-OAEP; `None` when the ciphertext does not decrypt.
    pub fn decrypt(
        &self,
        objects: &VersionObjects,
        algorithm: Algorithm,
        ciphertext: &[u8],
    ) -> Result<Option<SecretBytes>, HsmError> {
        let mechanism = oaep(algorithm);
        match self.with_key(objects, ObjectClass::PRIVATE_KEY, |key| {
            self.session.decrypt(&mechanism, key, ciphertext)
        }) {
            Ok(plaintext) => Ok(Some(SecretBytes::new(plaintext))),
            Err(HsmError::Module { source, .. }) if does_not_decrypt(&source) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The version's AES key as the envelope's AEAD (Encrypt, Decrypt, GenerateDataKey).
    pub fn aead(
        &'a self,
        spec: KeySpec,
        objects: &VersionObjects,
    ) -> Result<TokenAead<'a>, HsmError> {
        let cipher = Cipher::for_spec(spec).ok_or_else(|| HsmError::Unsupported {
            module: self.hsm.module().to_string(),
            spec,
            why: "it is not a symmetric key spec".into(),
        })?;
        let key = self.require(objects, ObjectClass::SECRET_KEY)?;
        Ok(TokenAead {
            token: self,
            key,
            cipher,
            error: RefCell::new(None),
        })
    }

    /// Destroys every object of the version; how many there were. Destroying what is already
    /// gone is not an error: destruction is retried until its store is gone too.
    pub fn destroy(&self, objects: &VersionObjects) -> Result<usize, HsmError> {
        let found = self
            .session
            .find_objects(&[Attribute::Id(objects.id())])
            .map_err(failed("C_FindObjects"))?;
        // Private and secret keys first: a public key left behind holds nothing secret.
        let mut ordered = Vec::with_capacity(found.len());
        for handle in found {
            let class = self.class_of(handle)?;
            ordered.push((class == Some(ObjectClass::PUBLIC_KEY), handle));
        }
        ordered.sort_by_key(|(public, _)| *public);
        self.hsm.forget_handles(&objects.id());
        for (_, handle) in &ordered {
            match self.session.destroy_object(*handle) {
                Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::ObjectHandleInvalid, _)) => {}
                Err(e) => return Err(failed("C_DestroyObject")(e)),
            }
        }
        Ok(ordered.len())
    }

    /// Every keyward object on the token: the version its label names, and its class.
    pub fn list(&self) -> Result<Vec<(VersionObjects, ObjectClass)>, HsmError> {
        let handles = self
            .session
            .find_objects(&[])
            .map_err(failed("C_FindObjects"))?;
        let mut listed = Vec::new();
        for handle in handles {
            let attributes = self
                .session
                .get_attributes(handle, &[AttributeType::Label, AttributeType::Class])
                .map_err(failed("C_GetAttributeValue"))?;
            let (mut label, mut class) = (None, None);
            for attribute in attributes {
                match attribute {
                    Attribute::Label(bytes) => label = String::from_utf8(bytes).ok(),
                    Attribute::Class(c) => class = Some(c),
                    _ => {}
                }
            }
            if let (Some(objects), Some(class)) =
                (label.as_deref().and_then(VersionObjects::from_label), class)
            {
                listed.push((objects, class));
            }
        }
        Ok(listed)
    }

    fn class_of(&self, handle: ObjectHandle) -> Result<Option<ObjectClass>, HsmError> {
        let attributes = self
            .session
            .get_attributes(handle, &[AttributeType::Class])
            .map_err(failed("C_GetAttributeValue"))?;
        Ok(attributes.into_iter().find_map(|a| match a {
            Attribute::Class(class) => Some(class),
            _ => None,
        }))
    }

    /// The version's object of `class`, if the token has it (cached once found).
    fn find(
        &self,
        objects: &VersionObjects,
        class: ObjectClass,
    ) -> Result<Option<ObjectHandle>, HsmError> {
        let id = objects.id();
        if let Some(handle) = self.hsm.cached_handle(&id, class) {
            return Ok(Some(handle));
        }
        let found = self
            .session
            .find_objects(&[Attribute::Class(class), Attribute::Id(id.clone())])
            .map_err(failed("C_FindObjects"))?;
        let handle = found.first().copied();
        if let Some(handle) = handle {
            self.hsm.remember_handle(&id, class, handle);
        }
        Ok(handle)
    }

    fn require(
        &self,
        objects: &VersionObjects,
        class: ObjectClass,
    ) -> Result<ObjectHandle, HsmError> {
        self.find(objects, class)?
            .ok_or_else(|| HsmError::ObjectMissing(objects.clone()))
    }

    /// Runs `operation` with the version's key of `class`; a cached handle that went stale
    /// (the object was destroyed, by another replica say) is looked up again once.
    fn with_key<R>(
        &self,
        objects: &VersionObjects,
        class: ObjectClass,
        operation: impl Fn(ObjectHandle) -> Result<R, Pkcs11Error>,
    ) -> Result<R, HsmError> {
        let key = self.require(objects, class)?;
        match operation(key) {
            Err(Pkcs11Error::Pkcs11(
                RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid,
                _,
            )) => {
                self.hsm.forget_handles(&objects.id());
                let key = self.require(objects, class)?;
                operation(key).map_err(failed("the key operation"))
            }
            result => result.map_err(failed("the key operation")),
        }
    }
}

/// A value the module returned that keyward cannot read (a public key, a signature).
fn malformed(step: &'static str) -> HsmError {
    HsmError::Module {
        step,
        source: Pkcs11Error::InvalidValue,
    }
}

/// The mechanism and input of a signature algorithm over a 32-byte digest.
pub(super) fn signing(algorithm: Algorithm, digest: &[u8]) -> (Mechanism<'static>, Vec<u8>) {
    match algorithm {
        Algorithm::RsaPkcs1Sha256 => (Mechanism::RsaPkcs, [SHA256_DIGEST_INFO, digest].concat()),
        Algorithm::RsaPssSha256 => (
            Mechanism::RsaPkcsPss(PkcsPssParams {
                hash_alg: MechanismType::SHA256,
                mgf: PkcsMgfType::MGF1_SHA256,
                // The digest length, as the software keys and Alibaba's SDK examples use.
                s_len: 32.into(),
            }),
            digest.to_vec(),
        ),
        _ => (Mechanism::Ecdsa, digest.to_vec()),
    }
}

pub(super) fn oaep(algorithm: Algorithm) -> Mechanism<'static> {
    let (hash, mgf) = match algorithm {
        Algorithm::RsaesOaepSha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
        _ => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
    };
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty()))
}

/// The module's ways of saying "this ciphertext does not open": the caller's problem, not the
/// module's.
fn does_not_decrypt(error: &Pkcs11Error) -> bool {
    matches!(
        error,
        Pkcs11Error::Pkcs11(
            RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::DataInvalid
                | RvError::DataLenRange,
            _
        )
    )
}

/// A token's AES key as the envelope's AEAD: AES-256-GCM with the envelope's IV and AAD, run
/// by the module. A module failure (not a wrong tag) is kept, for the caller to report as the
/// HSM's rather than as a bad ciphertext.
pub struct TokenAead<'a> {
    token: &'a Token<'a>,
    key: ObjectHandle,
    cipher: Cipher,
    error: RefCell<Option<HsmError>>,
}

impl TokenAead<'_> {
    /// The module failure behind the last `Failed`, if it was one.
    pub fn module_error(self) -> Option<HsmError> {
        self.error.into_inner()
    }

    fn gcm<'p>(iv: &'p mut [u8; IV_LEN], aad: &'p [u8]) -> Result<Mechanism<'p>, Failed> {
        let params = GcmParams::new(iv, aad, ((TAG_LEN * 8) as u64).into()).map_err(|_| Failed)?;
        Ok(Mechanism::AesGcm(params))
    }

    fn keep(&self, step: &'static str, source: Pkcs11Error) -> Failed {
        *self.error.borrow_mut() = Some(HsmError::Module { step, source });
        Failed
    }
}

impl Aead for TokenAead<'_> {
    fn cipher(&self) -> Cipher {
        self.cipher
    }

    fn seal(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Failed> {
        let mut iv = *iv;
        let mechanism = Self::gcm(&mut iv, aad)?;
        let sealed = self
            .token
            .session
            .encrypt(&mechanism, self.key, in_out)
            .map_err(|e| self.keep("C_Encrypt (AES-GCM)", e))?;
        let (ciphertext, tag) = sealed.split_at_checked(in_out.len()).ok_or(Failed)?;
        in_out.copy_from_slice(ciphertext);
        tag.try_into().map_err(|_| Failed)
    }

    fn open(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Failed> {
        let mut iv = *iv;
        let mechanism = Self::gcm(&mut iv, aad)?;
        let sealed = [&*in_out, tag.as_slice()].concat();
        let opened = match self.token.session.decrypt(&mechanism, self.key, &sealed) {
            Ok(opened) => zeroize::Zeroizing::new(opened),
            // A tag that does not verify: CKR_ENCRYPTED_DATA_INVALID as PKCS#11 says, or
            // CKR_GENERAL_ERROR from SoftHSM2 (its OpenSSL backend's failure, passed on).
            Err(e) if does_not_decrypt(&e) => return Err(Failed),
            Err(Pkcs11Error::Pkcs11(RvError::GeneralError, _)) => return Err(Failed),
            Err(e) => return Err(self.keep("C_Decrypt (AES-GCM)", e)),
        };
        if opened.len() != in_out.len() {
            return Err(Failed);
        }
        in_out.copy_from_slice(&opened);
        Ok(())
    }
}
