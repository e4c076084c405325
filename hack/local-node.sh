# shellcheck shell=bash
# The node of the local cluster (hack/local-cluster.sh up DIR --node): kube-scheduler, then
# containerd + runc with the standard CNI plugins (Debian packages), kubelet and kube-proxy
# (built from the same Debian kubernetes 1.20 source as the API server). Sourced by
# hack/local-cluster.sh, which owns the control plane; docs/local-cluster.md says why each piece
# is set up the way it is.
#
# State lives under DIR/node (containerd's root, state and socket, the kubelet's root dir, the
# CNI config and IP allocations), so `down DIR` removes it with the directory. What cannot live
# under DIR is host-wide and so one node runs per host at a time, recorded in $NODE_LOCK: the
# bridge $NODE_BRIDGE, the KUBE-* iptables chains kube-proxy and the kubelet own, the kubepods
# cgroups, /var/log/pods and the network namespaces in /run/netns.

NODE_NAME=keyward-node
NODE_BRIDGE=keyward0
# The pods' subnet; its gateway, the bridge's address on the host, is the address pods reach
# the API server at (the kubernetes Service's endpoint) and the node's InternalIP.
POD_CIDR=10.244.0.0/24
NODE_IP=10.244.0.1
NODE_LOCK=/run/keyward-node
PAUSE_IMAGE=keyward.local/pause:1
BUSYBOX_IMAGE=keyward.local/busybox:1.35
# shellcheck disable=SC2034 # read by hack/local-cluster.sh
NODE_COMPONENTS="kube-scheduler containerd kubelet kube-proxy"
NODE_BINARIES="kubelet kube-proxy kube-scheduler"
IMAGES=$CACHE/k8s-1.20/images

install_node() {
  install_packages_list containerd runc containernetworking-plugins iptables conntrack \
    musl-tools
  # shellcheck disable=SC2086 # a word list
  build_k8s_binaries $NODE_BINARIES
  build_node_images
}

# The sandbox ("pause") image and a busybox image for in-cluster clients (wget, sh), as OCI
# archives for `ctr images import`: no registry is reachable.
build_node_images() {
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  mkdir -p "$IMAGES"
  if [ ! -f "$IMAGES/pause.tar" ]; then
    musl-gcc -static -Os -s -o "$IMAGES/pause" "$here/node/pause.c"
    "$here/oci.py" image --name "$PAUSE_IMAGE" --out "$IMAGES/pause.tar" \
      --file "$IMAGES/pause:/pause:0755" --entrypoint '["/pause"]' --user 65535:65535 >/dev/null
  fi
  if [ ! -f "$IMAGES/busybox.tar" ]; then
    local work
    work=$(mktemp -d "${TMPDIR:-/tmp}/keyward-busybox.XXXXXX")
    # Unpacked, not installed: busybox-static conflicts with the busybox package.
    (cd "$work" && apt-get download busybox-static >/dev/null 2>&1 &&
      dpkg-deb -x busybox-static_*.deb root)
    # /bin/sh and /bin/wget as copies of the one static binary (it dispatches on argv[0]).
    "$here/oci.py" image --name "$BUSYBOX_IMAGE" --out "$IMAGES/busybox.tar" \
      --file "$work/root/bin/busybox:/bin/busybox:0755" \
      --file "$work/root/bin/busybox:/bin/sh:0755" \
      --file "$work/root/bin/busybox:/bin/wget:0755" \
      --dir /tmp:1777 --cmd '["/bin/sh"]' --user 65534:65534 >/dev/null
    rm -rf "$work"
  fi
}

# --- before the control plane ------------------------------------------------------------

# One node per host: take the lock, or say which directory holds it.
node_lock() {
  local dir=$1 holder
  if [ -f "$NODE_LOCK" ]; then
    holder=$(cat "$NODE_LOCK")
    if [ "$holder" != "$dir" ] && component_alive "$(component_pid "$holder" containerd)" containerd; then
      log "a node already runs on this host, for the cluster in $holder (one per host: the"
      log "bridge $NODE_BRIDGE and kube-proxy's iptables chains are host-wide); down it first"
      return 1
    fi
    # A stale lock: its node is gone; clear what it may have left behind.
    [ "$holder" != "$dir" ] && node_host_cleanup "$holder"
  fi
  echo "$dir" >"$NODE_LOCK"
}

# Forwarding, and bridged traffic through iptables so that a pod reaching a Service backed by
# a pod on the same bridge is DNATed by kube-proxy's rules. Host-wide; left on by down.
node_host_setup() {
  sysctl -qw net.ipv4.ip_forward=1
  sysctl -qw net.bridge.bridge-nf-call-iptables=1
  # The bridge exists before the API server starts: its address is the API server's
  # address for pods. The CNI bridge plugin adopts it (same name, same gateway).
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge
  fi
  ip addr replace "$NODE_IP/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
}

# Certificates and tokens for the node's components, beside the control plane's (make_pki).
node_pki() {
  local dir=$1
  (
    cd "$dir" || exit
    # The API server's client certificate for the kubelet API (logs, exec), in system:masters.
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
      -keyout kubelet-client.key -out kubelet-client.csr 2>/dev/null
    openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -out kubelet-client.crt 2>/dev/null
    # The kubelet's serving certificate, for the API server to verify (--kubelet-certificate-authority).
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$NODE_NAME" \
      -keyout kubelet.key -out kubelet.csr 2>/dev/null
    printf 'subjectAltName=IP:%s,IP:127.0.0.1,DNS:%s\n' "$NODE_IP" "$NODE_NAME" >kubelet.ext
    openssl x509 -req -in kubelet.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile kubelet.ext -out kubelet.crt 2>/dev/null
    # One identity per component, as kubeadm has: the Node authorizer needs the kubelet's,
    # and RBAC's default bindings (system:node-proxier, system:kube-scheduler) the others'.
    local t
    for who in kubelet kube-proxy kube-scheduler; do
      t=$(openssl rand -hex 24)
      printf '%s' "$t" >"$who.token"
      case $who in
        kubelet) printf '%s,system:node:%s,system:node:%s,"system:nodes"\n' "$t" "$NODE_NAME" "$NODE_NAME" ;;
        kube-proxy) printf '%s,system:kube-proxy,system:kube-proxy\n' "$t" ;;
        kube-scheduler) printf '%s,system:kube-scheduler,system:kube-scheduler\n' "$t" ;;
      esac >>tokens.csv
    done
    chmod 600 ./*.key ./*.token
  )
}

# Flags the API server needs once pods run (besides its addresses and --authorization-mode
# Node,RBAC, set by up): NodeRestriction for the kubelet's writes, and the kubelet API.
node_apiserver_flags() {
  local dir=$1
  printf '%s\n' --enable-admission-plugins NodeRestriction \
    --kubelet-client-certificate "$dir/kubelet-client.crt" \
    --kubelet-client-key "$dir/kubelet-client.key" \
    --kubelet-certificate-authority "$dir/ca.crt" \
    --kubelet-preferred-address-types InternalIP
}

# The controllers a Deployment and a Service need, beyond the control plane's own.
# shellcheck disable=SC2034 # read by hack/local-cluster.sh
NODE_CONTROLLERS=deployment,replicaset,endpoint,endpointslice,endpointslicemirroring,nodelifecycle,podgc,statefulset,daemonset,job,disruption

# --- after the control plane -------------------------------------------------------------

kubectl_in() {
  KUBECONFIG=$1/kubeconfig "$BIN/kubectl" "${@:2}"
}

# `--endpoint-reconciler-type none`: nothing writes the kubernetes Service's endpoints, so
# this does, once, with the address pods reach the API server at. The EndpointSlice too:
# kube-proxy 1.20 reads slices, and the mirroring controller skips this Service.
node_kubernetes_endpoints() {
  local dir=$1 port=$2
  kubectl_in "$dir" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Endpoints
metadata:
  name: kubernetes
  namespace: default
  labels: {endpointslice.kubernetes.io/skip-mirror: "true"}
subsets:
- addresses: [{ip: $NODE_IP}]
  ports: [{name: https, port: $port, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1beta1
kind: EndpointSlice
metadata:
  name: kubernetes
  namespace: default
  labels: {kubernetes.io/service-name: kubernetes}
addressType: IPv4
endpoints:
- addresses: [$NODE_IP]
  conditions: {ready: true}
ports: [{name: https, port: $port, protocol: TCP}]
EOF
}

node_kubeconfig() {
  local dir=$1 who=$2 port=$3
  write_kubeconfig_for "$dir" "$port" "$who" "$dir/$who.kubeconfig"
}

write_containerd_config() {
  local dir=$1 node=$1/node
  mkdir -p "$node/cni/net.d" "$node/cni/ipam"
  cat >"$node/containerd.toml" <<EOF
# containerd for the local node: its own root, state and socket under DIR, CRI on.
version = 2
root = "$node/containerd/root"
state = "$node/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$node/containerd.sock"
[ttrpc]
  address = "$node/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$node/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  # Built locally and imported (build_node_images): no registry to pull it from.
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # Pod network namespaces under DIR rather than /run/netns: down finds what is left there.
  netns_mounts_under_state_dir = true
  # Sandboxes ask for oom_score_adj -998, which needs CAP_SYS_RESOURCE; VMs like the project's
  # withhold it even from root, and runc then fails ("can't get final child's PID from pipe").
  # With this, no container's score goes below containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node/cni/net.d"
EOF
  # A bridge with host-local IPAM: every pod on $NODE_BRIDGE in $POD_CIDR, default route via
  # the host. No masquerade: pods only talk to the host and to each other.
  cat >"$node/cni/net.d/10-keyward.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "keyward",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$node/cni/ipam"
      }
    }
  ]
}
EOF
}

write_kubelet_config() {
  local dir=$1 port=$2 healthz=$3
  mkdir -p "$dir/node/kubelet"
  cat >"$dir/node/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz
tlsCertFile: $dir/kubelet.crt
tlsPrivateKeyFile: $dir/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $dir/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failSwapOn: false
# The imported images cannot be pulled again: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# A development VM's disk is often fuller than the defaults allow; evict only when nearly out.
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
volumePluginDir: $dir/node/kubelet/volume-plugins
EOF
}

# Starts one node component from its command line and records it, as up does for the others.
node_start() {
  local dir=$1 name=$2
  shift 2
  write_cmd "$dir" "$name" "$@"
  "$@" >"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

http_200() {
  python3 -c 'import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2).read()
except Exception:
    sys.exit(1)' "$1"
}

# Whether node component $2 of the cluster in $1 is ready.
node_component_ready() {
  local dir=$1 name=$2
  case $name in
    kube-scheduler | kubelet | kube-proxy) http_200 "$(cat "$dir/$name.healthz")" ;;
    containerd) ctr --address "$dir/node/containerd.sock" version >/dev/null 2>&1 ;;
  esac
}

wait_node_component() {
  local dir=$1 name=$2
  for _ in $(seq 1 240); do
    node_component_ready "$dir" "$name" && return 0
    if ! process_alive "$(component_pid "$dir" "$name")"; then
      log "$name exited; last lines of $dir/$name.log:"
      tail -n 30 "$dir/$name.log" >&2
      return 1
    fi
    sleep 0.25
  done
  log "$name not ready after 60s; last lines of $dir/$name.log:"
  tail -n 30 "$dir/$name.log" >&2
  return 1
}

node_up() {
  local dir=$1 api_port=$2 started
  started=$(date +%s)
  node_kubernetes_endpoints "$dir" "$api_port"
  for who in kubelet kube-proxy kube-scheduler; do node_kubeconfig "$dir" "$who" "$api_port"; done

  local sched_port kubelet_port kubelet_healthz proxy_healthz proxy_metrics
  sched_port=$(free_port)
  kubelet_port=$(free_port)
  kubelet_healthz=$(free_port)
  proxy_healthz=$(free_port)
  proxy_metrics=$(free_port)

  # The scheduler's insecure port on loopback only serves /healthz and /metrics here.
  printf 'http://127.0.0.1:%s/healthz\n' "$sched_port" >"$dir/kube-scheduler.healthz"
  node_start "$dir" kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$dir/kube-scheduler.kubeconfig" --leader-elect=false \
    --address 127.0.0.1 --port "$sched_port" --secure-port 0

  write_containerd_config "$dir"
  node_start "$dir" containerd containerd --config "$dir/node/containerd.toml"
  wait_node_component "$dir" containerd
  local image
  for image in pause busybox; do
    ctr --address "$dir/node/containerd.sock" -n k8s.io images import "$IMAGES/$image.tar" >/dev/null
  done

  write_kubelet_config "$dir" "$kubelet_port" "$kubelet_healthz"
  printf 'http://127.0.0.1:%s/healthz\n' "$kubelet_healthz" >"$dir/kubelet.healthz"
  node_start "$dir" kubelet "$BIN/kubelet" \
    --config "$dir/node/kubelet-config.yaml" \
    --kubeconfig "$dir/kubelet.kubeconfig" \
    --root-dir "$dir/node/kubelet" --cert-dir "$dir/node/kubelet/pki" \
    --container-runtime remote \
    --container-runtime-endpoint "unix://$dir/node/containerd.sock" \
    --runtime-request-timeout 5m \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"

  # iptables mode; conntrack limits left as the host has them (0: do not set).
  printf 'http://127.0.0.1:%s/healthz\n' "$proxy_healthz" >"$dir/kube-proxy.healthz"
  node_start "$dir" kube-proxy "$BIN/kube-proxy" \
    --kubeconfig "$dir/kube-proxy.kubeconfig" --proxy-mode iptables \
    --hostname-override "$NODE_NAME" --cluster-cidr "$POD_CIDR" \
    --healthz-bind-address "127.0.0.1:$proxy_healthz" \
    --metrics-bind-address "127.0.0.1:$proxy_metrics" \
    --conntrack-max-per-core 0 \
    --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0

  local c
  for c in kube-scheduler kubelet kube-proxy; do wait_node_component "$dir" "$c"; done
  if ! kubectl_in "$dir" wait --for condition=Ready "node/$NODE_NAME" --timeout=120s >/dev/null 2>&1; then
    log "node $NODE_NAME not Ready after 120s; last lines of $dir/kubelet.log:"
    tail -n 30 "$dir/kubelet.log" >&2
    return 1
  fi
  log "node $NODE_NAME Ready after $(($(date +%s) - started)) s"
}

# --- down ----------------------------------------------------------------------------------

# Stops the node so that nothing of it stays on the host. Not through the API (deleting the
# pods waits out their grace periods, 30 s for a shell that ignores SIGTERM): everything the
# pods' sandboxes set up is theirs alone (network namespace and veth, IP allocations under
# DIR, no iptables rules with ipMasq off), so killing them and removing what they leave is
# complete. The kubelet stops first, so that it restarts nothing.
node_down() {
  local dir=$1
  # A node, or an `up --node` that stopped before starting one (it took the lock first).
  [ -f "$dir/containerd.cmd" ] || [ "$(cat "$NODE_LOCK" 2>/dev/null)" = "$dir" ] || return 0
  local c
  for c in kube-scheduler kubelet kube-proxy; do stop_component "$dir" "$c" --kill 2>/dev/null || true; done
  node_kill_cgroup kubepods
  stop_component "$dir" containerd 2>/dev/null || true
  node_host_cleanup "$dir"
  [ "$(cat "$NODE_LOCK" 2>/dev/null)" = "$dir" ] && rm -f "$NODE_LOCK"
  return 0
}

# What the node may leave on the host once its processes are gone. Idempotent.
node_host_cleanup() {
  local dir=$1 pid
  # containerd's shims outlive it; they and the containers they run go.
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $dir/node/containerd.sock" || true); do
    kill -9 "$pid" 2>/dev/null || true
  done
  node_kill_cgroup kubepods
  # Pod volumes (tmpfs Secrets), sandbox shm, container root filesystems and the network
  # namespaces of sandboxes (netns_mounts_under_state_dir; their veths die with them), deepest
  # first.
  # (`|| true`: with pipefail, a grep that finds nothing would end the script.)
  { findmnt -rn -o TARGET | grep -F "$dir/" || true; } | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  # Pod logs the kubelet did not get to remove, by the pods' UIDs.
  local pod
  for pod in "$dir"/node/kubelet/pods/*; do
    [ -d "$pod" ] && rm -rf /var/log/pods/*_"${pod##*/}"
  done
  find /var/log/containers -xtype l -delete 2>/dev/null || true
  node_iptables_cleanup "$dir"
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
}

# Kills what runs in the cgroup $1 (in every v1 hierarchy) and removes it, deepest first.
node_kill_cgroup() {
  local name=$1 h
  for _ in 1 2 3; do
    for h in /sys/fs/cgroup/*/"$name"; do
      [ -d "$h" ] || continue
      find "$h" -name cgroup.procs -print0 | xargs -0 -r cat 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    done
    sleep 0.2
  done
  for h in /sys/fs/cgroup/*/"$name"; do
    [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  return 0
}

# kube-proxy removes its own rules; the kubelet's (KUBE-MARK-*, KUBE-FIREWALL, ...) and any
# left over go by name: one node per host, so every KUBE-* chain is this node's.
node_iptables_cleanup() {
  local dir=$1 table chain rule
  if [ -x "$BIN/kube-proxy" ]; then "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
  for table in filter nat mangle; do
    # Rules in the built-in chains that jump to a KUBE-* chain.
    { iptables -t "$table" -S 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-' || true; } |
      while read -r rule; do
        # eval: the rule's comment is quoted as iptables -S prints it.
        eval "iptables -t $table ${rule/-A/-D}" 2>/dev/null || true
      done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}
