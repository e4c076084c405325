//! Prometheus metrics with bounded labels, in the text exposition format.
//!
//! Counters are kept as reconciles happen; everything about keys is computed when scraped,
//! from the Key controller's cache, so a deleted Key leaves no stale series behind. Labels are
//! fixed words (controller, result, error category, state, key spec, condition reason) or a
//! key's namespace and name; never object contents or error messages.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use crate::api::Key;
use crate::kms::reason::READY;
use crate::kms::schedule::parse_kms_time;

/// Upper bounds of the reconcile duration histogram, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The operator's metrics and readiness.
pub struct Telemetry {
    reconciles: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    errors: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    durations: Mutex<BTreeMap<&'static str, Histogram>>,
    keys: OnceLock<Store<Key>>,
    asymmetric_limit: usize,
    /// This replica holds the leader Lease (or runs without election).
    leader: AtomicBool,
    /// Ready to be counted on: a standby, or a leader whose caches are synced.
    ready: AtomicBool,
}

impl Telemetry {
    pub fn new(asymmetric_limit: usize) -> Self {
        Telemetry {
            reconciles: Mutex::default(),
            errors: Mutex::default(),
            durations: Mutex::default(),
            keys: OnceLock::new(),
            asymmetric_limit,
            leader: AtomicBool::new(false),
            ready: AtomicBool::new(false),
        }
    }

    /// The Key cache that per-key metrics are computed from.
    pub fn watch_keys(&self, keys: Store<Key>) {
        let _ = self.keys.set(keys);
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Counts one reconcile of `controller`: its outcome, error category and duration.
    pub fn reconciled(
        &self,
        controller: &'static str,
        took: Duration,
        error: Option<&'static str>,
    ) {
        let result = if error.is_some() { "error" } else { "success" };
        *self
            .reconciles
            .lock()
            .expect("metrics")
            .entry((controller, result))
            .or_default() += 1;
        if let Some(category) = error {
            *self
                .errors
                .lock()
                .expect("metrics")
                .entry((controller, category))
                .or_default() += 1;
        }
        let mut durations = self.durations.lock().expect("metrics");
        let histogram = durations.entry(controller).or_default();
        let secs = took.as_secs_f64();
        for (bucket, bound) in histogram.counts.iter_mut().zip(BUCKETS) {
            if secs <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += secs;
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self, now: Timestamp) -> String {
        let mut out = String::new();
        self.render_reconciles(&mut out);
        self.render_keys(&mut out, now);
        header(
            &mut out,
            "keyward_leader",
            "gauge",
            "1 if this replica holds the leader Lease.",
        );
        let _ = writeln!(
            out,
            "keyward_leader {}",
            u8::from(self.leader.load(Ordering::Relaxed))
        );
        out
    }

    fn render_reconciles(&self, out: &mut String) {
        header(
            out,
            "keyward_reconciles_total",
            "counter",
            "Reconciles by controller and result.",
        );
        for ((controller, result), n) in self.reconciles.lock().expect("metrics").iter() {
            let _ = writeln!(
                out,
                "keyward_reconciles_total{{controller=\"{controller}\",result=\"{result}\"}} {n}"
            );
        }
        header(
            out,
            "keyward_reconcile_errors_total",
            "counter",
            "Failed reconciles by error category.",
        );
        for ((controller, category), n) in self.errors.lock().expect("metrics").iter() {
            let _ = writeln!(
                out,
                "keyward_reconcile_errors_total{{controller=\"{controller}\",category=\"{category}\"}} {n}"
            );
        }
        header(
            out,
            "keyward_reconcile_duration_seconds",
            "histogram",
            "Time a reconcile took.",
        );
        for (controller, h) in self.durations.lock().expect("metrics").iter() {
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "keyward_reconcile_duration_seconds_bucket{{controller=\"{controller}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "keyward_reconcile_duration_seconds_bucket{{controller=\"{controller}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "keyward_reconcile_duration_seconds_sum{{controller=\"{controller}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "keyward_reconcile_duration_seconds_count{{controller=\"{controller}\"}} {}",
                h.count
            );
        }
    }

    fn render_keys(&self, out: &mut String, now: Timestamp) {
        let keys = self.keys.get().map(Store::state).unwrap_or_default();
        let counts = KeyCounts::gather(&keys, now);
        header(
            out,
            "keyward_keys",
            "gauge",
            "Keys by KMS key state and key spec.",
        );
        for ((state, spec), n) in counts.by_state {
            let _ = writeln!(
                out,
                "keyward_keys{{state=\"{state}\",key_spec=\"{spec}\"}} {n}"
            );
        }
        header(
            out,
            "keyward_keys_not_ready",
            "gauge",
            "Keys whose Ready condition is False, by reason.",
        );
        for (reason, n) in counts.not_ready {
            let _ = writeln!(
                out,
                "keyward_keys_not_ready{{reason=\"{}\"}} {n}",
                escape(&reason)
            );
        }
        render_per_key(
            out,
            "keyward_key_versions",
            "Versions of each key.",
            &counts.versions,
        );
        render_per_key(
            out,
            "keyward_key_next_rotation_seconds",
            "Seconds until each rotating key's next rotation (negative: overdue).",
            &counts.next_rotation,
        );
        self.render_asymmetric(out, counts.asymmetric_versions);
    }

    fn render_asymmetric(&self, out: &mut String, held: usize) {
        header(
            out,
            "keyward_asymmetric_key_versions",
            "gauge",
            "Asymmetric key versions held, initial versions included.",
        );
        let _ = writeln!(out, "keyward_asymmetric_key_versions {held}");
        header(
            out,
            "keyward_asymmetric_key_versions_limit",
            "gauge",
            "The limit on asymmetric key versions (--max-asymmetric-key-versions).",
        );
        let _ = writeln!(
            out,
            "keyward_asymmetric_key_versions_limit {}",
            self.asymmetric_limit
        );
    }
}

/// A Key's namespace and name, as metric labels.
type KeyId = (String, String);

/// What the key metrics report, gathered from the cached Keys' status in one pass.
#[derive(Default)]
struct KeyCounts {
    by_state: BTreeMap<(String, String), u64>,
    not_ready: BTreeMap<String, u64>,
    versions: Vec<(KeyId, i64)>,
    next_rotation: Vec<(KeyId, i64)>,
    asymmetric_versions: usize,
}

impl KeyCounts {
    fn gather(keys: &[Arc<Key>], now: Timestamp) -> Self {
        let mut counts = KeyCounts::default();
        for key in keys {
            let Some(status) = key.status.as_ref() else {
                continue;
            };
            let id = (key.namespace().unwrap_or_default(), key.name_any());
            if let Some(ready) = status
                .conditions
                .iter()
                .find(|c| c.type_ == READY && c.status != "True")
            {
                *counts.not_ready.entry(ready.reason.clone()).or_default() += 1;
            }
            let Some(m) = status.key_metadata.as_ref() else {
                continue;
            };
            *counts
                .by_state
                .entry((m.key_state.to_string(), m.key_spec.to_string()))
                .or_default() += 1;
            let versions = status.key_versions.len();
            counts.versions.push((id.clone(), versions as i64));
            if !m.key_spec.is_symmetric() {
                counts.asymmetric_versions += versions;
            }
            if let Some(due) = m.next_rotation_date.as_deref().and_then(parse_kms_time) {
                counts
                    .next_rotation
                    .push((id, due.duration_since(now).as_secs()));
            }
        }
        counts
    }
}

/// A gauge with one sample per key.
fn render_per_key(out: &mut String, name: &str, help: &str, samples: &[(KeyId, i64)]) {
    header(out, name, "gauge", help);
    for ((namespace, key), value) in samples {
        let _ = writeln!(
            out,
            "{name}{{namespace=\"{}\",name=\"{}\"}} {value}",
            escape(namespace),
            escape(key)
        );
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Escapes a label value as the text format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_are_counted_by_controller_result_and_category() {
        let t = Telemetry::new(50);
        t.reconciled("key", Duration::from_millis(3), None);
        t.reconciled("key", Duration::from_millis(300), Some("KubeApi"));
        t.reconciled("keyversion", Duration::from_secs(20), None);
        let text = t.render(Timestamp::UNIX_EPOCH);
        assert!(
            text.contains("keyward_reconciles_total{controller=\"key\",result=\"success\"} 1\n")
        );
        assert!(text.contains("keyward_reconciles_total{controller=\"key\",result=\"error\"} 1\n"));
        assert!(text.contains(
            "keyward_reconcile_errors_total{controller=\"key\",category=\"KubeApi\"} 1\n"
        ));
        assert!(text.contains(
            "keyward_reconcile_duration_seconds_bucket{controller=\"key\",le=\"0.005\"} 1\n"
        ));
        assert!(text.contains(
            "keyward_reconcile_duration_seconds_bucket{controller=\"key\",le=\"0.5\"} 2\n"
        ));
        assert!(text.contains(
            "keyward_reconcile_duration_seconds_bucket{controller=\"keyversion\",le=\"10\"} 0\n"
        ));
        assert!(text.contains(
            "keyward_reconcile_duration_seconds_bucket{controller=\"keyversion\",le=\"+Inf\"} 1\n"
        ));
        assert!(text.contains("keyward_reconcile_duration_seconds_count{controller=\"key\"} 2\n"));
        assert!(text.contains("keyward_asymmetric_key_versions_limit 50\n"));
        assert!(text.contains("keyward_leader 0\n"));
    }

    #[test]
    fn every_metric_has_help_and_type() {
        let text = Telemetry::new(50).render(Timestamp::UNIX_EPOCH);
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(helps, types);
        assert_eq!(helps, 10);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
