#!/usr/bin/env bash
# Runs the whole test suite: unit tests, OpenSSL proofs of the key material, and integration
# tests against a real local Kubernetes control plane (started here, stopped on exit).
#
# Set KEYWARD_TEST_KUBECONFIG to use an existing disposable cluster instead.
# Extra arguments go to `cargo test` (for example a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
hack/local-cluster.sh install

if [ -z "${KEYWARD_TEST_KUBECONFIG:-}" ]; then
  cluster_dir=$(mktemp -d "${TMPDIR:-/tmp}/keyward-test-cluster.XXXXXX")
  trap 'hack/local-cluster.sh down "$cluster_dir"; rm -rf "$cluster_dir"' EXIT
  hack/local-cluster.sh up "$cluster_dir"
  export KEYWARD_TEST_KUBECONFIG=$cluster_dir/kubeconfig
  export KEYWARD_TEST_CLUSTER_DIR=$cluster_dir # lets tests/faults/ restart components
fi

cargo test --locked --all-targets "$@"
