//! Who sent a KMS API request, and whether their signature holds (pure: the caller looks the
//! AccessKey secret up, reviews bearer tokens, and supplies the clock).
//!
//! Three schemes arrive on the same `POST /`:
//! - **Signature v1** ([`v1`]): a `Signature` parameter, HMAC-SHA1 (the v1 SDK,
//!   `aliyun-python-sdk-kms`, and the tea SDK's `signature_algorithm='v2'` path);
//! - **ACS3-HMAC-SHA256** ([`acs3`]): an `Authorization: ACS3-HMAC-SHA256 ...` header (the tea
//!   SDK, `alibabacloud-kms20160120`);
//! - **Bearer** ([`bearer`]): `Authorization: Bearer <token>`, the tea SDK's
//!   `x-acs-bearer-token` header, or its `BearerToken` parameter. Only extracted here.
//!
//! A request carrying more than one of these, or none, is refused. The order of a request:
//!
//! 1. [`claim`]: read the credentials: a [`SignedClaim`] (AccessKeyId, nonce, timestamp) or a
//!    [`BearerToken`]. Malformed credentials are refused here, before any secret is needed.
//! 2. The caller looks the AccessKeyId up ([`AuthError::access_key_not_found`] if unknown).
//! 3. [`authenticate`]: [`verify`] the signature (constant time), [`check_time`] (within
//!    [`TIME_WINDOW`] of now), then record the nonce in the [`NonceCache`] (only now, so that
//!    nobody without the secret can fill it).

mod acs3;
mod bearer;
pub(crate) mod encoding;
mod error;
mod nonce;
mod v1;

#[cfg(test)]
mod tests;

use std::fmt;

use jiff::{SignedDuration, Timestamp};

pub use bearer::BearerToken;
pub use error::{AuthCode, AuthError, SIGNATURE_MISMATCH_MESSAGE};
pub use nonce::NonceCache;

use crate::kms::schedule::parse_kms_time;
use crate::service::request::ApiRequest;

/// How far a signed request's timestamp may be from the server's clock, either way.
pub const TIME_WINDOW: SignedDuration = SignedDuration::from_mins(15);

/// AccessKeyIds and nonces longer than this are refused (the SDKs send ~24 and 32 characters).
const MAX_ID_LEN: usize = 128;

/// The credentials a request presents.
#[derive(Debug)]
pub enum Claim {
    /// An HMAC signature by an AccessKey: verify it with [`authenticate`].
    Signed(SignedClaim),
    /// A bearer token (a Kubernetes ServiceAccount token): the caller reviews it.
    Bearer(BearerToken),
}

/// The signature schemes keyward verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Signature v1, HMAC-SHA1 over the sorted parameters.
    HmacSha1,
    /// ACS3-HMAC-SHA256 in the `Authorization` header.
    Acs3HmacSha256,
}

impl Scheme {
    /// The scheme's name on the wire (`SignatureMethod`, or the `Authorization` algorithm).
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::HmacSha1 => "HMAC-SHA1",
            Scheme::Acs3HmacSha256 => acs3::ALGORITHM,
        }
    }
}

/// A signature's claim: who signed, when, and with which nonce. Made only by [`claim`].
#[derive(Clone, PartialEq, Eq)]
pub struct SignedClaim {
    access_key_id: String,
    nonce: String,
    timestamp: Timestamp,
    proof: Proof,
}

/// What the signature is checked against.
#[derive(Clone, PartialEq, Eq)]
enum Proof {
    V1 {
        signature: Vec<u8>,
    },
    Acs3 {
        signed_headers: Vec<String>,
        signature: Vec<u8>,
    },
}

impl SignedClaim {
    fn new(
        access_key_id: &str,
        nonce: &str,
        timestamp: &str,
        proof: Proof,
    ) -> Result<Self, AuthError> {
        let bounded = |value: &str, what: &str| match value.len() {
            0 => Err(AuthError::incomplete(format!("the {what} is empty"))),
            len if len > MAX_ID_LEN => Err(AuthError::incomplete(format!(
                "the {what} is longer than {MAX_ID_LEN} characters"
            ))),
            _ => Ok(value.to_owned()),
        };
        let access_key_id = bounded(access_key_id, "AccessKeyId")?;
        let nonce = bounded(nonce, "signature nonce")?;
        let timestamp = parse_kms_time(timestamp).ok_or_else(|| {
            AuthError::new(
                AuthCode::TimestampFormat,
                "Specified time stamp or date value is not well formatted: use UTC yyyy-MM-ddTHH:mm:ssZ.",
            )
        })?;
        Ok(SignedClaim {
            access_key_id,
            nonce,
            timestamp,
            proof,
        })
    }

    pub fn scheme(&self) -> Scheme {
        match self.proof {
            Proof::V1 { .. } => Scheme::HmacSha1,
            Proof::Acs3 { .. } => Scheme::Acs3HmacSha256,
        }
    }

    /// The AccessKeyId whose secret signed (`AccessKeyId`, or the ACS3 `Credential`).
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// `SignatureNonce`, or the `x-acs-signature-nonce` header.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// `Timestamp`, or the `x-acs-date` header (to the second).
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }
}

impl fmt::Debug for SignedClaim {
    /// Without the signature.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("SignedClaim");
        debug
            .field("scheme", &self.scheme())
            .field("access_key_id", &self.access_key_id)
            .field("nonce", &self.nonce)
            .field("timestamp", &self.timestamp);
        if let Proof::Acs3 { signed_headers, .. } = &self.proof {
            debug.field("signed_headers", signed_headers);
        }
        debug.finish_non_exhaustive()
    }
}

/// Which credential a request presents, before it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presented {
    SignatureParam,
    Acs3Authorization,
    BearerAuthorization,
    BearerHeader,
    BearerParam,
}

impl Presented {
    fn describe(self) -> &'static str {
        match self {
            Presented::SignatureParam => "a Signature parameter",
            Presented::Acs3Authorization => "an ACS3-HMAC-SHA256 Authorization header",
            Presented::BearerAuthorization => "a Bearer Authorization header",
            Presented::BearerHeader => "an x-acs-bearer-token header",
            Presented::BearerParam => "a BearerToken parameter",
        }
    }
}

/// The credentials a request presents (exactly one kind, well formed). Nothing is verified yet.
pub fn claim(request: &ApiRequest) -> Result<Claim, AuthError> {
    let authorization = request.header("authorization").map(|value| {
        let value = value.trim_start();
        value.split_once(' ').unwrap_or((value, ""))
    });
    let mut presented = Vec::new();
    if let Some((scheme, _)) = authorization {
        presented.push(match scheme {
            acs3::ALGORITHM => Presented::Acs3Authorization,
            s if s.eq_ignore_ascii_case("Bearer") => Presented::BearerAuthorization,
            // Only the scheme's name is echoed, and only when it is one of Alibaba's.
            s if s.starts_with("ACS3-") && s.len() < 32 => {
                return Err(AuthError::method(format!(
                    "{s} is not supported: sign with {} (or signature v1, HMAC-SHA1)",
                    acs3::ALGORITHM
                )));
            }
            _ => {
                return Err(AuthError::method(format!(
                    "the Authorization header is neither {} nor Bearer",
                    acs3::ALGORITHM
                )));
            }
        });
    }
    if request.header(bearer::BEARER_HEADER).is_some() {
        presented.push(Presented::BearerHeader);
    }
    if request.param(bearer::BEARER_PARAM).is_some() {
        presented.push(Presented::BearerParam);
    }
    if request.param(v1::SIGNATURE_PARAM).is_some() {
        presented.push(Presented::SignatureParam);
    }
    let credentials = authorization.map_or("", |(_, credentials)| credentials);
    match presented.as_slice() {
        [] if request.param("AccessKeyId").is_some() => {
            Err(AuthError::missing(v1::SIGNATURE_PARAM))
        }
        [] => Err(AuthError::incomplete(format!(
            "the request is not signed: sign it with {} or signature v1, or send a bearer token",
            acs3::ALGORITHM
        ))),
        [Presented::SignatureParam] => v1::claim(request).map(Claim::Signed),
        [Presented::Acs3Authorization] => acs3::claim(request, credentials).map(Claim::Signed),
        [Presented::BearerAuthorization] => {
            BearerToken::new(credentials, "the Authorization header").map(Claim::Bearer)
        }
        [Presented::BearerHeader] => {
            let token = request.header(bearer::BEARER_HEADER).unwrap_or_default();
            BearerToken::new(token, "x-acs-bearer-token").map(Claim::Bearer)
        }
        [Presented::BearerParam] => {
            let token = request.param(bearer::BEARER_PARAM).unwrap_or_default();
            BearerToken::new(token, "the BearerToken parameter").map(Claim::Bearer)
        }
        [first, second, ..] => Err(AuthError::incomplete(format!(
            "the request carries more than one credential ({} and {}): send one",
            first.describe(),
            second.describe()
        ))),
    }
}

/// Checks the claim's signature over `request` with the AccessKey's `secret`, in constant time.
/// A mismatch is `SignatureDoesNotMatch`, with keyward's string to sign in the message.
pub fn verify(request: &ApiRequest, claim: &SignedClaim, secret: &[u8]) -> Result<(), AuthError> {
    match &claim.proof {
        Proof::V1 { signature } => v1::verify(request, signature, secret),
        Proof::Acs3 {
            signed_headers,
            signature,
        } => acs3::verify(request, signed_headers, signature, secret),
    }
}

/// Refuses a claim whose timestamp is more than [`TIME_WINDOW`] before or after `now`
/// (`InvalidTimeStamp.Expired`). An unreadable timestamp was refused by [`claim`]
/// (`InvalidTimeStamp.Format`).
pub fn check_time(claim: &SignedClaim, now: Timestamp) -> Result<(), AuthError> {
    if now.duration_since(claim.timestamp).abs() > TIME_WINDOW {
        return Err(AuthError::new(
            AuthCode::TimestampExpired,
            "Specified time stamp or date value is expired: it must be within 15 minutes of the server's clock.",
        ));
    }
    Ok(())
}

/// The whole check of a signed request, in order: [`verify`], [`check_time`], then the nonce is
/// recorded in `nonces` (refused if used already).
pub fn authenticate(
    request: &ApiRequest,
    claim: &SignedClaim,
    secret: &[u8],
    now: Timestamp,
    nonces: &NonceCache,
) -> Result<(), AuthError> {
    verify(request, claim, secret)?;
    check_time(claim, now)?;
    nonces.admit(claim, now)
}
