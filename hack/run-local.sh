#!/usr/bin/env bash
# keyward's main job on a local control plane: starts etcd + kube-apiserver (and a node where
# this machine can run containers), installs the operator (with the chart, from an image built
# here, onto the node; else the CRDs and the operator as a process), applies examples/ and
# prints each key's KeyMetadata.
#
#   hack/run-local.sh          stop everything once the keys are printed
#   hack/run-local.sh --keep   keep the control plane and the operator running (Ctrl-C stops)
set -euo pipefail
cd "$(dirname "$0")/.."

keep=false
[ "${1:-}" = "--keep" ] && keep=true

command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }

# With a node (wherever this machine can run containers) the operator runs as users run it:
# the chart's pods, from an image built here. Otherwise as a process on this host.
node=()
if why=$(hack/local-cluster.sh node-support 2>&1); then
  node=(--node)
else
  echo "NOTE: no node (this machine cannot run containers: $why); the operator runs as a process" >&2
fi
hack/local-cluster.sh install "${node[@]}"
kubectl=$(hack/local-cluster.sh kubectl-path)

cluster_dir=$(mktemp -d "${TMPDIR:-/tmp}/keyward-local.XXXXXX")
operator_pid=
cleanup() {
  [ -n "$operator_pid" ] && kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null
  hack/local-cluster.sh down "$cluster_dir"
  rm -rf "$cluster_dir"
}
trap cleanup EXIT
hack/local-cluster.sh up "$cluster_dir" "${node[@]}"
export KUBECONFIG=$cluster_dir/kubeconfig

# The KeyVersion example is applied together with its Key: a development cluster may skip the
# KMS's 7 days between versions.
dev_flag=--key-version-min-interval=0s
if [ ${#node[@]} -gt 0 ]; then
  image=$(hack/image.sh "$cluster_dir" | tail -n 1)
  repository=${image%:*} tag=${image##*:}
  "$kubectl" create namespace keyward >/dev/null
  # Client-side apply without OpenAPI validation: the 1.20 server does not know the CRDs'
  # CEL rules (docs/operations.md).
  hack/helm.py install charts/keyward keyward --namespace keyward --kubeconfig "$KUBECONFIG" \
    --server-side false --disable-openapi-validation --values-json "$(jq -cn \
      --arg repository "$repository" --arg tag "$tag" --arg interval "${dev_flag#*=}" \
      '{image: {repository: $repository, tag: $tag, pullPolicy: "IfNotPresent"},
        keyVersionMinInterval: $interval}')" \
    >/dev/null
  operator_log() { "$kubectl" logs -n keyward -l app.kubernetes.io/name=keyward --tail 40 --prefix; }
  if ! "$kubectl" wait -n keyward --for condition=Available deployment --all --timeout=180s >/dev/null; then
    echo "the operator's pods did not become ready:" >&2
    "$kubectl" get -n keyward pods -o wide >&2
    operator_log >&2 || true
    exit 1
  fi
  echo "operator: $("$kubectl" get -n keyward pods -o name | wc -l) pods of $image on the node" >&2
else
  cargo build --locked --bin keyward
  # kubectl 1.20 rejects the CRDs' CEL rules client-side; the 1.20 server drops them.
  "$kubectl" apply --validate=false -f crds/
  "$kubectl" wait --for condition=established --timeout=60s -f crds/ >/dev/null
  # keyward's own namespace, which keeps every key's material store (--store-namespace).
  "$kubectl" create namespace keyward >/dev/null
  target/debug/keyward run "$dev_flag" 2>"$cluster_dir/operator.log" &
  operator_pid=$!
  operator_log() { tail -n 40 "$cluster_dir/operator.log"; }
fi

namespace=keyward-demo
"$kubectl" create namespace "$namespace" >/dev/null
"$kubectl" apply -n "$namespace" -f examples/
if ! "$kubectl" wait -n "$namespace" --for condition=Ready key,keyversion --all --timeout=120s >/dev/null; then
  echo "keys did not become Ready; operator log:" >&2
  operator_log >&2
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
  if [ -n "$operator_pid" ]; then
    echo "kubectl: $kubectl   operator log: $cluster_dir/operator.log   Ctrl-C stops everything."
    wait "$operator_pid"
  else
    echo "kubectl: $kubectl   operator logs: kubectl logs -n keyward -l app.kubernetes.io/name=keyward"
    echo "Ctrl-C stops everything."
    sleep infinity
  fi
fi
