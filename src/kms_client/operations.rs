//! The calls the kubectl plugin and the benchmarks make, typed: Encrypt, Decrypt, GetPublicKey,
//! AsymmetricSign and AsymmetricVerify, and the digest AsymmetricSign takes (SHA-256 of the
//! message; for SM2DSA, SM3 over Z(A) and the message, which needs the version's public key).
//! The answers serialize back to the KMS's documents (for `-o json`).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{ClientError, Session};
use crate::api::{KeySpec, KeyUsage};
use crate::kms::crypto::asymmetric::{Algorithm, PublicKey, sm2_digest};

/// Encrypt's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Sealed {
    pub key_id: String,
    pub key_version_id: String,
    pub ciphertext_blob: String,
    pub request_id: String,
}

/// Decrypt's answer; the plaintext is wiped on drop and hidden from `Debug`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Opened {
    pub key_id: String,
    pub key_version_id: String,
    pub plaintext: Plaintext,
    pub request_id: String,
}

/// A plaintext from the KMS.
pub struct Plaintext(Zeroizing<String>);

impl Plaintext {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext(<{} bytes>)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for Plaintext {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| Plaintext(Zeroizing::new(text)))
    }
}

impl Serialize for Plaintext {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// GetPublicKey's answer: the version's SPKI PEM.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PublicKeyAnswer {
    pub key_id: String,
    pub key_version_id: String,
    pub public_key: String,
    pub request_id: String,
}

/// AsymmetricSign's answer: `Value` is the base64 signature.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Signature {
    pub key_id: String,
    pub key_version_id: String,
    pub value: String,
    pub request_id: String,
}

/// AsymmetricVerify's answer: `Value` is whether the signature holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Verified {
    pub key_id: String,
    pub key_version_id: String,
    pub value: bool,
    pub request_id: String,
}

/// An algorithm name checked before anything is sent.
pub fn algorithm(name: &str) -> Result<Algorithm, ClientError> {
    Algorithm::parse(name).map_err(|rejection| ClientError::Config(rejection.detail))
}

impl Session {
    /// Encrypt `plaintext` (text, at most 6 KB) under `key` (KeyId, ARN or `alias/<name>`),
    /// bound to `context` (a JSON object of strings) when given.
    pub async fn encrypt(
        &mut self,
        key: &str,
        plaintext: &str,
        context: Option<&str>,
    ) -> Result<Sealed, ClientError> {
        let mut params = vec![("KeyId", key), ("Plaintext", plaintext)];
        params.extend(context.map(|c| ("EncryptionContext", c)));
        self.call("Encrypt", &params).await
    }

    pub async fn decrypt(
        &mut self,
        ciphertext_blob: &str,
        context: Option<&str>,
    ) -> Result<Opened, ClientError> {
        let mut params = vec![("CiphertextBlob", ciphertext_blob)];
        params.extend(context.map(|c| ("EncryptionContext", c)));
        self.call("Decrypt", &params).await
    }

    /// The public key of `version` (the newest when `None`).
    pub async fn get_public_key(
        &mut self,
        key: &str,
        version: Option<&str>,
    ) -> Result<PublicKeyAnswer, ClientError> {
        let mut params = vec![("KeyId", key)];
        params.extend(version.map(|v| ("KeyVersionId", v)));
        self.call("GetPublicKey", &params).await
    }

    /// AsymmetricSign of a digest computed by the caller.
    pub async fn asymmetric_sign(
        &mut self,
        key: &str,
        version: Option<&str>,
        algorithm: Algorithm,
        digest: &[u8],
    ) -> Result<Signature, ClientError> {
        let digest = BASE64.encode(digest);
        let mut params = vec![
            ("KeyId", key),
            ("Algorithm", algorithm.as_str()),
            ("Digest", &digest),
        ];
        params.extend(version.map(|v| ("KeyVersionId", v)));
        self.call("AsymmetricSign", &params).await
    }

    /// AsymmetricVerify of `signature` (raw bytes) over a digest computed by the caller.
    pub async fn asymmetric_verify(
        &mut self,
        key: &str,
        version: Option<&str>,
        algorithm: Algorithm,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<Verified, ClientError> {
        let (digest, signature) = (BASE64.encode(digest), BASE64.encode(signature));
        let mut params = vec![
            ("KeyId", key),
            ("Algorithm", algorithm.as_str()),
            ("Digest", &digest),
            ("Value", &signature),
        ];
        params.extend(version.map(|v| ("KeyVersionId", v)));
        self.call("AsymmetricVerify", &params).await
    }

    /// The `Digest` of `message` for `algorithm`, and the version it is for when that matters:
    /// SM2DSA's digest binds the version's public key, read with GetPublicKey (the newest
    /// version unless `version` names one), so the signature must be made by that version.
    pub async fn digest(
        &mut self,
        key: &str,
        version: Option<&str>,
        algorithm: Algorithm,
        message: &[u8],
    ) -> Result<(Vec<u8>, Option<String>), ClientError> {
        if algorithm != Algorithm::Sm2Dsa {
            return Ok((
                Sha256::digest(message).to_vec(),
                version.map(str::to_string),
            ));
        }
        let answer = self.get_public_key(key, version).await?;
        let public =
            PublicKey::from_spki_pem(KeySpec::EcSm2, KeyUsage::SignVerify, &answer.public_key)
                .map_err(|_| {
                    ClientError::Config(format!(
                        "SM2DSA takes an EC_SM2 key; the public key of {key} is not one"
                    ))
                })?;
        let digest = sm2_digest(&public, message).map_err(|r| ClientError::Config(r.detail))?;
        Ok((digest.to_vec(), Some(answer.key_version_id)))
    }
}
