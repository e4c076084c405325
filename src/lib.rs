//! keyward: KMS-grade customer master keys as Kubernetes resources.
//!
//! Reading order is the architecture (docs/design.md has the same order and a diagram):
//! [`api`] (what users write and see) -> [`kms`] (the seed's rules, schedule, error codes,
//! material and import, pure) -> [`store`] (how material is kept in Secrets, pure) -> [`plan`]
//! (observed state + now -> what to do, pure) -> [`cluster`] (the only module that calls the
//! API server) -> [`reconcile`] (the controllers that join them) -> [`runtime`] (leader
//! election, metrics, health) -> `main`. [`error`] holds the failures that are retried.
//! [`service`] is the KMS HTTP API (requests and their signatures), kept apart from the
//! controllers; [`kms_client`] calls it (the kubectl plugin and the benchmarks). [`hsm`] is the
//! PKCS#11 backend of `protectionLevel: HSM` keys, used by both the controllers (generation,
//! destruction) and the API (every operation with the key).

pub mod api;
pub mod cluster;
pub mod error;
pub mod hsm;
pub mod kms;
pub mod kms_client;
pub mod plan;
pub mod reconcile;
pub mod runtime;
pub mod service;
pub mod store;
