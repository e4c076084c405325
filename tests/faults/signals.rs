//! SIGTERM (the kubelet stopping the pod) and SIGINT (Ctrl-C): the operator exits promptly
//! and with status 0 in every state it can be in: running with its Key watches refused (RBAC
//! missing), waiting as a standby, and leading, having handed the Lease over.

use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::common::cluster::impersonating_kubeconfig;
use crate::common::operator::OwnOperator;
use crate::common::scratch::Scratch;
use crate::common::{CONVERGE, OPERATOR_LOG_LEVEL, TestEnv, http_get, key_manifest};
use crate::leader::{Candidates, candidates, wait_leader};
use crate::{CLUSTER, ms};

/// How soon after the signal the operator must have exited: in-flight reconciles finished and
/// the Lease released, all of which take milliseconds here.
const PROMPTLY: Duration = Duration::from_secs(3);

/// Long, so that a standby taking over quickly proves the Lease was released, not expired.
const LEASE: Duration = Duration::from_secs(15);

/// As the operator computes it: 2/15 of the lease duration.
const RETRY_PERIOD: Duration = Duration::from_secs(2);

fn leader_flags(namespace: &str) -> Vec<String> {
    [
        "--leader-elect",
        "--leader-election-namespace",
        namespace,
        "--leader-election-lease-duration",
        &format!("{}s", LEASE.as_secs()),
    ]
    .map(String::from)
    .to_vec()
}

/// The harness prints the operators' logs when this fails.
fn assert_exited_cleanly(exit: Option<ExitStatus>, what: &str) {
    match exit {
        Some(status) if status.success() => {}
        Some(status) => panic!("{what}: exited with {status}, not 0"),
        None => panic!("{what}: still running {} ms after the signal", ms(PROMPTLY)),
    }
}

/// The Lease's holder, if anyone holds it.
async fn lease_holder(env: &TestEnv) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.namespace);
    let lease = leases.get_opt("keyward").await.expect("read the Lease");
    lease
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|holder| !holder.is_empty())
}

/// The operator as a user with no RBAC for Keys (nor KeyVersions, events; for Secrets only
/// what the start-up move of stores needs), and,
/// when `leader_elect`, with a Role for the Lease only; started and waited for until its
/// Key watch has been refused (and, when electing, it leads).
async fn start_forbidden(env: &TestEnv, scratch: &Scratch, leader_elect: bool) -> OwnOperator {
    let user = format!("keyward-test-no-rbac-{}", env.namespace);
    grant_store_move(env, &user).await;
    if leader_elect {
        grant_lease_only(env, &user).await;
    }
    let kubeconfig = impersonating_kubeconfig(&user, scratch);
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
    command
        .args(["run", "--watch-namespace", &env.namespace])
        .args(["--store-namespace", &env.store_namespace])
        .args(["--log-level", OPERATOR_LOG_LEVEL])
        .args(["--http-addr", "127.0.0.1:0"])
        // Reading kube-system for the default would be refused too.
        .args(["--account-id", "1234567890"])
        .env("KUBECONFIG", &kubeconfig);
    if leader_elect {
        command.args(leader_flags(&env.namespace));
    }
    let log_name = format!("forbidden-leader-elect-{leader_elect}.log");
    let mut operator = OwnOperator::start(env, &log_name, command);
    let deadline = Instant::now() + CONVERGE;
    loop {
        let log = operator.log();
        let leads = !leader_elect || log.contains("acquired the leader Lease");
        if leads && log.contains("watching Keys failed") {
            break;
        }
        assert!(operator.running(), "the operator exited");
        assert!(Instant::now() < deadline, "the Key watch was never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    operator
}

/// Lets `user` take the leader Lease in the test's namespace, and nothing else.
async fn grant_lease_only(env: &TestEnv, user: &str) {
    let lease = PolicyRule {
        api_groups: Some(vec!["coordination.k8s.io".into()]),
        resources: Some(vec!["leases".into()]),
        verbs: ["get", "create", "update"].map(String::from).to_vec(),
        ..PolicyRule::default()
    };
    grant(env, &env.namespace, user, "keyward-lease-only", lease).await;
}

/// What the start-up move of former stores needs (it runs before any watch): find none in
/// the watched namespace, and leave the marker that the move is done in the store namespace.
async fn grant_store_move(env: &TestEnv, user: &str) {
    let secrets = PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["secrets".into()]),
        verbs: ["get", "list", "create"].map(String::from).to_vec(),
        ..PolicyRule::default()
    };
    for namespace in [&env.namespace, &env.store_namespace] {
        grant(env, namespace, user, "keyward-store-move", secrets.clone()).await;
    }
}

/// A Role of one rule in `namespace`, bound to `user`.
async fn grant(env: &TestEnv, namespace: &str, user: &str, name: &str, rule: PolicyRule) {
    let meta = || ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    };
    let role = Role {
        metadata: meta(),
        rules: Some(vec![rule]),
    };
    let binding = RoleBinding {
        metadata: meta(),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: name.into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: user.into(),
            namespace: None,
        }]),
    };
    let roles: Api<Role> = Api::namespaced(env.client.clone(), namespace);
    let bindings: Api<RoleBinding> = Api::namespaced(env.client.clone(), namespace);
    let create = PostParams::default();
    roles.create(&create, &role).await.expect("create Role");
    bindings
        .create(&create, &binding)
        .await
        .expect("create RoleBinding");
}

#[tokio::test]
async fn sigterm_exits_promptly_while_the_key_watch_is_forbidden() {
    let _shared = CLUSTER.read().await;
    let env = TestEnv::new("faults-sigterm-forbidden").await;
    let scratch = Scratch::new(&env.namespace);
    let mut operator = start_forbidden(&env, &scratch, false).await;
    operator.signal("TERM");
    let exit = operator.exit_within(PROMPTLY).await;
    assert_exited_cleanly(exit, "SIGTERM, Key watch forbidden");
}

#[tokio::test]
async fn sigterm_stops_a_leader_whose_key_watch_is_forbidden_and_releases_the_lease() {
    let _shared = CLUSTER.read().await;
    let env = TestEnv::new("faults-sigterm-forbidden-leader").await;
    let scratch = Scratch::new(&env.namespace);
    let mut operator = start_forbidden(&env, &scratch, true).await;
    assert!(lease_holder(&env).await.is_some(), "nobody holds the Lease");
    operator.signal("TERM");
    let exit = operator.exit_within(PROMPTLY).await;
    assert_exited_cleanly(exit, "SIGTERM, leading, Key watch forbidden");
    assert_eq!(
        lease_holder(&env).await,
        None,
        "the leader exited without releasing the Lease"
    );
}

#[tokio::test]
async fn sigterm_and_sigint_stop_a_standby_at_once() {
    let _shared = CLUSTER.read().await;
    let mut env = TestEnv::new("faults-signal-standby").await;
    let flags = leader_flags(&env.namespace);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let first = env.start_operator(&flags);
    let all = candidates(&env, &[first]).await;
    let (leader, _) = wait_leader(&env, &all, CONVERGE).await;
    let holder = lease_holder(&env).await;
    for signal in ["TERM", "INT"] {
        let standby = env.start_operator(&flags);
        candidates(&env, &[standby]).await; // it waits for the Lease
        env.signal_operator(standby, signal);
        let exit = env.operator_exit_within(standby, PROMPTLY).await;
        let what = format!("SIG{signal} to a standby");
        assert_exited_cleanly(exit, &what);
    }
    assert!(env.operator_running(leader), "the leader stopped");
    assert_eq!(lease_holder(&env).await, holder, "the Lease changed hands");
}

/// Sends SIGTERM to `leader`, which must exit promptly with 0 and release the Lease: one of
/// `standbys` leads at its next look, long before the Lease could have expired. Returns it.
async fn terminate_leader(
    env: &mut TestEnv,
    leader: usize,
    standbys: &Candidates,
    context: &str,
) -> usize {
    let signalled = Instant::now();
    env.signal_operator(leader, "TERM");
    let exit = env.operator_exit_within(leader, PROMPTLY).await;
    let exited = signalled.elapsed();
    assert_exited_cleanly(exit, &format!("SIGTERM to {context}"));
    let within = PROMPTLY + RETRY_PERIOD + Duration::from_secs(1);
    let (next, _) = wait_leader(env, standbys, within).await;
    eprintln!(
        "SIGTERM to {context}: it exited after {} ms, and a standby led after {} ms (lease {} \
         ms)",
        ms(exited),
        ms(signalled.elapsed()),
        ms(LEASE)
    );
    next
}

#[tokio::test]
async fn sigterm_stops_the_leader_which_hands_the_lease_to_a_standby() {
    let _shared = CLUSTER.read().await;
    let mut env = TestEnv::new("faults-sigterm-leader").await;
    let flags = leader_flags(&env.namespace);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (a, b) = (env.start_operator(&flags), env.start_operator(&flags));
    let both = candidates(&env, &[a, b]).await;
    let (leader, _) = wait_leader(&env, &both, CONVERGE).await;
    let standby = if leader == a { b } else { a };
    let standbys = candidates(&env, &[standby]).await;
    // At once: its controllers may not have filled their caches yet.
    let next = terminate_leader(&mut env, leader, &standbys, "a new leader").await;

    // At work: ready, with a key it reconciled.
    let standby = env.start_operator(&flags);
    let standbys = candidates(&env, &[standby]).await;
    env.apply_key(&key_manifest("at-work", "{}")).await;
    env.wait_ready("at-work").await;
    let http = env.operator_http_addr(next).await;
    let deadline = Instant::now() + CONVERGE;
    while http_get(http, "/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "the leader never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    terminate_leader(&mut env, next, &standbys, "a leader at work").await;
    env.wait_ready("at-work").await;
}
