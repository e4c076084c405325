//! The KMS API under load, against a real control plane: 64 concurrent signed clients
//! (`keyward::kms_client`, one keep-alive connection each, ACS3-HMAC-SHA256 like the tea SDK)
//! call Encrypt and Decrypt of 1 KiB per symmetric spec and AsymmetricSign per asymmetric spec,
//! and in the same run the same clients call a minimal HTTP server in this process that does no
//! work (hyper, a fixed small JSON answer). Prints requests/s, p50 and p99 latency per
//! operation, Encrypt's rate as a fraction of the no-op server's (target: at least 0.5), and the
//! SubjectAccessReviews the operator made during each operation, counted from the API server's
//! audit log (target: one per caller, key and verb per 5-second cache window).
//!
//! `hack/bench.sh --bench kms_api` starts a local control plane and runs it. Sizes come from
//! the environment: BENCH_KMS_CLIENTS=64 BENCH_KMS_REQUESTS=120 (requests per client per
//! operation). The server remembers every nonce for 15 minutes, at most 100,000: one run stays
//! under that (8 operations x 64 x 120 = 61,440 signed requests).
//!
//! Under `cargo test` (no `--bench` argument) it runs at toy sizes to keep the harness working;
//! it needs the test cluster of `hack/test.sh`, and is skipped without one.

#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code)] // the cluster scenarios' harness: this benchmark uses its cluster parts
#[path = "cluster/harness.rs"]
mod harness;
#[path = "kms_api/hsm.rs"]
mod kms_api_hsm;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use keyward::api::{AccessKey, Key};
use keyward::kms::crypto::asymmetric::Algorithm;
use keyward::kms_client::{ClientError, Credentials, KmsClient, Session};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use serde_json::json;

use harness::{Cluster, OPERATOR_USER, ReadyWatch};

/// How long the authorizer reuses a decision (`keyward::service::authz::DECISION_TTL`).
const DECISION_WINDOW: Duration = keyward::service::authz::DECISION_TTL;
const PLAINTEXT_BYTES: usize = 1024;
const PATIENCE: Duration = Duration::from_secs(120);

struct Settings {
    clients: usize,
    requests_per_client: usize,
}

/// The keys measured: name, KeySpec, KeyUsage, the signature algorithm for signing keys, and
/// the protection level (HSM keys are in the run's SoftHSM2 token).
type KeyUnderTest = (
    &'static str,
    &'static str,
    &'static str,
    Option<Algorithm>,
    &'static str,
);
const KEYS: [KeyUnderTest; 10] = [
    ("aes", "Aliyun_AES_256", "ENCRYPT/DECRYPT", None, "SOFTWARE"),
    ("sm4", "Aliyun_SM4", "ENCRYPT/DECRYPT", None, "SOFTWARE"),
    (
        "rsa",
        "RSA_2048",
        "SIGN/VERIFY",
        Some(Algorithm::RsaPssSha256),
        "SOFTWARE",
    ),
    (
        "p256",
        "EC_P256",
        "SIGN/VERIFY",
        Some(Algorithm::EcdsaSha256),
        "SOFTWARE",
    ),
    (
        "p256k",
        "EC_P256K",
        "SIGN/VERIFY",
        Some(Algorithm::EcdsaSha256),
        "SOFTWARE",
    ),
    (
        "sm2",
        "EC_SM2",
        "SIGN/VERIFY",
        Some(Algorithm::Sm2Dsa),
        "SOFTWARE",
    ),
    ("hsm-aes", "Aliyun_AES_256", "ENCRYPT/DECRYPT", None, "HSM"),
    (
        "hsm-rsa",
        "RSA_2048",
        "SIGN/VERIFY",
        Some(Algorithm::RsaPssSha256),
        "HSM",
    ),
    (
        "hsm-p256",
        "EC_P256",
        "SIGN/VERIFY",
        Some(Algorithm::EcdsaSha256),
        "HSM",
    ),
    (
        "hsm-p256k",
        "EC_P256K",
        "SIGN/VERIFY",
        Some(Algorithm::EcdsaSha256),
        "HSM",
    ),
];

/// The label of a key's operation: `Encrypt Aliyun_AES_256`, `AsymmetricSign RSA_2048 (HSM)`.
fn label(verb: &str, spec: &str, protection: &str) -> String {
    match protection {
        "HSM" => format!("{verb} {spec} (HSM)"),
        _ => format!("{verb} {spec}"),
    }
}

/// Each HSM operation through the API, and the same operation on the module directly.
const HSM_COUNTERPARTS: [(&str, kms_api_hsm::Direct); 5] = [
    (
        "Encrypt Aliyun_AES_256 (HSM)",
        kms_api_hsm::Direct::EncryptAes,
    ),
    (
        "Decrypt Aliyun_AES_256 (HSM)",
        kms_api_hsm::Direct::DecryptAes,
    ),
    (
        "AsymmetricSign RSA_2048 (HSM)",
        kms_api_hsm::Direct::SignRsaPss,
    ),
    (
        "AsymmetricSign EC_P256 (HSM)",
        kms_api_hsm::Direct::SignP256,
    ),
    (
        "AsymmetricSign EC_P256K (HSM)",
        kms_api_hsm::Direct::SignP256k,
    ),
];

const VERBS: [&str; 5] = [
    "encrypt",
    "decrypt",
    "asymmetricsign",
    "getpublickey",
    "createkey",
];

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
        Err(_) => default,
    }
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let settings = match benchmarking {
        true => Settings {
            clients: env_number("BENCH_KMS_CLIENTS", 64),
            requests_per_client: env_number("BENCH_KMS_REQUESTS", 120),
        },
        false => Settings {
            clients: 4,
            requests_per_client: 25,
        },
    };
    let token = kms_api_hsm::Token::init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let Some(cluster) = Cluster::from_env().await else {
            assert!(
                !benchmarking,
                "no cluster: run hack/bench.sh --bench kms_api, or set KEYWARD_TEST_KUBECONFIG \
                 and KEYWARD_TEST_CLUSTER_DIR to a cluster started by hack/local-cluster.sh"
            );
            println!("KMS API benchmark skipped: no test cluster (hack/test.sh starts one)");
            return;
        };
        run(&cluster, &settings, &token).await;
    });
}

/// What one operation's load measured.
struct Measured {
    label: String,
    requests: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Failed calls by KMS code (or transport error).
    errors: BTreeMap<String, usize>,
    /// SubjectAccessReviews the operator created meanwhile; `None` for the no-op server.
    reviews: Option<u64>,
    /// Where the time went, for calls to the operator.
    profile: Option<Profile>,
}

/// CPU per request of each process, and the API server's Secret GETs per request (the store
/// read of each call): where a request's time goes.
struct Profile {
    cpu_ms_per_request: Vec<(&'static str, f64)>,
    secret_gets_per_request: f64,
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cpu: Vec<String> = self
            .cpu_ms_per_request
            .iter()
            .map(|(process, ms)| format!("{process} {ms:.2}"))
            .collect();
        write!(
            f,
            "CPU ms per request: {}; Secret GETs per request {:.2}",
            cpu.join(", "),
            self.secret_gets_per_request
        )
    }
}

/// The processes whose CPU a request costs, and a counter of the API server's Secret GETs.
struct Meter {
    processes: Vec<(&'static str, u32)>,
    client: Client,
}

/// A reading of the [`Meter`].
struct Reading {
    ticks: Vec<u64>,
    secret_gets: u64,
}

impl Meter {
    fn new(operator: &harness::Operator, client: &Client) -> Meter {
        let dir = std::path::PathBuf::from(
            std::env::var_os("KEYWARD_TEST_CLUSTER_DIR").expect("KEYWARD_TEST_CLUSTER_DIR"),
        );
        let pid = |name: &str| -> u32 {
            let text = std::fs::read_to_string(dir.join(format!("{name}.pid")))
                .unwrap_or_else(|e| panic!("{name}.pid: {e}"));
            text.trim().parse().expect("a pid")
        };
        Meter {
            processes: vec![
                ("operator", operator.pid()),
                ("kube-apiserver", pid("kube-apiserver")),
                ("etcd", pid("etcd")),
                ("benchmark client", std::process::id()),
            ],
            client: client.clone(),
        }
    }

    async fn read(&self) -> Reading {
        let ticks = self
            .processes
            .iter()
            .map(|(_, pid)| process_ticks(*pid))
            .collect();
        let request = http::Request::get("/metrics")
            .body(Vec::new())
            .expect("a request");
        let metrics = self
            .client
            .request_text(request)
            .await
            .expect("the API server's /metrics");
        let secret_gets = metrics
            .lines()
            .filter(|l| l.starts_with("apiserver_request_total{"))
            .filter(|l| l.contains("resource=\"secrets\"") && l.contains("verb=\"GET\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
        Reading { ticks, secret_gets }
    }

    fn profile(&self, before: &Reading, after: &Reading, requests: usize) -> Profile {
        let ticks_per_ms = clock_ticks_per_second() / 1000.0;
        Profile {
            cpu_ms_per_request: self
                .processes
                .iter()
                .zip(before.ticks.iter().zip(&after.ticks))
                .map(|((name, _), (b, a))| (*name, (a - b) as f64 / ticks_per_ms / requests as f64))
                .collect(),
            secret_gets_per_request: (after.secret_gets - before.secret_gets) as f64
                / requests as f64,
        }
    }
}

/// User and system CPU time of process `pid` so far, in clock ticks (/proc/PID/stat).
fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a stat line")
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100.0)
}

impl Measured {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// The reviews allowed for one caller, key and verb over this run: one per window begun.
    fn review_bound(&self) -> u64 {
        (self.seconds / DECISION_WINDOW.as_secs_f64()).floor() as u64 + 1
    }

    fn line(&self) -> String {
        let reviews = match self.reviews {
            None => String::new(),
            Some(n) => format!(
                "; {n} SubjectAccessReviews ({:.2}/s, bound {})",
                n as f64 / self.seconds,
                self.review_bound()
            ),
        };
        let errors = match self.errors.is_empty() {
            true => String::new(),
            false => format!("; ERRORS {:?}", self.errors),
        };
        let profile = match &self.profile {
            None => String::new(),
            Some(profile) => format!("\n{:<30}{profile}", ""),
        };
        format!(
            "{:<28} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} requests in {:.2} s{reviews}{errors}){profile}",
            self.label,
            self.rate(),
            self.p50_ms,
            self.p99_ms,
            self.requests,
            self.seconds
        )
    }
}

/// One call of an operation, on a client's own session.
#[derive(Clone)]
enum Operation {
    Encrypt {
        key: String,
        plaintext: String,
    },
    Decrypt {
        blob: String,
    },
    Sign {
        key: String,
        version: Option<String>,
        algorithm: Algorithm,
        digest: Vec<u8>,
    },
}

impl Operation {
    async fn call(&self, session: &mut Session) -> Result<(), ClientError> {
        match self {
            Operation::Encrypt { key, plaintext } => {
                session.encrypt(key, plaintext, None).await.map(drop)
            }
            Operation::Decrypt { blob } => session.decrypt(blob, None).await.map(drop),
            Operation::Sign {
                key,
                version,
                algorithm,
                digest,
            } => session
                .asymmetric_sign(key, version.as_deref(), *algorithm, digest)
                .await
                .map(drop),
        }
    }
}

async fn run(cluster: &Cluster, settings: &Settings, token: &kms_api_hsm::Token) {
    let namespace = cluster.namespace("kmsapi").await;
    let stores = cluster.namespace("kmsapi-stores").await;
    let api_addr = free_address();
    let mut flags = vec![
        "--kms-api-addr".to_string(),
        api_addr.to_string(),
        "--kms-api-insecure-http".into(),
    ];
    flags.extend(token.flags());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let operator = cluster
        .start_operator(Some(&namespace), &stores, &flags)
        .await;
    let credentials = prepare(&cluster.client, &namespace).await;
    let endpoint = format!("http://{api_addr}");
    let client = KmsClient::new(&endpoint, None, credentials.clone()).expect("a client");
    let mut session = serving(&client).await;

    // What each operation sends: 1 KiB of text, blobs of it, digests of a 1 KiB message.
    let plaintext = "k".repeat(PLAINTEXT_BYTES);
    let message = vec![b'm'; PLAINTEXT_BYTES];
    let mut operations = Vec::new();
    for (name, spec, _, algorithm, protection) in KEYS {
        let key = format!("alias/{name}");
        let operation = match algorithm {
            None => Operation::Encrypt {
                key: key.clone(),
                plaintext: plaintext.clone(),
            },
            Some(algorithm) => {
                let (digest, version) = session
                    .digest(&key, None, algorithm, &message)
                    .await
                    .expect("digest");
                Operation::Sign {
                    key,
                    version,
                    algorithm,
                    digest,
                }
            }
        };
        let verb = if algorithm.is_some() {
            "AsymmetricSign"
        } else {
            "Encrypt"
        };
        operations.push((label(verb, spec, protection), operation));
    }
    for (name, spec, _, algorithm, protection) in KEYS {
        if algorithm.is_none() {
            let sealed = session
                .encrypt(&format!("alias/{name}"), &plaintext, None)
                .await
                .expect("a blob to decrypt");
            let blob = sealed.ciphertext_blob;
            operations.push((
                label("Decrypt", spec, protection),
                Operation::Decrypt { blob },
            ));
        }
    }
    operations.sort_by_key(|(label, _)| order(label));

    let noop = NoopServer::start().await;
    let noop_client =
        KmsClient::new(&format!("http://{}", noop.addr), None, credentials).expect("a client");
    let encrypt = Operation::Encrypt {
        key: "alias/aes".into(),
        plaintext: plaintext.clone(),
    };

    println!(
        "KMS API, {} clients x {} requests per operation, signed (ACS3-HMAC-SHA256), keep-alive:",
        settings.clients, settings.requests_per_client
    );
    let meter = Meter::new(&operator, &cluster.client);
    let mut results = Vec::new();
    let first_noop = load(
        &noop_client,
        settings,
        "no-op server (Encrypt call)",
        &encrypt,
        None,
    )
    .await;
    println!("  {}", first_noop.line());
    results.push(first_noop);
    for (label, operation) in &operations {
        cluster.wait_quiet().await;
        let measured = load(&client, settings, label, operation, Some((cluster, &meter))).await;
        println!("  {}", measured.line());
        results.push(measured);
    }
    let keygen = generation(&client, settings).await;
    let last_noop = load(
        &noop_client,
        settings,
        "no-op server, again",
        &encrypt,
        None,
    )
    .await;
    println!("  {}", last_noop.line());
    results.push(last_noop);

    let noop_rate = (results[0].rate() + results[results.len() - 1].rate()) / 2.0;
    println!("\nsummary:");
    for measured in &results {
        println!("  {}", measured.line());
    }
    for measured in results.iter().filter(|m| m.label.starts_with("Encrypt")) {
        println!(
            "  {} / no-op server (mean of both runs): {:.2} (target at least 0.5: {})",
            measured.label,
            measured.rate() / noop_rate,
            if measured.rate() / noop_rate >= 0.5 {
                "met"
            } else {
                "not met"
            }
        );
    }
    hsm_overhead(token, settings, &results, &keygen);
    let over: Vec<&str> = results
        .iter()
        .filter(|m| m.reviews.is_some_and(|n| n > m.review_bound()))
        .map(|m| m.label.as_str())
        .collect();
    println!(
        "  SubjectAccessReviews within one per caller, key and verb per {} s window: {}",
        DECISION_WINDOW.as_secs(),
        match over.is_empty() {
            true => "met".to_string(),
            false => format!("not met by {}", over.join(", ")),
        }
    );
    operator.report_warnings("kms_api");
    drop(operator);
    noop.stop();
    cluster.delete_namespaces(&[namespace, stores]).await;

    let failed: Vec<String> = results
        .iter()
        .filter(|m| !m.errors.is_empty())
        .map(|m| format!("{}: {:?}", m.label, m.errors))
        .collect();
    assert!(failed.is_empty(), "calls failed under load: {failed:?}");
}

/// Encrypt, then Decrypt, per symmetric spec; then AsymmetricSign per spec.
fn order(label: &str) -> (u8, String) {
    let rank = match label.split(' ').next() {
        Some("Encrypt") => 0,
        Some("Decrypt") => 1,
        _ => 2,
    };
    (rank, label.to_string())
}

/// `settings.clients` tasks, each with its own connection, call `operation`
/// `settings.requests_per_client` times; the clock runs from when all are connected to when
/// the last is done. With `cluster`, the operator's SubjectAccessReviews are counted.
async fn load(
    client: &KmsClient,
    settings: &Settings,
    label: &str,
    operation: &Operation,
    cluster: Option<(&Cluster, &Meter)>,
) -> Measured {
    let start = Arc::new(tokio::sync::Barrier::new(settings.clients + 1));
    let mut tasks = Vec::new();
    for _ in 0..settings.clients {
        let (client, operation, start) = (client.clone(), operation.clone(), start.clone());
        let count = settings.requests_per_client;
        tasks.push(tokio::spawn(async move {
            let mut session = client.session().await.expect("connect");
            let mut latencies = Vec::with_capacity(count);
            let mut errors: BTreeMap<String, usize> = BTreeMap::new();
            start.wait().await;
            for _ in 0..count {
                let sent = Instant::now();
                let outcome = operation.call(&mut session).await;
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                if let Err(e) = outcome {
                    let code = e.code().map_or_else(|| e.to_string(), str::to_string);
                    *errors.entry(code).or_default() += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let audit = cluster.map(|(cluster, _)| cluster.audit());
    let before = match cluster {
        Some((_, meter)) => Some(meter.read().await),
        None => None,
    };
    start.wait().await;
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks {
        let (mut task_latencies, task_errors) = task.await.expect("a client task");
        latencies.append(&mut task_latencies);
        for (code, n) in task_errors {
            *errors.entry(code).or_default() += n;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let profile = match (cluster, before) {
        (Some((_, meter)), Some(before)) => {
            Some(meter.profile(&before, &meter.read().await, latencies.len()))
        }
        _ => None,
    };
    // The audit log is written before the API server answers (blocking mode), so every review
    // the operator was answered is in it now.
    let reviews = audit.map(|audit| {
        audit
            .writes_by(OPERATOR_USER)
            .0
            .get("create subjectaccessreviews")
            .copied()
            .unwrap_or(0)
    });
    Measured {
        label: label.to_string(),
        requests: latencies.len(),
        seconds,
        p50_ms: harness::percentile(&latencies, 50.0),
        p99_ms: harness::percentile(&latencies, 99.0),
        errors,
        reviews,
        profile,
    }
}

fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// The six keys Ready, a ServiceAccount granted the verbs measured, and its AccessKey's pair.
async fn prepare(client: &Client, namespace: &str) -> Credentials {
    let watch = ReadyWatch::start(client, namespace).await;
    let keys: Api<Key> = Api::namespaced(client.clone(), namespace);
    for (name, spec, usage, _, protection) in KEYS {
        let key: Key = serde_json::from_value(json!({
            "apiVersion": "keyward.dev/v1alpha1", "kind": "Key",
            "metadata": {"name": name},
            "spec": {"keySpec": spec, "keyUsage": usage, "protectionLevel": protection},
        }))
        .expect("a Key");
        keys.create(&PostParams::default(), &key)
            .await
            .expect("create Key");
    }
    watch.all_ready(KEYS.len()).await;

    let create = PostParams::default();
    let named = |name: &str| ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(
            &create,
            &ServiceAccount {
                metadata: named("bench"),
                ..Default::default()
            },
        )
        .await
        .expect("create ServiceAccount");
    let role = Role {
        metadata: named("bench-kms"),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["keyward.dev".into()]),
            resources: Some(vec!["keys".into()]),
            verbs: VERBS.iter().map(|v| v.to_string()).collect(),
            ..PolicyRule::default()
        }]),
    };
    Api::<Role>::namespaced(client.clone(), namespace)
        .create(&create, &role)
        .await
        .expect("create Role");
    let binding = RoleBinding {
        metadata: named("bench-kms"),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "bench-kms".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "bench".into(),
            namespace: Some(namespace.into()),
            ..Subject::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .create(&create, &binding)
        .await
        .expect("create RoleBinding");
    let access_key: AccessKey = serde_json::from_value(json!({
        "apiVersion": "keyward.dev/v1alpha1", "kind": "AccessKey",
        "metadata": {"name": "bench"}, "spec": {"serviceAccountName": "bench"},
    }))
    .expect("an AccessKey");
    let access_keys: Api<AccessKey> = Api::namespaced(client.clone(), namespace);
    access_keys
        .create(&create, &access_key)
        .await
        .expect("create AccessKey");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let issued = access_keys
            .get("bench")
            .await
            .ok()
            .and_then(|a| a.status?.secret_name);
        if let Some(name) = issued
            && let Ok(secret) = secrets.get(&name).await
        {
            let data = secret.data.unwrap_or_default();
            let entry = |e: &str| String::from_utf8(data[e].0.clone()).expect("a text entry");
            return Credentials::access_key(entry("accessKeyId"), entry("accessKeySecret"));
        }
        assert!(Instant::now() < deadline, "AccessKey bench was not issued");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// HSM keys created through the API (CreateKey, which answers once the key is Ready), per
/// spec: keys per second at 4 callers at once. Counted against the same generation on the
/// module directly by [`hsm_overhead`].
async fn generation(
    client: &KmsClient,
    settings: &Settings,
) -> Vec<(kms_api_hsm::Direct, usize, f64)> {
    const CALLERS: usize = 4;
    let per_caller = (settings.requests_per_client / 30).max(1);
    let mut rates = Vec::new();
    for (direct, spec, usage) in [
        (
            kms_api_hsm::Direct::GenerateAes,
            "Aliyun_AES_256",
            "ENCRYPT/DECRYPT",
        ),
        (kms_api_hsm::Direct::GenerateP256, "EC_P256", "SIGN/VERIFY"),
        (kms_api_hsm::Direct::GenerateRsa, "RSA_2048", "SIGN/VERIFY"),
    ] {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..CALLERS {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut session = client.session().await.expect("connect");
                for _ in 0..per_caller {
                    let created: serde_json::Value = session
                        .call(
                            "CreateKey",
                            &[
                                ("KeySpec", spec),
                                ("KeyUsage", usage),
                                ("ProtectionLevel", "HSM"),
                            ],
                        )
                        .await
                        .expect("CreateKey of an HSM key");
                    assert_eq!(
                        created["KeyMetadata"]["ProtectionLevel"], "HSM",
                        "{created}"
                    );
                }
            }));
        }
        for task in tasks {
            task.await.expect("a CreateKey caller");
        }
        let rate = (CALLERS * per_caller) as f64 / started.elapsed().as_secs_f64();
        println!("  CreateKey {spec} (HSM), {CALLERS} callers x {per_caller}: {rate:.1} keys/s");
        rates.push((direct, per_caller, rate));
    }
    rates
}

/// The same HSM operations on the module directly, at the API load's concurrency (a thread
/// and a session per client), and keyward's rate as a fraction of the module's.
fn hsm_overhead(
    token: &kms_api_hsm::Token,
    settings: &Settings,
    results: &[Measured],
    keygen: &[(kms_api_hsm::Direct, usize, f64)],
) {
    let module = kms_api_hsm::Module::open(token);
    println!(
        "
HSM (SoftHSM2 {}), through the API and on the module directly:",
        kms_api_hsm::MODULE
    );
    for (label, direct) in HSM_COUNTERPARTS {
        let Some(through) = results.iter().find(|m| m.label == label) else {
            continue;
        };
        let rate = module.rate(direct, settings.clients, settings.requests_per_client);
        println!(
            "  {label}: {:.0}/s; {}: {rate:.0}/s; keyward / module {:.2}",
            through.rate(),
            direct.label(),
            through.rate() / rate
        );
    }
    for (direct, per_caller, through) in keygen {
        let rate = module.rate(*direct, 4, *per_caller);
        println!(
            "  CreateKey through the API: {through:.1} keys/s; {}: {rate:.1}/s; keyward / module {:.2}",
            direct.label(),
            through / rate
        );
    }
}

/// A session once the API answers the pair: the replica's caches have the AccessKey.
async fn serving(client: &KmsClient) -> Session {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut session = client.session().await.expect("connect to the KMS API");
        match session.encrypt("alias/aes", "ready?", None).await {
            Ok(_) => return session,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the KMS API does not serve the benchmark's AccessKey: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The baseline: hyper answering every request with a fixed small JSON document, reading the
/// request and doing nothing else.
struct NoopServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

const NOOP_ANSWER: &str =
    r#"{"KeyId":"noop","KeyVersionId":"noop","CiphertextBlob":"bm9vcA==","RequestId":"noop"}"#;

impl NoopServer {
    async fn start() -> NoopServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        |request: hyper::Request<hyper::body::Incoming>| async move {
                            let _ = request.into_body().collect().await;
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/json;charset=utf-8")
                                    .body(Full::new(Bytes::from_static(NOOP_ANSWER.as_bytes())))
                                    .expect("a response"),
                            )
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        NoopServer { addr, task }
    }

    fn stop(self) {
        self.task.abort();
    }
}
