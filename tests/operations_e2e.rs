//! Running keyward safely, on a real API server: leader election and failover, health and
//! metrics endpoints, and GitOps-style server-side apply that fights over no field.

mod common;

use std::time::{Duration, Instant};

use common::operator::logged_field;
use common::{TestEnv, entry, http_get, key_manifest};
use k8s_openapi::api::coordination::v1::Lease;
use keyward::api::Key;
use keyward::store::KeyRecord;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

async fn lease_holder(env: &TestEnv) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.namespace);
    let lease = leases.get_opt("keyward").await.unwrap()?;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// Which operator logged that it acquired the Lease, and with which identity.
fn leader_of(env: &TestEnv, candidates: &[usize]) -> Option<(usize, String)> {
    candidates.iter().find_map(|&i| {
        let log = env.operator_log(i);
        let identity = logged_field(&log, "acquired the leader Lease", "identity")?;
        Some((i, identity.to_string()))
    })
}

async fn metric(env: &TestEnv, operator: usize, line_start: &str) -> Option<String> {
    let (status, body) = http_get(env.operator_http_addr(operator).await, "/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .find(|l| l.starts_with(line_start))
        .map(str::to_string)
}

#[tokio::test]
async fn one_leader_writes_and_a_standby_takes_over_within_the_lease_duration() {
    let mut env = TestEnv::new("leader").await;
    let flags = [
        "--leader-elect",
        "--leader-election-namespace",
        &env.namespace.clone(),
        "--leader-election-lease-duration",
        "4s",
        "--min-rotation-interval",
        "1s",
    ];
    let first = env.start_operator(&flags);
    let second = env.start_operator(&flags);
    env.apply_key(&key_manifest(
        "ha-aes",
        "{enableAutomaticRotation: true, rotationInterval: 2s}",
    ))
    .await;
    env.apply_key(&key_manifest("ha-rsa", "{keySpec: RSA_2048}"))
        .await;
    env.wait_ready("ha-aes").await;
    env.wait_ready("ha-rsa").await;

    // Exactly one leader: the Lease names it, its metrics say so, the standby's do not.
    let (leader, identity) = leader_of(&env, &[first, second]).expect("a leader");
    let standby = if leader == first { second } else { first };
    assert_eq!(lease_holder(&env).await.as_deref(), Some(identity.as_str()));
    assert!(leader_of(&env, &[standby]).is_none(), "two leaders");
    assert_eq!(
        metric(&env, leader, "keyward_leader ").await.as_deref(),
        Some("keyward_leader 1")
    );
    assert_eq!(
        metric(&env, standby, "keyward_leader ").await.as_deref(),
        Some("keyward_leader 0")
    );
    assert!(
        !env.operator_log(standby).contains("created key"),
        "the standby wrote"
    );

    // Kill the leader: the standby holds the Lease within its duration (plus one retry) and
    // carries on; nothing is minted twice.
    env.kill_operator(leader);
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(4) + Duration::from_secs(2);
    loop {
        if leader_of(&env, &[standby]).is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no takeover {:?} after the leader died",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took_over = killed.elapsed();
    assert!(
        took_over <= Duration::from_secs(6),
        "took over after {took_over:?}"
    );
    env.apply_key(&key_manifest(
        "after-failover",
        "{keySpec: EC_P256, keyUsage: SIGN/VERIFY}",
    ))
    .await;
    env.wait_ready("after-failover").await;

    assert_minted_once_across_the_failover(&env).await;
}

/// Across the failover, the RSA key was minted once, and the rotating key went on rotating,
/// never twice in one interval.
async fn assert_minted_once_across_the_failover(env: &TestEnv) {
    let store = env.store("ha-rsa").await.unwrap();
    let record: KeyRecord = serde_json::from_slice(entry(&store, "key.json")).unwrap();
    assert_eq!(record.versions.len(), 1, "the RSA key was minted once");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let store = env.store("ha-aes").await.unwrap();
    let record: KeyRecord = serde_json::from_slice(entry(&store, "key.json")).unwrap();
    assert!(
        record.versions.len() >= 3,
        "rotation went on through the failover"
    );
    for pair in record.versions.windows(2) {
        let at = |v: &keyward::store::VersionRecord| v.creation_date.as_second();
        assert!(
            at(&pair[1]) - at(&pair[0]) >= 2,
            "a rotation was minted twice across the failover"
        );
    }
}

#[tokio::test]
async fn a_leader_that_loses_its_lease_stops_at_once() {
    let mut env = TestEnv::new("lease-lost").await;
    let namespace = env.namespace.clone();
    let leader = env.start_operator(&[
        "--leader-elect",
        "--leader-election-namespace",
        &namespace,
        "--leader-election-lease-duration",
        "3s",
    ]);
    let deadline = Instant::now() + common::CONVERGE;
    while leader_of(&env, &[leader]).is_none() {
        assert!(Instant::now() < deadline, "never became leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another holder takes the Lease by force, as if the leader had been partitioned away.
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &namespace);
    let patch = serde_json::json!({"spec": {"holderIdentity": "usurper"}});
    leases
        .patch("keyward", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while env.operator_running(leader) {
        assert!(Instant::now() < deadline, "the deposed leader kept running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        env.operator_log(leader)
            .contains("lost the leader Lease; stopping at once")
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let mut env = TestEnv::new("metrics").await;
    let operator = env.start_operator(&[
        "--min-rotation-interval",
        "1s",
        "--max-asymmetric-key-versions",
        "7",
    ]);
    let addr = env.operator_http_addr(operator).await;
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    let deadline = Instant::now() + common::CONVERGE;
    while http_get(addr, "/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.apply_key(&key_manifest(
        "m-aes",
        "{enableAutomaticRotation: true, rotationInterval: 1h}",
    ))
    .await;
    env.apply_key(&key_manifest(
        "m-sm2",
        "{keySpec: EC_SM2, keyUsage: SIGN/VERIFY}",
    ))
    .await;
    env.apply_key(&key_manifest("m-bad", "{keySpec: EC_P256}"))
        .await;
    env.wait_ready("m-aes").await;
    env.wait_ready("m-sm2").await;
    env.wait_reason("m-bad", "InvalidParameter").await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    for expected in [
        "keyward_keys{state=\"Enabled\",key_spec=\"Aliyun_AES_256\"} 1",
        "keyward_keys{state=\"Enabled\",key_spec=\"EC_SM2\"} 1",
        "keyward_keys_not_ready{reason=\"InvalidParameter\"} 1",
        "keyward_key_versions{key_spec=\"Aliyun_AES_256\"} 1",
        "keyward_key_versions{key_spec=\"EC_SM2\"} 1",
        "keyward_asymmetric_key_versions 1",
        "keyward_asymmetric_key_versions_limit 7",
        "keyward_leader 1",
    ] {
        assert!(
            body.lines().any(|l| l == expected),
            "missing `{expected}` in:\n{body}"
        );
    }
    let next = body
        .lines()
        .find(|l| l.starts_with("keyward_key_next_rotation_seconds "))
        .expect("seconds until the next rotation");
    let secs: i64 = next.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&secs), "{secs}");
    assert!(body.contains("keyward_reconciles_total{controller=\"key\",result=\"success\"}"));
    assert!(body.contains("keyward_reconcile_duration_seconds_count{controller=\"key\"}"));
    // Whoever can reach the port learns how many keys there are, never which: no key's name,
    // nor the namespace they are in.
    for identity in [env.namespace.as_str(), "m-aes", "m-sm2", "m-bad"] {
        assert!(
            !body.contains(identity),
            "/metrics names {identity}:\n{body}"
        );
    }
    assert_eq!(http_get(addr, "/nope").await.0, 404);
}

#[tokio::test]
async fn development_aids_are_warned_about_at_start_up() {
    let mut env = TestEnv::new("dev-aids").await;
    let production = env.start_operator(&[]);
    let development = env.start_operator(&[
        "--pending-window-unit",
        "1s",
        "--min-rotation-interval",
        "1s",
    ]);
    // Each has logged its start-up once it serves its endpoints.
    env.operator_http_addr(production).await;
    env.operator_http_addr(development).await;
    let warnings = |index| -> Vec<String> {
        env.operator_log(index)
            .lines()
            .filter(|l| l.contains("development aid in effect"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(warnings(production), Vec::<String>::new());
    let warned = warnings(development);
    assert_eq!(warned.len(), 2, "{warned:#?}");
    assert!(warned.iter().all(|l| l.contains(" WARN ")), "{warned:#?}");
    assert!(
        warned[0].contains("one day of a deletion's pending window lasts 1s instead of 1d"),
        "{warned:#?}"
    );
    assert!(
        warned[1].contains("keys may rotate every 1s instead of 7d"),
        "{warned:#?}"
    );
}

#[tokio::test]
async fn server_side_apply_of_the_examples_twice_changes_nothing() {
    let mut env = TestEnv::new("gitops-apply").await;
    env.start_operator(&["--key-version-min-interval", "0s"]);
    let apply = |manifest: String| {
        let keys = env.keys();
        let namespace = env.namespace.clone();
        async move {
            let mut key: Key = serde_yaml::from_str(&manifest).unwrap();
            key.metadata.namespace = Some(namespace);
            // As Argo CD or Flux would: server-side apply without force, so a field owned by
            // another manager would be a conflict.
            keys.patch(
                &key.name_any(),
                &PatchParams::apply("gitops"),
                &Patch::Apply(&key),
            )
            .await
        }
    };
    let mut manifests = Vec::new();
    for path in common::example_files() {
        let text = std::fs::read_to_string(path).unwrap();
        manifests.extend(
            text.split("\n---\n")
                .filter(|d| d.lines().any(|l| l == "kind: Key"))
                .map(str::to_string),
        );
    }
    for manifest in &manifests {
        apply(manifest.clone()).await.expect("first apply");
    }
    let mut names = Vec::new();
    for manifest in &manifests {
        let key: Key = serde_yaml::from_str(manifest).unwrap();
        names.push(env.wait_ready(&key.name_any()).await.name_any());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut before = Vec::new();
    for name in &names {
        before.push(env.key(name).await.resource_version());
    }
    for manifest in &manifests {
        apply(manifest.clone())
            .await
            .expect("second apply: no field fought over");
    }
    for (name, rv) in names.iter().zip(&before) {
        assert_eq!(
            &env.key(name).await.resource_version(),
            rv,
            "{name}: the second apply changed it"
        );
    }
    // The controller never writes spec: the only manager of spec fields is the applier.
    for name in &names {
        let key = env.key(name).await;
        for entry in key.metadata.managed_fields.iter().flatten() {
            let fields = serde_json::to_string(&entry.fields_v1).unwrap();
            if entry.manager.as_deref() == Some("keyward") {
                assert!(
                    !fields.contains("\"f:spec\""),
                    "{name}: keyward owns spec fields"
                );
            }
        }
    }
}

/// Every Key event passes through one watch shared by the controllers, with a bounded buffer
/// per controller. A burst of more events than the buffer holds (about 1,500 here: 250 Keys
/// created, then each changed twice, with a status write after each) must reach every key: a
/// controller that stopped reading would stall the watch for all of them.
#[tokio::test]
async fn a_burst_of_more_key_events_than_the_watch_buffers_reaches_every_key() {
    use futures::StreamExt;
    const KEYS: usize = 250;
    let env = TestEnv::with_operator("event-burst").await;
    let names: Vec<String> = (0..KEYS).map(|i| format!("burst-{i:03}")).collect();
    for round in ["first", "second", "third"] {
        futures::stream::iter(&names)
            .for_each_concurrent(16, |name| {
                let manifest = key_manifest(name, &format!("{{description: {round}}}"));
                let env = &env;
                async move {
                    env.apply_key(&manifest).await;
                }
            })
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let keys = env.keys().list(&Default::default()).await.unwrap().items;
        let behind: Vec<String> = keys
            .iter()
            .filter(|k| {
                let metadata = k.status.as_ref().and_then(|s| s.key_metadata.as_ref());
                metadata.map(|m| m.description.as_str()) != Some("third")
                    || common::ready_reason(k).as_deref() != Some("KeyReady")
            })
            .map(ResourceExt::name_any)
            .collect();
        if keys.len() == KEYS && behind.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {KEYS} keys never showed their last change: {:?}...",
            behind.len(),
            &behind[..behind.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
