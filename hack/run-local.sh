#!/usr/bin/env bash
# keyward's main job on a local control plane: starts etcd + kube-apiserver, installs the CRDs,
# runs the operator, applies examples/ and prints each key's KeyMetadata.
#
#   hack/run-local.sh          stop everything once the keys are printed
#   hack/run-local.sh --keep   keep the control plane and the operator running (Ctrl-C stops)
set -euo pipefail
cd "$(dirname "$0")/.."

keep=false
[ "${1:-}" = "--keep" ] && keep=true

command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
hack/local-cluster.sh install
cargo build --locked --bin keyward
kubectl=$(hack/local-cluster.sh kubectl-path)

cluster_dir=$(mktemp -d "${TMPDIR:-/tmp}/keyward-local.XXXXXX")
operator_pid=
cleanup() {
  [ -n "$operator_pid" ] && kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null
  hack/local-cluster.sh down "$cluster_dir"
  rm -rf "$cluster_dir"
}
trap cleanup EXIT
hack/local-cluster.sh up "$cluster_dir"
export KUBECONFIG=$cluster_dir/kubeconfig

# kubectl 1.20 rejects the CRDs' CEL rules client-side; the 1.20 server drops them.
"$kubectl" apply --validate=false -f crds/
"$kubectl" wait --for condition=established --timeout=60s -f crds/ >/dev/null

# keyward's own namespace, which keeps every key's material store (--store-namespace).
"$kubectl" create namespace keyward >/dev/null

# The KeyVersion example is applied together with its Key: a development cluster may skip the
# KMS's 7 days between versions.
target/debug/keyward run --key-version-min-interval 0s 2>"$cluster_dir/operator.log" &
operator_pid=$!

namespace=keyward-demo
"$kubectl" create namespace "$namespace" >/dev/null
"$kubectl" apply -n "$namespace" -f examples/
if ! "$kubectl" wait -n "$namespace" --for condition=Ready key,keyversion --all --timeout=120s >/dev/null; then
  echo "keys did not become Ready; operator log:" >&2
  tail -n 40 "$cluster_dir/operator.log" >&2
  exit 1
fi

echo
"$kubectl" get -n "$namespace" keys,keyversions
for key in $("$kubectl" get -n "$namespace" keys -o name); do
  echo
  echo "== $key"
  "$kubectl" get -n "$namespace" "$key" -o json | jq '{KeyMetadata: .status.keyMetadata}'
done
for request in $("$kubectl" get -n "$namespace" keyversions -o name); do
  echo
  echo "== $request"
  "$kubectl" get -n "$namespace" "$request" -o json | jq '{KeyVersion: .status.keyVersion}'
done

if $keep; then
  echo
  echo "The operator is running. In another shell: export KUBECONFIG=$KUBECONFIG"
  echo "kubectl: $kubectl   operator log: $cluster_dir/operator.log   Ctrl-C stops everything."
  wait "$operator_pid"
fi
