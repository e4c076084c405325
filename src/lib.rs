//! keyward: KMS-grade customer master keys as Kubernetes resources.
//!
//! Reading order is the architecture: [`api`] (what users write) -> [`rules`] and [`schedule`]
//! (the seed's rules, pure) -> [`material`] (key bytes per key spec) -> [`store`] (how material
//! is kept in Secrets, pure) -> [`plan`] (observed state + now -> what to do, pure) -> [`k8s`]
//! (the only module that writes to the API server) -> [`reconcile`] (joins them) -> `main`.

pub mod api;
pub mod error;
pub mod http;
pub mod import;
pub mod k8s;
pub mod kms_response;
pub mod leader;
pub mod material;
pub mod metrics;
pub mod plan;
pub mod reconcile;
pub mod rules;
pub mod schedule;
pub mod store;
