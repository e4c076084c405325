#!/usr/bin/env bash
# Runs the benchmarks: key generation against OpenSSL (benches/keygen.rs) and the cluster
# scenarios against a real local control plane started here (benches/cluster: throughput
# against a plain client, memory at 10,000 keys, idle silence, rotation on time). Figures are
# printed; docs/benchmarks.md says what they mean. About 40 minutes on 2 cores.
#
#   hack/bench.sh                    everything, at the published sizes
#   hack/bench.sh --bench keygen     key generation only
#   BENCH_SCENARIOS=idle BENCH_IDLE_SECONDS=60 hack/bench.sh --bench cluster
#
# Sizes are set by BENCH_* variables (see benches/cluster/main.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
hack/local-cluster.sh install

# A fresh control plane: the scenarios count writes from its audit log, and earlier objects
# would only add noise.
cluster_dir=$(mktemp -d "${TMPDIR:-/tmp}/keyward-bench-cluster.XXXXXX")
trap 'hack/local-cluster.sh down "$cluster_dir"; rm -rf "$cluster_dir"' EXIT
hack/local-cluster.sh up "$cluster_dir"
export KEYWARD_TEST_KUBECONFIG=$cluster_dir/kubeconfig
export KEYWARD_TEST_CLUSTER_DIR=$cluster_dir

cargo bench --locked "$@"
