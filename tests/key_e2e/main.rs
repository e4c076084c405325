//! The Key resource on a real API server: material, status, the seed's rules, the Secret
//! layout, and that nothing is ever minted twice, overwritten, or written when nothing changed.
//!
//! The tests by concern: [`metadata`] (material and KeyMetadata for every key spec, ARN, long
//! names, EXTERNAL keys), [`rules`] (what the controller and the schema refuse, immutable
//! fields), [`secrets`] (foreign, deleted, edited and lost Secrets, deleted Keys), [`writes`]
//! (no writes once converged, nothing minted twice).

#[path = "../common/mod.rs"]
mod common;

mod metadata;
mod rules;
mod secrets;
mod writes;

/// A KMS date: UTC, to the second.
const UTC_SECOND: &str = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$";

fn is_utc_second(text: &str) -> bool {
    let b = text.as_bytes();
    text.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && text.parse::<jiff::Timestamp>().is_ok()
}

fn is_uuid(text: &str) -> bool {
    uuid::Uuid::parse_str(text).is_ok_and(|u| u.hyphenated().to_string() == text)
}
