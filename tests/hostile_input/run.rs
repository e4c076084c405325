//! Running a corpus against one operator: each case submitted as a raw request, the created
//! objects waited for until they settle, and afterwards everything the namespace holds checked
//! (refused objects absent, the operator alive, material for the valid Keys only).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use keyward::api::{Key, KeyVersion};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, ResourceExt};
use serde_json::Value;

use crate::case::{
    Body, Case, Expect, Kind, Outcome, TARGET_AES, TARGET_EC, TARGET_INVALID, satisfies, shorten,
};
use crate::common::{TestEnv, key_manifest};

/// How long every created object has, from the last submission, to reach its outcome.
const SETTLE: Duration = Duration::from_secs(120);

async fn submit(env: &TestEnv, case: &Case) -> Result<Value, Outcome> {
    let path = format!(
        "/apis/keyward.dev/v1alpha1/namespaces/{}/{}",
        env.namespace,
        case.kind.plural()
    );
    let (bytes, content_type) = match &case.body {
        Body::Json(value) => (serde_json::to_vec(value).unwrap(), "application/json"),
        Body::Raw(bytes, content_type) => (bytes.clone(), *content_type),
    };
    let request = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::ACCEPT, "application/json")
        .body(bytes)
        .unwrap();
    match env.client.request::<Value>(request).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) if (400..500).contains(&status.code) => {
            Err(Outcome::Refused(status.code, status.message))
        }
        Err(kube::Error::Api(status)) => Err(Outcome::ServerError(format!(
            "{} {}",
            status.code, status.message
        ))),
        Err(other) => Err(Outcome::ServerError(other.to_string())),
    }
}

fn dynamic_api(env: &TestEnv, kind: Kind) -> Api<DynamicObject> {
    let resource = match kind {
        Kind::Key => ApiResource::erase::<Key>(&()),
        Kind::KeyVersion => ApiResource::erase::<KeyVersion>(&()),
    };
    Api::namespaced_with(env.client.clone(), &env.namespace, &resource)
}

/// The Ready outcome of a stored object, as JSON.
fn ready_outcome(object: &DynamicObject) -> Outcome {
    let generation = object.metadata.generation;
    let conditions = object.data["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(ready) = conditions.iter().find(|c| c["type"] == "Ready") else {
        return Outcome::Pending;
    };
    if ready["observedGeneration"].as_i64() != generation {
        return Outcome::Pending;
    }
    let reason = ready["reason"].as_str().unwrap_or("").to_string();
    match ready["status"].as_str() {
        Some("True") => Outcome::Ready(reason),
        _ => Outcome::NotReady {
            reason,
            message: ready["message"].as_str().unwrap_or("").to_string(),
        },
    }
}

/// Every object of `kind` in the namespace, by name.
async fn stored(env: &TestEnv, kind: Kind) -> BTreeMap<String, DynamicObject> {
    dynamic_api(env, kind)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|o| (o.name_any(), o))
        .collect()
}

/// Creates the Keys the KeyVersion cases refer to and waits until each has settled.
async fn create_targets(env: &TestEnv) {
    env.apply_key(&key_manifest(TARGET_AES, "{}")).await;
    env.apply_key(&key_manifest(
        TARGET_EC,
        "{keySpec: EC_P256, keyUsage: SIGN/VERIFY}",
    ))
    .await;
    env.apply_key(&key_manifest(TARGET_INVALID, "{keySpec: EC_P256}"))
        .await;
    env.wait_ready(TARGET_AES).await;
    env.wait_ready(TARGET_EC).await;
    env.wait_reason(TARGET_INVALID, "InvalidParameter").await;
}

struct Observed {
    outcome: Outcome,
    /// The stored name, for created objects (generateName gives one).
    stored_name: Option<String>,
}

/// What a corpus run found.
pub struct Report {
    summary: String,
    mismatches: Vec<String>,
}

impl Report {
    pub fn assert_all_as_expected(&self, total: usize) {
        assert!(
            self.mismatches.is_empty(),
            "{}\n{} of {total} manifests did not get their outcome:\n  {}",
            self.summary,
            self.mismatches.len(),
            self.mismatches.join("\n  ")
        );
    }
}

/// Submits every case, waits for the created objects to settle, and checks what the namespace
/// holds afterwards: refused objects do not exist, the operator runs and never panicked, and
/// material exists for valid Keys only. Outcomes that differ from the expected ones are
/// returned, with the summary table, for the caller to assert.
pub async fn run_corpus(env: &mut TestEnv, operator: usize, cases: &[Case]) -> Report {
    let mut results = submit_all(env, cases).await;
    wait_settled(env, cases, &mut results).await;
    let summary = summary_table(cases, &results);
    println!("{summary}");
    let mut mismatches = unexpected_outcomes(cases, &results);

    // Refused objects do not exist; the stored ones are exactly those created.
    let keys = stored(env, Kind::Key).await;
    let versions = stored(env, Kind::KeyVersion).await;
    mismatches.extend(unexpected_objects(cases, &results, &keys, &versions));

    // The operator survived it all and never panicked.
    if !env.operator_running(operator) {
        mismatches.push("the operator exited".into());
    }
    if env.operator_log(operator).contains("panicked") {
        mismatches.push("the operator panicked".into());
    }

    // Material exists for the valid Keys only: a store and a consumer Secret each.
    mismatches.extend(unexpected_material(env, cases, &results, &keys).await);
    Report {
        summary,
        mismatches,
    }
}

/// Submits every case, in order.
async fn submit_all(env: &TestEnv, cases: &[Case]) -> Vec<Observed> {
    let mut results: Vec<Observed> = Vec::with_capacity(cases.len());
    for case in cases {
        let result = match submit(env, case).await {
            Ok(created) => Observed {
                outcome: Outcome::Pending,
                stored_name: created["metadata"]["name"].as_str().map(str::to_string),
            },
            Err(outcome) => Observed {
                outcome,
                stored_name: None,
            },
        };
        results.push(result);
    }
    results
}

/// Waits until every created object reached its expected outcome, or time is up, noting the
/// outcomes.
async fn wait_settled(env: &TestEnv, cases: &[Case], results: &mut [Observed]) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let keys = stored(env, Kind::Key).await;
        let versions = stored(env, Kind::KeyVersion).await;
        let mut settled = true;
        for (case, result) in cases.iter().zip(results.iter_mut()) {
            let Some(name) = &result.stored_name else {
                continue;
            };
            let objects = match case.kind {
                Kind::Key => &keys,
                Kind::KeyVersion => &versions,
            };
            result.outcome = match objects.get(name) {
                Some(object) => ready_outcome(object),
                None => Outcome::Vanished,
            };
            settled &= satisfies(case.kind, &case.expect, &result.outcome);
        }
        if settled || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A line for each case whose outcome is not the expected one.
fn unexpected_outcomes(cases: &[Case], results: &[Observed]) -> Vec<String> {
    cases
        .iter()
        .zip(results)
        .filter(|(case, result)| !satisfies(case.kind, &case.expect, &result.outcome))
        .map(|(case, result)| {
            format!(
                "{:?} {} [{}]: expected {:?}, got {:?}",
                case.kind,
                case.name.as_deref().map(shorten).unwrap_or_default(),
                case.what,
                case.expect,
                shorten_outcome(&result.outcome)
            )
        })
        .collect()
}

/// A line for each stored object that was refused or never sent.
fn unexpected_objects(
    cases: &[Case],
    results: &[Observed],
    keys: &BTreeMap<String, DynamicObject>,
    versions: &BTreeMap<String, DynamicObject>,
) -> Vec<String> {
    let mut mismatches = Vec::new();
    let created: BTreeSet<(Kind, String)> = cases
        .iter()
        .zip(results)
        .filter_map(|(c, r)| Some((c.kind, r.stored_name.clone()?)))
        .collect();
    let targets = [TARGET_AES, TARGET_EC, TARGET_INVALID];
    let existing: BTreeSet<(Kind, String)> = keys
        .keys()
        .filter(|n| !targets.contains(&n.as_str()))
        .map(|n| (Kind::Key, n.clone()))
        .chain(versions.keys().map(|n| (Kind::KeyVersion, n.clone())))
        .collect();
    for (kind, name) in existing.difference(&created) {
        mismatches.push(format!(
            "{kind:?} {} exists but was refused or never sent",
            shorten(name)
        ));
    }
    mismatches
}

/// A line for each material store or consumer Secret that is not a valid Key's, and for a
/// count of managed Secrets that is not two for each valid Key with material.
async fn unexpected_material(
    env: &TestEnv,
    cases: &[Case],
    results: &[Observed],
    keys: &BTreeMap<String, DynamicObject>,
) -> Vec<String> {
    let mut mismatches = Vec::new();
    let valid_keys: BTreeSet<String> = cases
        .iter()
        .zip(results)
        .filter(|(c, _)| c.kind == Kind::Key && c.expect == Expect::Ready)
        .filter_map(|(_, r)| r.stored_name.clone())
        .chain(
            [TARGET_AES, TARGET_EC]
                .into_iter()
                .filter(|t| keys.contains_key(*t))
                .map(str::to_string),
        )
        .collect();
    let managed: Vec<Secret> = env.managed_secrets().await;
    for secret in &managed {
        let owner = secret.annotations().get("keyward.dev/key");
        if !owner.is_some_and(|o| valid_keys.contains(o)) {
            mismatches.push(format!(
                "Secret {} belongs to {:?}, not to a valid Key",
                shorten(&secret.name_any()),
                owner.map(|o| shorten(o))
            ));
        }
    }
    let all: BTreeSet<String> = env
        .secrets()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s.name_any())
        .collect();
    let stores: BTreeSet<String> = env
        .stores()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s.name_any())
        .collect();
    for (name, key) in keys {
        if valid_keys.contains(name) {
            continue;
        }
        if stores.contains(&env.store_name(name)) {
            mismatches.push(format!(
                "a material store for invalid Key {}",
                shorten(name)
            ));
        }
        let consumer = key.data["spec"]["secretName"].as_str().unwrap_or(name);
        let anothers = [TARGET_AES, TARGET_EC]
            .iter()
            .any(|t| consumer.starts_with(t));
        if !anothers && all.contains(consumer) {
            mismatches.push(format!(
                "a consumer Secret for invalid Key {}",
                shorten(name)
            ));
        }
    }
    let with_material = valid_keys
        .iter()
        .filter(|k| stores.contains(&env.store_name(k)))
        .count();
    if managed.len() != 2 * with_material {
        mismatches.push(format!(
            "{} managed Secrets for {with_material} valid Keys with material",
            managed.len()
        ));
    }
    mismatches
}

/// Counts per group and outcome, and the inputs that are valid after all.
fn summary_table(cases: &[Case], results: &[Observed]) -> String {
    let columns = [
        "refused (4xx)",
        "Ready=False",
        "WaitingForKey",
        "Ready",
        "no condition",
        "vanished",
        "server error",
    ];
    let mut table: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for (case, result) in cases.iter().zip(results) {
        *table
            .entry(case.group)
            .or_default()
            .entry(result.outcome.column())
            .or_default() += 1;
    }
    let mut summary = format!(
        "{} manifests ({} Key, {} KeyVersion)\n{:<32}",
        cases.len(),
        cases.iter().filter(|c| c.kind == Kind::Key).count(),
        cases.iter().filter(|c| c.kind == Kind::KeyVersion).count(),
        "group"
    );
    for column in columns {
        summary.push_str(&format!("{column:>15}"));
    }
    summary.push_str(&format!("{:>8}\n", "total"));
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for (group, counts) in &table {
        summary.push_str(&format!("{group:<32}"));
        for column in columns {
            let n = counts.get(column).copied().unwrap_or(0);
            *totals.entry(column).or_default() += n;
            summary.push_str(&format!("{n:>15}"));
        }
        summary.push_str(&format!("{:>8}\n", counts.values().sum::<usize>()));
    }
    summary.push_str(&format!("{:<32}", "all"));
    for column in columns {
        summary.push_str(&format!("{:>15}", totals.get(column).copied().unwrap_or(0)));
    }
    summary.push_str(&format!("{:>8}\n", cases.len()));
    let valid: Vec<&str> = cases
        .iter()
        .filter(|c| c.expect == Expect::Ready)
        .map(|c| c.what.as_str())
        .collect();
    if !valid.is_empty() {
        summary.push_str(&format!(
            "valid inputs ({}): {}\n",
            valid.len(),
            valid.join("; ")
        ));
    }
    summary
}

/// A namespace, one operator, and the Keys the KeyVersion cases refer to.
pub async fn environment(test: &str) -> (TestEnv, usize) {
    let mut env = TestEnv::new(test).await;
    let operator = env.start_operator(&[]);
    create_targets(&env).await;
    (env, operator)
}

fn shorten_outcome(outcome: &Outcome) -> Outcome {
    match outcome {
        Outcome::NotReady { reason, message } => Outcome::NotReady {
            reason: reason.clone(),
            message: shorten_message(message),
        },
        Outcome::Refused(code, message) => Outcome::Refused(*code, shorten_message(message)),
        other => other.clone(),
    }
}

fn shorten_message(message: &str) -> String {
    if message.chars().count() > 200 {
        format!("{}...", message.chars().take(200).collect::<String>())
    } else {
        message.to_string()
    }
}
