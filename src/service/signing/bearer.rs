//! Bearer tokens: only extracted here; whether one is valid (a Kubernetes TokenReview) is the
//! caller's decision.
//!
//! Three forms arrive: `Authorization: Bearer <token>` (keyward's own: a pod's ServiceAccount
//! token, kubectl, curl), the tea SDK's `x-acs-bearer-token` header (with the query parameter
//! `SignatureType=BEARERTOKEN`), and the tea SDK's v1 path, which puts the token in the query as
//! `BearerToken` (so it can reach access logs: the server must not log query strings).

use std::fmt;

use zeroize::Zeroizing;

use super::AuthError;

/// The `x-acs-bearer-token` header of the tea SDK.
pub(super) const BEARER_HEADER: &str = "x-acs-bearer-token";
/// The `BearerToken` query parameter of the tea SDK's v1 path.
pub(super) const BEARER_PARAM: &str = "BearerToken";

/// A bearer token. Its `Debug` is redacted, it has no `Display`, and it is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(Zeroizing<String>);

impl BearerToken {
    /// A token as sent; refused when empty.
    pub(super) fn new(token: &str, source: &str) -> Result<Self, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::incomplete(format!(
                "the bearer token in {source} is empty"
            )));
        }
        Ok(BearerToken(Zeroizing::new(token.to_owned())))
    }

    /// The token, to hand to a TokenReview and nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}
