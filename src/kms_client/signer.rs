//! A KMS API request as the current official SDK (`alibabacloud-kms20160120`, the tea SDK)
//! sends it: `POST /`, the parameters in the query (or a form body), the `x-acs-*` headers,
//! and either an `Authorization: ACS3-HMAC-SHA256 ...` signature or the bearer token's
//! `x-acs-bearer-token` header with `SignatureType=BEARERTOKEN`. Pure: the clock and the nonce
//! are arguments.
//!
//! The canonical request is the one `crate::service::signing` verifies: method, path, sorted
//! percent-encoded query, one `name:value` line per signed header, the signed header names, and
//! the hex SHA-256 of the body. Every header the client sets is signed.

use jiff::Timestamp;
use ring::hmac;

use super::credentials::Credentials;
use crate::kms::schedule::format_kms_time;
use crate::service::signing::encoding::{hex, percent_encode, sha256_hex};

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";
/// The API version every request names.
pub const API_VERSION: &str = "2016-01-20";
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// One call before it is signed.
#[derive(Clone, Debug)]
pub struct Unsigned {
    /// The `Host` header (host, and the port when it is not the scheme's).
    pub host: String,
    pub action: String,
    /// Parameters sent in the URL query, in this order.
    pub query: Vec<(String, String)>,
    /// Parameters sent as an `application/x-www-form-urlencoded` body (the tea SDK puts a few
    /// there, such as Decrypt's `Recipient`); none for an empty body.
    pub form: Vec<(String, String)>,
    /// Further headers to send and sign (`user-agent`), names in lower case.
    pub headers: Vec<(String, String)>,
}

/// What goes on the wire. Its `Debug` shows no header values (one is the token or signature).
#[derive(Clone)]
pub struct Signed {
    /// The request target: `/` and the query.
    pub target: String,
    /// Headers in the order sent, names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Signed")
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Builds the request for `credentials`, dated `date`, with `nonce` (32 hex digits, as the SDK
/// sends, from [`nonce`]).
pub fn sign(call: &Unsigned, credentials: &Credentials, date: Timestamp, nonce: &str) -> Signed {
    let mut query = call.query.clone();
    if let Credentials::Bearer(_) = credentials {
        query.push(("SignatureType".into(), "BEARERTOKEN".into()));
    }
    let body = encode_pairs(&call.form).into_bytes();
    let body_hash = sha256_hex(&body);
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), call.host.clone()),
        ("x-acs-version".into(), API_VERSION.into()),
        ("x-acs-action".into(), call.action.clone()),
    ];
    headers.extend(call.headers.iter().cloned());
    headers.extend([
        ("x-acs-date".into(), format_kms_time(date)),
        ("x-acs-signature-nonce".into(), nonce.into()),
        ("accept".into(), "application/json".into()),
    ]);
    if !body.is_empty() {
        headers.push(("content-type".into(), FORM_CONTENT_TYPE.into()));
    }
    headers.push(("x-acs-content-sha256".into(), body_hash.clone()));
    match credentials {
        Credentials::Bearer(token) => {
            headers.push(("x-acs-bearer-token".into(), token.to_string()));
        }
        Credentials::AccessKey { id, secret } => {
            let (signed_names, canonical) = canonical_request(&query, &headers, &body_hash);
            let string_to_sign = format!("{ALGORITHM}\n{}", sha256_hex(canonical.as_bytes()));
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
            let signature = hex(hmac::sign(&key, string_to_sign.as_bytes()).as_ref());
            headers.push((
                "authorization".into(),
                format!(
                    "{ALGORITHM} Credential={id},SignedHeaders={signed_names},Signature={signature}"
                ),
            ));
        }
    }
    let target = match query.is_empty() {
        true => "/".to_string(),
        false => format!("/?{}", encode_pairs(&query)),
    };
    Signed {
        target,
        headers,
        body,
    }
}

/// A fresh nonce: 16 random bytes in hex, as the SDK sends.
pub fn nonce() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random number generator");
    hex(&bytes)
}

/// `name=value&...`, both percent-encoded (the server decodes `%20` and `+` alike).
fn encode_pairs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The signed header names (`a;b;c`) and the canonical request over every header in `headers`.
fn canonical_request(
    query: &[(String, String)],
    headers: &[(String, String)],
    body_hash: &str,
) -> (String, String) {
    let mut sorted_query: Vec<&(String, String)> = query.iter().collect();
    sorted_query.sort();
    let canonical_query = sorted_query
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    let mut sorted_headers: Vec<&(String, String)> = headers.iter().collect();
    sorted_headers.sort();
    let canonical_headers: String = sorted_headers
        .iter()
        .map(|(name, value)| format!("{name}:{}\n", value.trim()))
        .collect();
    let signed_names = sorted_headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical = [
        "POST",
        "/",
        &canonical_query,
        &canonical_headers,
        &signed_names,
        body_hash,
    ]
    .join("\n");
    (signed_names, canonical)
}
