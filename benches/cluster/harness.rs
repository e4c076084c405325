//! What every scenario needs: the cluster (its kubeconfigs and audit log), operator processes,
//! namespaces of keys, and a watch that notes when each key turns Ready.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use keyward::api::Key;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use crate::common;

/// The identity `hack/local-cluster.sh` gives the operator (DIR/operator.kubeconfig), so that
/// the audit log tells its requests from the benchmark's own.
pub const OPERATOR_USER: &str = "keyward-operator";

/// How long anything may take before the benchmark gives up on it.
const PATIENCE: Duration = Duration::from_secs(900);

pub struct Cluster {
    pub client: Client,
    dir: PathBuf,
}

impl Cluster {
    /// The cluster `hack/local-cluster.sh up DIR` started, from KEYWARD_TEST_CLUSTER_DIR (its
    /// kubeconfig is KEYWARD_TEST_KUBECONFIG); `None` when there is none.
    pub async fn from_env() -> Option<Cluster> {
        let dir = PathBuf::from(std::env::var_os("KEYWARD_TEST_CLUSTER_DIR")?);
        std::env::var_os("KEYWARD_TEST_KUBECONFIG")?;
        assert!(
            dir.join("operator.kubeconfig").exists(),
            "{} has no operator.kubeconfig: start the cluster with this checkout's \
             hack/local-cluster.sh",
            dir.display()
        );
        let client = common::client().await;
        common::install_crds(&client).await;
        Some(Cluster { client, dir })
    }

    pub fn audit(&self) -> Audit {
        Audit::mark(self.dir.join("audit.log"))
    }

    /// A fresh namespace named after `purpose`.
    pub async fn namespace(&self, purpose: &str) -> String {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("bench-{purpose}-{}", &suffix[..6]);
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("create namespace");
        name
    }

    /// Deletes namespaces and waits until they are gone, so that their deletion does not load
    /// the API server during the next measurement.
    pub async fn delete_namespaces(&self, names: &[String]) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for name in names {
            let _ = namespaces.delete(name, &DeleteParams::default()).await;
        }
        let deadline = Instant::now() + PATIENCE;
        for name in names {
            while namespaces
                .get_opt(name)
                .await
                .expect("get namespace")
                .is_some()
            {
                assert!(Instant::now() < deadline, "namespace {name} is not deleted");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    /// Waits (up to a minute) until the control plane's processes use less than a tenth of a
    /// core, for a measurement to start on a quiet control plane: a namespace is gone before
    /// the API server and etcd are done with its deletion, and whichever run came next paid
    /// for it.
    pub async fn wait_quiet(&self) {
        const BUSY: f64 = 0.1;
        let ticks_per_second = clock_ticks_per_second();
        let cpu_seconds = || -> f64 {
            ["etcd", "kube-apiserver", "kube-controller-manager"]
                .iter()
                .filter_map(|c| std::fs::read_to_string(self.dir.join(format!("{c}.pid"))).ok())
                .filter_map(|pid| process_ticks(pid.trim()))
                .sum::<u64>() as f64
                / ticks_per_second
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut before = cpu_seconds();
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = cpu_seconds();
            if now - before < BUSY {
                return;
            }
            before = now;
        }
        println!("  (the control plane was still busy a minute after the last run)");
    }

    /// Starts the release-built operator as its own identity, keeping material stores in
    /// `stores` (a namespace of the run's own: stores left by an earlier run would give this one
    /// deletions to schedule). `namespace`: watch only it; `None`: the whole cluster.
    pub async fn start_operator(
        &self,
        namespace: Option<&str>,
        stores: &str,
        extra_args: &[&str],
    ) -> Operator {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let http: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let log_path = std::env::temp_dir().join(format!("keyward-bench-operator-{port}.log"));
        let log = std::fs::File::create(&log_path).expect("operator log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
        command
            .args(["run", "--http-addr", &http.to_string()])
            .args(["--store-namespace", stores])
            // The runs hold thousands of asymmetric keys in one namespace: they measure the
            // operator's work, not the KMS's limit of 50 asymmetric versions per namespace.
            .args(["--max-asymmetric-key-versions", "1000000"])
            .args(extra_args);
        if let Some(namespace) = namespace {
            command.args(["--watch-namespace", namespace]);
        }
        let child = command
            .env("KUBECONFIG", self.dir.join("operator.kubeconfig"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start keyward");
        let operator = Operator {
            child,
            http,
            log_path,
        };
        operator.wait_ready().await;
        operator
    }
}

/// An operator process, killed when dropped.
pub struct Operator {
    child: Child,
    http: std::net::SocketAddr,
    log_path: PathBuf,
}

impl Operator {
    async fn wait_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if tokio::net::TcpStream::connect(self.http).await.is_ok()
                && common::http_get(self.http, "/readyz").await.0 == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the operator is not ready; its log is {}",
                self.log_path.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its process id, for /proc accounting (the KMS API benchmark's CPU per request).
    #[allow(dead_code)] // only benches/kms_api.rs reads it
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size now and at its peak, in bytes (Linux /proc).
    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("operator /proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
                .map(|kib| kib * 1024)
                .unwrap_or_else(|| panic!("no {name} in /proc status"))
        };
        Memory {
            current: field("VmRSS:"),
            peak: field("VmHWM:"),
        }
    }

    /// Reconciles of Keys the operator has finished, by its own /metrics.
    pub async fn key_reconciles(&self) -> u64 {
        let (status, body) = common::http_get(self.http, "/metrics").await;
        assert_eq!(status, 200, "GET /metrics");
        body.lines()
            .filter(|l| l.starts_with("keyward_reconciles_total{controller=\"key\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Waits until the operator has reconciled at least `at_least` Keys and then stayed idle
    /// for `quiet`: its start-up pass over existing keys is over.
    pub async fn settle(&self, at_least: u64, quiet: Duration) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        let mut last = self.key_reconciles().await;
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.key_reconciles().await;
            if now != last {
                (last, since) = (now, Instant::now());
            } else if now >= at_least && since.elapsed() >= quiet {
                return now;
            }
            assert!(Instant::now() < deadline, "the operator never settled");
        }
    }

    /// Prints how many lines of its log are at WARN or ERROR (a run should have none), and
    /// the first few: retries under load are worth knowing about, not a failed benchmark.
    pub fn report_warnings(&self, scenario: &str) {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            // The start-up notice of the short intervals a benchmark runs with.
            .filter(|l| !l.contains("development aid in effect"))
            .collect();
        if !warnings.is_empty() {
            println!(
                "{scenario}: the operator logged {} warnings or errors, first: {:?}",
                warnings.len(),
                &warnings[..warnings.len().min(3)]
            );
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Memory {
    pub current: u64,
    pub peak: u64,
}

/// A position in the API server's audit log, to count the requests made after it.
pub struct Audit {
    path: PathBuf,
    offset: u64,
}

/// Write requests (create, update, patch, delete) counted from the audit log, by
/// "verb resource[/subresource]".
#[derive(Debug, Default)]
pub struct Writes(pub BTreeMap<String, u64>);

impl Writes {
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

impl std::fmt::Display for Writes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, n)| format!("{k} {n}")).collect();
        match parts.is_empty() {
            true => f.write_str("none"),
            false => f.write_str(&parts.join(", ")),
        }
    }
}

impl Audit {
    fn mark(path: PathBuf) -> Audit {
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Audit { path, offset }
    }

    /// The writes `user` made since the mark, every namespace and resource counted.
    pub fn writes_by(&self, user: &str) -> Writes {
        let mut file = std::fs::File::open(&self.path).expect("audit log");
        let len = file.metadata().expect("audit log size").len();
        assert!(
            len >= self.offset,
            "{} was rotated during the measurement: raise --audit-log-maxsize",
            self.path.display()
        );
        file.seek(SeekFrom::Start(self.offset)).expect("seek");
        let mut writes = Writes::default();
        for line in BufReader::new(file).lines() {
            let line = line.expect("audit log line");
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue; // a line being written right now
            };
            if event["stage"] != "ResponseComplete" || event["user"]["username"] != user {
                continue;
            }
            let verb = event["verb"].as_str().unwrap_or_default();
            if !matches!(
                verb,
                "create" | "update" | "patch" | "delete" | "deletecollection"
            ) {
                continue;
            }
            let object = &event["objectRef"];
            let mut resource = object["resource"].as_str().unwrap_or("?").to_string();
            if let Some(sub) = object["subresource"].as_str() {
                resource = format!("{resource}/{sub}");
            }
            *writes.0.entry(format!("{verb} {resource}")).or_default() += 1;
        }
        writes
    }
}

/// The keys a scenario applies, in the KMS's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// Aliyun_AES_256 only.
    Aes,
    /// All six key specs in turn.
    AllSpecs,
}

const SPECS: [(&str, &str); 6] = [
    ("Aliyun_AES_256", "ENCRYPT/DECRYPT"),
    ("Aliyun_SM4", "ENCRYPT/DECRYPT"),
    ("RSA_2048", "ENCRYPT/DECRYPT"),
    ("EC_P256", "SIGN/VERIFY"),
    ("EC_P256K", "SIGN/VERIFY"),
    ("EC_SM2", "SIGN/VERIFY"),
];

impl Mix {
    pub fn spec_and_usage(self, index: usize) -> (&'static str, &'static str) {
        match self {
            Mix::Aes => SPECS[0],
            Mix::AllSpecs => SPECS[index % SPECS.len()],
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Mix::Aes => "Aliyun_AES_256",
            Mix::AllSpecs => "all six specs",
        }
    }
}

pub fn key_name(index: usize) -> String {
    format!("key-{index:05}")
}

/// Key `index` of a mix, with an optional rotation interval.
pub fn key_manifest(mix: Mix, index: usize, rotation: Option<&str>) -> Key {
    let (spec, usage) = mix.spec_and_usage(index);
    let mut value = serde_json::json!({
        "apiVersion": "keyward.dev/v1alpha1",
        "kind": "Key",
        "metadata": { "name": key_name(index) },
        "spec": {
            "description": format!("benchmark key {index}"),
            "keySpec": spec,
            "keyUsage": usage,
        }
    });
    if let Some(interval) = rotation {
        value["spec"]["enableAutomaticRotation"] = true.into();
        value["spec"]["rotationInterval"] = interval.into();
    }
    serde_json::from_value(value).expect("a Key")
}

/// Creates `count` Keys, `concurrency` requests at a time, as `kubectl apply` of many files
/// would, but without its per-file start-up.
pub async fn apply_keys(
    client: &Client,
    namespace: &str,
    count: usize,
    concurrency: usize,
    manifest: impl Fn(usize) -> Key,
) {
    let keys: Api<Key> = Api::namespaced(client.clone(), namespace);
    futures::stream::iter((0..count).map(manifest))
        .map(|key| {
            let keys = keys.clone();
            async move { keys.create(&PostParams::default(), &key).await.map(|_| ()) }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await
        .expect("create keys");
}

/// Creates `count` Secrets of `size` random bytes that keyward has no business with.
pub async fn create_unrelated_secrets(client: &Client, namespace: &str, count: usize, size: usize) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    futures::stream::iter(0..count)
        .map(|i| {
            let secrets = secrets.clone();
            async move {
                let mut bytes = vec![0u8; size];
                getrandom::fill(&mut bytes).expect("random bytes");
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(format!("unrelated-{i:05}")),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([(
                        "blob".to_string(),
                        k8s_openapi::ByteString(bytes),
                    )])),
                    ..Default::default()
                };
                secrets
                    .create(&PostParams::default(), &secret)
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .expect("create unrelated secrets");
}

pub fn is_ready(key: &Key) -> bool {
    key.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// A watch on one namespace's Keys that notes when each first turns Ready.
pub struct ReadyWatch {
    ready: Arc<Mutex<HashMap<String, Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadyWatch {
    /// Starts watching; returns once the watch has listed the namespace, so that nothing
    /// that happens afterwards is missed.
    pub async fn start(client: &Client, namespace: &str) -> ReadyWatch {
        let keys: Api<Key> = Api::namespaced(client.clone(), namespace);
        let ready = Arc::new(Mutex::new(HashMap::new()));
        let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
        let noted = ready.clone();
        let task = tokio::spawn(async move {
            let mut listed = Some(listed_tx);
            let mut events = watcher(keys, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = listed.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(watcher::Event::Apply(key) | watcher::Event::InitApply(key))
                        if is_ready(&key) =>
                    {
                        let mut noted = noted.lock().expect("ready keys");
                        noted.entry(key.name_any()).or_insert_with(Instant::now);
                    }
                    _ => {}
                }
            }
        });
        listed_rx.await.expect("the watch listed the namespace");
        ReadyWatch { ready, task }
    }

    /// When the first 10%, 50% and 90% of the keys Ready so far were, in seconds after
    /// `started`: a slow start and a slow pace look different here.
    pub fn progress(&self, started: Instant) -> [f64; 3] {
        let ready = self.ready.lock().expect("ready keys");
        let mut times: Vec<f64> = ready
            .values()
            .map(|t| t.duration_since(started).as_secs_f64())
            .collect();
        times.sort_by(f64::total_cmp);
        let at = |fraction: f64| {
            let index = ((times.len() as f64 * fraction).ceil() as usize).saturating_sub(1);
            times.get(index).copied().unwrap_or(f64::NAN)
        };
        [at(0.1), at(0.5), at(0.9)]
    }

    /// Waits until `count` keys are Ready; returns when the last one turned Ready.
    pub async fn all_ready(&self, count: usize) -> Instant {
        let deadline = Instant::now() + PATIENCE;
        loop {
            {
                let ready = self.ready.lock().expect("ready keys");
                if ready.len() >= count {
                    return *ready.values().max().expect("some key");
                }
                assert!(
                    Instant::now() < deadline,
                    "only {} of {count} keys turned Ready",
                    ready.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ReadyWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The `p`th percentile (0..=100) by the nearest-rank method.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// User and system CPU time of process `pid` so far, in clock ticks (/proc/PID/stat).
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let (utime, stime) = (fields.get(11)?, fields.get(12)?);
    Some(utime.parse::<u64>().ok()? + stime.parse::<u64>().ok()?)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100.0)
}
