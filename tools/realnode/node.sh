#!/usr/bin/env bash
# The real node's daemons, supervised: containerd, kubelet, kube-proxy and the
# NetworkPolicy enforcer. tools/realnode.sh starts this script inside the node's network
# namespace and in a mount namespace of its own:
#
#   nsenter --net=/run/netns/NETNS unshare --mount --propagation private \
#       tools/realnode/node.sh WORKDIR
#
# The private mount namespace keeps every mount of the node (container root filesystems,
# secret and emptyDir volumes, pod network namespaces) out of the machine's own, so they
# all vanish with the node's last process. The directories that kubelet and containerd
# write whatever their configuration says (/var/lib/kubelet, /var/log/containers,
# /run/containerd, /run/netns) are replaced here by the node's own.
#
# On SIGTERM or SIGINT it stops the daemons (the enforcer first, with SIGINT, so that it
# removes its rules) and exits; on the death of any daemon it stops the others and exits 1.
set -euo pipefail

WORKDIR="$1"
# shellcheck source=/dev/null
. "$WORKDIR/node.env" # BIN, STATE, RUN, NODE, NODE_IP, KUBECONFIG_PATH, RUNC, ENFORCE
LOGS="$WORKDIR/logs"
# containerd finds its shim (containerd-shim-runc-v2) on PATH.
export PATH="$BIN:$PATH"
mkdir -p "$LOGS"

log() { printf '%s node: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# --- the node's own view of the machine's well-known directories -------------------------
private_dir() { # HOST_PATH NODE_PATH: NODE_PATH is seen at HOST_PATH inside this namespace
  mkdir -p "$2"
  mount --bind "$2" "$1"
}
private_dir /var/lib/kubelet "$STATE/kubelet"
private_dir /var/log/containers "$STATE/container-logs"
private_dir /run/containerd "$RUN/run-containerd"
mount -t tmpfs -o mode=0755,size=1m tmpfs /run/netns

# --- daemons -------------------------------------------------------------------------------
declare -A PIDS=()
start() { # NAME COMMAND...
  local name="$1"; shift
  "$@" >>"$LOGS/$name.log" 2>&1 &
  PIDS[$name]=$!
  log "started $name (pid $!)"
}

stopping=0
stop_all() {
  (( stopping )) && return
  stopping=1
  local name
  # The enforcer removes its nftables table on SIGINT only.
  if [[ -n "${PIDS[kube-network-policies]:-}" ]]; then
    kill -INT "${PIDS[kube-network-policies]}" 2>/dev/null || true
  fi
  for name in kube-proxy kubelet; do
    [[ -n "${PIDS[$name]:-}" ]] && kill -TERM "${PIDS[$name]}" 2>/dev/null || true
  done
  # Give kubelet a moment, then stop containerd (its shims and containers are stopped by
  # tools/realnode.sh through the node's cgroups).
  sleep 1
  [[ -n "${PIDS[containerd]:-}" ]] && kill -TERM "${PIDS[containerd]}" 2>/dev/null || true
  for name in "${!PIDS[@]}"; do
    wait "${PIDS[$name]}" 2>/dev/null || true
  done
  log "stopped"
}
trap 'stop_all; exit 0' TERM INT

start containerd "$BIN/containerd" --config "$WORKDIR/containerd.toml"
for _ in $(seq 1 100); do
  [[ -S "$RUN/containerd.sock" ]] && break
  sleep 0.1
done
[[ -S "$RUN/containerd.sock" ]] || { log "containerd did not start: see $LOGS/containerd.log"; stop_all; exit 1; }

start kubelet "$BIN/kubelet" \
  --config "$WORKDIR/kubelet.yaml" \
  --kubeconfig "$KUBECONFIG_PATH" \
  --root-dir /var/lib/kubelet \
  --cert-dir "$STATE/kubelet-pki" \
  --hostname-override "$NODE" \
  --node-ip "$NODE_IP" \
  --node-labels "fastship.dev/real-node=true" \
  --v 1

start kube-proxy "$BIN/kube-proxy" --config "$WORKDIR/kube-proxy.yaml" --v 1

if [[ "$ENFORCE" == 1 ]]; then
  # kube-network-policies reads only the in-cluster configuration: give it one in a mount
  # namespace of its own (the token and CA of its ServiceAccount, made by realnode.sh).
  start kube-network-policies unshare --mount --propagation private -- bash -c '
    mount -t tmpfs -o mode=0755,size=1m tmpfs /run
    mkdir -p /run/secrets/kubernetes.io/serviceaccount
    mount --bind "$1" /run/secrets/kubernetes.io/serviceaccount
    exec env KUBERNETES_SERVICE_HOST="$2" KUBERNETES_SERVICE_PORT="$3" "$4" \
      --hostname-override="$5" --metrics-bind-address=127.0.0.1:9080 --v=2' _ \
    "$WORKDIR/enforcer-sa" "$NODE_IP" "$API_PORT" "$BIN/kube-network-policies" "$NODE"
fi

# Exit (and stop the rest) as soon as any daemon dies.
while true; do
  for name in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
      log "$name exited; its log: $LOGS/$name.log"
      unset "PIDS[$name]"
      stop_all
      exit 1
    fi
  done
  sleep 1 &
  wait $! || true
done
