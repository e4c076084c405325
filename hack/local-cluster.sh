#!/usr/bin/env bash
# A real, local Kubernetes control plane for keyward's tests and demo:
# etcd + kube-apiserver + kube-controller-manager on loopback, and with --node a node that runs
# pods (kube-scheduler, containerd, kubelet, kube-proxy; hack/local-node.sh).
#
#   hack/local-cluster.sh install [--node]
#                                      install packages and build the binaries (cached); with
#                                      --node also the node's (kubelet, kube-proxy,
#                                      kube-scheduler, containerd, the pause image)
#   hack/local-cluster.sh up DIR [--node]
#                                      start a control plane; writes DIR/kubeconfig and DIR/env;
#                                      with --node also a node, Ready to run pods (root only,
#                                      one per host; docs/local-cluster.md)
#   hack/local-cluster.sh down DIR     stop the control plane (and node) started in DIR
#   hack/local-cluster.sh stop DIR C [--kill]
#                                      stop one component C (etcd, kube-apiserver,
#                                      kube-controller-manager, or with a node kube-scheduler,
#                                      containerd, kubelet, kube-proxy) of the cluster in DIR:
#                                      SIGTERM (SIGKILL after 10s), or SIGKILL at once
#   hack/local-cluster.sh start DIR C  start C again with its command line in DIR/C.cmd (same
#                                      ports, same data), and wait until it is ready
#   hack/local-cluster.sh restart DIR C [--kill]
#                                      stop, then start (fault-injection tests use these)
#
# Debian bookworm ships no kube-apiserver binary, but its `kubernetes` source package (1.20,
# Go dependencies vendored) builds one. Binaries are cached in $KEYWARD_CACHE (default
# ~/.cache/keyward) so only the first run pays for the build (about 4 minutes on 2 cores).
set -euo pipefail

CACHE=${KEYWARD_CACHE:-$HOME/.cache/keyward}
BIN=$CACHE/k8s-1.20/bin
GO=/usr/lib/go-1.19/bin

log() { printf '[local-cluster] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
  install_packages_list etcd-server golang-1.19-go rsync jq golang-github-modern-go-reflect2-dev \
    openssl libssl-dev pkg-config python3 python3-venv make ca-certificates lua5.1 \
    softhsm2 opensc
}

install_packages_list() {
  local pkgs=("$@")
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  # etcd-server's postinst would start a system etcd; we run our own on a free port.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

enable_deb_src() {
  local src=/etc/apt/sources.list.d/keyward-deb-src.sources
  [ -f "$src" ] && return 0
  # Same mirror as the main stanza, source packages only.
  local uris
  uris=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  uris=${uris:-http://deb.debian.org/debian}
  as_root tee "$src" >/dev/null <<EOF
Types: deb-src
URIs: $uris
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  as_root apt-get update -qq
}

# kubectl 1.20 from Debian's kubernetes-client, unpacked into the cache rather than installed:
# some images already have another package owning /usr/bin/kubectl.
install_kubectl() {
  [ -x "$BIN/kubectl" ] && return 0
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/keyward-kubectl.XXXXXX")
  (cd "$work" && apt-get download kubernetes-client >/dev/null 2>&1 &&
    dpkg-deb -x kubernetes-client_*.deb root)
  mkdir -p "$BIN"
  cp "$work/root/usr/bin/kubectl" "$BIN/kubectl"
  rm -rf "$work"
}

build_binaries() {
  build_k8s_binaries kube-apiserver kube-controller-manager
}

# Builds those of the named commands (cmd/NAME) that are not cached yet. The Go build cache
# (~/.cache/go-build) is shared, so a second build from a fresh copy of the source recompiles
# little.
build_k8s_binaries() {
  local want=() name
  for name in "$@"; do [ -x "$BIN/$name" ] || want+=("$name"); done
  [ ${#want[@]} -eq 0 ] && return 0
  enable_deb_src
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/keyward-k8s-src.XXXXXX")
  log "building ${want[*]} from Debian's kubernetes source in $work"
  (
    cd "$work"
    apt-get source --download-only kubernetes >/dev/null 2>&1
    tar -xzf kubernetes_*.orig.tar.gz
    cd "$(find . -maxdepth 1 -mindepth 1 -type d | head -n1)"
    # The vendored reflect2 v1.0.1 segfaults under Go >= 1.18; Debian's 1.0.2 does not.
    local vendored=vendor/github.com/modern-go/reflect2
    rm -rf "$vendored"
    mkdir -p "$vendored"
    find /usr/share/gocode/src/github.com/modern-go/reflect2/ -maxdepth 1 \
      \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' -exec cp {} "$vendored/" \;
    PATH=$GO:$PATH CGO_ENABLED=0 make WHAT="${want[*]/#/cmd/}" >build.log 2>&1 ||
      { tail -n 50 build.log >&2; exit 1; }
    mkdir -p "$BIN"
    for name in "${want[@]}"; do cp "_output/bin/$name" "$BIN/"; done
  )
  rm -rf "$work"
  log "binaries cached in $BIN"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

make_pki() {
  local dir=$1
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=keyward-local-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
      -keyout serving.key -out serving.csr 2>/dev/null
    # Also the names and addresses pods reach it at with a node (hack/local-node.sh): the
    # kubernetes Service's ClusterIP and the node's bridge address.
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc,DNS:kubernetes.default,DNS:kubernetes,IP:10.96.0.1,IP:10.244.0.1\n' >serving.ext
    openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile serving.ext -out serving.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    # Two identities: admin for people and tests, keyward-operator for an operator run by the
    # benchmarks, so that the audit log tells the operator's requests from everyone else's.
    local admin operator
    admin=$(openssl rand -hex 24)
    operator=$(openssl rand -hex 24)
    printf '%s,admin,admin,"system:masters"\n' "$admin" >tokens.csv
    printf '%s,keyward-operator,keyward-operator,"system:masters"\n' "$operator" >>tokens.csv
    printf '%s' "$admin" >admin.token
    printf '%s' "$operator" >operator.token
    chmod 600 ./*.key tokens.csv admin.token operator.token
  )
}

# DIR/kubeconfig as admin, DIR/operator.kubeconfig as keyward-operator.
write_kubeconfig() {
  local dir=$1 port=$2
  write_kubeconfig_for "$dir" "$port" admin "$dir/kubeconfig"
  write_kubeconfig_for "$dir" "$port" operator "$dir/operator.kubeconfig"
}

write_kubeconfig_for() {
  local dir=$1 port=$2 user=$3 path=$4
  cat >"$path" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority: $dir/ca.crt
users:
- name: $user
  user:
    token: $(cat "$dir/$user.token")
contexts:
- name: local
  context: {cluster: local, user: $user}
current-context: local
EOF
  chmod 600 "$path"
}

wait_ready() {
  local dir=$1
  for _ in $(seq 1 120); do
    if KUBECONFIG=$dir/kubeconfig "$BIN/kubectl" get --raw /readyz >/dev/null 2>&1; then
      # The namespace controller and service-account controller must be up too: wait for
      # the default ServiceAccount that the latter creates.
      if KUBECONFIG=$dir/kubeconfig "$BIN/kubectl" -n default get serviceaccount default >/dev/null 2>&1; then
        return 0
      fi
    fi
    for p in etcd kube-apiserver kube-controller-manager; do
      if ! kill -0 "$(cat "$dir/$p.pid")" 2>/dev/null; then
        log "$p exited; last lines of $dir/$p.log:"
        tail -n 30 "$dir/$p.log" >&2
        return 1
      fi
    done
    sleep 0.5
  done
  log "control plane not ready after 60s"
  return 1
}

# One line of shell words that `start` runs again with `exec`.
write_cmd() {
  local dir=$1 name=$2
  shift 2
  printf '%q ' "$@" >"$dir/$name.cmd"
  printf '\n' >>"$dir/$name.cmd"
}

COMPONENTS="etcd kube-apiserver kube-controller-manager"
# shellcheck source=hack/local-node.sh
. "$(dirname "${BASH_SOURCE[0]}")/local-node.sh"

check_component() {
  case " $COMPONENTS " in
    *" $1 "*) ;;
    *) log "unknown component '$1': one of $COMPONENTS"; exit 2 ;;
  esac
}

# Whether process $1 runs (neither gone nor a zombie).
process_alive() {
  local pid=$1 state
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# Whether process $1 runs and is component $2 (a recycled pid is not).
component_alive() {
  local argv0
  process_alive "$1" || return 1
  argv0=$(head -z -n1 "/proc/$1/cmdline" 2>/dev/null | tr -d '\0') || return 1
  [ "${argv0##*/}" = "$2" ]
}

component_pid() {
  cat "$1/$2.pid" 2>/dev/null || true
}

# Stops one component: SIGTERM, then SIGKILL after 10 s; or with --kill SIGKILL at once, as a
# crash (kube-apiserver's graceful stop holds long-running requests, watches, for many
# seconds). Returns once it is gone.
stop_component() {
  local dir=$1 name=$2 how=${3:-} pid
  pid=$(component_pid "$dir" "$name")
  if ! component_alive "$pid" "$name"; then
    log "$name is not running in $dir"
    return 0
  fi
  case $how in
    --kill) kill -9 "$pid" 2>/dev/null || true ;;
    "") kill "$pid" 2>/dev/null || true ;;
    *) log "unknown option '$how': --kill or nothing"; return 2 ;;
  esac
  for _ in $(seq 1 100); do component_alive "$pid" "$name" || break; sleep 0.1; done
  if component_alive "$pid" "$name"; then
    log "$name did not stop within 10s; killing it"
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do component_alive "$pid" "$name" || break; sleep 0.1; done
  fi
  if component_alive "$pid" "$name"; then
    log "$name (pid $pid) does not stop"
    return 1
  fi
  log "stopped $name (pid $pid)"
}

http_ok() {
  python3 -c 'import sys, urllib.request
try:
    body = urllib.request.urlopen(sys.argv[1], timeout=2).read()
except Exception:
    sys.exit(1)
sys.exit(0 if b"true" in body else 1)' "$1"
}

apiserver_ready() {
  KUBECONFIG=$1/kubeconfig "$BIN/kubectl" get --raw /readyz >/dev/null 2>&1
}

# Starts one component again from DIR/<component>.cmd (appending to its log) and waits until
# it is ready: etcd healthy and the API server ready again; the API server ready; the
# controller manager's caches synced. At most 60 s.
start_component() {
  local dir=$1 name=$2 pid offset started ready=false
  [ -f "$dir/$name.cmd" ] || { log "no $dir/$name.cmd: was the control plane started by this script's up?"; return 1; }
  pid=$(component_pid "$dir" "$name")
  if component_alive "$pid" "$name"; then
    log "$name is already running in $dir (pid $pid)"
    return 1
  fi
  offset=$(stat -c %s "$dir/$name.log" 2>/dev/null || echo 0)
  printf '[local-cluster] starting %s again at %s\n' "$name" "$(date -u +%FT%TZ)" >>"$dir/$name.log"
  started=$(date +%s%N)
  bash -c "exec $(cat "$dir/$name.cmd")" </dev/null >>"$dir/$name.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/$name.pid"
  for _ in $(seq 1 240); do
    if ! process_alive "$pid"; then
      log "$name exited; last lines of $dir/$name.log:"
      tail -n 30 "$dir/$name.log" >&2
      return 1
    fi
    case $name in
      etcd)
        if http_ok "$(cat "$dir/etcd.endpoint")/health"; then
          if ! component_alive "$(component_pid "$dir" kube-apiserver)" kube-apiserver ||
            apiserver_ready "$dir"; then
            ready=true
          fi
        fi
        ;;
      kube-apiserver) apiserver_ready "$dir" && ready=true ;;
      kube-controller-manager)
        # Not grep -q: with pipefail, tail's SIGPIPE would fail the pipeline.
        tail -c +"$((offset + 1))" "$dir/$name.log" |
          grep 'Caches are synced for namespace' >/dev/null && ready=true
        ;;
      *) node_component_ready "$dir" "$name" && ready=true ;;
    esac
    $ready && break
    sleep 0.25
  done
  if ! $ready; then
    log "$name not ready after 60s; last lines of $dir/$name.log:"
    tail -n 30 "$dir/$name.log" >&2
    return 1
  fi
  log "started $name (pid $pid), ready after $((($(date +%s%N) - started) / 1000000)) ms"
}

up() {
  local dir=${1:?usage: up DIR [--node]} node=false
  case ${2:-} in
    --node) node=true ;;
    "") ;;
    *) log "unknown option '$2': --node or nothing"; return 2 ;;
  esac
  install_packages
  install_kubectl
  build_binaries
  $node && install_node
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if $node; then
    [ "$(id -u)" -eq 0 ] || { log "--node needs root (containerd, bridges, iptables)"; return 1; }
    node_lock "$dir"
    node_host_setup
  fi
  make_pki "$dir"
  $node && node_pki "$dir"
  local etcd_port etcd_peer api_port
  etcd_port=$(free_port)
  etcd_peer=$(free_port)
  api_port=$(free_port)

  # Each component's command line is also written to DIR/<component>.cmd, so that `restart`
  # starts it again exactly as here.
  local etcd_cmd=(etcd --name local --data-dir "$dir/etcd"
    --listen-client-urls "http://127.0.0.1:$etcd_port"
    --advertise-client-urls "http://127.0.0.1:$etcd_port"
    --listen-peer-urls "http://127.0.0.1:$etcd_peer"
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer"
    --initial-cluster "local=http://127.0.0.1:$etcd_peer"
    --unsafe-no-fsync
    # Room for the memory benchmark's 10,000 Secrets of 100 KiB (the default quota is 2 GiB).
    --quota-backend-bytes 8589934592)
  write_cmd "$dir" etcd "${etcd_cmd[@]}"
  printf 'http://127.0.0.1:%s\n' "$etcd_port" >"$dir/etcd.endpoint"
  "${etcd_cmd[@]}" >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"

  # With a node, pods reach the API server at the bridge's address, and the kubelet's identity
  # is authorized by the Node authorizer.
  local bind=127.0.0.1 advertise=127.0.0.1 authz=RBAC
  $node && { bind=0.0.0.0; advertise=$NODE_IP; authz=Node,RBAC; }
  local apiserver_cmd=("$BIN/kube-apiserver"
    --etcd-servers "http://127.0.0.1:$etcd_port"
    --bind-address "$bind" --advertise-address "$advertise"
    --secure-port "$api_port" --insecure-port 0
    --tls-cert-file "$dir/serving.crt" --tls-private-key-file "$dir/serving.key"
    --client-ca-file "$dir/ca.crt"
    --token-auth-file "$dir/tokens.csv"
    --authorization-mode "$authz"
    --service-account-key-file "$dir/sa.pub"
    --service-account-signing-key-file "$dir/sa.key"
    --service-account-issuer https://kubernetes.default.svc
    --service-cluster-ip-range 10.96.0.0/24
    --endpoint-reconciler-type none
    --audit-log-path "$dir/audit.log" --audit-policy-file "$dir/audit-policy.yaml"
    --audit-log-maxsize 4096)
  if $node; then
    mapfile -t -O ${#apiserver_cmd[@]} apiserver_cmd < <(node_apiserver_flags "$dir")
  fi
  write_cmd "$dir" kube-apiserver "${apiserver_cmd[@]}"
  "${apiserver_cmd[@]}" >"$dir/kube-apiserver.log" 2>&1 &
  echo $! >"$dir/kube-apiserver.pid"

  write_kubeconfig "$dir" "$api_port"

  local controller_manager_cmd=("$BIN/kube-controller-manager"
    --kubeconfig "$dir/kubeconfig"
    --controllers "garbagecollector,namespace,serviceaccount-token,serviceaccount$($node && echo ",$NODE_CONTROLLERS")"
    --service-account-private-key-file "$dir/sa.key"
    --root-ca-file "$dir/ca.crt"
    --leader-elect=false --port 0 --secure-port 0)
  write_cmd "$dir" kube-controller-manager "${controller_manager_cmd[@]}"
  "${controller_manager_cmd[@]}" >"$dir/kube-controller-manager.log" 2>&1 &
  echo $! >"$dir/kube-controller-manager.pid"

  wait_ready "$dir"
  printf 'export KUBECONFIG=%s/kubeconfig\n' "$dir" >"$dir/env"
  log "control plane ready: KUBECONFIG=$dir/kubeconfig"
  $node && node_up "$dir" "$api_port"
  return 0
}

down() {
  local dir=${1:?usage: down DIR}
  [ -d "$dir" ] && dir=$(cd "$dir" && pwd)
  node_down "$dir"
  for p in kube-controller-manager kube-apiserver etcd; do
    if [ -f "$dir/$p.pid" ]; then
      kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
    fi
  done
  for p in kube-controller-manager kube-apiserver etcd; do
    if [ -f "$dir/$p.pid" ]; then
      local pid
      pid=$(cat "$dir/$p.pid")
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/$p.pid"
    fi
  done
}

# The audit log records every request by user; benchmarks count the operator's writes from it.
write_audit_policy() {
  cat >"$1/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  verbs: ["get", "list", "watch"]
- level: Metadata
EOF
}

# Whether this machine can run a node (exit 0), else why not on stderr (exit 1): the test and
# run commands start one wherever it can. A node needs root, overlayfs and cgroups.
node_support() {
  local why=
  if [ "$(id -u)" -ne 0 ]; then
    why="not root (containerd, bridges and iptables need it)"
  elif ! grep -qw overlay /proc/filesystems && ! modprobe overlay 2>/dev/null; then
    why="the kernel has no overlay file system"
  elif [ ! -d /sys/fs/cgroup/memory ] && [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
    why="no cgroup hierarchy is mounted under /sys/fs/cgroup"
  fi
  [ -z "$why" ] && return 0
  echo "$why" >&2
  return 1
}

case ${1:-} in
  install)
    install_packages; install_kubectl; build_binaries
    case ${2:-} in --node) install_node ;; "") ;; *) echo "usage: $0 install [--node]" >&2; exit 2 ;; esac
    ;;
  kubectl-path) echo "$BIN/kubectl" ;;
  node-support) node_support ;;
  up) mkdir -p "${2:?usage: up DIR [--node]}"; write_audit_policy "$2"; up "$2" "${3:-}" ;;
  down) down "${2:?usage: down DIR}" ;;
  stop | start | restart)
    dir=${2:?usage: $1 DIR COMPONENT}
    component=${3:?usage: $1 DIR etcd|kube-apiserver|kube-controller-manager|NODE-COMPONENT}
    [ -d "$dir" ] || { log "no cluster directory $dir"; exit 1; }
    dir=$(cd "$dir" && pwd)
    [ -f "$dir/containerd.cmd" ] && COMPONENTS="$COMPONENTS $NODE_COMPONENTS"
    check_component "$component"
    case $1 in
      stop) stop_component "$dir" "$component" "${4:-}" ;;
      start) start_component "$dir" "$component" ;;
      restart) stop_component "$dir" "$component" "${4:-}" && start_component "$dir" "$component" ;;
    esac
    ;;
  *)
    echo "usage: $0 install [--node] | up DIR [--node] | down DIR | stop|restart DIR COMPONENT [--kill] | start DIR COMPONENT | node-support" >&2
    echo "  COMPONENT: etcd, kube-apiserver or kube-controller-manager; with a node also" >&2
    echo "  kube-scheduler, containerd, kubelet or kube-proxy" >&2
    exit 2
    ;;
esac
