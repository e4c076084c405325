//! The KMS HTTP API: Alibaba Cloud KMS's RPC-style API (2016-01-20) served from the cluster,
//! so that programs using the official Alibaba Cloud SDKs run against keyward. It is kept apart
//! from the controllers: nothing here reconciles, and nothing in [`crate::reconcile`] serves.
//!
//! Reading order: [`request`] (a request parsed once) -> [`signing`] (who signed it, and
//! whether the signature holds).

pub mod request;
pub mod signing;
