#!/usr/bin/env bash
# The local cluster with a real node: the control plane of tools/cluster.sh plus one real
# kubelet node (containerd, runc, the bridge CNI, kube-proxy, CoreDNS and a NetworkPolicy
# enforcer) that runs the project's images as real pods. Everything runs inside a network
# namespace that this script creates, with no route out: the API server, the pods and
# every client (kubectl, helm, load generators) talk to each other there and nowhere else.
#
#   tools/realnode.sh up                  start; prints the kubeconfig path and namespace last
#   tools/realnode.sh down                stop and remove everything `up` made
#   tools/realnode.sh load IMAGE...       copy images from podman into the node's containerd
#   tools/realnode.sh exec CMD [ARG...]   run a command inside the node's network namespace,
#                                         with KUBECONFIG and the tools on PATH
#   tools/realnode.sh status              say whether the node is up
#
# Needs root (network and mount namespaces, cgroups, iptables), the tools of `make tools`
# and the Debian packages of .ci/packages.txt (podman, runc, containernetworking-plugins,
# iptables). See docs/local-cluster.md.
#
# Environment:
#   FASTSHIP_NODE_WORKDIR  state of this node (default: $FASTSHIP_CACHE/realnode, i.e.
#                          ~/.cache/fastship/realnode); the pytest fixture uses a temp dir
#   FASTSHIP_NODE_NETNS    network namespace name (default: fastship-<hash of the workdir>)
#   FASTSHIP_NODE_ENFORCE  1 (default): enforce NetworkPolicy; 0: do not run the enforcer
#   TOOLS_BIN              tool binaries (default: <repo>/.tools/bin)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tools/versions.env
. "$ROOT/tools/versions.env"
CONF="$ROOT/k8s/local/realnode"
BIN="${TOOLS_BIN:-$ROOT/.tools/bin}"
CACHE="${FASTSHIP_CACHE:-$HOME/.cache/fastship}"
WORKDIR="${FASTSHIP_NODE_WORKDIR:-$CACHE/realnode}"
WORKDIR="$(mkdir -p "$WORKDIR" && cd "$WORKDIR" && pwd)"
KEY="$(printf '%s' "$WORKDIR" | sha256sum | cut -c1-8)"
NETNS="${FASTSHIP_NODE_NETNS:-fastship-$KEY}"
NSPATH="/run/netns/$NETNS"
CLUSTER="fastship"
NODE="fastship-node"
CGROUP="fastship-node-$KEY"
NODE_IP=10.200.0.1
SERVICE_CIDR=10.0.0.0/24
STATE="$WORKDIR/state"
RUN="$WORKDIR/run"
KUBECONFIG_PATH="$WORKDIR/kwok/clusters/$CLUSTER/kubeconfig.yaml"
PAUSE_IMAGE="localhost/pause:$KUBERNETES_VERSION"
COREDNS_IMAGE="localhost/coredns:$COREDNS_VERSION"
PODMAN="$ROOT/tools/image/podman"
# Mount points that nodes made on the machine, removed by the last node's `down`.
MOUNTPOINTS="$CACHE/realnode-mountpoints"
KERNEL_SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops)
NODE_TOOLS=(kubelet kube-proxy containerd containerd-shim-runc-v2 ctr)
[[ "${FASTSHIP_NODE_ENFORCE:-1}" == 1 ]] && NODE_TOOLS+=(kube-network-policies)

log() { printf 'realnode: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

in_ns() { nsenter --net="$NSPATH" "$@"; }
kubectl() { in_ns "$BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }
# control_plane up|down: tools/cluster.sh inside the namespace, with the node's
# kwokctl additions and no fake nodes.
control_plane() {
  in_ns env FASTSHIP_KWOK_WORKDIR="$WORKDIR/kwok" FASTSHIP_CLUSTER_NAME="$CLUSTER" \
    FASTSHIP_KWOK_EXTRA_CONFIG="$CONF/kwokctl.yaml" FASTSHIP_FAKE_NODES=0 TOOLS_BIN="$BIN" \
    "$ROOT/tools/cluster.sh" "$1"
}

need() {
  [[ $(id -u) -eq 0 ]] || die "the real node needs root (network namespaces, mounts, cgroups)"
  local t missing=()
  for t in "${NODE_TOOLS[@]}" kubectl kwokctl; do [[ -x "$BIN/$t" ]] || missing+=("$t"); done
  (( ${#missing[@]} == 0 )) || die "missing in $BIN: ${missing[*]}; run \`make tools\` first"
  for t in runc iptables nsenter unshare ip podman gcc; do
    command -v "$t" >/dev/null || die "\`$t\` is not installed; \`make system-deps\` installs it (.ci/packages.txt)"
  done
  CNI_BIN=/usr/lib/cni
  [[ -x "$CNI_BIN/bridge" ]] || die "no CNI plugins in $CNI_BIN: apt-get install containernetworking-plugins"
}

# --- images the node needs: built here, since no registry can be reached ------------------

# image_ensure NAME CONTEXT_DIR: build NAME from CONTEXT_DIR/Containerfile unless podman has it.
image_ensure() {
  "$PODMAN" image exists "$1" && return 0
  log "building $1"
  "$PODMAN" build --quiet --network none -t "$1" -f "$2/Containerfile" "$2" >/dev/null
}

images() {
  local dir="$CACHE/realnode-images"
  mkdir -p "$dir"
  if ! "$PODMAN" image exists "$PAUSE_IMAGE"; then
    # The sandbox ("pause") container, from the Kubernetes source at the pinned version.
    local src ctx="$dir/pause"
    src="$(cd "$ROOT" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')/build/pause/linux/pause.c"
    [[ -f "$src" ]] || die "cannot find pause.c of k8s.io/kubernetes@$KUBERNETES_VERSION"
    rm -rf "$ctx" && mkdir -p "$ctx"
    gcc -Os -Wall -Werror -static -DVERSION="$KUBERNETES_VERSION" -o "$ctx/pause" "$src"
    printf '%s\n' 'FROM scratch' 'COPY pause /pause' 'USER 65535:65535' 'ENTRYPOINT ["/pause"]' \
      >"$ctx/Containerfile"
    image_ensure "$PAUSE_IMAGE" "$ctx"
  fi
  if ! "$PODMAN" image exists "$COREDNS_IMAGE"; then
    [[ -x "$BIN/coredns" ]] || die "missing $BIN/coredns; run \`make tools\` first"
    local ctx="$dir/coredns"
    rm -rf "$ctx" && mkdir -p "$ctx"
    cp "$BIN/coredns" "$ctx/coredns"
    printf '%s\n' 'FROM scratch' 'COPY coredns /coredns' 'USER 65532:65532' \
      'ENTRYPOINT ["/coredns"]' >"$ctx/Containerfile"
    image_ensure "$COREDNS_IMAGE" "$ctx"
  fi
}

# load IMAGE...: podman's images into the node's containerd (namespace k8s.io, as CRI uses).
load() {
  (( $# )) || die "usage: $0 load IMAGE..."
  [[ -S "$RUN/containerd.sock" ]] || die "the node is not up (no $RUN/containerd.sock)"
  local image archive
  for image in "$@"; do
    archive="$(mktemp "$WORKDIR/image.XXXXXX.tar")"
    "$PODMAN" save --quiet --format docker-archive -o "$archive" "$image" ||
      { rm -f "$archive"; die "podman has no image $image"; }
    "$BIN/ctr" --address "$RUN/containerd.sock" -n k8s.io images import \
      --snapshotter overlayfs "$archive" >/dev/null ||
      { rm -f "$archive"; die "importing $image into the node failed"; }
    rm -f "$archive"
    log "loaded $image"
  done
}

# --- up --------------------------------------------------------------------------------------

render() { # TEMPLATE OUT
  sed -e "s#@STATE@#$STATE#g" -e "s#@RUN@#$RUN#g" -e "s#@NODE@#$NODE#g" \
    -e "s#@CGROUP@#$CGROUP#g" -e "s#@KUBECONFIG@#$KUBECONFIG_PATH#g" \
    -e "s#@PAUSE_IMAGE@#$PAUSE_IMAGE#g" -e "s#@RUNC@#$(command -v runc)#g" \
    -e "s#@CNI_BIN@#$CNI_BIN#g" -e "s#@COREDNS_IMAGE@#$COREDNS_IMAGE#g" "$1" >"$2"
}

network() {
  ip netns add "$NETNS"
  # The node's address sits on a veth pair whose two ends both stay in the namespace
  # (the kernel may lack the dummy link type): no link leads out of it.
  in_ns ip link set lo up
  in_ns ip link add node0 type veth peer name node0-peer
  in_ns ip addr add "$NODE_IP/24" dev node0
  in_ns ip link set node0 up
  in_ns ip link set node0-peer up
  # ClusterIPs are virtual: a route sends them to the node, where kube-proxy translates them.
  in_ns ip route add "$SERVICE_CIDR" dev node0 src "$NODE_IP"
  in_ns sysctl -qw net.ipv4.ip_forward=1
  in_ns sysctl -qw net.bridge.bridge-nf-call-iptables=1
  in_ns sysctl -qw net.ipv4.conf.all.route_localnet=1
}

cgroups() { # create or remove the parent cgroup of the node's pods in every v1 hierarchy
  local d
  for d in /sys/fs/cgroup/*/; do
    [[ -f "$d/cgroup.procs" ]] || continue
    case "$1" in
      create) mkdir -p "$d$CGROUP" ;;
      remove)
        [[ -d "$d$CGROUP" ]] || continue
        # Every process left in the node's cgroups (containers) is killed, then the
        # cgroups are removed, deepest first.
        local pass
        for pass in 1 2 3 4 5; do
          find "$d$CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null || true
          find "$d$CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null || true
          [[ -d "$d$CGROUP" ]] || break
          sleep 0.5
        done
        ;;
    esac
  done
  # cgroup v2 (unified) hierarchy at /sys/fs/cgroup itself
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    case "$1" in
      create) mkdir -p "/sys/fs/cgroup/$CGROUP" ;;
      remove) find "/sys/fs/cgroup/$CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null || true ;;
    esac
  fi
}

enforcer_credentials() {
  # The enforcer's ServiceAccount and RBAC (as kind gives it), and a token for it.
  kubectl apply -f "$CONF/kube-network-policies.yaml" >/dev/null
  local sa="$WORKDIR/enforcer-sa"
  mkdir -p "$sa"
  kubectl -n kube-system create token kube-network-policies --duration 24h >"$sa/token"
  cp "$WORKDIR/kwok/clusters/$CLUSTER/pki/ca.crt" "$sa/ca.crt"
  echo kube-system >"$sa/namespace"
}

up() {
  need
  if [[ -f "$WORKDIR/up" ]] && status >/dev/null 2>&1; then
    log "already up"; info; return 0
  fi
  [[ -e "$NSPATH" ]] && die "network namespace $NETNS exists: run \`$0 down\` first"
  local start; start="$(date +%s)"
  UP_OK=0
  # SIGINT and SIGTERM end the start through `exit`, so that the EXIT trap tears down.
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap '(( UP_OK )) || { log "start failed; tearing down (logs in $WORKDIR/logs)"; down >&2 || true; }' EXIT
  mkdir -p "$STATE" "$RUN" "$WORKDIR/logs" "$STATE/cni/net.d"
  echo "$$" >"$WORKDIR/owner.pid"
  # kubelet sets these machine-wide kernel settings; `down` puts them back.
  local s
  : >"$WORKDIR/sysctls.saved"
  for s in "${KERNEL_SYSCTLS[@]}"; do echo "$s=$(sysctl -n "$s")" >>"$WORKDIR/sysctls.saved"; done

  images
  network
  log "control plane in network namespace $NETNS"
  control_plane up >"$WORKDIR/logs/control-plane.log" 2>&1 ||
    { cat "$WORKDIR/logs/control-plane.log" >&2; false; }
  API_PORT="$(sed -n 's#^[[:space:]]*server: https://[^:]*:\([0-9]*\).*#\1#p' "$KUBECONFIG_PATH" | head -n1)"

  render "$CONF/containerd.toml" "$WORKDIR/containerd.toml"
  render "$CONF/kubelet.yaml" "$WORKDIR/kubelet.yaml"
  render "$CONF/kube-proxy.yaml" "$WORKDIR/kube-proxy.yaml"
  render "$CONF/cni.conflist" "$STATE/cni/net.d/10-fastship.conflist"
  echo "nameserver $NODE_IP" >"$STATE/resolv.conf"
  local enforce="${FASTSHIP_NODE_ENFORCE:-1}"
  [[ "$enforce" == 1 ]] && enforcer_credentials
  cat >"$WORKDIR/node.env" <<EOF
BIN=$BIN
STATE=$STATE
RUN=$RUN
NODE=$NODE
NODE_IP=$NODE_IP
API_PORT=$API_PORT
KUBECONFIG_PATH=$KUBECONFIG_PATH
ENFORCE=$enforce
EOF
  cgroups create
  # kubelet and containerd use these paths whatever their configuration says; in the
  # node's mount namespace they are bound to its own directories (node.sh). Mount points
  # that the machine lacks are made here and removed by `down`.
  local d
  mkdir -p "$CACHE"
  for d in /var/lib/kubelet /var/log/containers /run/containerd; do
    [[ -d "$d" ]] || { mkdir -p "$d" && echo "$d" >>"$MOUNTPOINTS"; }
  done
  log "starting containerd, kubelet, kube-proxy$([[ $enforce == 1 ]] && echo ', kube-network-policies')"
  in_ns setsid unshare --mount --propagation private -- \
    bash "$ROOT/tools/realnode/node.sh" "$WORKDIR" >>"$WORKDIR/logs/node.log" 2>&1 </dev/null &
  echo "$!" >"$WORKDIR/node.pid"

  for _ in $(seq 1 100); do [[ -S "$RUN/containerd.sock" ]] && break; sleep 0.2; done
  load "$PAUSE_IMAGE" "$COREDNS_IMAGE"
  local registered=0
  for _ in $(seq 1 120); do
    if kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True; then
      registered=1; break
    fi
    kill -0 "$(cat "$WORKDIR/node.pid")" 2>/dev/null || break
    sleep 1
  done
  (( registered )) || { tail -n 20 "$WORKDIR/logs/node.log" "$WORKDIR/logs/kubelet.log" >&2; die "node $NODE did not become Ready"; }
  render "$CONF/coredns.yaml" "$WORKDIR/coredns.yaml"
  kubectl apply -f "$WORKDIR/coredns.yaml" >/dev/null
  kubectl -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null ||
    die "CoreDNS did not become ready"
  UP_OK=1
  touch "$WORKDIR/up"
  log "up in $(( $(date +%s) - start ))s"
  info
}

info() {
  echo "netns: $NETNS"
  echo "kubeconfig: $KUBECONFIG_PATH"
}

status() {
  [[ -e "$NSPATH" && -f "$WORKDIR/node.pid" ]] && kill -0 "$(cat "$WORKDIR/node.pid")" 2>/dev/null &&
    kubectl get node "$NODE" >/dev/null 2>&1 || { echo "down"; return 1; }
  echo "up"; info
}

# --- down ------------------------------------------------------------------------------------

down() {
  [[ $(id -u) -eq 0 ]] || die "the real node needs root"
  local start; start="$(date +%s)"
  if [[ -f "$WORKDIR/node.pid" ]]; then
    local pid; pid="$(cat "$WORKDIR/node.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # Containers (in the node's cgroups), then what is left in the namespace: the control
  # plane (stopped by kwokctl first) and containerd's shims.
  cgroups remove
  if [[ -e "$NSPATH" ]]; then
    control_plane down >/dev/null 2>&1 || true
    local pids
    for _ in 1 2 3; do
      pids="$(ip netns pids "$NETNS" 2>/dev/null || true)"
      [[ -z "$pids" ]] && break
      # shellcheck disable=SC2086
      kill -9 $pids 2>/dev/null || true
      sleep 0.5
    done
    cgroups remove
    ip netns delete "$NETNS" 2>/dev/null || true
  fi
  # The mount points made by `up` go only with the last node: removing a directory that
  # is a mount point in another node's mount namespace detaches that node's mount.
  if [[ -f "$MOUNTPOINTS" ]] && ! ip netns list 2>/dev/null | grep -q '^fastship-'; then
    while IFS= read -r d; do rmdir "$d" 2>/dev/null || true; done <"$MOUNTPOINTS"
    rm -f "$MOUNTPOINTS"
  fi
  if [[ -f "$WORKDIR/sysctls.saved" ]]; then
    while IFS= read -r line; do sysctl -qw "$line" || true; done <"$WORKDIR/sysctls.saved"
  fi
  rm -rf "$STATE" "$RUN" "$WORKDIR/kwok" "$WORKDIR"/{up,node.pid,owner.pid,node.env,sysctls.saved,enforcer-sa}
  log "down in $(( $(date +%s) - start ))s"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  load) shift; load "$@" ;;
  images) images ;;
  status) status ;;
  exec)
    shift
    (( $# )) || die "usage: $0 exec CMD [ARG...]"
    exec nsenter --net="$NSPATH" env KUBECONFIG="$KUBECONFIG_PATH" PATH="$BIN:$PATH" "$@"
    ;;
  *) die "usage: $0 up|down|status|images|load IMAGE...|exec CMD [ARG...]" ;;
esac
