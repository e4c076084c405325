#!/usr/bin/env bash
# Builds keyward's OCI image with no container engine and no registry, the image the
# Dockerfile describes, and loads it into the node of a local cluster.
#
#   hack/image.sh [CLUSTER_DIR]     CLUSTER_DIR (or $KEYWARD_CLUSTER_DIR): a directory of
#                                   `hack/local-cluster.sh up DIR --node`; the image is imported
#                                   into that node's containerd. Without one, only built.
#
# The last line of standard output is the image reference, repository:tag
# (keyward.local/keyward:<Cargo version>-<manifest digest>), for the chart's image.repository
# and image.tag with image.pullPolicy IfNotPresent. The archive (an OCI layout, for `ctr images
# import`, `skopeo copy oci-archive:...` or `podman load`) is $TARGET/image/keyward.tar, where
# $TARGET is $CARGO_TARGET_DIR or target/.
#
# The Dockerfile stays the one description: the binary is built with the command of its build
# stage (checked by tests/image.rs), and its final stage is read by hack/oci.py, which refuses
# any instruction it cannot reproduce.
set -euo pipefail
cd "$(dirname "$0")/.."

REPOSITORY=keyward.local/keyward
MUSL=x86_64-unknown-linux-musl

log() { printf '[image] %s\n' "$*" >&2; }

cluster_dir=${1:-${KEYWARD_CLUSTER_DIR:-}}
if [ -n "$cluster_dir" ] && [ ! -S "$cluster_dir/node/containerd.sock" ]; then
  log "$cluster_dir has no node: start it with hack/local-cluster.sh up $cluster_dir --node"
  exit 1
fi

# What the Dockerfile's build stage installs: musl-gcc for ring's C, the musl target.
if ! command -v musl-gcc >/dev/null; then
  log "installing musl-tools"
  apt-get install -y -qq --no-install-recommends musl-tools >/dev/null
fi
if ! rustup target list --installed | grep -qx "$MUSL"; then
  log "adding the Rust target $MUSL"
  rustup target add "$MUSL" >&2
fi

target=${CARGO_TARGET_DIR:-target}
started=$(date +%s)
# The Dockerfile's build command, word for word (tests/image.rs compares them).
cargo build --release --locked --bin keyward --target x86_64-unknown-linux-musl >&2
log "binary built in $(($(date +%s) - started)) s"

# The build stage's file system, as far as the final stage copies from it.
stage=$target/image/build
mkdir -p "$stage"
cp "$target/$MUSL/release/keyward" "$stage/keyward"

version=$(cargo metadata --no-deps --format-version 1 --locked |
  python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "keyward"))')
archive=$target/image/keyward.tar
ref=$(hack/oci.py dockerfile Dockerfile --context . --stage "build=$stage" \
  --name "$REPOSITORY:$version-{digest}" --out "$archive")
log "image $ref: $archive ($(du -k "$archive" | cut -f1) KiB)"

if [ -n "$cluster_dir" ]; then
  ctr --address "$cluster_dir/node/containerd.sock" -n k8s.io images import "$archive" >&2
  log "loaded into the node of $cluster_dir"
fi
echo "$ref"
