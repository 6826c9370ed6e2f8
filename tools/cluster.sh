#!/usr/bin/env bash
# Start and stop the local test cluster: kwokctl with the binary runtime, the binaries
# from .tools/bin (built by `make tools`), three kwok nodes and metrics-server.
#
#   tools/cluster.sh up          start (or find running) and print the kubeconfig path last
#   tools/cluster.sh down        stop and delete the cluster
#   tools/cluster.sh kubeconfig  print the kubeconfig path
#
# Environment:
#   FASTSHIP_CLUSTER_NAME   cluster name (default: fastship)
#   FASTSHIP_KWOK_WORKDIR   kwokctl working directory (default: $FASTSHIP_CACHE/kwok,
#                           i.e. ~/.cache/fastship/kwok); the pytest fixture uses a temp dir
#   FASTSHIP_APISERVER_PORT kube-apiserver port (default: a free port on 127.0.0.1)
#   FASTSHIP_KWOK_EXTRA_CONFIG  one more kwokctl configuration file, applied last
#                           (tools/realnode.sh passes k8s/local/realnode/kwokctl.yaml)
#   FASTSHIP_FAKE_NODES     1 (default): create kwok's fake nodes; 0: none (a real node joins)
#   TOOLS_BIN               tool binaries (default: <repo>/.tools/bin)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tools/versions.env
. "$ROOT/tools/versions.env"
LOCAL="$ROOT/k8s/local"
BIN="${TOOLS_BIN:-$ROOT/.tools/bin}"
NAME="${FASTSHIP_CLUSTER_NAME:-fastship}"
export KWOK_WORKDIR="${FASTSHIP_KWOK_WORKDIR:-${FASTSHIP_CACHE:-$HOME/.cache/fastship}/kwok}"
KUBECONFIG_PATH="$KWOK_WORKDIR/clusters/$NAME/kubeconfig.yaml"

die() { printf 'cluster: %s\n' "$*" >&2; exit 1; }

need_tools() {
  local t missing=()
  for t in kwokctl kwok etcd kube-apiserver kube-controller-manager kube-scheduler kubectl metrics-server; do
    [[ -x "$BIN/$t" ]] || missing+=("$t")
  done
  if (( ${#missing[@]} )); then
    die "missing in $BIN: ${missing[*]}; run \`make tools\` first"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

kwokctl() {
  KWOK_KUBECTL_BINARY="$BIN/kubectl" \
  KWOK_KUBE_VERSION="$KUBERNETES_VERSION" \
  KWOK_ETCD_VERSION="${ETCD_VERSION#v}" \
  KWOK_METRICS_SERVER_VERSION="$METRICS_SERVER_VERSION" \
    "$BIN/kwokctl" "$@"
}

kubectl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

# fail MESSAGE: show the end of every component log, then exit (logs go with `down`).
fail() {
  local f
  for f in "$KWOK_WORKDIR/clusters/$NAME/logs"/*.log; do
    [[ -f "$f" ]] || continue
    printf '\n--- %s (last lines) ---\n' "${f##*/}" >&2
    grep -v 'extension-apiserver-authentication\|CA bundle' "$f" | tail -n 8 | cut -c1-400 >&2
  done
  die "$1; component logs in $KWOK_WORKDIR/clusters/$NAME/logs"
}

exists() { [[ -f "$KUBECONFIG_PATH" ]] && kwokctl get clusters 2>/dev/null | grep -qx "$NAME"; }

up() {
  need_tools
  local start; start="$(date +%s)"
  if exists; then
    echo "cluster $NAME is already up (workdir $KWOK_WORKDIR)"
  else
    local port="${FASTSHIP_APISERVER_PORT:-$(free_port)}"
    echo "creating cluster $NAME: kube-apiserver on 127.0.0.1:$port, workdir $KWOK_WORKDIR"
    mkdir -p "$KWOK_WORKDIR"
    # kwokctl reads the metrics-server manifest with `kubectl kustomize <dir>`. The
    # directory goes in as an absolute path through a config file: kwokctl v0.8.0 ignores
    # list-valued variables such as KWOK_METRICS_SERVER_MANIFESTS.
    local paths="$KWOK_WORKDIR/$NAME.paths.yaml"
    printf '%s\n' \
      "apiVersion: config.kwok.x-k8s.io/v1alpha1" \
      "kind: KwokctlConfiguration" \
      "options:" \
      "  metricsServerManifests:" \
      "    - $LOCAL/metrics-server" >"$paths"
    # --kubeconfig "" keeps kwokctl away from ~/.kube/config; the cluster's own kubeconfig
    # is written into the working directory.
    local extra=()
    [[ -n "${FASTSHIP_KWOK_EXTRA_CONFIG:-}" ]] && extra=(--config "$FASTSHIP_KWOK_EXTRA_CONFIG")
    kwokctl create cluster \
      --name "$NAME" \
      --config "$LOCAL/kwokctl.yaml" \
      --config "$LOCAL/kwok-stages.yaml" \
      --config "$paths" \
      "${extra[@]}" \
      --kube-apiserver-port "$port" \
      --kube-apiserver-binary "$BIN/kube-apiserver" \
      --kube-controller-manager-binary "$BIN/kube-controller-manager" \
      --kube-scheduler-binary "$BIN/kube-scheduler" \
      --kwok-controller-binary "$BIN/kwok" \
      --etcd-binary "$BIN/etcd" \
      --metrics-server-binary "$BIN/metrics-server" \
      --enable metrics-server \
      --kubeconfig "" \
      --wait 120s \
      >"$KWOK_WORKDIR/$NAME.create.log" 2>&1 || {
        tail -n 20 "$KWOK_WORKDIR/$NAME.create.log" >&2
        fail "kwokctl create cluster failed (its output: $KWOK_WORKDIR/$NAME.create.log)"
      }
  fi
  if [[ "${FASTSHIP_FAKE_NODES:-1}" == 1 ]]; then
    kubectl apply -f "$LOCAL/nodes.yaml" >/dev/null || fail "could not create the nodes"
    kubectl wait --for=condition=Ready node --all --timeout=120s >/dev/null || fail "nodes not Ready"
  fi
  # The default ServiceAccount must exist before pods can be created in "default".
  for _ in $(seq 1 120); do
    kubectl get serviceaccount default -n default >/dev/null 2>&1 && break
    sleep 0.5
  done
  kubectl wait --for=condition=Available apiservice/v1beta1.metrics.k8s.io --timeout=120s >/dev/null ||
    fail "the metrics API did not become available"
  echo "cluster $NAME up in $(( $(date +%s) - start ))s: $(kubectl get nodes --no-headers | wc -l) nodes, server $(kubectl version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -n1)"
  echo "kubeconfig: $KUBECONFIG_PATH"
}

down() {
  [[ -x "$BIN/kwokctl" ]] || die "missing $BIN/kwokctl; run \`make tools\` first"
  local start; start="$(date +%s)"
  if kwokctl get clusters 2>/dev/null | grep -qx "$NAME"; then
    kwokctl delete cluster --name "$NAME" >"$KWOK_WORKDIR/$NAME.delete.log" 2>&1 || {
      cat "$KWOK_WORKDIR/$NAME.delete.log" >&2
      die "kwokctl delete cluster failed"
    }
    rm -f "$KWOK_WORKDIR/$NAME".{paths.yaml,create.log,delete.log}
    echo "cluster $NAME down in $(( $(date +%s) - start ))s"
  else
    echo "cluster $NAME is not running (workdir $KWOK_WORKDIR)"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  kubeconfig) echo "$KUBECONFIG_PATH" ;;
  *) die "usage: $0 up|down|kubeconfig" ;;
esac
