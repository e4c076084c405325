//! The KMS HTTP API: Alibaba Cloud KMS's RPC-style API (2016-01-20) served from the cluster,
//! so that programs using the official Alibaba Cloud SDKs run against keyward. It is kept apart
//! from the controllers: nothing here reconciles, and nothing in [`crate::reconcile`] serves.
//!
//! Reading order: [`request`] (a request parsed once) -> [`signing`] (who signed it, and
//! whether the signature holds) -> [`identity`] (the ServiceAccount it acts as) -> [`authz`]
//! (RBAC's answer, kept briefly) -> [`actions`] (the operations) -> [`server`] (HTTP), with
//! [`caches`] (what the API reads) and [`error`] (the error document).

pub mod actions;
pub mod authz;
pub mod caches;
pub mod error;
pub mod identity;
pub mod materials;
pub mod recent;
pub mod request;
pub mod server;
pub mod signing;
pub mod stats;
pub mod tls;

use crate::cluster::Kube;
use crate::error::Error;
use caches::Caches;
use error::ApiError;
use identity::Caller;

/// What every request shares.
pub struct ApiContext {
    pub kube: Kube,
    /// The one namespace keyward watches, if it is namespaced: Keys are created only there.
    pub watch_namespace: Option<String>,
    /// The CreateKey rules, checked before the API writes a Key: an invalid request leaves
    /// nothing behind.
    pub rules: crate::kms::rules::RuleSettings,
    pub caches: Caches,
    pub nonces: signing::NonceCache,
    pub authorizer: authz::Authorizer,
    pub token_reviews: identity::TokenReviews,
    pub stats: stats::ApiStats,
    /// The HSM that HSM keys' operations run in (`--pkcs11-module`), if any.
    pub hsm: Option<crate::hsm::Hsm>,
}

impl ApiContext {
    /// RBAC's answer for `caller`; a review that fails is a 503, never a yes.
    pub async fn allowed(
        &self,
        caller: &Caller,
        verb: &str,
        namespace: &str,
        name: Option<&str>,
    ) -> Result<bool, ApiError> {
        self.authorizer
            .allowed(
                &self.kube,
                &caller.username,
                &caller.groups,
                verb,
                namespace,
                name,
            )
            .await
            .map_err(|e: Error| {
                tracing::warn!(error = %e, "a SubjectAccessReview failed");
                ApiError::unavailable("Permissions could not be checked; try again.")
            })
    }
}
