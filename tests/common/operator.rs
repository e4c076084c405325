//! Operator processes a test starts itself (with another kubeconfig, or with the chart's own
//! arguments), and what any operator process tells: the fields of its log lines, its HTTP
//! endpoints, and how it exits when signalled.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::env::{CONVERGE, TestEnv};

/// The value of `field=` on the first line of an operator log that contains `marker`.
pub fn logged_field<'a>(log: &'a str, marker: &str, field: &str) -> Option<&'a str> {
    log.lines()
        .find(|l| l.contains(marker))
        .and_then(|l| l.split(&format!("{field}=")).nth(1))
        .and_then(|rest| rest.split_whitespace().next())
}

/// The address an operator serves /healthz, /readyz and /metrics on, once its log says so.
pub fn http_addr_in(log: &str) -> Option<SocketAddr> {
    logged_field(log, "serving /healthz", "http_addr").and_then(|addr| addr.parse().ok())
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

/// Sends `signal` (TERM, INT, ...) to process `pid`, as the kubelet or a terminal would.
pub fn send_signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{signal} {pid} failed");
}

/// Waits up to `within` for `child` to exit: how it exited, or `None` if it still runs.
pub async fn exit_within(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("poll the operator process") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An operator process of a test's own, for what [`TestEnv::start_operator`] cannot do (it
/// always runs `keyward run` with KEYWARD_TEST_KUBECONFIG). Killed when dropped. It logs to
/// where the harness keeps the test's operator logs, so that the harness's leak check covers
/// it and its failure dump prints it, like the harness's own operators' logs.
pub struct OwnOperator {
    child: Child,
    log: PathBuf,
}

impl OwnOperator {
    /// Starts `command` (the keyward binary, its arguments and environment), logging to the
    /// file `log_name` of the test's log directory.
    pub fn start(env: &TestEnv, log_name: &str, mut command: Command) -> OwnOperator {
        let log = env.log_file(log_name);
        let file = std::fs::File::create(&log).expect("operator log");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start keyward");
        OwnOperator { child, log }
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// Sends it `signal` (TERM, INT, ...).
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    /// How it exited, if it did within `within`.
    pub async fn exit_within(&mut self, within: Duration) -> Option<ExitStatus> {
        exit_within(&mut self.child, within).await
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where it serves /healthz, /readyz and /metrics, from its log.
    pub async fn http_addr(&mut self) -> SocketAddr {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(addr) = http_addr_in(&log) {
                return addr;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the operator exited ({status}):\n{log}");
            }
            assert!(Instant::now() < deadline, "no HTTP endpoint:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OwnOperator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("(the test's own operator's log: {})", self.log.display());
        }
    }
}
