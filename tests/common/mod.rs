//! The integration-test harness: a real API server, one namespace per test, and the real
//! `keyward` binary running as a local process (there is no kubelet on the test cluster).
//!
//! The cluster comes from `KEYWARD_TEST_KUBECONFIG`; `hack/test.sh` starts one and sets it.
//! When a test fails, the harness prints what the namespace held (Keys with their status,
//! Secrets without their data, events) and the operator's log.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use keyward::api::{Key, KeyVersion};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};

/// How long anything may take to converge in a test.
pub const CONVERGE: Duration = Duration::from_secs(60);

/// The operators' log filter: every target at the most verbose level, the HTTP client's
/// (kube, hyper, tower, rustls) included, so that the leak check run when a [`TestEnv`] is
/// dropped sees everything any code path could print.
pub const OPERATOR_LOG_LEVEL: &str = "trace";

pub fn kubeconfig_path() -> PathBuf {
    match std::env::var_os("KEYWARD_TEST_KUBECONFIG") {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "KEYWARD_TEST_KUBECONFIG is not set: run the suite with hack/test.sh, which starts a \
             local control plane, or point it at a disposable cluster's kubeconfig"
        ),
    }
}

pub async fn client() -> Client {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).expect("readable kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("usable kubeconfig");
    Client::try_from(config).expect("client")
}

/// One test's namespace and operator.
pub struct TestEnv {
    pub client: Client,
    pub namespace: String,
    /// Running operator processes, by the index they were started with.
    operators: Vec<(usize, Child)>,
    /// Operators started so far, killed ones included: numbers each one's log.
    started: usize,
    log_dir: PathBuf,
}

impl TestEnv {
    /// A fresh namespace (with the CRDs installed) and no operator yet.
    pub async fn new(test: &str) -> TestEnv {
        let client = client().await;
        install_crds(&client).await;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let mut namespace = format!("kw-{}", test.replace('_', "-"));
        namespace.truncate(54);
        let namespace = format!("{}-{}", namespace.trim_end_matches('-'), &suffix[..8]);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(namespace.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        let log_dir = std::env::temp_dir().join("keyward-tests").join(&namespace);
        std::fs::create_dir_all(&log_dir).expect("log dir");
        TestEnv {
            client,
            namespace,
            operators: Vec::new(),
            started: 0,
            log_dir,
        }
    }

    /// A fresh namespace with an operator watching it.
    pub async fn with_operator(test: &str) -> TestEnv {
        let mut env = TestEnv::new(test).await;
        env.start_operator(&[]);
        env
    }

    /// Starts another operator process watching this namespace, with extra flags; returns
    /// its index (for its log and for killing it alone). Its HTTP endpoints get a free port
    /// unless the flags name one.
    pub fn start_operator(&mut self, extra_args: &[&str]) -> usize {
        let index = self.started;
        self.started += 1;
        let log = std::fs::File::create(self.log_path(index)).expect("operator log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
        command
            .args(["run", "--watch-namespace", &self.namespace])
            .args(["--log-level", OPERATOR_LOG_LEVEL])
            .args(extra_args);
        if !extra_args.contains(&"--http-addr") {
            command.args(["--http-addr", "127.0.0.1:0"]);
        }
        let child = command
            .env("KUBECONFIG", kubeconfig_path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start keyward");
        self.operators.push((index, child));
        index
    }

    fn log_path(&self, index: usize) -> PathBuf {
        self.log_dir.join(format!("operator-{index}.log"))
    }

    /// SIGKILLs every operator process: no graceful shutdown, like a crash or OOM kill.
    pub fn kill_operators(&mut self) {
        for (_, mut child) in self.operators.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILLs operator `index` only.
    pub fn kill_operator(&mut self, index: usize) {
        if let Some(at) = self.operators.iter().position(|(i, _)| *i == index) {
            let (_, mut child) = self.operators.remove(at);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether operator `index` is still running (it exits on a fatal error).
    pub fn operator_running(&mut self, index: usize) -> bool {
        self.operators
            .iter_mut()
            .find(|(i, _)| *i == index)
            .is_some_and(|(_, child)| child.try_wait().ok().flatten().is_none())
    }

    /// The address operator `index` serves /healthz, /readyz and /metrics on, from its log.
    pub async fn operator_http_addr(&self, index: usize) -> std::net::SocketAddr {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let log = self.operator_log(index);
            let found = log
                .lines()
                .find(|l| l.contains("serving /healthz"))
                .and_then(|l| l.split("http_addr=").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|addr| addr.parse().ok());
            if let Some(addr) = found {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "operator {index} serves no HTTP endpoint"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn keys(&self) -> Api<Key> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Server-side applies a Key manifest (YAML) into this namespace, as `kubectl apply
    /// --server-side` would.
    pub async fn apply_key(&self, manifest: &str) -> Key {
        let mut key: Key = serde_yaml::from_str(manifest).expect("a Key manifest");
        key.metadata.namespace = Some(self.namespace.clone());
        self.keys()
            .patch(
                &key.name_any(),
                &PatchParams::apply("keyward-test").force(),
                &Patch::Apply(&key),
            )
            .await
            .unwrap_or_else(|e| panic!("applying Key {}: {e}", key.name_any()))
    }

    /// Server-side applies a KeyVersion manifest (YAML) into this namespace.
    pub async fn apply_key_version(&self, manifest: &str) -> KeyVersion {
        let mut request: KeyVersion =
            serde_yaml::from_str(manifest).expect("a KeyVersion manifest");
        request.metadata.namespace = Some(self.namespace.clone());
        let api: Api<KeyVersion> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = PatchParams::apply("keyward-test").force();
        api.patch(&request.name_any(), &params, &Patch::Apply(&request))
            .await
            .unwrap_or_else(|e| panic!("applying KeyVersion {}: {e}", request.name_any()))
    }

    /// Applies every manifest of `kind` (Key or KeyVersion) in examples/, returning names.
    pub async fn apply_examples(&self, kind: &str) -> Vec<String> {
        let mut names = Vec::new();
        for path in example_files() {
            let text = std::fs::read_to_string(&path).expect("example");
            for doc in text.split("\n---\n") {
                match doc.lines().find(|l| l.starts_with("kind: ")) {
                    Some(line) if line != format!("kind: {kind}") => {}
                    Some("kind: Key") => names.push(self.apply_key(doc).await.name_any()),
                    Some("kind: KeyVersion") => {
                        names.push(self.apply_key_version(doc).await.name_any())
                    }
                    other => panic!("{}: unexpected document {other:?}", path.display()),
                }
            }
        }
        names
    }

    pub async fn key(&self, name: &str) -> Key {
        self.keys()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("get Key {name}: {e}"))
    }

    pub async fn secret(&self, name: &str) -> Option<Secret> {
        self.secrets().get_opt(name).await.expect("get Secret")
    }

    /// Waits until `done` holds for the Key, returning it; panics with the last state if not.
    pub async fn wait_key(&self, name: &str, what: &str, done: impl Fn(&Key) -> bool) -> Key {
        let deadline = Instant::now() + CONVERGE;
        loop {
            if let Some(key) = self.keys().get_opt(name).await.expect("get Key")
                && done(&key)
            {
                return key;
            }
            if Instant::now() > deadline {
                panic!("Key {name} did not become {what} within {CONVERGE:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for Ready=True at the Key's current generation.
    pub async fn wait_ready(&self, name: &str) -> Key {
        self.wait_key(name, "Ready", |k| {
            ready_reason(k).as_deref() == Some("KeyReady")
        })
        .await
    }

    /// Waits for the Ready condition to carry `reason` at the Key's current generation.
    pub async fn wait_reason(&self, name: &str, reason: &str) -> Key {
        self.wait_key(name, reason, |k| ready_reason(k).as_deref() == Some(reason))
            .await
    }

    /// The events recorded on an object of this namespace.
    pub async fn events_for(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = events
            .list(&ListParams::default())
            .await
            .expect("list events");
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect()
    }

    /// Waits for an event with `reason` on `name`, returning its note.
    pub async fn wait_event(&self, name: &str, reason: &str) -> String {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let events = self.events_for(name).await;
            if let Some(e) = events.iter().find(|e| e.reason.as_deref() == Some(reason)) {
                return e.note.clone().unwrap_or_default();
            }
            if Instant::now() > deadline {
                panic!("no {reason} event on {name} within {CONVERGE:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for an event with `reason` on `name` whose note contains `text`.
    pub async fn wait_event_saying(&self, name: &str, reason: &str, text: &str) -> String {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let events = self.events_for(name).await;
            let found = events.iter().find(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.note.as_deref().is_some_and(|n| n.contains(text))
            });
            if let Some(e) = found {
                return e.note.clone().unwrap_or_default();
            }
            if Instant::now() > deadline {
                panic!("no {reason} event on {name} saying {text:?} within {CONVERGE:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The Secrets keyward manages in this namespace.
    pub async fn managed_secrets(&self) -> Vec<Secret> {
        let lp = ListParams::default().labels("app.kubernetes.io/managed-by=keyward");
        self.secrets().list(&lp).await.expect("list Secrets").items
    }

    /// The log of operator process `index`, for assertions about what it printed.
    pub fn operator_log(&self, index: usize) -> String {
        std::fs::read_to_string(self.log_dir.join(format!("operator-{index}.log")))
            .unwrap_or_default()
    }
}

/// Prints what a test namespace holds, never Secret data, and the operators' logs.
async fn dump(client: Client, namespace: &str, log_dir: &Path) {
    eprintln!("=== namespace {namespace} at failure");
    let keys: Api<Key> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let events: Api<Event> = Api::namespaced(client, namespace);
    {
        if let Ok(keys) = keys.list(&ListParams::default()).await {
            for key in keys.items {
                let status = serde_yaml::to_string(&key.status).unwrap_or_default();
                let spec = serde_yaml::to_string(&key.spec).unwrap_or_default();
                eprintln!(
                    "--- Key {} (generation {:?})\nspec:\n{spec}status:\n{status}",
                    key.name_any(),
                    key.metadata.generation
                );
            }
        }
        if let Ok(secrets) = secrets.list(&ListParams::default()).await {
            for s in secrets.items {
                let entries: Vec<&String> = s.data.iter().flat_map(|d| d.keys()).collect();
                eprintln!(
                    "--- Secret {} type={:?} rv={:?} labels={:?} annotations={:?} entries={entries:?}",
                    s.name_any(),
                    s.type_,
                    s.resource_version(),
                    s.metadata.labels,
                    s.metadata.annotations
                );
            }
        }
        if let Ok(events) = events.list(&ListParams::default()).await {
            for e in events.items {
                let on = e
                    .regarding
                    .as_ref()
                    .and_then(|r| r.name.clone())
                    .unwrap_or_default();
                eprintln!("--- Event {on} {:?} {:?}: {:?}", e.type_, e.reason, e.note);
            }
        }
        for entry in std::fs::read_dir(log_dir).into_iter().flatten().flatten() {
            let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- {} (last 60 lines)", entry.path().display());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.kill_operators();
        let failed = std::thread::panicking();
        let namespace = self.namespace.clone();
        let log_dir = self.log_dir.clone();
        // Drop cannot await, and the test's runtime may be shutting down: use a thread with a
        // runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let client = client().await;
                // First: a leak it finds is redacted from the logs before the dump prints them.
                let leaks = leak_check(&client, &namespace, &log_dir).await;
                if failed {
                    dump(client.clone(), &namespace, &log_dir).await;
                }
                let namespaces: Api<Namespace> = Api::all(client);
                let _ = namespaces
                    .delete(&namespace, &DeleteParams::default())
                    .await;
                leaks
            })
        });
        // A panic in the cleanup (the leak check's included) fails a test that had passed.
        let leaks = match cleanup.join() {
            Ok(leaks) => leaks,
            Err(panic) if !failed => std::panic::resume_unwind(panic),
            Err(_) => Vec::new(),
        };
        if !leaks.is_empty() {
            let report = format!(
                "key material of namespace {} leaked into operator logs (kept, redacted, in \
                 {}):\n  {}",
                self.namespace,
                self.log_dir.display(),
                leaks.join("\n  ")
            );
            if failed {
                eprintln!("{report}");
            } else {
                panic!("{report}");
            }
        }
        if !failed {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
    }
}

/// The key-material leak check, run when a [`TestEnv`] is dropped (its operators already
/// stopped, its namespace not yet deleted): every material entry of every Secret keyward
/// manages in the namespace is looked for, in every encoding in [`material_needles`], in every
/// operator log of the test. A finding names the Secret, the entry, the log and the encoding,
/// never the material; the logs are redacted in place so that nothing printed afterwards (the
/// failure dump's log tails) or kept on disk repeats it.
pub async fn leak_check(client: &Client, namespace: &str, log_dir: &Path) -> Vec<String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=keyward");
    let mut attempts = 0;
    let secrets = loop {
        match secrets.list(&lp).await {
            Ok(list) => break list.items,
            // A test that disturbed the API server may leave it briefly unavailable.
            Err(_) if attempts < 10 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return vec![format!("cannot list the namespace's Secrets to check: {e}")],
        }
    };
    let mut needles = Vec::new();
    for secret in &secrets {
        let data = secret.data.clone().unwrap_or_default();
        for (entry, bytes) in &data {
            if !is_material_entry(entry) {
                continue;
            }
            let public = public_entry(entry)
                .and_then(|p| data.get(&p))
                .map(|b| &b.0[..]);
            for (encoding, needle) in material_needles(&bytes.0, public) {
                needles.push((
                    format!("Secret {} entry {entry}", secret.name_any()),
                    encoding,
                    needle,
                ));
            }
        }
    }
    scan_logs(log_dir, &needles)
}

/// Whether a Secret entry holds key material: the store's `<versionId>.key` and
/// `<versionId>.private.pem`, the consumer's `key` and `private.pem`. Public keys, ids and the
/// store's record (`key.json`) are not secret.
pub fn is_material_entry(entry: &str) -> bool {
    entry == "key"
        || entry == "private.pem"
        || entry.ends_with(".key")
        || entry.ends_with(".private.pem")
}

/// The public key entry that goes with a private key entry.
fn public_entry(entry: &str) -> Option<String> {
    Some(format!("{}public.pem", entry.strip_suffix("private.pem")?))
}

/// Needles shorter than this are not looked for: a PEM's short last line (`Ag==`) would be
/// found by chance. Every key has longer needles that cover the same bytes.
const MIN_NEEDLE: usize = 16;

/// Every encoding in which `material` (a Secret entry's bytes) could appear in a log, named:
/// the raw bytes, lower- and uppercase hex, standard and URL-safe base64 with and without
/// padding (also as a substring of a longer base64 text, at each of the three byte
/// alignments), the byte list Rust's `Debug` and JSON print; for a PEM private key also the
/// PEM text (with its newlines escaped too), each base64 body line, the DER bytes and the
/// PKCS#8 privateKey field in all of the byte encodings above, and an EC key's scalar.
/// `public` is the matching public key PEM, if any: needles that also occur in its encodings
/// (parts of an RSA modulus) are not secret and are left out.
pub fn material_needles(material: &[u8], public: Option<&[u8]>) -> Vec<(String, Vec<u8>)> {
    let mut needles = byte_encodings("", material);
    if let Ok(text) = std::str::from_utf8(material)
        && text.starts_with("-----BEGIN")
    {
        needles.push(("PEM text".into(), material.to_vec()));
        needles.push((
            "PEM text, newlines escaped".into(),
            text.replace('\n', "\\n").into_bytes(),
        ));
        for (i, line) in text.lines().filter(|l| !l.starts_with("-----")).enumerate() {
            needles.push((format!("PEM body line {}", i + 1), line.as_bytes().to_vec()));
        }
        if let Ok((_, der)) = pkcs8::der::pem::decode_vec(material) {
            needles.extend(byte_encodings("DER ", &der));
            if let Ok(info) = pkcs8::PrivateKeyInfoRef::try_from(der.as_slice()) {
                let field = info.private_key.as_bytes();
                needles.extend(byte_encodings("PKCS#8 privateKey field ", field));
            }
            if let Some(scalar) = ec_scalar(&der) {
                needles.extend(byte_encodings("EC private scalar ", &scalar));
            }
        }
    }
    let public_forms: Vec<Vec<u8>> = public
        .map(|pem| {
            let mut forms = byte_encodings("", pem);
            if let Ok((_, der)) = pkcs8::der::pem::decode_vec(pem) {
                forms.extend(byte_encodings("", &der));
            }
            forms.into_iter().map(|(_, f)| f).collect()
        })
        .unwrap_or_default();
    needles.retain(|(_, needle)| {
        needle.len() >= MIN_NEEDLE
            && !public_forms
                .iter()
                .any(|form| form.windows(needle.len()).any(|w| w == needle))
    });
    needles
}

/// The secret scalar of a PKCS#8 EC private key (P-256, secp256k1 or SM2).
fn ec_scalar(der: &[u8]) -> Option<Vec<u8>> {
    use pkcs8::DecodePrivateKey;
    if let Ok(key) = p256::SecretKey::from_pkcs8_der(der) {
        return Some(key.to_bytes().to_vec());
    }
    if let Ok(key) = k256::SecretKey::from_pkcs8_der(der) {
        return Some(key.to_bytes().to_vec());
    }
    if let Ok(key) = sm2::SecretKey::from_pkcs8_der(der) {
        return Some(key.to_bytes().to_vec());
    }
    None
}

/// `bytes` raw, as hex, as base64 and as a byte list; `prefix` names what the bytes are.
fn byte_encodings(prefix: &str, bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let list = |sep: &str| {
        let items: Vec<String> = bytes.iter().map(u8::to_string).collect();
        format!("[{}]", items.join(sep)).into_bytes()
    };
    let mut out = vec![
        (format!("{prefix}raw bytes"), bytes.to_vec()),
        (format!("{prefix}hex"), hex.clone().into_bytes()),
        (
            format!("{prefix}uppercase hex"),
            hex.to_uppercase().into_bytes(),
        ),
        (
            format!("{prefix}base64"),
            STANDARD.encode(bytes).into_bytes(),
        ),
        (
            format!("{prefix}base64 unpadded"),
            STANDARD_NO_PAD.encode(bytes).into_bytes(),
        ),
        (
            format!("{prefix}URL-safe base64"),
            URL_SAFE.encode(bytes).into_bytes(),
        ),
        (
            format!("{prefix}URL-safe base64 unpadded"),
            URL_SAFE_NO_PAD.encode(bytes).into_bytes(),
        ),
        (format!("{prefix}byte list (Debug)"), list(", ")),
        (format!("{prefix}byte list (JSON)"), list(",")),
    ];
    // Inside a longer base64 text the bytes start at any offset: for offsets 1 and 2 (mod 3),
    // the characters that depend on these bytes alone.
    for shift in 1..=2usize {
        let mut shifted = vec![0u8; shift];
        shifted.extend_from_slice(bytes);
        let whole = (shifted.len() / 3) * 3;
        for (name, engine) in [
            ("base64", &STANDARD_NO_PAD),
            ("URL-safe base64", &URL_SAFE_NO_PAD),
        ] {
            // Skip the characters mixing in the unknown bytes before (the first 8*shift bits
            // and the rest of their sextet) and after (a partial last group).
            let encoded = engine.encode(&shifted[..whole]);
            let skip = (8 * shift).div_ceil(6);
            if encoded.len() > skip {
                out.push((
                    format!("{prefix}{name} at byte offset {shift} of a longer text"),
                    encoded.as_bytes()[skip..].to_vec(),
                ));
            }
        }
    }
    out
}

/// Looks for every needle in every log file of `log_dir`; returns one line per finding and
/// replaces every byte of every occurrence with `<redacted>` in the files.
fn scan_logs(log_dir: &Path, needles: &[(String, String, Vec<u8>)]) -> Vec<String> {
    if needles.is_empty() {
        return Vec::new();
    }
    let matcher = aho_corasick::AhoCorasick::new(needles.iter().map(|(_, _, n)| n))
        .expect("leak-check patterns");
    let mut findings = std::collections::BTreeSet::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(log_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for path in files {
        let Ok(log) = std::fs::read(&path) else {
            continue;
        };
        let file = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut ranges = Vec::new();
        for hit in matcher.find_overlapping_iter(&log) {
            let (entry, encoding, _) = &needles[hit.pattern().as_usize()];
            findings.insert(format!("{entry} is in {file} as {encoding}"));
            ranges.push(hit.range());
        }
        if ranges.is_empty() {
            continue;
        }
        ranges.sort_by_key(|r| r.start);
        let mut redacted = Vec::with_capacity(log.len());
        let mut at = 0;
        for range in ranges {
            if range.start > at {
                redacted.extend_from_slice(&log[at..range.start]);
                redacted.extend_from_slice(b"<redacted>");
            }
            at = at.max(range.end);
        }
        redacted.extend_from_slice(&log[at..]);
        let _ = std::fs::write(&path, redacted);
    }
    findings.into_iter().collect()
}

/// The reason of the Ready condition, if it describes the Key's current generation.
pub fn ready_reason(key: &Key) -> Option<String> {
    let status = key.status.as_ref()?;
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    (ready.observed_generation == key.metadata.generation).then(|| ready.reason.clone())
}

pub fn ready_message(key: &Key) -> String {
    let status = key.status.as_ref().expect("status");
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    ready.message.clone()
}

/// Installs (or updates) the CRDs and waits until they are served. Create/replace rather than
/// server-side apply: the 1.20 test server silently drops the CEL rules on create, but its
/// server-side apply rejects them. A digest annotation tells whether the served CRD is already
/// this one (the server's defaults make a field comparison useless), and a replace keeps the
/// annotations others put there (Helm's resource policy among them).
pub async fn install_crds(client: &Client) {
    const DIGEST: &str = "keyward.dev/test-crd-digest";
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in keyward::api::crds() {
        let name = crd.name_any();
        let digest = {
            use sha2::{Digest, Sha256};
            let bytes = Sha256::digest(keyward::api::crd_yaml(&crd).as_bytes());
            bytes[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let deadline = Instant::now() + CONVERGE;
        loop {
            let mut desired = crd.clone();
            let result = match crds.get_opt(&name).await.expect("get CRD") {
                Some(current) if current.annotations().get(DIGEST) == Some(&digest) => Ok(current),
                Some(current) => {
                    let mut annotations = current.annotations().clone();
                    annotations.insert(DIGEST.into(), digest.clone());
                    desired.metadata.annotations = Some(annotations);
                    desired.metadata.labels = Some(current.labels().clone());
                    desired.metadata.resource_version = current.resource_version();
                    crds.replace(&name, &PostParams::default(), &desired).await
                }
                None => {
                    desired
                        .annotations_mut()
                        .insert(DIGEST.into(), digest.clone());
                    crds.create(&PostParams::default(), &desired).await
                }
            };
            match result {
                Ok(current) if is_established(&current) => break,
                // Another test is installing it concurrently, or it is not served yet.
                Ok(_) | Err(kube::Error::Api(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(_) => panic!("CRD {name} was not established"),
                Err(e) => panic!("installing CRD {name}: {e}"),
            }
        }
    }
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Established" && c.status == "True")
}

pub fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// A Secret data entry's bytes.
pub fn entry<'a>(secret: &'a Secret, name: &str) -> &'a [u8] {
    match secret.data.as_ref().and_then(|d| d.get(name)) {
        Some(bytes) => &bytes.0,
        None => panic!("Secret {} has no entry {name}", secret.name_any()),
    }
}

/// The names of a Secret's data entries, sorted.
pub fn entry_names(secret: &Secret) -> Vec<String> {
    secret.data.iter().flat_map(|d| d.keys().cloned()).collect()
}

/// A digest of all of a Secret's data, to compare material before and after without
/// printing it.
pub fn data_digest(secret: &Secret) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (name, bytes) in secret.data.iter().flatten() {
        hasher.update(name.as_bytes());
        hasher.update((bytes.0.len() as u64).to_be_bytes());
        hasher.update(&bytes.0);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs OpenSSL with `input` on stdin, returning stdout; panics with stderr on failure.
pub fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.first().unwrap_or(&""),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A plain HTTP/1.1 GET on loopback, returning the status code and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("receive");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
