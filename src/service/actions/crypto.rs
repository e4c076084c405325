//! The cryptographic operations: material is read from the key's store (see
//! [`crate::service::materials`]) and never leaves keyward; only ciphertexts, signatures, public keys and data keys are returned.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use kube::ResourceExt;
use serde::Serialize;

use super::{Answer, Call, find_key, metadata_of, required};
use crate::api::{Key, KeyMetadata, KeySpec, KeyState, KeyUsage, ProtectionLevel};
use crate::hsm::{Hsm, HsmError, VersionObjects};
use crate::kms::crypto::{self, Algorithm, EncryptionContext, PrivateKey, PublicKey};
use crate::kms::error::{Code, Rejection};
use crate::kms::material::SecretBytes;
use crate::service::error::ApiError;
use crate::service::materials::Unreadable;
use crate::store::Store;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Sealed<'a> {
    key_id: &'a str,
    key_version_id: &'a str,
    ciphertext_blob: String,
    request_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Opened<'a> {
    key_id: &'a str,
    key_version_id: &'a str,
    plaintext: String,
    request_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DataKey<'a> {
    key_id: &'a str,
    key_version_id: &'a str,
    ciphertext_blob: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext: Option<String>,
    request_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PublicKeyDocument<'a> {
    key_id: &'a str,
    key_version_id: &'a str,
    public_key: String,
    request_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Signed<'a> {
    key_id: &'a str,
    key_version_id: &'a str,
    value: String,
    request_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Verified<'a> {
    key_id: &'a str,
    key_version_id: &'a str,
    value: bool,
    request_id: &'a str,
}

/// Encrypt: at most 6 KB of `Plaintext` (taken as its bytes, and given back as such by
/// Decrypt) under the key's newest version.
pub async fn encrypt(call: &Call<'_>) -> Answer {
    let key = find_key(call.ctx, call.caller, required(call.request, "KeyId")?)?;
    call.authorize("encrypt", &key).await?;
    let (metadata, store) = usable(call, &key, None).await?;
    let version = newest(&store)?;
    let context = EncryptionContext::from_param(call.request.param("EncryptionContext"))?;
    let plaintext = SecretBytes::new(required(call.request, "Plaintext")?.as_bytes().to_vec());
    let blob = symmetric_key(call, &store, &version)?
        .seal(&metadata.key_id, &version, plaintext, context)
        .await?;
    Ok(call.document(&Sealed {
        key_id: &metadata.key_id,
        key_version_id: &version,
        ciphertext_blob: BASE64.encode(blob),
        request_id: call.request_id,
    }))
}

/// Decrypt: the blob names its key and version, so data encrypted before a rotation still
/// decrypts.
pub async fn decrypt(call: &Call<'_>) -> Answer {
    let blob = decode(required(call.request, "CiphertextBlob")?, "CiphertextBlob")?;
    let header = crypto::peek(&blob)?;
    let key = find_key(call.ctx, call.caller, &header.key_id)?;
    call.authorize("decrypt", &key).await?;
    let (metadata, store) = usable(call, &key, Some(&header.key_version_id)).await?;
    let context = EncryptionContext::from_param(call.request.param("EncryptionContext"))?;
    let plaintext = symmetric_key(call, &store, &header.key_version_id)?
        .open(blob, context)
        .await?;
    let plaintext = String::from_utf8(plaintext.expose().to_vec()).map_err(|_| {
        ApiError::invalid_parameter(
            "The plaintext is not text: use GenerateDataKey for binary data",
        )
    })?;
    Ok(call.document(&Opened {
        key_id: &metadata.key_id,
        key_version_id: &header.key_version_id,
        plaintext,
        request_id: call.request_id,
    }))
}

/// ReEncrypt: a CiphertextBlob opened and sealed again under `DestinationKeyId`'s newest
/// version, without the plaintext leaving keyward. The source is the symmetric key the blob
/// names, or, with `SourceKeyId`, an asymmetric encryption key (`SourceKeyVersionId` and
/// `SourceEncryptionAlgorithm` then say how to open it). RBAC is asked for `reencrypt` on both
/// keys.
pub async fn re_encrypt(call: &Call<'_>) -> Answer {
    let blob = decode(required(call.request, "CiphertextBlob")?, "CiphertextBlob")?;
    let destination = find_key(
        call.ctx,
        call.caller,
        required(call.request, "DestinationKeyId")?,
    )?;
    let destination_context =
        EncryptionContext::from_param(call.request.param("DestinationEncryptionContext"))?;
    let asymmetric_source = call
        .request
        .param("SourceKeyId")
        .is_some_and(|v| !v.is_empty());
    let plaintext = if asymmetric_source {
        let source = AsymmetricCall::open_as(call, "reencrypt", &REENCRYPT_SOURCE).await?;
        source.decrypt(call, blob).await?
    } else {
        let header = crypto::peek(&blob)?;
        let source = find_key(call.ctx, call.caller, &header.key_id)?;
        call.authorize("reencrypt", &source).await?;
        let source_context =
            EncryptionContext::from_param(call.request.param("SourceEncryptionContext"))?;
        let (_, store) = usable(call, &source, Some(&header.key_version_id)).await?;
        symmetric_key(call, &store, &header.key_version_id)?
            .open(blob, source_context)
            .await?
    };
    call.authorize("reencrypt", &destination).await?;
    let (metadata, store) = usable(call, &destination, None).await?;
    let version = newest(&store)?;
    let sealed = symmetric_key(call, &store, &version)?
        .seal(&metadata.key_id, &version, plaintext, destination_context)
        .await?;
    Ok(call.document(&Sealed {
        key_id: &metadata.key_id,
        key_version_id: &version,
        ciphertext_blob: BASE64.encode(sealed),
        request_id: call.request_id,
    }))
}

/// GenerateDataKey(WithoutPlaintext): a fresh data key, encrypted under the key's newest
/// version; its plaintext (base64) only when asked for.
pub async fn generate_data_key(call: &Call<'_>, with_plaintext: bool) -> Answer {
    let key = find_key(call.ctx, call.caller, required(call.request, "KeyId")?)?;
    let verb = match with_plaintext {
        true => "generatedatakey",
        false => "generatedatakeywithoutplaintext",
    };
    call.authorize(verb, &key).await?;
    let (metadata, store) = usable(call, &key, None).await?;
    let version = newest(&store)?;
    let length = crypto::data_key_length(
        call.request.param("KeySpec"),
        call.request.param("NumberOfBytes"),
    )?;
    let context = EncryptionContext::from_param(call.request.param("EncryptionContext"))?;
    let data_key = crypto::data_key(length)?;
    // What is sealed is the data key's base64 text, as the KMS does: Decrypt of the blob then
    // answers the very `Plaintext` GenerateDataKey answered.
    let encoded = SecretBytes::new(BASE64.encode(data_key.expose()).into_bytes());
    let blob = symmetric_key(call, &store, &version)?
        .seal(&metadata.key_id, &version, encoded.clone(), context)
        .await?;
    let plaintext = with_plaintext
        .then(|| String::from_utf8(encoded.expose().to_vec()).expect("base64 is ASCII"));
    Ok(call.document(&DataKey {
        key_id: &metadata.key_id,
        key_version_id: &version,
        ciphertext_blob: BASE64.encode(blob),
        plaintext,
        request_id: call.request_id,
    }))
}

/// GetPublicKey: the SPKI PEM of a version (the newest unless `KeyVersionId` names one).
pub async fn get_public_key(call: &Call<'_>) -> Answer {
    let key = find_key(call.ctx, call.caller, required(call.request, "KeyId")?)?;
    call.authorize("getpublickey", &key).await?;
    let named = named_version(call, "KeyVersionId");
    let (metadata, store) = readable(call, &key, named).await?;
    let version = version_of(named, &store)?;
    let public_key = store.public_pem(&version).ok_or_else(|| {
        Rejection::new(
            Code::UnsupportedOperation,
            format!(
                "key {} is {}: it has no public key (GetPublicKey is for asymmetric keys)",
                metadata.key_id,
                metadata.key_spec.as_str()
            ),
        )
    })?;
    Ok(call.document(&PublicKeyDocument {
        key_id: &metadata.key_id,
        key_version_id: &version,
        public_key,
        request_id: call.request_id,
    }))
}

/// What every asymmetric operation starts from: a Key the caller may `verb`, Enabled, the
/// version asked for (the newest by default) and the algorithm.
struct AsymmetricCall {
    metadata: KeyMetadata,
    store: Arc<Store>,
    version: String,
    algorithm: Algorithm,
}

/// Where an asymmetric call names its key, version and algorithm.
struct AsymmetricParams {
    key_id: &'static str,
    version: &'static str,
    algorithm: &'static str,
    /// Whether the version must be named (else the newest is used).
    version_required: bool,
}

/// The Asymmetric* actions' own parameters.
const DIRECT: AsymmetricParams = AsymmetricParams {
    key_id: "KeyId",
    version: "KeyVersionId",
    algorithm: "Algorithm",
    version_required: false,
};

/// ReEncrypt's source, when it is an asymmetric key.
const REENCRYPT_SOURCE: AsymmetricParams = AsymmetricParams {
    key_id: "SourceKeyId",
    version: "SourceKeyVersionId",
    algorithm: "SourceEncryptionAlgorithm",
    version_required: true,
};

impl AsymmetricCall {
    async fn open(call: &Call<'_>, verb: &str) -> Result<Self, ApiError> {
        Self::open_as(call, verb, &DIRECT).await
    }

    async fn open_as(
        call: &Call<'_>,
        verb: &str,
        params: &AsymmetricParams,
    ) -> Result<Self, ApiError> {
        let key = find_key(
            call.ctx,
            call.caller,
            required(call.request, params.key_id)?,
        )?;
        call.authorize(verb, &key).await?;
        let named = match params.version_required {
            true => Some(required(call.request, params.version)?),
            false => named_version(call, params.version),
        };
        let (metadata, store) = usable(call, &key, named).await?;
        Ok(AsymmetricCall {
            metadata: metadata.clone(),
            version: version_of(named, &store)?,
            algorithm: Algorithm::parse(required(call.request, params.algorithm)?)?,
            store,
        })
    }

    /// The HSM and this version's objects, for an HSM key; `None` for a SOFTWARE key.
    fn in_token(&self, call: &Call<'_>) -> Result<Option<(Hsm, VersionObjects)>, ApiError> {
        match self.store.record.protection_level {
            ProtectionLevel::Software => Ok(None),
            // As a SOFTWARE key without a private key is refused: the wrong kind of key first.
            ProtectionLevel::Hsm if self.metadata.key_spec.is_symmetric() => {
                Err(not_asymmetric(&self.metadata).into())
            }
            ProtectionLevel::Hsm => in_token(call, &self.store, &self.version).map(Some),
        }
    }

    async fn sign(&self, call: &Call<'_>, digest: Vec<u8>) -> Result<Vec<u8>, ApiError> {
        let (spec, usage, algorithm) = self.kind();
        let Some((hsm, objects)) = self.in_token(call)? else {
            return Ok(crypto::asymmetric::sign(
                &self.private_key()?,
                algorithm,
                &digest,
            )?);
        };
        crypto::asymmetric::check_sign(spec, usage, algorithm, &digest)?;
        module_runs(&hsm, algorithm)?;
        hsm.run(move |token| token.sign(spec, &objects, algorithm, &digest))
            .await
            .map_err(hsm_failed)
    }

    async fn verify(
        &self,
        call: &Call<'_>,
        digest: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<bool, ApiError> {
        let (spec, usage, algorithm) = self.kind();
        let Some((hsm, objects)) = self.in_token(call)? else {
            return Ok(crypto::asymmetric::verify(
                &self.public_key()?,
                algorithm,
                &digest,
                &signature,
            )?);
        };
        crypto::asymmetric::check_verify(spec, usage, algorithm, &digest)?;
        module_runs(&hsm, algorithm)?;
        hsm.run(move |token| token.verify(spec, &objects, algorithm, &digest, &signature))
            .await
            .map_err(hsm_failed)
    }

    async fn encrypt(&self, call: &Call<'_>, plaintext: SecretBytes) -> Result<Vec<u8>, ApiError> {
        let (spec, usage, algorithm) = self.kind();
        let Some((hsm, objects)) = self.in_token(call)? else {
            return Ok(crypto::asymmetric::encrypt(
                &self.public_key()?,
                algorithm,
                plaintext.expose(),
            )?);
        };
        crypto::asymmetric::check_encrypt(spec, usage, algorithm, plaintext.expose())?;
        module_runs(&hsm, algorithm)?;
        hsm.run(move |token| token.encrypt(&objects, algorithm, plaintext.expose()))
            .await
            .map_err(hsm_failed)
    }

    async fn decrypt(&self, call: &Call<'_>, ciphertext: Vec<u8>) -> Result<SecretBytes, ApiError> {
        let (spec, usage, algorithm) = self.kind();
        let Some((hsm, objects)) = self.in_token(call)? else {
            return Ok(crypto::asymmetric::decrypt(
                &self.private_key()?,
                algorithm,
                &ciphertext,
            )?);
        };
        crypto::asymmetric::check_decrypt(spec, usage, algorithm)?;
        module_runs(&hsm, algorithm)?;
        let opened = hsm
            .run(move |token| token.decrypt(&objects, algorithm, &ciphertext))
            .await
            .map_err(hsm_failed)?;
        opened.ok_or_else(|| {
            Rejection::new(Code::InvalidParameter, crypto::asymmetric::CANNOT_DECRYPT).into()
        })
    }

    fn kind(&self) -> (KeySpec, KeyUsage, Algorithm) {
        (
            self.metadata.key_spec,
            self.metadata.key_usage,
            self.algorithm,
        )
    }

    fn private_key(&self) -> Result<PrivateKey, ApiError> {
        let metadata = &self.metadata;
        let pem = self
            .store
            .private_pem(&self.version)
            .ok_or_else(|| not_asymmetric(metadata))?;
        Ok(PrivateKey::from_pkcs8_pem(
            metadata.key_spec,
            metadata.key_usage,
            &pem,
        )?)
    }

    fn public_key(&self) -> Result<PublicKey, ApiError> {
        let metadata = &self.metadata;
        let pem = self
            .store
            .public_pem(&self.version)
            .ok_or_else(|| not_asymmetric(metadata))?;
        Ok(PublicKey::from_spki_pem(
            metadata.key_spec,
            metadata.key_usage,
            &pem,
        )?)
    }
}

/// AsymmetricSign: a signature of the caller's `Digest` (base64), DER for ECDSA and SM2.
pub async fn asymmetric_sign(call: &Call<'_>) -> Answer {
    let key = AsymmetricCall::open(call, "asymmetricsign").await?;
    let digest = decode(required(call.request, "Digest")?, "Digest")?;
    let signature = key.sign(call, digest).await?;
    Ok(call.document(&Signed {
        key_id: &key.metadata.key_id,
        key_version_id: &key.version,
        value: BASE64.encode(signature),
        request_id: call.request_id,
    }))
}

/// AsymmetricVerify: whether `Value` (base64) is a signature of `Digest` by the version.
pub async fn asymmetric_verify(call: &Call<'_>) -> Answer {
    let key = AsymmetricCall::open(call, "asymmetricverify").await?;
    let digest = decode(required(call.request, "Digest")?, "Digest")?;
    let signature = decode(required(call.request, "Value")?, "Value")?;
    let value = key.verify(call, digest, signature).await?;
    Ok(call.document(&Verified {
        key_id: &key.metadata.key_id,
        key_version_id: &key.version,
        value,
        request_id: call.request_id,
    }))
}

/// AsymmetricEncrypt: `Plaintext` (base64) under the version's public key.
pub async fn asymmetric_encrypt(call: &Call<'_>) -> Answer {
    let key = AsymmetricCall::open(call, "asymmetricencrypt").await?;
    let plaintext = SecretBytes::new(decode(required(call.request, "Plaintext")?, "Plaintext")?);
    let ciphertext = key.encrypt(call, plaintext).await?;
    Ok(call.document(&Sealed {
        key_id: &key.metadata.key_id,
        key_version_id: &key.version,
        ciphertext_blob: BASE64.encode(ciphertext),
        request_id: call.request_id,
    }))
}

/// AsymmetricDecrypt: `CiphertextBlob` (base64) with the version's private key; the
/// plaintext back in base64.
pub async fn asymmetric_decrypt(call: &Call<'_>) -> Answer {
    let key = AsymmetricCall::open(call, "asymmetricdecrypt").await?;
    let ciphertext = decode(required(call.request, "CiphertextBlob")?, "CiphertextBlob")?;
    let plaintext = key.decrypt(call, ciphertext).await?;
    Ok(call.document(&Opened {
        key_id: &key.metadata.key_id,
        key_version_id: &key.version,
        plaintext: BASE64.encode(plaintext.expose()),
        request_id: call.request_id,
    }))
}

/// The key's metadata and store, for an operation that needs an Enabled key (see [`readable`]).
async fn usable<'k>(
    call: &Call<'_>,
    key: &'k Key,
    version: Option<&str>,
) -> Result<(&'k KeyMetadata, Arc<Store>), ApiError> {
    let (metadata, store) = readable(call, key, version).await?;
    let refused = |code| {
        Rejection::new(
            code,
            format!(
                "The request was rejected because the key state is {}.",
                metadata.key_state.as_str()
            ),
        )
    };
    match metadata.key_state {
        KeyState::Enabled => Ok((metadata, store)),
        KeyState::Disabled => Err(refused(Code::RejectedDisabled).into()),
        KeyState::PendingDeletion => Err(refused(Code::RejectedPendingDeletion).into()),
        KeyState::PendingImport => Err(refused(Code::RejectedPendingImport).into()),
    }
}

/// The key's metadata and its store (kept while the store is unchanged), holding the key's
/// primary version and `version` if given.
async fn readable<'k>(
    call: &Call<'_>,
    key: &'k Key,
    version: Option<&str>,
) -> Result<(&'k KeyMetadata, Arc<Store>), ApiError> {
    let metadata = metadata_of(key)?;
    let (namespace, name) = (key.namespace().unwrap_or_default(), key.name_any());
    let needed: Vec<&str> = metadata
        .primary_key_version
        .as_deref()
        .into_iter()
        .chain(version)
        .collect();
    let materials = &call.ctx.caches.materials;
    match materials
        .store(&call.ctx.kube, &namespace, &name, &needed)
        .await
    {
        Ok(store) => Ok((metadata, store)),
        Err(Unreadable::Store(rejection)) => Err(rejection.into()),
        Err(Unreadable::Cluster(e)) => {
            tracing::warn!(error = %e, "reading a key's store for the KMS API failed");
            Err(ApiError::unavailable(
                "The key's material could not be read; try again.",
            ))
        }
    }
}

fn newest(store: &Store) -> Result<String, ApiError> {
    store
        .record
        .newest_version()
        .map(|v| v.key_version_id.clone())
        .ok_or_else(|| {
            Rejection::new(Code::RejectedPendingImport, "The key has no material yet.").into()
        })
}

/// The version the caller names in `parameter`, if any.
fn named_version<'c>(call: &'c Call<'_>, parameter: &str) -> Option<&'c str> {
    call.request.param(parameter).filter(|v| !v.is_empty())
}

/// The version `named` (it must be the key's), else the newest.
fn version_of(named: Option<&str>, store: &Store) -> Result<String, ApiError> {
    match named {
        None => newest(store),
        Some(id) if store.record.has_version(id) => Ok(id.to_string()),
        Some(_) => Err(super::versions::version_not_found()),
    }
}

/// A symmetric key version, ready to seal and open: its bytes, or its key in the HSM.
enum SymmetricKey {
    Software {
        spec: KeySpec,
        key: SecretBytes,
    },
    InToken {
        spec: KeySpec,
        hsm: Hsm,
        objects: VersionObjects,
    },
}

impl SymmetricKey {
    /// Encrypt's CiphertextBlob of `plaintext` under this version of key `key_id`.
    async fn seal(
        self,
        key_id: &str,
        version: &str,
        plaintext: SecretBytes,
        context: EncryptionContext,
    ) -> Result<Vec<u8>, ApiError> {
        match self {
            SymmetricKey::Software { spec, key } => Ok(crypto::encrypt(
                spec,
                &key,
                key_id,
                version,
                plaintext.expose(),
                &context,
            )?),
            SymmetricKey::InToken { spec, hsm, objects } => {
                let (key_id, version) = (key_id.to_string(), version.to_string());
                let sealed = hsm
                    .run(move |token| {
                        let aead = token.aead(spec, &objects)?;
                        let sealed = crypto::envelope::seal(
                            &aead,
                            &key_id,
                            &version,
                            plaintext.expose(),
                            &context,
                        );
                        module_failure_first(sealed, aead.module_error())
                    })
                    .await
                    .map_err(hsm_failed)?;
                Ok(sealed?)
            }
        }
    }

    /// Decrypt's plaintext of `blob`, made by this version.
    async fn open(
        self,
        blob: Vec<u8>,
        context: EncryptionContext,
    ) -> Result<SecretBytes, ApiError> {
        match self {
            SymmetricKey::Software { spec, key } => {
                Ok(crypto::decrypt(spec, &key, &blob, &context)?)
            }
            SymmetricKey::InToken { spec, hsm, objects } => {
                let opened = hsm
                    .run(move |token| {
                        let aead = token.aead(spec, &objects)?;
                        let opened = crypto::envelope::open(&aead, &blob, &context);
                        module_failure_first(opened, aead.module_error())
                    })
                    .await
                    .map_err(hsm_failed)?;
                Ok(opened?)
            }
        }
    }
}

/// A refusal the module caused (it failed, rather than the blob not opening) is the module's
/// failure, reported as such.
fn module_failure_first<T>(
    result: Result<T, Rejection>,
    module: Option<HsmError>,
) -> Result<Result<T, Rejection>, HsmError> {
    match (result, module) {
        (Err(_), Some(failure)) => Err(failure),
        (result, _) => Ok(result),
    }
}

/// The HSM's failure as the API answers it: a missing object is the store's problem (as lost
/// material is), anything else the module's, to be retried. Neither names key bytes.
fn hsm_failed(error: HsmError) -> ApiError {
    match error {
        HsmError::ObjectMissing(_) | HsmError::HalfPair(_) => {
            Rejection::new(Code::MaterialStoreInvalid, error.to_string()).into()
        }
        error => {
            tracing::warn!(error = %error, "an HSM operation of the KMS API failed");
            ApiError::unavailable("The HSM could not carry out the operation; try again.")
        }
    }
}

/// Refuses an algorithm the HSM's module cannot run (found at start-up), saying which ones
/// the key could use instead.
fn module_runs(hsm: &Hsm, algorithm: Algorithm) -> Result<(), ApiError> {
    let Some(why) = hsm.capabilities().why_not_algorithm(algorithm) else {
        return Ok(());
    };
    let usable: Vec<&str> = Algorithm::ALL
        .iter()
        .filter(|a| {
            a.usage() == algorithm.usage()
                && a.key_specs() == algorithm.key_specs()
                && hsm.capabilities().why_not_algorithm(**a).is_none()
        })
        .map(|a| a.as_str())
        .collect();
    Err(Rejection::new(
        Code::UnsupportedOperation,
        format!(
            "Algorithm {algorithm} is not available for HSM keys here: the PKCS#11 module {} \
             cannot run it ({why}); use {}",
            hsm.module(),
            match usable.is_empty() {
                true => "a SOFTWARE key".to_string(),
                false => usable.join(" or "),
            }
        ),
    )
    .into())
}

/// The HSM and the objects of version `version` of the HSM key `store` holds.
fn in_token(
    call: &Call<'_>,
    store: &Store,
    version: &str,
) -> Result<(Hsm, VersionObjects), ApiError> {
    let hsm = call.ctx.hsm.clone().ok_or_else(|| {
        ApiError::from(Rejection::new(
            Code::UnsupportedProtectionLevel,
            format!(
                "key {} is an HSM key, and this keyward runs without an HSM (--pkcs11-module)",
                store.record.key_id
            ),
        ))
    })?;
    Ok((hsm, VersionObjects::new(&store.record.key_id, version)))
}

fn symmetric_key(call: &Call<'_>, store: &Store, version: &str) -> Result<SymmetricKey, ApiError> {
    let spec = store.record.key_spec;
    if store.record.protection_level == ProtectionLevel::Hsm {
        check_symmetric(store, version)?;
        let (hsm, objects) = in_token(call, store, version)?;
        return Ok(SymmetricKey::InToken { spec, hsm, objects });
    }
    let key = check_symmetric(store, version).and_then(|()| {
        store.symmetric_key(version).ok_or_else(|| {
            ApiError::from(Rejection::new(
                Code::MaterialStoreInvalid,
                "version material missing",
            ))
        })
    })?;
    Ok(SymmetricKey::Software { spec, key })
}

/// That `store`'s key is symmetric, for encryption, and has version `version`.
fn check_symmetric(store: &Store, version: &str) -> Result<(), ApiError> {
    match store.record.key_usage {
        KeyUsage::EncryptDecrypt if store.record.key_spec.is_symmetric() => {
            if !store.record.has_version(version) {
                // Only a CiphertextBlob names its version: one naming a version this key never
                // had was changed (or made elsewhere), the caller's problem, not the store's.
                return Err(Rejection::new(
                    Code::InvalidParameter,
                    crypto::envelope::CANNOT_DECRYPT,
                )
                .into());
            }
            Ok(())
        }
        _ => Err(Rejection::new(
            Code::UnsupportedOperation,
            format!(
                "key {} is {}: Encrypt, Decrypt and GenerateDataKey take a symmetric key \
                 (Aliyun_AES_256 or Aliyun_SM4); use AsymmetricEncrypt / AsymmetricSign",
                store.record.key_id,
                store.record.key_spec.as_str()
            ),
        )
        .into()),
    }
}

fn not_asymmetric(metadata: &KeyMetadata) -> Rejection {
    Rejection::new(
        Code::UnsupportedOperation,
        format!(
            "key {} is {}: asymmetric operations take an RSA_2048, EC_P256, EC_P256K or EC_SM2 key",
            metadata.key_id,
            metadata.key_spec.as_str()
        ),
    )
}

fn decode(text: &str, parameter: &str) -> Result<Vec<u8>, ApiError> {
    BASE64
        .decode(text)
        .map_err(|_| ApiError::invalid_parameter(format!("{parameter} is not base64")))
}
