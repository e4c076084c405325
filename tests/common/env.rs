//! [`TestEnv`]: one test's namespace and the operator processes watching it. Dropping it stops
//! the operators, runs the leak check on their logs, prints what the namespace held if the
//! test failed, and deletes the namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use keyward::api::Key;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};

use super::cluster::{client, install_crds, kubeconfig_path};
use super::leak::leak_check;
use super::operator::{exit_within, http_addr_in, send_signal};

/// How long anything may take to converge in a test.
pub const CONVERGE: Duration = Duration::from_secs(60);

/// The operators' log filter: every target at the most verbose level, the HTTP client's
/// (kube, hyper, tower, rustls) included, so that the leak check run when a [`TestEnv`] is
/// dropped sees everything any code path could print.
pub const OPERATOR_LOG_LEVEL: &str = "trace";

/// One test's namespace and operator.
pub struct TestEnv {
    pub client: Client,
    pub namespace: String,
    /// Where this test's operators keep material stores (`--store-namespace`): the test's
    /// own, so that tests running at once never see each other's stores.
    pub store_namespace: String,
    /// Running operator processes, by the index they were started with.
    operators: Vec<(usize, Child)>,
    /// Operators started so far, killed ones included: numbers each one's log.
    started: usize,
    /// Environment every operator started from now on gets (e.g. SOFTHSM2_CONF).
    pub operator_env: Vec<(String, String)>,
    log_dir: PathBuf,
}

impl TestEnv {
    /// A fresh namespace (with the CRDs installed) and no operator yet.
    pub async fn new(test: &str) -> TestEnv {
        let client = client().await;
        install_crds(&client).await;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let mut namespace = format!("kw-{}", test.replace('_', "-"));
        namespace.truncate(51);
        let namespace = format!("{}-{}", namespace.trim_end_matches('-'), &suffix[..8]);
        let store_namespace = format!("{namespace}-kw");
        for name in [&namespace, &store_namespace] {
            create_namespace(&client, name).await;
        }
        let log_dir = std::env::temp_dir().join("keyward-tests").join(&namespace);
        std::fs::create_dir_all(&log_dir).expect("log dir");
        TestEnv {
            client,
            namespace,
            store_namespace,
            operators: Vec::new(),
            started: 0,
            operator_env: Vec::new(),
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
            .args(["--store-namespace", &self.store_namespace])
            .args(["--log-level", OPERATOR_LOG_LEVEL])
            .args(extra_args);
        if !extra_args.contains(&"--http-addr") {
            command.args(["--http-addr", "127.0.0.1:0"]);
        }
        let child = command
            .envs(self.operator_env.iter().map(|(k, v)| (k, v)))
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

    /// Sends `signal` (TERM, INT, ...) to operator `index`, as the kubelet or a terminal would.
    pub fn signal_operator(&self, index: usize, signal: &str) {
        let (_, child) = self
            .operators
            .iter()
            .find(|(i, _)| *i == index)
            .expect("a running operator");
        send_signal(child.id(), signal);
    }

    /// How operator `index` exited, if it did within `within`.
    pub async fn operator_exit_within(
        &mut self,
        index: usize,
        within: Duration,
    ) -> Option<ExitStatus> {
        let (_, child) = self
            .operators
            .iter_mut()
            .find(|(i, _)| *i == index)
            .expect("a started operator");
        exit_within(child, within).await
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
            if let Some(addr) = http_addr_in(&self.operator_log(index)) {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "operator {index} serves no HTTP endpoint"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The log of operator process `index`, for assertions about what it printed.
    pub fn operator_log(&self, index: usize) -> String {
        std::fs::read_to_string(self.log_dir.join(format!("operator-{index}.log")))
            .unwrap_or_default()
    }

    /// A file in the directory of this test's operator logs: what is written there is covered
    /// by the leak check, and printed when the test fails. Never put a secret there.
    pub fn log_file(&self, name: &str) -> PathBuf {
        self.log_dir.join(name)
    }
}

/// Creates a namespace of a test's.
pub async fn create_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create test namespace");
}

/// Deletes a namespace, as `kubectl delete namespace` does, and waits until the namespace
/// controller has emptied it and it is gone.
pub async fn delete_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete namespace {name}: {e}"));
    eventually(&format!("namespace {name} gone"), || async {
        let gone = namespaces
            .get_opt(name)
            .await
            .expect("get namespace")
            .is_none();
        gone.then_some(())
    })
    .await
}

/// Polls `probe` every 100 ms until it yields a value, within [`CONVERGE`]; panics naming
/// `what` if it never does.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + CONVERGE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "not {what} within {CONVERGE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prints what a test namespace holds, never Secret data, and the operators' logs.
async fn dump(client: Client, namespace: &str, store_namespace: &str, log_dir: &Path) {
    eprintln!("=== namespace {namespace} at failure");
    let keys: Api<Key> = Api::namespaced(client.clone(), namespace);
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
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
        for namespace in [namespace, store_namespace] {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let Ok(secrets) = secrets.list(&ListParams::default()).await else {
                continue;
            };
            for s in secrets.items {
                let entries: Vec<&String> = s.data.iter().flat_map(|d| d.keys()).collect();
                eprintln!(
                    "--- Secret {namespace}/{} type={:?} rv={:?} labels={:?} annotations={:?} \
                     entries={entries:?}",
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
        let store_namespace = self.store_namespace.clone();
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
                let leaks = leak_check(&client, &[&namespace, &store_namespace], &log_dir).await;
                if failed {
                    dump(client.clone(), &namespace, &store_namespace, &log_dir).await;
                }
                let namespaces: Api<Namespace> = Api::all(client);
                for namespace in [&namespace, &store_namespace] {
                    let _ = namespaces.delete(namespace, &DeleteParams::default()).await;
                }
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
