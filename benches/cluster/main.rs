//! Benchmarks against a real control plane, printing figures (docs/benchmarks.md has them
//! and how to reproduce them):
//!
//! - throughput: N Keys from applied to Ready, operator against a plain client;
//! - memory: peak RSS with N converged keys, without and with M unrelated 100 KiB Secrets;
//! - idle: writes (from the audit log) and reconciles of an operator with nothing to do;
//! - rotation: lateness of rotations of N keys rotating every few seconds.
//!
//! `hack/bench.sh` starts a local control plane and runs `cargo bench --bench cluster`.
//! Sizes come from the environment (defaults are the published ones):
//! BENCH_SCENARIOS=throughput,memory,idle,rotation BENCH_KEYS=1000 BENCH_ROUNDS=4
//! BENCH_CONCURRENCY=32 BENCH_MEMORY_KEYS=10000 BENCH_UNRELATED_SECRETS=10000
//! BENCH_IDLE_SECONDS=600 BENCH_ROTATION_KEYS=1000 BENCH_ROTATION_INTERVAL=30
//! BENCH_ROTATION_SECONDS=150.
//!
//! Under `cargo test` (no `--bench` argument) every scenario runs at toy sizes, so that the
//! harness and its correctness checks stay working; it needs the test cluster of
//! `hack/test.sh`, and is skipped without one.

#[path = "../../tests/common/mod.rs"]
mod common;
mod harness;
mod idle;
mod memory;
mod rotation;
mod throughput;

use std::time::{Duration, Instant};

use harness::Cluster;

/// The sizes of one invocation.
struct Sizes {
    scenarios: Vec<String>,
    throughput: throughput::Settings,
    memory: memory::Settings,
    idle: idle::Settings,
    rotation: rotation::Settings,
}

impl Sizes {
    /// The published sizes, each overridable from the environment.
    fn bench() -> Sizes {
        let keys = env_number("BENCH_KEYS", 1000);
        Sizes {
            scenarios: std::env::var("BENCH_SCENARIOS")
                .unwrap_or_else(|_| "throughput,memory,idle,rotation".into())
                .split(',')
                .map(|s| s.trim().to_string())
                .collect(),
            throughput: throughput::Settings {
                keys,
                rounds: env_number("BENCH_ROUNDS", 4),
                concurrency: env_number("BENCH_CONCURRENCY", 32),
            },
            memory: memory::Settings {
                keys: env_number("BENCH_MEMORY_KEYS", 10_000),
                unrelated_secrets: env_number("BENCH_UNRELATED_SECRETS", 10_000),
                unrelated_size: 100 * 1024,
                rounds: env_number("BENCH_ROUNDS", 4),
            },
            idle: idle::Settings {
                keys,
                window: Duration::from_secs(env_number("BENCH_IDLE_SECONDS", 600) as u64),
            },
            rotation: rotation::Settings {
                keys: env_number("BENCH_ROTATION_KEYS", keys),
                interval: Duration::from_secs(env_number("BENCH_ROTATION_INTERVAL", 30) as u64),
                window: Duration::from_secs(env_number("BENCH_ROTATION_SECONDS", 150) as u64),
            },
        }
    }

    /// Toy sizes for `cargo test`: every code path, in about a minute.
    fn smoke() -> Sizes {
        Sizes {
            scenarios: ["throughput", "memory", "idle", "rotation"]
                .map(String::from)
                .to_vec(),
            throughput: throughput::Settings {
                keys: 12,
                rounds: 1,
                concurrency: 4,
            },
            memory: memory::Settings {
                keys: 12,
                unrelated_secrets: 4,
                unrelated_size: 100 * 1024,
                rounds: 1,
            },
            idle: idle::Settings {
                keys: 6,
                window: Duration::from_secs(5),
            },
            rotation: rotation::Settings {
                keys: 4,
                interval: Duration::from_secs(3),
                window: Duration::from_secs(8),
            },
        }
    }
}

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
        Err(_) => default,
    }
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let Some(cluster) = Cluster::from_env().await else {
            assert!(
                !benchmarking,
                "no cluster: run hack/bench.sh, or set KEYWARD_TEST_KUBECONFIG and \
                 KEYWARD_TEST_CLUSTER_DIR to a cluster started by hack/local-cluster.sh"
            );
            println!("cluster benchmarks skipped: no test cluster (hack/test.sh starts one)");
            return;
        };
        let sizes = match benchmarking {
            true => Sizes::bench(),
            false => Sizes::smoke(),
        };
        let started = Instant::now();
        let mut summary = Vec::new();
        for scenario in &sizes.scenarios {
            let lines = match scenario.as_str() {
                "throughput" => throughput::run(&cluster, &sizes.throughput).await,
                "memory" => memory::run(&cluster, &sizes.memory).await,
                "idle" => idle::run(&cluster, &sizes.idle).await,
                "rotation" => rotation::run(&cluster, &sizes.rotation).await,
                other => panic!("unknown scenario {other:?}: throughput, memory, idle or rotation"),
            };
            summary.extend(lines);
        }
        println!(
            "\nsummary ({:.0} s in all):",
            started.elapsed().as_secs_f64()
        );
        for line in summary {
            println!("  {line}");
        }
    });
}
