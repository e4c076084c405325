//! Signature v1: HMAC-SHA1 over the sorted parameters (the `aliyun-python-sdk-kms` SDK, and the
//! tea SDK with `signature_algorithm='v2'`).
//!
//! The string to sign is `METHOD&%2F&` followed by the percent-encoded canonical query: every
//! parameter (query and form body) but `Signature`, sorted by name, `encode(name)=encode(value)`
//! joined by `&`, blank values kept (the v1 SDK signs `SignatureType=`). The signature is the
//! base64 of HMAC-SHA1 keyed with the AccessKeySecret followed by `&`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use zeroize::Zeroizing;

use super::encoding::percent_encode;
use super::{AuthError, Proof, SignedClaim};
use crate::service::request::{ACTION_PARAM, ApiRequest};

/// The parameter carrying the signature; its presence marks a v1 request.
pub(super) const SIGNATURE_PARAM: &str = "Signature";
const METHOD: &str = "HMAC-SHA1";
const VERSION: &str = "1.0";

/// Reads a v1 request's claim: who signed, when, with which nonce.
pub(super) fn claim(request: &ApiRequest) -> Result<SignedClaim, AuthError> {
    let required = |name: &str| request.param(name).ok_or_else(|| AuthError::missing(name));
    let method = required("SignatureMethod")?;
    if method != METHOD {
        return Err(AuthError::method(format!(
            "SignatureMethod must be {METHOD} for a Signature parameter (or sign with ACS3-HMAC-SHA256)"
        )));
    }
    if required("SignatureVersion")? != VERSION {
        return Err(AuthError::method(format!(
            "SignatureVersion must be {VERSION}"
        )));
    }
    if request
        .param("SignatureType")
        .is_some_and(|t| !t.is_empty())
    {
        return Err(AuthError::method(
            "SignatureType must be empty or absent for a Signature parameter",
        ));
    }
    // The action must come from the signed parameters, never from the unsigned header.
    required(ACTION_PARAM)?;
    let signature = STANDARD
        .decode(required(SIGNATURE_PARAM)?)
        .unwrap_or_default();
    SignedClaim::new(
        required("AccessKeyId")?,
        required("SignatureNonce")?,
        required("Timestamp")?,
        Proof::V1 { signature },
    )
}

/// The string the client signed, rebuilt from the request.
pub(super) fn string_to_sign(request: &ApiRequest) -> String {
    let canonical = request
        .params()
        .iter()
        .filter(|(name, _)| *name != SIGNATURE_PARAM)
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        request.method().as_str(),
        percent_encode(request.path()),
        percent_encode(&canonical)
    )
}

fn key(secret: &[u8]) -> hmac::Key {
    let key = Zeroizing::new([secret, b"&"].concat());
    hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key)
}

/// HMAC-SHA1 of the string to sign under `secret` (what the client computes).
#[cfg(test)]
pub(super) fn sign(string_to_sign: &str, secret: &[u8]) -> hmac::Tag {
    hmac::sign(&key(secret), string_to_sign.as_bytes())
}

/// Checks `signature` in constant time.
pub(super) fn verify(
    request: &ApiRequest,
    signature: &[u8],
    secret: &[u8],
) -> Result<(), AuthError> {
    let string_to_sign = string_to_sign(request);
    hmac::verify(&key(secret), string_to_sign.as_bytes(), signature)
        .map_err(|_| AuthError::mismatch(string_to_sign))
}
