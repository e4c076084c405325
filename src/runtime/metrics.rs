//! Prometheus metrics with bounded labels, in the text exposition format.
//!
//! Counters are kept as reconciles happen; everything about keys is computed when scraped,
//! from the Key controller's cache, so a deleted Key leaves no stale series behind. Labels are
//! fixed words only (controller, result, error category, state, key spec, condition reason):
//! anyone who can reach the endpoint may scrape it, so no series names a key or its
//! namespace, and nothing grows with object contents or error messages.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::reflector::Store;

use crate::api::{AutomaticRotation, Key};
use crate::kms::error::Code;
use crate::kms::reason::{READY, Reason};
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
    /// What else must hold before the replica is ready: the KMS API's caches filled, when it
    /// serves the API (every replica does, so a Service must not send it calls before then).
    also_ready_when: OnceLock<ReadinessGate>,
    /// Series other parts render (the KMS API's, when this replica serves it; the HSM's).
    also_render: Mutex<Vec<MetricsSection>>,
}

/// Renders more series into the exposition, in the text format (see [`header`]).
pub type MetricsSection = Box<dyn Fn(&mut String) + Send + Sync>;

/// A condition readiness also waits for.
pub type ReadinessGate = Box<dyn Fn() -> bool + Send + Sync>;

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
            also_ready_when: OnceLock::new(),
            also_render: Mutex::default(),
        }
    }

    /// The Key cache that the key metrics are computed from.
    pub fn watch_keys(&self, keys: Store<Key>) {
        let _ = self.keys.set(keys);
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Adds a condition readiness waits for (set once).
    pub fn also_ready_when(&self, gate: ReadinessGate) {
        let _ = self.also_ready_when.set(gate);
    }

    /// Adds series to what [`Telemetry::render`] exposes.
    pub fn also_render(&self, section: MetricsSection) {
        self.also_render.lock().expect("metrics").push(section);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.also_ready_when.get().is_none_or(|gate| gate())
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
        for section in self.also_render.lock().expect("metrics").iter() {
            section(&mut out);
        }
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
            let _ = writeln!(out, "keyward_keys_not_ready{{reason=\"{reason}\"}} {n}");
        }
        header(
            out,
            "keyward_key_versions",
            "gauge",
            "Versions held by all keys, by key spec.",
        );
        for (spec, n) in counts.versions {
            let _ = writeln!(out, "keyward_key_versions{{key_spec=\"{spec}\"}} {n}");
        }
        header(
            out,
            "keyward_key_next_rotation_seconds",
            "gauge",
            "Seconds until the soonest automatic rotation of any key (negative: overdue).",
        );
        if let Some(secs) = counts.next_rotation {
            let _ = writeln!(out, "keyward_key_next_rotation_seconds {secs}");
        }
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

/// What the key metrics report, gathered from the cached Keys' status in one pass: counts
/// and extremes only, never a key's identity.
#[derive(Default)]
struct KeyCounts {
    by_state: BTreeMap<(String, String), u64>,
    not_ready: BTreeMap<&'static str, u64>,
    versions: BTreeMap<String, usize>,
    /// Seconds until the soonest rotation; `None` when no key rotates.
    next_rotation: Option<i64>,
    asymmetric_versions: usize,
}

impl KeyCounts {
    fn gather(keys: &[Arc<Key>], now: Timestamp) -> Self {
        let mut counts = KeyCounts::default();
        for key in keys {
            let Some(status) = key.status.as_ref() else {
                continue;
            };
            if let Some(ready) = status
                .conditions
                .iter()
                .find(|c| c.type_ == READY && c.status != "True")
            {
                *counts
                    .not_ready
                    .entry(known_reason(&ready.reason))
                    .or_default() += 1;
            }
            let Some(m) = status.key_metadata.as_ref() else {
                continue;
            };
            *counts
                .by_state
                .entry((m.key_state.to_string(), m.key_spec.to_string()))
                .or_default() += 1;
            let versions = status.key_versions.len();
            *counts.versions.entry(m.key_spec.to_string()).or_default() += versions;
            if !m.key_spec.is_symmetric() {
                counts.asymmetric_versions += versions;
            }
            // A Suspended rotation (the key is not Enabled) is not overdue, however old its date.
            let runs = m.automatic_rotation == AutomaticRotation::Enabled;
            if let Some(due) = m.next_rotation_date.as_deref().and_then(parse_kms_time)
                && runs
            {
                let secs = due.duration_since(now).as_secs();
                counts.next_rotation = Some(counts.next_rotation.map_or(secs, |s| s.min(secs)));
            }
        }
        counts
    }
}

/// Reasons a Key's Ready condition can have besides the refusals' codes.
const READY_REASONS: [Reason; 5] = [
    Reason::KeyReady,
    Reason::KeyDisabled,
    Reason::KeyPendingDeletion,
    Reason::PendingImport,
    Reason::KeyDeleted,
];

/// The reason as a label value: one of keyward's own, or `Other`. Status is only read here,
/// and whoever may write it must not be able to put text of their choosing on the endpoint.
fn known_reason(reason: &str) -> &'static str {
    READY_REASONS
        .iter()
        .map(|r| r.as_str())
        .chain(Code::ALL.iter().map(|c| c.reason()))
        .find(|known| *known == reason)
        .unwrap_or("Other")
}

/// A series' `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
pub(in crate::runtime) mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    #[test]
    fn readiness_also_waits_for_the_gate_it_is_given() {
        let telemetry = Telemetry::new(50);
        telemetry.set_ready(true);
        assert!(telemetry.is_ready());
        let filled = Arc::new(AtomicBool::new(false));
        let gate = filled.clone();
        telemetry.also_ready_when(Box::new(move || gate.load(Ordering::Relaxed)));
        assert!(
            !telemetry.is_ready(),
            "ready before the API's caches filled"
        );
        filled.store(true, Ordering::Relaxed);
        assert!(telemetry.is_ready());
        telemetry.set_ready(false);
        assert!(!telemetry.is_ready());
    }

    use super::*;
    use crate::api::key::KeyVersionEntry;
    use crate::api::{
        KeyMetadata, KeyRequest, KeySpec, KeyState, KeyStatus, KeyUsage, Origin, ProtectionLevel,
    };

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

    /// A cached Key, as far as the metrics look at it.
    struct Cached {
        namespace: &'static str,
        name: &'static str,
        spec: KeySpec,
        state: KeyState,
        versions: usize,
        /// When the next rotation is due, and whether rotation runs (Enabled) or is Suspended.
        rotation: Option<(&'static str, AutomaticRotation)>,
        /// The reason of a Ready condition that is False.
        not_ready: Option<&'static str>,
    }

    const ENABLED: Cached = Cached {
        namespace: "team-alpha",
        name: "",
        spec: KeySpec::AliyunAes256,
        state: KeyState::Enabled,
        versions: 1,
        rotation: None,
        not_ready: None,
    };

    /// Keys in two namespaces.
    const KEYS: [Cached; 5] = [
        Cached {
            name: "payments-key",
            versions: 3,
            rotation: Some(("1970-01-01T01:00:00Z", AutomaticRotation::Enabled)),
            ..ENABLED
        },
        Cached {
            name: "orders-signer",
            spec: KeySpec::EcP256,
            versions: 2,
            ..ENABLED
        },
        Cached {
            namespace: "team-bravo",
            name: "sessions-key",
            state: KeyState::Disabled,
            // Long overdue, but a disabled key does not rotate.
            rotation: Some(("1969-12-31T00:00:00Z", AutomaticRotation::Suspended)),
            not_ready: Some("KeyDisabled"),
            ..ENABLED
        },
        Cached {
            namespace: "team-bravo",
            name: "ledger-rsa",
            spec: KeySpec::Rsa2048,
            rotation: None,
            ..ENABLED
        },
        Cached {
            namespace: "team-bravo",
            name: "forged-reason",
            rotation: Some(("1970-01-01T00:00:30Z", AutomaticRotation::Enabled)),
            not_ready: Some("team-bravo/payments-key"),
            ..ENABLED
        },
    ];

    fn key(cached: &Cached) -> Key {
        let (namespace, name) = (cached.namespace, cached.name);
        let mut key = Key::new(name, KeyRequest::default());
        key.metadata.namespace = Some(namespace.into());
        let conditions = cached.not_ready.map(|reason| Condition {
            type_: READY.into(),
            status: "False".into(),
            reason: reason.into(),
            message: format!("about {namespace}/{name}"),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
            observed_generation: None,
        });
        key.status = Some(KeyStatus {
            key_metadata: Some(KeyMetadata {
                arn: format!("acs:kms:local:1:key/{name}"),
                automatic_rotation: cached
                    .rotation
                    .map_or(AutomaticRotation::Disabled, |(_, r)| r),
                creation_date: "1970-01-01T00:00:00Z".into(),
                creator: "1".into(),
                delete_date: None,
                description: format!("the key of {namespace}"),
                key_id: format!("{name}-id"),
                key_spec: cached.spec,
                key_state: cached.state,
                key_usage: KeyUsage::EncryptDecrypt,
                last_rotation_date: None,
                material_expire_time: None,
                next_rotation_date: cached.rotation.map(|(due, _)| due.to_string()),
                origin: Origin::AliyunKms,
                primary_key_version: None,
                protection_level: ProtectionLevel::Software,
                rotation_interval: None,
            }),
            key_versions: (0..cached.versions)
                .map(|v| KeyVersionEntry {
                    key_version_id: format!("{name}-v{v}"),
                    creation_date: "1970-01-01T00:00:00Z".into(),
                })
                .collect(),
            conditions: conditions.into_iter().collect(),
            secret_name: Some(name.into()),
            ..KeyStatus::default()
        });
        key
    }

    /// Telemetry over a Key cache holding [`KEYS`], rendered at the epoch.
    pub(in crate::runtime) fn telemetry_with_keys() -> Telemetry {
        let (store, mut writer) = kube::runtime::reflector::store();
        for cached in &KEYS {
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(key(cached)));
        }
        let telemetry = Telemetry::new(50);
        telemetry.watch_keys(store);
        telemetry
    }

    /// Every namespace and name in [`KEYS`].
    pub(in crate::runtime) fn key_identities() -> Vec<&'static str> {
        KEYS.iter().flat_map(|k| [k.namespace, k.name]).collect()
    }

    #[test]
    fn no_series_names_a_key_or_its_namespace() {
        let text = telemetry_with_keys().render(Timestamp::UNIX_EPOCH);
        for identity in key_identities() {
            assert!(!text.contains(identity), "{identity} is exposed:\n{text}");
        }
        for label in text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(labels)
        {
            let name = label.split('=').next().unwrap();
            assert!(
                [
                    "controller",
                    "result",
                    "category",
                    "le",
                    "state",
                    "key_spec",
                    "reason"
                ]
                .contains(&name),
                "label {label}"
            );
        }
    }

    /// The `name="value"` pairs of a sample line.
    fn labels(line: &str) -> Vec<&str> {
        line.split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(labels, _)| labels.split(',').collect())
            .unwrap_or_default()
    }

    #[test]
    fn keys_are_counted_by_state_spec_and_reason() {
        let text = telemetry_with_keys().render(Timestamp::UNIX_EPOCH);
        for line in [
            "keyward_keys{state=\"Enabled\",key_spec=\"Aliyun_AES_256\"} 2",
            "keyward_keys{state=\"Disabled\",key_spec=\"Aliyun_AES_256\"} 1",
            "keyward_keys{state=\"Enabled\",key_spec=\"EC_P256\"} 1",
            "keyward_keys{state=\"Enabled\",key_spec=\"RSA_2048\"} 1",
            "keyward_keys_not_ready{reason=\"KeyDisabled\"} 1",
            // A reason keyward never writes is not repeated.
            "keyward_keys_not_ready{reason=\"Other\"} 1",
            "keyward_key_versions{key_spec=\"Aliyun_AES_256\"} 5",
            "keyward_key_versions{key_spec=\"EC_P256\"} 2",
            "keyward_key_versions{key_spec=\"RSA_2048\"} 1",
            // The soonest of the rotations that run.
            "keyward_key_next_rotation_seconds 30",
            "keyward_asymmetric_key_versions 3",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }

    #[test]
    fn without_rotating_keys_there_is_no_next_rotation_sample() {
        let text = Telemetry::new(50).render(Timestamp::UNIX_EPOCH);
        assert!(text.contains("# TYPE keyward_key_next_rotation_seconds gauge\n"));
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("keyward_key_next_rotation_seconds")),
            "{text}"
        );
    }
}
