//! ImportKeyMaterial on a real API server: keys with origin EXTERNAL (Aliyun_AES_256, 32 bytes;
//! Aliyun_SM4, 16 bytes) await their material with RSA-2048 import parameters in status, take
//! material wrapped by the OpenSSL 3 CLI (RSAES-OAEP, SHA-256) or raw, refuse every malformed
//! import without changing anything, lose their material when it expires and take back only
//! the same material, and never rotate or take KeyVersions.
//!
//! Key bytes never appear in assertion messages (they compare with `==` and report lengths);
//! the material the test makes and wraps goes through OpenSSL in owner-only scratch files
//! (0700 directory, 0600 files) that are removed when each wrap is done.
//!
//! `ExpiredImportToken` is not reached here: a token is valid for 24 hours, and the operator
//! issues new parameters as soon as a token has expired, before it tries any import, so an
//! import with the old token is `InvalidImportToken` (shown in [`parameters`] by backdating
//! the token in the material store). The `ExpiredImportToken` code itself (a matching token at
//! or past its tokenExpireTime) is covered by the unit tests in src/kms/import.rs
//! (`a_token_expires_at_its_expire_time_exactly`, `an_unreadable_expire_time_counts_as_expired`).
//!
//! Where things are: [`keys`] (manifests, cluster reads, KMS times), [`material`] (making and
//! wrapping material, import Secrets), [`checks`] (what an imported, an untouched and a refused
//! key look like); the tests by step of the import: [`parameters`], [`importing`],
//! [`refusals`], [`expiry`], [`rotation`].

#[path = "../common/mod.rs"]
mod common;

mod checks;
mod expiry;
mod importing;
mod keys;
mod material;
mod parameters;
mod refusals;
mod rotation;
