//! Who sent a request: the ServiceAccount an AccessKey pair acts as (signature v1 or ACS3), or
//! the ServiceAccount a bearer token belongs to (a TokenReview with audience `keyward`, its
//! answer reused for a few seconds, as RBAC's are).

use http::StatusCode;
use jiff::Timestamp;

use ring::digest;

use super::ApiContext;
use super::error::ApiError;
use super::recent::Recent;
use super::request::ApiRequest;
use super::signing::{self, AuthError, Claim};
use crate::cluster::Kube;
use crate::error::Error;

/// The audience a bearer token must have been issued for.
pub const TOKEN_AUDIENCE: &str = "keyward";

/// A ServiceAccount, as RBAC sees it.
#[derive(Clone, Debug)]
pub struct Caller {
    pub username: String,
    pub groups: Vec<String>,
    /// Its namespace: where `alias/<name>`, ListKeys and CreateKey look.
    pub namespace: String,
}

impl Caller {
    fn service_account(namespace: &str, name: &str) -> Caller {
        Caller {
            username: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
            namespace: namespace.to_string(),
        }
    }
}

/// TokenReview answers, by a hash of the token (the token itself is not kept): a hot caller
/// costs one review per token per [`super::recent::TTL`], not one per call.
#[derive(Default)]
pub struct TokenReviews(Recent<[u8; 32], Option<String>>);

impl TokenReviews {
    pub fn counts(&self) -> super::recent::Counts {
        self.0.counts()
    }

    /// The username the API server authenticates `token` as (audience [`TOKEN_AUDIENCE`]), or
    /// `None` if it does not.
    async fn username(&self, kube: &Kube, token: &str) -> Result<Option<String>, Error> {
        let mut hash = [0; 32];
        hash.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
        self.0
            .answer(hash, || async {
                let user = kube.review_token(token, TOKEN_AUDIENCE).await?;
                Ok(user.and_then(|u| u.username))
            })
            .await
    }
}

pub async fn identify(ctx: &ApiContext, request: &ApiRequest) -> Result<Caller, ApiError> {
    match signing::claim(request)? {
        Claim::Signed(claim) => {
            let credential = ctx
                .caches
                .credential(claim.access_key_id())
                .ok_or_else(AuthError::access_key_not_found)?;
            signing::authenticate(
                request,
                &claim,
                credential.secret.expose(),
                Timestamp::now(),
                &ctx.nonces,
            )?;
            Ok(Caller::service_account(
                &credential.namespace,
                &credential.service_account,
            ))
        }
        Claim::Bearer(token) => {
            let username = ctx
                .token_reviews
                .username(&ctx.kube, token.expose())
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "a TokenReview failed");
                    ApiError::unavailable("The token could not be reviewed; try again.")
                })?;
            let username = username.ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "InvalidBearerToken",
                    format!(
                        "The bearer token was not accepted: it must be a valid ServiceAccount \
                         token issued for the audience \"{TOKEN_AUDIENCE}\" (a projected token \
                         with audience: {TOKEN_AUDIENCE})."
                    ),
                )
            })?;
            let mut parts = username.split(':');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some("system"), Some("serviceaccount"), Some(namespace), Some(name)) => {
                    Ok(Caller::service_account(namespace, name))
                }
                _ => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "InvalidBearerToken",
                    "Only ServiceAccount tokens are accepted: a request acts in its \
                     ServiceAccount's namespace.",
                )),
            }
        }
    }
}
