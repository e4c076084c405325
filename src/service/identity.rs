//! Who sent a request: the ServiceAccount an AccessKey pair acts as (signature v1 or ACS3), or
//! the ServiceAccount a bearer token belongs to (a TokenReview with audience `keyward`).

use http::StatusCode;
use jiff::Timestamp;

use super::ApiContext;
use super::error::ApiError;
use super::request::ApiRequest;
use super::signing::{self, AuthError, Claim};

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
            let user = ctx
                .kube
                .review_token(token.expose(), TOKEN_AUDIENCE)
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "a TokenReview failed");
                    ApiError::unavailable("The token could not be reviewed; try again.")
                })?;
            let username = user.and_then(|u| u.username).ok_or_else(|| {
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
