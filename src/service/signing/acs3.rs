//! ACS3-HMAC-SHA256: the `Authorization` header of the tea SDK (`alibabacloud-kms20160120`).
//!
//! `Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<h1;h2;...>,Signature=<hex>`.
//! The canonical request is, one per line: the method, the path, the canonical query (query
//! parameters only, sorted by name, `encode(name)=encode(value)` joined by `&`), one
//! `name:value` line per signed header (values trimmed; repeated values sorted and joined by
//! `,`), an empty line, the signed header names, and the hex SHA-256 of the body. The string to
//! sign is `ACS3-HMAC-SHA256\n` + hex SHA-256 of the canonical request; the signature is the hex
//! HMAC-SHA256 keyed with the AccessKeySecret itself. The body is covered by
//! `x-acs-content-sha256`, which must be its SHA-256.
//!
//! Query names are percent-encoded like values, as Alibaba documents; the tea SDK leaves names
//! as they are, which is the same for every KMS parameter name (ASCII letters).

use ring::hmac;

use super::encoding::{decode_hex, percent_encode, sha256_hex};
use super::{AuthError, Proof, SignedClaim};
use crate::service::request::{ACTION_HEADER, ApiRequest, VERSION_HEADER};

/// The algorithm named at the start of the `Authorization` header.
pub(super) const ALGORITHM: &str = "ACS3-HMAC-SHA256";
const DATE_HEADER: &str = "x-acs-date";
const NONCE_HEADER: &str = "x-acs-signature-nonce";
const CONTENT_SHA256_HEADER: &str = "x-acs-content-sha256";

/// The headers every ACS3 request carries and signs. Besides these, every `x-acs-*` header
/// present and `content-type` (when present) must be signed, so nothing that changes the
/// request's meaning can be added or altered unsigned.
const ALWAYS_SIGNED: [&str; 6] = [
    "host",
    ACTION_HEADER,
    VERSION_HEADER,
    DATE_HEADER,
    NONCE_HEADER,
    CONTENT_SHA256_HEADER,
];

/// Reads the claim of a request whose `Authorization` is `ACS3-HMAC-SHA256 <fields>`.
pub(super) fn claim(request: &ApiRequest, fields: &str) -> Result<SignedClaim, AuthError> {
    let fields = AuthorizationFields::parse(fields)?;
    let signed_headers = signed_headers(fields.signed_headers)?;
    for name in &signed_headers {
        if request.header_values(name).is_empty() {
            return Err(AuthError::incomplete(format!(
                "SignedHeaders names {name}, which the request does not carry"
            )));
        }
    }
    let must_sign = ALWAYS_SIGNED.into_iter().chain(
        request
            .header_names()
            .filter(|name| name.starts_with("x-acs-") || *name == "content-type"),
    );
    for name in must_sign {
        if !signed_headers.iter().any(|signed| signed == name) {
            return Err(AuthError::incomplete(format!(
                "header {name} must be present and signed (listed in SignedHeaders)"
            )));
        }
    }
    let header = |name: &str| request.header(name).unwrap_or_default();
    let signature = decode_hex(fields.signature).unwrap_or_default();
    SignedClaim::new(
        fields.credential,
        header(NONCE_HEADER),
        header(DATE_HEADER),
        Proof::Acs3 {
            signed_headers,
            signature,
        },
    )
}

/// The three fields of the `Authorization` header, each exactly once.
struct AuthorizationFields<'a> {
    credential: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

impl<'a> AuthorizationFields<'a> {
    fn parse(fields: &'a str) -> Result<Self, AuthError> {
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for field in fields.split(',').map(str::trim) {
            let (name, value) = field.split_once('=').unwrap_or((field, ""));
            let slot = match name.trim() {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed_headers,
                "Signature" => &mut signature,
                _ => {
                    return Err(AuthError::incomplete(
                        "the Authorization header has a field other than Credential, SignedHeaders and Signature",
                    ));
                }
            };
            if slot.replace(value.trim()).is_some() {
                return Err(AuthError::incomplete(format!(
                    "the Authorization header has {} twice",
                    name.trim()
                )));
            }
        }
        let present = |value: Option<&'a str>, name: &str| {
            value.filter(|v| !v.is_empty()).ok_or_else(|| {
                AuthError::incomplete(format!("the Authorization header has no {name}"))
            })
        };
        Ok(AuthorizationFields {
            credential: present(credential, "Credential")?,
            signed_headers: present(signed_headers, "SignedHeaders")?,
            signature: present(signature, "Signature")?,
        })
    }
}

/// The signed header names: lower-case, sorted, each once, as the SDKs send them.
fn signed_headers(list: &str) -> Result<Vec<String>, AuthError> {
    let names: Vec<String> = list.split(';').map(str::to_owned).collect();
    let well_formed = names.iter().all(|name| {
        !name.is_empty()
            && !name
                .bytes()
                .any(|b| b.is_ascii_uppercase() || b.is_ascii_whitespace())
    }) && names.windows(2).all(|pair| pair[0] < pair[1]);
    if !well_formed {
        return Err(AuthError::incomplete(
            "SignedHeaders must be lower-case header names, sorted, each once, separated by ';'",
        ));
    }
    Ok(names)
}

/// The canonical request rebuilt from the request (shown in tests; never sent back, as it holds
/// header values).
pub(super) fn canonical_request(request: &ApiRequest, signed_headers: &[String]) -> String {
    let mut query: Vec<_> = request.query_params().iter().collect();
    query.sort();
    let query = query
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    let headers: String = signed_headers
        .iter()
        .map(|name| {
            let mut values: Vec<&str> = request
                .header_values(name)
                .iter()
                .map(|v| v.trim())
                .collect();
            values.sort_unstable();
            format!("{name}:{}\n", values.join(","))
        })
        .collect();
    [
        request.method().as_str(),
        request.path(),
        &query,
        &headers,
        &signed_headers.join(";"),
        &sha256_hex(request.body()),
    ]
    .join("\n")
}

/// The string the client signed, rebuilt from the request.
pub(super) fn string_to_sign(request: &ApiRequest, signed_headers: &[String]) -> String {
    let canonical = canonical_request(request, signed_headers);
    format!("{ALGORITHM}\n{}", sha256_hex(canonical.as_bytes()))
}

/// HMAC-SHA256 of the string to sign under `secret` (what the client computes).
#[cfg(test)]
pub(super) fn sign(string_to_sign: &str, secret: &[u8]) -> hmac::Tag {
    hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, secret),
        string_to_sign.as_bytes(),
    )
}

/// Checks `signature` in constant time, then that `x-acs-content-sha256` is the body's hash
/// (the canonical request holds the body's real hash, so a changed body already fails the
/// signature; this catches a client that signed one hash and sent another body).
pub(super) fn verify(
    request: &ApiRequest,
    signed_headers: &[String],
    signature: &[u8],
    secret: &[u8],
) -> Result<(), AuthError> {
    let string_to_sign = string_to_sign(request, signed_headers);
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    if hmac::verify(&key, string_to_sign.as_bytes(), signature).is_err()
        || request.header(CONTENT_SHA256_HEADER) != Some(sha256_hex(request.body()).as_str())
    {
        return Err(AuthError::mismatch(string_to_sign));
    }
    Ok(())
}
