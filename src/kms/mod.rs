//! The KMS model, with no Kubernetes in it: the seed's rules and defaults ([`rules`]), times and
//! intervals ([`schedule`]), error codes ([`error`]), key material per key spec ([`material`]),
//! importing material into EXTERNAL keys ([`import`]) and the API's response documents
//! ([`response`]). Everything here is pure apart from the OS CSPRNG that mints material.

pub mod error;
pub mod import;
pub mod material;
pub mod reason;
pub mod response;
pub mod rules;
pub mod schedule;
