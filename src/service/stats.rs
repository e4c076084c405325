//! The KMS API's metrics: requests by action and outcome, and how often the API answered from
//! what it keeps (material, RBAC decisions, TokenReviews) rather than asking the API server.
//! Labels are fixed words only: a served action's name (else `Unknown`) and the KMS's error
//! codes, never a key, caller or namespace.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use super::ApiContext;
use super::actions::SERVED;
use crate::runtime::metrics::header;

/// Requests answered, by action and code (`OK` for a document).
#[derive(Default)]
pub struct ApiStats {
    answered: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl ApiStats {
    /// Counts one answer to `action` (as the request named it), `None` for a document.
    pub fn answered(&self, action: Option<&str>, code: Option<&str>) {
        let action = SERVED
            .into_iter()
            .find(|served| Some(*served) == action)
            .unwrap_or("Unknown");
        let code = code.unwrap_or("OK").to_string();
        let mut answered = self.answered.lock().unwrap_or_else(|e| e.into_inner());
        *answered.entry((action, code)).or_default() += 1;
    }
}

impl ApiContext {
    /// The API's series, in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        header(
            out,
            "keyward_kms_api_requests_total",
            "counter",
            "KMS API requests answered, by action and code (OK, or the KMS error code).",
        );
        let answered = self
            .stats
            .answered
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for ((action, code), n) in answered.iter() {
            let _ = writeln!(
                out,
                "keyward_kms_api_requests_total{{action=\"{action}\",code=\"{code}\"}} {n}"
            );
        }
        drop(answered);
        header(
            out,
            "keyward_kms_api_store_reads_total",
            "counter",
            "Key material the API needed: from a store it kept (cache) or read from the API server (cluster).",
        );
        let (kept, read) = self.caches.materials.counts();
        let _ = writeln!(
            out,
            "keyward_kms_api_store_reads_total{{from=\"cache\"}} {kept}"
        );
        let _ = writeln!(
            out,
            "keyward_kms_api_store_reads_total{{from=\"cluster\"}} {read}"
        );
        header(
            out,
            "keyward_kms_api_reviews_total",
            "counter",
            "SubjectAccessReview and TokenReview answers the API needed: reused (cache) or asked (cluster).",
        );
        for (review, counts) in [
            ("SubjectAccessReview", self.authorizer.counts()),
            ("TokenReview", self.token_reviews.counts()),
        ] {
            for (from, n) in [("cache", counts.reused), ("cluster", counts.asked)] {
                let _ = writeln!(
                    out,
                    "keyward_kms_api_reviews_total{{review=\"{review}\",from=\"{from}\"}} {n}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_labelled_by_served_names_only() {
        let stats = ApiStats::default();
        stats.answered(Some("Encrypt"), None);
        stats.answered(Some("Encrypt"), Some("Rejected.Disabled"));
        stats.answered(Some("Encrypt"), None);
        stats.answered(
            Some("x\"} 1\nkeyward_forged"),
            Some("InvalidAction.NotFound"),
        );
        stats.answered(None, Some("MissingParameter"));
        let answered = stats.answered.lock().unwrap();
        let seen: Vec<_> = answered
            .iter()
            .map(|((a, c), n)| (*a, c.as_str(), *n))
            .collect();
        assert_eq!(
            seen,
            [
                ("Encrypt", "OK", 2),
                ("Encrypt", "Rejected.Disabled", 1),
                ("Unknown", "InvalidAction.NotFound", 1),
                ("Unknown", "MissingParameter", 1),
            ]
        );
    }
}
