//! What a client proves its identity with: an AccessKey pair (an `AccessKey`'s issued Secret)
//! or a ServiceAccount token for the audience `keyward`. Secrets are wiped on drop and never
//! shown by `Debug`.

use std::fmt;

use zeroize::Zeroizing;

#[derive(Clone)]
pub enum Credentials {
    /// Sign every request with ACS3-HMAC-SHA256 under the pair's secret.
    AccessKey {
        id: String,
        secret: Zeroizing<String>,
    },
    /// Send the token (the tea SDK's `x-acs-bearer-token`); nothing is signed.
    Bearer(Zeroizing<String>),
}

impl Credentials {
    pub fn access_key(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Credentials::AccessKey {
            id: id.into(),
            secret: Zeroizing::new(secret.into()),
        }
    }

    /// A bearer token; surrounding whitespace (a token file's final newline) is dropped.
    pub fn bearer(token: impl Into<String>) -> Self {
        let token = Zeroizing::new(token.into());
        Credentials::Bearer(Zeroizing::new(token.trim().to_string()))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::AccessKey { id, .. } => f
                .debug_struct("AccessKey")
                .field("id", id)
                .finish_non_exhaustive(),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}
