//! The operator behind a proxy: a TCP proxy on loopback between the operator and the API
//! server that can reset every connection through it, refuse new ones for a while, or silence
//! the open ones; a kubeconfig that points at it, and an operator that uses that kubeconfig.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kube::config::Kubeconfig;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::common::operator::OwnOperator;
use crate::common::scratch::Scratch;
use crate::common::{self, TestEnv};
use crate::control_plane::{server_of, skip_or_fail};

/// A TCP proxy on loopback that forwards to the API server and can reset every connection
/// through it, or refuse new ones for a while.
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    faults: Arc<tokio::sync::watch::Sender<Faults>>,
    pub accepted: Arc<AtomicUsize>,
    live: Arc<AtomicUsize>,
    acceptor: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        assert!(
            upstream.ip().is_loopback(),
            "the proxy forwards to loopback only"
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let mut proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            upstream,
            faults: Arc::new(tokio::sync::watch::channel(Faults::default()).0),
            accepted: Arc::default(),
            live: Arc::default(),
            acceptor: None,
        };
        proxy.accept_on(listener);
        proxy
    }

    fn accept_on(&mut self, listener: TcpListener) {
        let (faults, accepted, live, upstream) = (
            self.faults.clone(),
            self.accepted.clone(),
            self.live.clone(),
            self.upstream,
        );
        self.acceptor = Some(tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                // Subscribed before the connection is forwarded: no fault can slip past it.
                let faults = faults.subscribe();
                tokio::spawn(forward(inbound, upstream, faults, live.clone()));
            }
        }));
    }

    /// Resets every connection through the proxy; returns how many there were.
    pub fn cut_all(&self) -> usize {
        let live = self.live.load(Ordering::SeqCst);
        self.faults.send_modify(|f| f.cut += 1);
        live
    }

    /// Silences every connection through the proxy, as if the peer had vanished without a
    /// reset (a NAT or load balancer that dropped its state): nothing is forwarded on them any
    /// more, and they stay open until the next cut. New connections work. Returns how many
    /// there were.
    pub fn stall_all(&self) -> usize {
        let live = self.live.load(Ordering::SeqCst);
        self.faults.send_modify(|f| f.stall += 1);
        live
    }

    /// Closes the listening socket (connections are refused), resets every connection, and
    /// listens on the same port again after `for_`.
    pub async fn refuse(&mut self, for_: Duration) -> usize {
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.abort();
            let _ = acceptor.await;
        }
        let cut = self.cut_all();
        tokio::time::sleep(for_).await;
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket
            .bind(self.addr)
            .unwrap_or_else(|e| panic!("listening on {} again: {e}", self.addr));
        self.accept_on(socket.listen(1024).expect("listen"));
        cut
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.abort();
        }
        self.cut_all();
    }
}

/// Counts a live connection while it lasts.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The faults asked of the proxy so far: each counts up.
#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    cut: u64,
    stall: u64,
}

async fn forward(
    mut inbound: TcpStream,
    upstream: SocketAddr,
    mut faults: tokio::sync::watch::Receiver<Faults>,
    live: Arc<AtomicUsize>,
) {
    live.fetch_add(1, Ordering::SeqCst);
    let _live = Live(live);
    let start = *faults.borrow_and_update();
    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
        let _ = inbound.set_zero_linger();
        return;
    };
    // Forward until either side closes, or a fault: true for a stall, false for a cut.
    let next_fault = async {
        while faults.changed().await.is_ok() {
            let now = *faults.borrow_and_update();
            if now.cut != start.cut {
                return false;
            }
            if now.stall != start.stall {
                return true;
            }
        }
        false
    };
    let stalled = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
        stalled = next_fault => stalled,
    };
    if stalled {
        // Hold both sockets, forwarding nothing, until the next cut.
        while faults.changed().await.is_ok() {
            if faults.borrow_and_update().cut != start.cut {
                break;
            }
        }
    }
    // Closed with RST, not FIN: as a dropped connection looks to both sides.
    let _ = inbound.set_zero_linger();
    let _ = outbound.set_zero_linger();
}

/// The address of a `https://IP:PORT` server URL.
fn socket_addr_of(server: &str) -> SocketAddr {
    let authority = server
        .strip_prefix("https://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    authority
        .parse()
        .unwrap_or_else(|_| panic!("the API server {server:?} is not at https://IP:PORT"))
}

/// The API server's address, for the proxy to forward to: `None` (having said so) when it is
/// not on a loopback address, where the proxy forwards, and `test` (its full path) is to be
/// skipped; panics when it is not to be skipped.
pub fn loopback_upstream(test: &str) -> Option<SocketAddr> {
    let server = server_of(&common::kubeconfig_path());
    let upstream = socket_addr_of(&server);
    if upstream.ip().is_loopback() {
        return Some(upstream);
    }
    // Panics unless skipping was asked for.
    skip_or_fail(
        test,
        &format!("the API server {server} is not on a loopback address, where the proxy forwards"),
    )
}

/// An operator of the test's own that reaches the API server through `kubeconfig` (the
/// harness's operators always use KEYWARD_TEST_KUBECONFIG), logging at the harness's level as
/// `operator-proxied-<index>.log`.
pub fn start_proxied_operator(
    env: &TestEnv,
    kubeconfig: &Path,
    index: usize,
    extra: &[&str],
) -> OwnOperator {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
    command
        .args(["run", "--watch-namespace", &env.namespace])
        .args(["--store-namespace", &env.store_namespace])
        .args(["--log-level", common::OPERATOR_LOG_LEVEL])
        .args(["--http-addr", "127.0.0.1:0"])
        .args(extra)
        .env("KUBECONFIG", kubeconfig);
    OwnOperator::start(env, &format!("operator-proxied-{index}.log"), command)
}

/// A copy of the test kubeconfig whose server is the proxy, in a private directory removed
/// when dropped (it holds the token: never in the log directory the harness prints).
pub struct ProxiedKubeconfig {
    pub path: PathBuf,
    _dir: Scratch,
}

impl ProxiedKubeconfig {
    pub fn write(namespace: &str, proxy: SocketAddr) -> ProxiedKubeconfig {
        let mut config =
            Kubeconfig::read_from(common::kubeconfig_path()).expect("readable kubeconfig");
        for cluster in config
            .clusters
            .iter_mut()
            .filter_map(|c| c.cluster.as_mut())
        {
            cluster.server = Some(format!("https://{proxy}"));
        }
        let dir = Scratch::new(&format!("kubeconfig-{namespace}"));
        let path = dir.write(
            "kubeconfig",
            serde_yaml::to_string(&config).unwrap().as_bytes(),
        );
        ProxiedKubeconfig { path, _dir: dir }
    }
}
