//! Faults on the real control plane: the operator killed with SIGKILL during bulk creation and
//! during rotation bursts, the API server and etcd restarted mid-run, every connection to the
//! API server cut (and refused for a while), the leader of two replicas killed mid-burst, and
//! the operator stopped by SIGTERM or SIGINT in each state (leading, standing by, refused);
//! and a Key deleted while the operator's Key watch was away and could not resume.
//!
//! After each fault the same things must hold, and a failure prints what was compared:
//! * every key converges (Ready);
//! * no version is lost or changed: each store only grows by appending versions, and a digest
//!   of each version's entries (`<versionId>.key`, `.private.pem`, `.public.pem`) is the same
//!   before and after the fault;
//! * nothing is minted twice: the KeyId never changes, version ids are unique, a key that does
//!   not rotate keeps its one initial version, consecutive rotations are at least the interval
//!   apart, each KeyVersion request is answered by exactly one version (`requestedBy`) or
//!   refused with none, and no key has two KeyCreated events;
//! * every consumer Secret serves exactly what its store holds, and the Key's status lists the
//!   store's versions.
//!
//! The restart tests need the control plane's directory (`hack/local-cluster.sh up DIR`) in
//! `KEYWARD_TEST_CLUSTER_DIR`, which hack/test.sh sets for the cluster it starts; the proxy
//! tests need an API server on a loopback address. Against other clusters these tests fail,
//! saying why, unless `KEYWARD_TEST_SKIP_RESTARTS=1`: then they print that they were SKIPPED
//! (on stderr, even when the harness captures output) and return.
//!
//! A restart disturbs every test on the cluster, so restarts run alone: every test here holds
//! a lock, shared by the others, exclusive for the restart tests.
//!
//! Where things are:
//! * [`fleet`]: the keys a test applies, and KeyVersion requests for them;
//! * [`snapshot`]: reading every material store, checking each against the rules, and
//!   comparing snapshots taken before and after a fault;
//! * [`checks`]: the rest of what must hold once converged (consumer Secrets serve their
//!   stores, each request answered once, each key created once);
//! * [`recovery`]: waiting for the operator to come back, and measuring how long it took;
//! * [`control_plane`]: stopping and starting components of the local control plane;
//! * [`proxy`]: a TCP proxy between the operator and the API server that cuts connections;
//! * the tests, by fault: [`kill`] (`kill -9` of the operator), [`restarts`] (the API server
//!   and etcd), [`connections`] (dropped, refused and half-open connections), [`leader`] (the
//!   leader of two replicas killed), [`signals`] (SIGTERM and SIGINT: a prompt, clean exit),
//!   [`relist`] (a Key deleted while the Key watch was away, found missing when it re-lists).

#[path = "../common/mod.rs"]
mod common;

mod checks;
mod connections;
mod control_plane;
mod fleet;
mod kill;
mod leader;
mod proxy;
mod recovery;
mod relist;
mod restarts;
mod signals;
mod snapshot;

use std::time::{Duration, Instant};

/// Restarts run alone; everything else side by side.
static CLUSTER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Intervals of seconds, versions on request a second apart, and no limit in the way.
const FLAGS: &[&str] = &[
    "--min-rotation-interval",
    "1s",
    "--key-version-min-interval",
    "1s",
    "--max-asymmetric-key-versions",
    "1000",
];

/// How long after a fault the operator may take to converge again: generous, because after
/// an API server restart its watches come back only after kube-runtime's backoff (0.8 s
/// doubling to 30 s, with jitter, shared by each controller's watches), measured at 15 to 35 s.
const RECOVER: Duration = Duration::from_secs(120);

/// Retries an API call through transient failures for up to `within`.
async fn retrying<T, F, Fut>(what: &str, within: Duration, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let deadline = Instant::now() + within;
    loop {
        match call().await {
            Ok(value) => return value,
            Err(e) if Instant::now() < deadline => {
                eprintln!("{what}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{what}: still failing after {within:?}: {e}"),
        }
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}
