#!/usr/bin/env bash
# skaffold on the local cluster's real node (tools/realnode.sh): the dev loop without a
# registry or a Docker engine. See docs/dev-loop.md.
#
#   tools/skaffold-node.sh prepare        what the chart needs on the node: the Postgres
#                                         image, a volume for its claim, and podman's
#                                         Docker-compatible API for skaffold
#   tools/skaffold-node.sh skaffold ARGS  prepare, then run skaffold inside the node's
#                                         network namespace (port-forwards listen on its
#                                         loopback: reach them with `make node-shell`)
#   tools/skaffold-node.sh stop           stop podman's API service
#   tools/skaffold-node.sh purge          stop, and delete the namespace `fastship` and
#                                         the volume (the database is lost)
#
# Needs root and a running node (`make node-up`). skaffold.yaml's profiles `realnode`
# and `realnode-dev` turn on by themselves for the node's kube context (kwok-fastship):
# they build with k8s/skaffold/podman-build.sh and use the Postgres image built here.
#
# Environment: FASTSHIP_NODE_WORKDIR (the node, as for tools/realnode.sh), BASE_IMAGE and
# IMAGE_CA (as for k8s/skaffold/podman-build.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REALNODE="$ROOT/tools/realnode.sh"
PODMAN="$ROOT/tools/image/podman"
CACHE="${FASTSHIP_CACHE:-$HOME/.cache/fastship}"
WORKDIR="${FASTSHIP_NODE_WORKDIR:-$CACHE/realnode}"
export FASTSHIP_NODE_WORKDIR="$WORKDIR"
export TOOLS_BIN="${TOOLS_BIN:-$ROOT/.tools/bin}"
STATE="$WORKDIR/skaffold"
SOCKET="$STATE/podman.sock"
POSTGRES_IMAGE="localhost/fastship-postgres:15"
NAMESPACE=fastship
CLAIM=fastship-postgresql-data
VOLUME="pv-skaffold-$NAMESPACE"

log() { printf 'skaffold-node: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
kubectl() { "$REALNODE" exec kubectl "$@"; }

need_node() {
  [[ $(id -u) -eq 0 ]] || die "the real node needs root"
  "$REALNODE" status >/dev/null 2>&1 ||
    die "no node is up in $WORKDIR: start one with \`sudo make node-up\` (or FASTSHIP_NODE_WORKDIR=DIR tools/realnode.sh up)"
}

api_up() { [[ -S "$SOCKET" ]] && "$PODMAN" --url "unix://$SOCKET" version >/dev/null 2>&1; }

start_api() {
  api_up && return 0
  mkdir -p "$STATE"
  rm -f "$SOCKET"
  setsid "$PODMAN" system service --time=0 "unix://$SOCKET" >"$STATE/podman-service.log" 2>&1 &
  echo $! >"$STATE/podman-service.pid"
  for _ in $(seq 1 50); do api_up && return 0; sleep 0.2; done
  die "podman's API service did not start (log: $STATE/podman-service.log)"
}

stop_api() {
  if [[ -f "$STATE/podman-service.pid" ]]; then
    local pid; pid="$(cat "$STATE/podman-service.pid")"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$STATE/podman-service.pid" "$SOCKET"
  fi
}

postgres_image() {
  if ! "$PODMAN" image exists "$POSTGRES_IMAGE"; then
    local base="${BASE_IMAGE:-$("$ROOT/tools/image/base-image.sh" | tail -n1)}"
    log "building $POSTGRES_IMAGE"
    "$PODMAN" build --network host --layers --build-arg "BASE_IMAGE=$base" \
      -t "$POSTGRES_IMAGE" "$ROOT/tools/realnode/postgres" >&2
  fi
  # Already in the node (containerd's CRI lists each image also by its ID): nothing to copy.
  local id; id="$("$PODMAN" image inspect --format '{{.Id}}' "$POSTGRES_IMAGE")"
  if ! "$TOOLS_BIN/ctr" --address "$WORKDIR/run/containerd.sock" -n k8s.io images ls -q 2>/dev/null |
    grep -qx "sha256:${id#sha256:}"; then
    "$REALNODE" load "$POSTGRES_IMAGE"
  fi
}

# The node has no provisioner: a hostPath volume, owned by Postgres' UID, bound to the
# chart's claim (kept by `helm uninstall`, and with it the data). A volume left Released
# by a deleted claim, or missing (a new node), is made anew, empty.
volume() {
  local phase dir="$STATE/volumes/$NAMESPACE"
  phase="$(kubectl get pv "$VOLUME" -o jsonpath='{.status.phase}' 2>/dev/null || true)"
  if [[ $phase == Released || $phase == Failed ]]; then
    kubectl delete pv "$VOLUME" --wait=true >/dev/null
    rm -rf "$dir"
    phase=""
  fi
  [[ -n $phase ]] && return 0
  # A new volume starts empty: the chart's new Secret holds a new password.
  rm -rf "$dir"
  mkdir -p "$dir"
  chown 999:999 "$dir"
  chmod 700 "$dir"
  kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $VOLUME
spec:
  capacity: {storage: 8Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  claimRef: {namespace: $NAMESPACE, name: $CLAIM}
  hostPath: {path: $dir, type: Directory}
EOF
}

# skaffold's own settings: no update check, no usage data (the namespace has no route out).
skaffold_config() {
  mkdir -p "$STATE"
  cat >"$STATE/skaffold-config.yaml" <<EOF
global:
  collect-metrics: false
  update-check: false
  survey:
    disable-prompt: true
EOF
}

prepare() {
  need_node
  skaffold_config
  postgres_image
  volume
  start_api
}

case "${1:-}" in
  prepare) prepare ;;
  skaffold)
    shift
    prepare
    log "skaffold $* (in the node's network; DOCKER_HOST is podman's API)"
    # Builds run in the network namespace of podman's API service: the machine's own.
    # No artifact cache: an image that podman has from before may be missing in this
    # node, and only a build copies it there (podman's layer cache keeps rebuilds short).
    # No pruning: podman's image store may be shared with other builds on the machine.
    exec "$REALNODE" exec env DOCKER_HOST="unix://$SOCKET" SKAFFOLD_CONFIG="$STATE/skaffold-config.yaml" \
      SKAFFOLD_CACHE_ARTIFACTS=false SKAFFOLD_NO_PRUNE=true \
      FASTSHIP_BUILD_NETNS="/proc/$(cat "$STATE/podman-service.pid")/ns/net" \
      FASTSHIP_NODE_WORKDIR="$WORKDIR" TOOLS_BIN="$TOOLS_BIN" skaffold "$@"
    ;;
  stop) stop_api ;;
  purge)
    need_node
    stop_api
    kubectl delete namespace "$NAMESPACE" --ignore-not-found --wait=true --timeout=180s >/dev/null
    kubectl delete pv "$VOLUME" --ignore-not-found --wait=true >/dev/null
    rm -rf "$STATE/volumes/$NAMESPACE"
    ;;
  *) die "usage: $0 prepare|skaffold ARGS...|stop|purge" ;;
esac
