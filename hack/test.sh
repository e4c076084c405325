#!/usr/bin/env bash
# Runs the whole test suite: unit tests, OpenSSL proofs of the key material, and integration
# tests against a real local Kubernetes control plane (started here, stopped on exit). Where
# the machine can run containers the control plane has a node, and the operator's image is
# built here and loaded into it (tests/node_e2e.rs installs the chart with it).
#
# Set KEYWARD_TEST_KUBECONFIG to use an existing disposable cluster instead.
# Extra arguments go to `cargo test` (for example a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }

node=()
if [ -z "${KEYWARD_TEST_KUBECONFIG:-}" ]; then
  if why=$(hack/local-cluster.sh node-support 2>&1); then
    node=(--node)
  else
    echo "NOTE: the node tests will be SKIPPED: this machine cannot run containers ($why)" >&2
  fi
fi
hack/local-cluster.sh install "${node[@]}"

if [ -z "${KEYWARD_TEST_KUBECONFIG:-}" ]; then
  cluster_dir=$(mktemp -d "${TMPDIR:-/tmp}/keyward-test-cluster.XXXXXX")
  trap 'hack/local-cluster.sh down "$cluster_dir"; rm -rf "$cluster_dir"' EXIT
  started=$(date +%s)
  hack/local-cluster.sh up "$cluster_dir" "${node[@]}"
  echo "[test] control plane${node:+ and node} up in $(($(date +%s) - started)) s" >&2
  export KEYWARD_TEST_KUBECONFIG=$cluster_dir/kubeconfig
  export KEYWARD_TEST_CLUSTER_DIR=$cluster_dir # lets tests/faults/ restart components
  if [ ${#node[@]} -gt 0 ]; then
    started=$(date +%s)
    KEYWARD_TEST_IMAGE=$(hack/image.sh "$cluster_dir" | tail -n 1)
    export KEYWARD_TEST_IMAGE
    echo "[test] image $KEYWARD_TEST_IMAGE built and loaded in $(($(date +%s) - started)) s" >&2
  fi
fi

cargo test --locked --all-targets "$@"
