//! Throughput against the API server's own limit: the time from applying N Keys to all of
//! them Ready, with the operator, against a plain client of the same library doing only the
//! irreducible work for the same keys (generate the material, create one Secret with it,
//! patch the status once).
//!
//! Both runs start the clock at the first Key's creation and stop it when a watch sees the
//! last Key Ready, and both create the Keys the same way, `concurrency` at a time; the plain
//! client creates each Key and then does its work for it, also `concurrency` keys at a time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use keyward::api::{Key, KeySpec};
use keyward::kms::material::{self, Material};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::harness::{self, Cluster, Mix, OPERATOR_USER, ReadyWatch, Writes};

pub struct Settings {
    pub keys: usize,
    pub rounds: usize,
    pub concurrency: usize,
}

/// One run's figures.
struct Run {
    seconds: f64,
    /// When 10%, 50% and 90% of the keys were Ready, in seconds.
    progress: [f64; 3],
    /// Writes per key by whoever did the work (the operator, or the plain client), the Keys'
    /// creation not included.
    writes_per_key: f64,
    writes: Writes,
}

pub async fn run(cluster: &Cluster, settings: &Settings) -> Vec<String> {
    let mut summary = Vec::new();
    for mix in [Mix::Aes, Mix::AllSpecs] {
        let (mut operator, mut plain) = (Vec::new(), Vec::new());
        for round in 0..settings.rounds {
            // Alternate which goes first, so that neither always meets a warmer cluster: the
            // first run of a round measured up to a third slower than the second, whichever it
            // was. An even number of rounds gives each the first place equally often.
            let operator_first = round % 2 == 0;
            if operator_first {
                operator.push(operator_run(cluster, settings, mix).await);
            }
            plain.push(plain_run(cluster, settings, mix).await);
            if !operator_first {
                operator.push(operator_run(cluster, settings, mix).await);
            }
            let (o, p) = (operator.last().unwrap(), plain.last().unwrap());
            let pace = |r: &Run| {
                format!(
                    "{:.1}/{:.1}/{:.1}",
                    r.progress[0], r.progress[1], r.progress[2]
                )
            };
            println!(
                "throughput {} keys {:>15} round {}: operator {:7.2} s ({:.2} writes/key: {}; \
                 10/50/90% Ready at {} s), plain client {:7.2} s ({:.2} writes/key; {} s), \
                 ratio {:.2}",
                settings.keys,
                mix.label(),
                round + 1,
                o.seconds,
                o.writes_per_key,
                o.writes,
                pace(o),
                p.seconds,
                p.writes_per_key,
                pace(p),
                o.seconds / p.seconds
            );
        }
        let seconds =
            |runs: &[Run]| harness::median(&runs.iter().map(|r| r.seconds).collect::<Vec<_>>());
        let (o, p) = (seconds(&operator), seconds(&plain));
        let writes = harness::median(
            &operator
                .iter()
                .map(|r| r.writes_per_key)
                .collect::<Vec<_>>(),
        );
        let line = format!(
            "throughput, {} keys, {}: operator {o:.2} s ({:.0} keys/s), plain client {p:.2} s \
             ({:.0} keys/s), ratio {:.2}; operator writes per key {writes:.2} \
             (medians of {} rounds, {} requests at a time)",
            settings.keys,
            mix.label(),
            settings.keys as f64 / o,
            settings.keys as f64 / p,
            o / p,
            settings.rounds,
            settings.concurrency
        );
        println!("{line}");
        summary.push(line);
    }
    summary
}

async fn operator_run(cluster: &Cluster, settings: &Settings, mix: Mix) -> Run {
    cluster.wait_quiet().await;
    let namespace = cluster.namespace("throughput-operator").await;
    let stores = cluster.namespace("throughput-stores").await;
    let operator = cluster.start_operator(Some(&namespace), &stores, &[]).await;
    let watch = ReadyWatch::start(&cluster.client, &namespace).await;
    let audit = cluster.audit();
    let started = Instant::now();
    harness::apply_keys(
        &cluster.client,
        &namespace,
        settings.keys,
        settings.concurrency,
        |i| harness::key_manifest(mix, i, None),
    )
    .await;
    let seconds = watch.all_ready(settings.keys).await.duration_since(started);
    let progress = watch.progress(started);
    // Writes that trail the status (events) still belong to this run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = audit.writes_by(OPERATOR_USER);
    operator.report_warnings("throughput");
    drop(operator);
    cluster.delete_namespaces(&[namespace, stores]).await;
    Run {
        seconds: seconds.as_secs_f64(),
        progress,
        writes_per_key: writes.total() as f64 / settings.keys as f64,
        writes,
    }
}

async fn plain_run(cluster: &Cluster, settings: &Settings, mix: Mix) -> Run {
    cluster.wait_quiet().await;
    let namespace = cluster.namespace("throughput-plain").await;
    let watch = ReadyWatch::start(&cluster.client, &namespace).await;
    let started = Instant::now();
    plain_client(&cluster.client, &namespace, settings, mix).await;
    let seconds = watch.all_ready(settings.keys).await.duration_since(started);
    let progress = watch.progress(started);
    cluster.delete_namespaces(&[namespace]).await;
    Run {
        seconds: seconds.as_secs_f64(),
        progress,
        // By construction: one Secret create and one status patch per key.
        writes_per_key: 2.0,
        writes: Writes(BTreeMap::from([
            ("create secrets".to_string(), settings.keys as u64),
            ("patch keys/status".to_string(), settings.keys as u64),
        ])),
    }
}

/// The least any implementation must do per key, with no checks, events or retries.
async fn plain_client(client: &Client, namespace: &str, settings: &Settings, mix: Mix) {
    let keys: Api<Key> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    futures::stream::iter(0..settings.keys)
        .map(|i| {
            let (keys, secrets) = (keys.clone(), secrets.clone());
            async move {
                let key = harness::key_manifest(mix, i, None);
                keys.create(&PostParams::default(), &key).await?;
                let (spec, usage) = mix.spec_and_usage(i);
                let parsed = KeySpec::parse(spec).expect("a KMS key spec");
                let material = tokio::task::spawn_blocking(move || material::generate(parsed))
                    .await
                    .expect("keygen task")
                    .expect("keygen");
                let name = harness::key_name(i);
                secrets
                    .create(&PostParams::default(), &material_secret(&name, &material))
                    .await?;
                let status = plain_status(&name, spec, usage);
                keys.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                    .await?;
                Ok::<(), kube::Error>(())
            }
        })
        .buffer_unordered(settings.concurrency)
        .try_collect::<Vec<()>>()
        .await
        .expect("the plain client's requests");
}

fn material_secret(name: &str, material: &Material) -> Secret {
    let data = match material {
        Material::Symmetric { key } => {
            BTreeMap::from([("key".to_string(), ByteString(key.expose().to_vec()))])
        }
        Material::Asymmetric {
            private_pem,
            public_pem,
        } => BTreeMap::from([
            (
                "private.pem".to_string(),
                ByteString(private_pem.expose().to_vec()),
            ),
            (
                "public.pem".to_string(),
                ByteString(public_pem.as_bytes().to_vec()),
            ),
        ]),
        Material::InToken { .. } => unreachable!("the baseline writes software material"),
    };
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    }
}

/// A status the size of the operator's: KeyMetadata, one version, a Ready condition.
fn plain_status(name: &str, spec: &str, usage: &str) -> serde_json::Value {
    let key_id = uuid::Uuid::new_v4().to_string();
    let version = uuid::Uuid::new_v4().to_string();
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .expect("a second")
        .to_string();
    serde_json::json!({
        "status": {
            "keyMetadata": {
                "arn": format!("acs:kms:local:bench:key/{key_id}"),
                "automaticRotation": "Disabled",
                "creationDate": now,
                "creator": "bench",
                "description": format!("benchmark key {name}"),
                "keyId": key_id,
                "keySpec": spec,
                "keyState": "Enabled",
                "keyUsage": usage,
                "origin": "Aliyun_KMS",
                "primaryKeyVersion": version,
                "protectionLevel": "SOFTWARE",
            },
            "keyVersions": [{ "keyVersionId": version, "creationDate": now }],
            "secretName": name,
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "KeyReady",
                "message": "the key is usable",
                "lastTransitionTime": now,
            }],
            "observedGeneration": 1,
        }
    })
}
