//! The local control plane under test (`hack/local-cluster.sh up DIR`): finding its directory,
//! refusing to touch any other cluster, stopping and starting its components, compacting its
//! etcd, and skipping (when asked to) the tests that cannot run without it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube::config::Kubeconfig;

use crate::common;

/// The local control plane's directory, or `None` (having said so) when restarts are to be
/// skipped; panics when they cannot be run and are not to be skipped.
pub fn cluster_dir(test: &str) -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("KEYWARD_TEST_CLUSTER_DIR").map(PathBuf::from) else {
        return skip_or_fail(
            test,
            "KEYWARD_TEST_CLUSTER_DIR is not set, so the cluster of KEYWARD_TEST_KUBECONFIG is \
             taken to be external and no component of it can be restarted",
        );
    };
    // Never restart another cluster than the one under test.
    let theirs = server_of(&dir.join("kubeconfig"));
    let ours = server_of(&common::kubeconfig_path());
    assert_eq!(
        theirs,
        ours,
        "KEYWARD_TEST_CLUSTER_DIR={} serves {theirs}, but KEYWARD_TEST_KUBECONFIG points at \
         {ours}: refusing to restart a cluster the tests do not use",
        dir.display()
    );
    Some(dir)
}

/// Says that `test` (its full path) is skipped and returns `None` when
/// `KEYWARD_TEST_SKIP_RESTARTS=1`; panics, saying how to run it, otherwise.
pub fn skip_or_fail<T>(test: &str, why: &str) -> Option<T> {
    if std::env::var("KEYWARD_TEST_SKIP_RESTARTS").as_deref() == Ok("1") {
        // Straight to stderr: the test harness captures eprintln! of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (not passed): {test}: {why} (KEYWARD_TEST_SKIP_RESTARTS=1)"
        );
        return None;
    }
    panic!(
        "{test} cannot run: {why}. Run the suite with hack/test.sh (it starts a local control \
         plane and sets KEYWARD_TEST_KUBECONFIG and KEYWARD_TEST_CLUSTER_DIR), set \
         KEYWARD_TEST_CLUSTER_DIR to the DIR of `hack/local-cluster.sh up DIR`, or set \
         KEYWARD_TEST_SKIP_RESTARTS=1 to skip it (reported as SKIPPED, not passed)"
    );
}

/// The API server URL of a kubeconfig's current context.
pub fn server_of(path: &Path) -> String {
    let config = Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}", path.display()));
    let context = config.current_context.clone().unwrap_or_default();
    let cluster = config
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .unwrap_or_default();
    config
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .unwrap_or_else(|| panic!("{}: no server for context {context:?}", path.display()))
}

/// Runs `hack/local-cluster.sh ACTION DIR COMPONENT [--kill]` off the async workers; returns
/// how long it took, panicking with its output if it failed.
pub async fn control_plane(dir: &Path, action: &str, component: &str, kill: bool) -> Duration {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/local-cluster.sh");
    let mut command = Command::new(script);
    command.arg(action).arg(dir).arg(component);
    if kill {
        command.arg("--kill");
    }
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || command.stdin(Stdio::null()).output())
        .await
        .expect("join")
        .expect("run hack/local-cluster.sh");
    let took = started.elapsed();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "hack/local-cluster.sh {action} {} {component} failed ({}):\n{said}",
        dir.display(),
        output.status
    );
    eprint!("{said}");
    took
}

/// Starts a stopped component again if the test fails before it does: the other tests need
/// the cluster whole.
pub struct Stopped<'a> {
    pub dir: &'a Path,
    pub component: &'a str,
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/local-cluster.sh");
        let status = Command::new(script)
            .arg("start")
            .arg(self.dir)
            .arg(self.component)
            .stdin(Stdio::null())
            .status();
        eprintln!(
            "started {} again after a failure: {status:?}",
            self.component
        );
    }
}

/// Compacts the etcd of the local control plane in `dir` at its current revision, physically
/// (the call returns once the old revisions are gone): no watch can resume from a
/// resourceVersion before it. Returns that revision.
pub async fn compact_etcd(dir: &Path) -> u64 {
    let endpoint = std::fs::read_to_string(dir.join("etcd.endpoint"))
        .unwrap_or_else(|e| panic!("reading {}/etcd.endpoint: {e}", dir.display()));
    let endpoint = endpoint.trim();
    // etcd's gRPC gateway (v3 in etcd 3.4) writes 64-bit integers as JSON strings. Any key
    // will do: every answer's header carries the store's revision.
    let range = etcd_call(
        endpoint,
        "/v3/kv/range",
        &serde_json::json!({"key": "AA=="}),
    )
    .await;
    let revision: u64 = range["header"]["revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("etcd at {endpoint} named no revision: {range}"));
    let compaction = serde_json::json!({"revision": revision.to_string(), "physical": true});
    etcd_call(endpoint, "/v3/kv/compaction", &compaction).await;
    revision
}

/// POSTs `body` to `path` of etcd's JSON gateway at `endpoint` (`http://127.0.0.1:PORT`);
/// returns the answer, panicking with it unless it is 200 OK.
async fn etcd_call(endpoint: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = endpoint
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("etcd endpoint {endpoint}: not http://HOST:PORT"));
    let body = body.to_string();
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connecting to etcd at {addr}: {e}"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send to etcd");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("receive from etcd");
    let (head, rest) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let payload = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "etcd {path} {body}: {}\n{payload}",
        head.lines().next().unwrap_or_default()
    );
    serde_json::from_str(&payload).unwrap_or_else(|e| panic!("etcd {path}: {e}: {payload}"))
}

/// The body of a chunked HTTP/1.1 response (its trailers dropped).
fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}
