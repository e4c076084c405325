//! The KMS model, with no Kubernetes in it: the seed's rules and defaults ([`rules`]), times and
//! intervals ([`schedule`]), error codes ([`error`]), key material per key spec ([`material`]),
//! importing material into EXTERNAL keys ([`import`]), the API's response documents
//! ([`response`]) and the API's cryptography: envelopes, data keys, signatures ([`crypto`]).
//! Everything here is pure apart from the OS CSPRNG that mints material, IVs and data keys.

pub mod crypto;
pub mod error;
pub mod import;
pub mod material;
pub mod reason;
pub mod response;
pub mod rules;
pub mod schedule;
