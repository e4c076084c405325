//! The KMS's cryptographic operations, pure: no HTTP, no Kubernetes. The API server parses a
//! request, loads the key version's material from the store, and calls these functions; every
//! refusal is a [`Rejection`](crate::kms::error::Rejection) carrying a KMS error code and a
//! message that never holds key material or plaintext.
//!
//! * [`context`]: the `EncryptionContext` parameter (a JSON object of strings), parsed once and
//!   turned into canonical bytes for use as authenticated data.
//! * [`envelope`]: Encrypt / Decrypt / GenerateDataKey with symmetric keys: the versioned
//!   `CiphertextBlob` format (it names its key and key version, so data encrypted before a
//!   rotation still decrypts), [`envelope::peek`] to find which version to load, and the 6 KB
//!   plaintext limit.
//! * [`symmetric`]: the AEAD ciphers behind the envelope (AES-256-GCM for Aliyun_AES_256,
//!   SM4-GCM for Aliyun_SM4) and random data keys.
//! * [`asymmetric`]: AsymmetricSign / AsymmetricVerify / AsymmetricEncrypt / AsymmetricDecrypt:
//!   the KMS algorithm names, which key spec and usage each is allowed for, keys parsed once from
//!   PEM, and the operations with the KMS's semantics (sign a given digest; DER signatures for
//!   ECDSA and SM2; GM/T 0009 DER ciphertexts for SM2).
//!
//! Randomness (IVs, data keys, OAEP and SM2 encryption, PSS salts) comes from the OS CSPRNG.
//! Like `rsa` key generation in [`crate::kms::material`], a failing OS RNG panics rather than
//! returning an error: getrandom(2) does not fail on Linux once the kernel pool is seeded, and a
//! request could do nothing useful with the error.

pub mod asymmetric;
pub mod context;
pub mod envelope;
pub mod symmetric;

pub use asymmetric::{Algorithm, PrivateKey, PublicKey};
pub use context::EncryptionContext;
pub use envelope::{BlobHeader, MAX_PLAINTEXT_BYTES, decrypt, encrypt, peek};
pub use symmetric::{data_key, data_key_length};
