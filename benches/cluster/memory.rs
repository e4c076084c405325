//! Memory: the operator's peak resident set size with N converged Keys, watching the whole
//! cluster, first alone and then while the cluster also holds M unrelated Secrets of 100 KiB.
//! The operator caches only keyward's Secrets, and only their metadata, so the unrelated ones
//! should not change the figure.

use crate::harness::{self, Cluster, Memory, Mix, ReadyWatch};

pub struct Settings {
    pub keys: usize,
    pub unrelated_secrets: usize,
    pub unrelated_size: usize,
    pub rounds: usize,
}

pub async fn run(cluster: &Cluster, settings: &Settings) -> Vec<String> {
    let keys_namespace = cluster.namespace("memory-keys").await;
    let stores = cluster.namespace("memory-stores").await;

    // Creating the keys, with the operator running from the start.
    let operator = cluster.start_operator(None, &stores, &[]).await;
    let watch = ReadyWatch::start(&cluster.client, &keys_namespace).await;
    harness::apply_keys(&cluster.client, &keys_namespace, settings.keys, 32, |i| {
        harness::key_manifest(Mix::AllSpecs, i, None)
    })
    .await;
    watch.all_ready(settings.keys).await;
    drop(watch);
    let creating = operator.memory();
    drop(operator);
    println!(
        "memory: creating {} keys (all six specs): peak {:.1} MiB, {:.1} MiB once converged",
        settings.keys,
        harness::mib(creating.peak),
        harness::mib(creating.current)
    );

    let alone = restarts(cluster, settings, &stores, "without unrelated Secrets").await;

    let unrelated_namespace = cluster.namespace("memory-unrelated").await;
    harness::create_unrelated_secrets(
        &cluster.client,
        &unrelated_namespace,
        settings.unrelated_secrets,
        settings.unrelated_size,
    )
    .await;
    let crowded = restarts(
        cluster,
        settings,
        &stores,
        &format!(
            "with {} unrelated Secrets of {} KiB",
            settings.unrelated_secrets,
            settings.unrelated_size / 1024
        ),
    )
    .await;
    cluster
        .delete_namespaces(&[keys_namespace, unrelated_namespace, stores])
        .await;

    let line = format!(
        "memory, {} converged keys: peak RSS {:.1} MiB while creating them; after a restart \
         {:.1} MiB alone, {:.1} MiB with {} unrelated Secrets of {} KiB ({:+.1} MiB; medians of \
         {} restarts)",
        settings.keys,
        harness::mib(creating.peak),
        alone,
        crowded,
        settings.unrelated_secrets,
        settings.unrelated_size / 1024,
        crowded - alone,
        settings.rounds
    );
    println!("{line}");
    vec![line]
}

/// Median peak RSS, in MiB, of fresh operators that start on the converged keys and finish
/// their start-up pass over them.
async fn restarts(cluster: &Cluster, settings: &Settings, stores: &str, setting: &str) -> f64 {
    let mut peaks = Vec::new();
    for round in 0..settings.rounds {
        let operator = cluster.start_operator(None, stores, &[]).await;
        operator
            .settle(settings.keys as u64, std::time::Duration::from_secs(3))
            .await;
        let Memory { current, peak } = operator.memory();
        println!(
            "memory: restart {} {setting}: peak {:.1} MiB, {:.1} MiB settled",
            round + 1,
            harness::mib(peak),
            harness::mib(current)
        );
        peaks.push(harness::mib(peak));
    }
    harness::median(&peaks)
}
