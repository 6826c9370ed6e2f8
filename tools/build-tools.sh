#!/usr/bin/env bash
# Build the pinned local Kubernetes toolchain from Go modules and link it into .tools/bin.
#
#   tools/build-tools.sh            build every tool (helm first)
#   tools/build-tools.sh helm etcd  build only the named tools
#
# Versions come from tools/versions.env, the only place they are pinned. Each binary is
# built once into ${FASTSHIP_CACHE:-$HOME/.cache/fastship}/tools/<name>-<version>/ and never
# rebuilt while that directory exists, so a warm run only refreshes the symlinks.
#
# Environment:
#   FASTSHIP_CACHE   cache root (default: $HOME/.cache/fastship)
#   TOOLS_BIN        where the symlinks go (default: <repo>/.tools/bin)
#   TOOLS_REBUILD=1  ignore the cache and build again
set -euo pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tools/versions.env
. "$ROOT/tools/versions.env"

CACHE_ROOT="${FASTSHIP_CACHE:-$HOME/.cache/fastship}"
CACHE="$CACHE_ROOT/tools"
BIN="${TOOLS_BIN:-$ROOT/.tools/bin}"
HEARTBEAT_SECONDS="${HEARTBEAT_SECONDS:-30}"

# The control plane of the local cluster (tools/cluster.sh) ...
CLUSTER_TOOLS=(helm kwok kwokctl etcd kube-apiserver kube-controller-manager kube-scheduler kubectl metrics-server)
# ... and what its real node runs (tools/realnode.sh): the node agent, the container
# runtime, cluster DNS and the NetworkPolicy enforcer.
NODE_TOOLS=(kubelet kube-proxy containerd containerd-shim-runc-v2 ctr coredns kube-network-policies)
# ... and the dev loop on it (skaffold.yaml).
DEV_TOOLS=(skaffold)
# ... and the checks of the chart's monitoring rules and its OCI publishing (tests/chart).
TEST_TOOLS=(promtool registry)
ALL_TOOLS=("${CLUSTER_TOOLS[@]}" "${NODE_TOOLS[@]}" "${DEV_TOOLS[@]}" "${TEST_TOOLS[@]}")

log() { printf '%s\n' "$*"; }
die() { printf 'build-tools: %s\n' "$*" >&2; exit 1; }

# --- Go --------------------------------------------------------------------------------

check_go() {
  local need="$GO_MIN_VERSION" have
  if ! command -v go >/dev/null 2>&1; then
    die "Go $need or newer is needed to build the local Kubernetes tools, and no \`go\` is on PATH. Install Go $need+ (https://go.dev/dl/) and run \`make tools\` again."
  fi
  have="$(go env GOVERSION 2>/dev/null || true)"
  have="${have#go}"
  if ! version_at_least "$have" "$need"; then
    die "Go $need or newer is needed to build the local Kubernetes tools, found Go ${have:-unknown} at $(command -v go). Install Go $need+ (https://go.dev/dl/) and run \`make tools\` again."
  fi
}

# version_at_least HAVE NEED: compares dotted numeric versions (1.26.8 >= 1.26).
version_at_least() {
  local IFS=.
  # shellcheck disable=SC2206
  local -a h=($1) n=($2)
  local i
  for i in 0 1 2; do
    local hv="${h[i]:-0}" nv="${n[i]:-0}"
    hv="${hv%%[!0-9]*}"; nv="${nv%%[!0-9]*}"
    if (( ${hv:-0} > ${nv:-0} )); then return 0; fi
    if (( ${hv:-0} < ${nv:-0} )); then return 1; fi
  done
  return 0
}

# --- helpers ---------------------------------------------------------------------------

HEARTBEAT_PID=""
stop_heartbeat() {
  if [[ -n "$HEARTBEAT_PID" ]]; then
    kill "$HEARTBEAT_PID" 2>/dev/null || true
    wait "$HEARTBEAT_PID" 2>/dev/null || true
    HEARTBEAT_PID=""
  fi
}
trap stop_heartbeat EXIT

start_heartbeat() { # NAME START_EPOCH
  local name="$1" start="$2"
  (
    while sleep "$HEARTBEAT_SECONDS"; do
      printf '    ... %s still building, %ds elapsed\n' "$name" "$(( $(date +%s) - start ))"
    done
  ) &
  HEARTBEAT_PID=$!
}

# Module download info (origin commit) for version stamping; empty when unknown.
module_commit() { # MODULE@VERSION
  go mod download -json "$1" 2>/dev/null | sed -n 's/^[[:space:]]*"Hash": "\([0-9a-f]*\)".*/\1/p' | head -n1
}

# run_step NAME VERSION BUILD_FUNCTION: build NAME into the cache unless it is there, then link it.
run_step() {
  local name="$1" version="$2" fn="$3"
  local dir="$CACHE/$name-$version"
  if [[ -x "$dir/$name" && "${TOOLS_REBUILD:-0}" != 1 ]]; then
    ln -sfn "$dir/$name" "$BIN/$name"
    log "ok    $name $version (cached)"
    return 0
  fi
  local tmp="$dir.tmp.$$" logfile="$CACHE/logs/$name-$version.log" start rc=0
  rm -rf "$tmp"
  mkdir -p "$tmp" "$CACHE/logs"
  log "build $name $version -> $dir (log: $logfile)"
  start="$(date +%s)"
  start_heartbeat "$name" "$start"
  "$fn" "$tmp" "$version" >"$logfile" 2>&1 || rc=$?
  stop_heartbeat
  local took=$(( $(date +%s) - start ))
  if (( rc != 0 )) || [[ ! -x "$tmp/$name" ]]; then
    log "FAIL  $name $version after ${took}s; last lines of $logfile:"
    tail -n 30 "$logfile" | sed 's/^/    /'
    rm -rf "$tmp"
    return 1
  fi
  rm -rf "$dir"
  mv "$tmp" "$dir"
  ln -sfn "$dir/$name" "$BIN/$name"
  printf '%s\n' "$took" >"$dir/.build-seconds"
  log "done  $name $version in ${took}s"
}

go_install() { # OUT_DIR LDFLAGS PACKAGE@VERSION [GO BUILD FLAGS...]
  local out="$1" ldflags="$2" pkg="$3"
  (cd "$out" && GOBIN="$out" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go install -trimpath -ldflags "-s -w $ldflags" "${@:4}" "$pkg")
}

# --- tools installable with `go install module/cmd@version` ------------------------------

build_helm() { # OUT VERSION
  local commit kube_minor
  commit="$(module_commit "helm.sh/helm/v3@$2")"
  kube_minor="$(kube_minor "$KUBERNETES_VERSION")"
  # Helm's Makefile stamps these; without them `helm version` is empty and the default
  # kube version for `helm template`/lint is old.
  go_install "$1" "-X helm.sh/helm/v3/internal/version.version=$2 \
    -X helm.sh/helm/v3/internal/version.metadata= \
    -X helm.sh/helm/v3/internal/version.gitCommit=$commit \
    -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kube_minor \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kube_minor" \
    "helm.sh/helm/v3/cmd/helm@$2"
}

kwok_ldflags() {
  echo "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBERNETES_VERSION#v}"
}
build_kwok() { go_install "$1" "$(kwok_ldflags)" "sigs.k8s.io/kwok/cmd/kwok@$2"; }
build_kwokctl() { go_install "$1" "$(kwok_ldflags)" "sigs.k8s.io/kwok/cmd/kwokctl@$2"; }

build_metrics_server() {
  local commit
  commit="$(module_commit "sigs.k8s.io/metrics-server@$2")"
  go_install "$1" "-X k8s.io/client-go/pkg/version.gitVersion=$2 \
    -X k8s.io/client-go/pkg/version.gitCommit=$commit" \
    "sigs.k8s.io/metrics-server/cmd/metrics-server@$2"
}

# --- chart publishing and monitoring checks ----------------------------------------------

# promtool, for `promtool check rules` of the chart's PrometheusRule.
# Module v0.3MM.P is Prometheus 3.MM.P.
build_promtool() {
  local rest="${2#v0.}" minor
  minor="${rest%%.*}"
  go_install "$1" "-X github.com/prometheus/common/version.Version=3.$((10#$minor - 300)).${rest#*.} \
    -X github.com/prometheus/common/version.Branch=HEAD" \
    "github.com/prometheus/prometheus/cmd/promtool@$2"
}

# The CNCF distribution registry, a local OCI registry for `helm push` in the tests.
build_registry() {
  go_install "$1" "-X github.com/distribution/distribution/v3/version.version=$2" \
    "github.com/distribution/distribution/v3/cmd/registry@$2"
}

# --- tools that need a wrapper module (their go.mod has replace directives) -----------------

kube_minor() { local v="${1#v}"; v="${v#*.}"; echo "${v%%.*}"; }

# Generate (once per version) a wrapper module that requires k8s.io/kubernetes and pins
# every staging module k8s.io/kubernetes replaces with ./staging/... to its released v0.x.y.
kubernetes_wrapper() { # VERSION -> prints module dir
  local version="$1" dir="$CACHE/src/kubernetes-$1"
  # The marker names the recipe: a wrapper made for fewer commands is made again.
  if [[ -f "$dir/.ready-2" ]]; then echo "$dir"; return 0; fi
  local staging_version="v0.${version#v1.}" gomod
  rm -rf "$dir"; mkdir -p "$dir"
  gomod="$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
  [[ -f "$gomod" ]] || { echo "cannot download k8s.io/kubernetes@$version" >&2; return 1; }
  {
    echo "// Generated by tools/build-tools.sh from tools/versions.env; do not edit."
    echo "module fastship.local/tools/kubernetes"
    echo
    echo "go $GO_MIN_VERSION"
    echo
    echo "require k8s.io/kubernetes $version"
    echo
    echo "tool ("
    local cmd
    for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
      echo "	k8s.io/kubernetes/cmd/$cmd"
    done
    echo ")"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$gomod" | sort -u |
      while read -r m; do echo "	$m => $m $staging_version"; done
    echo ")"
    # Keep upstream's godebug defaults: they only apply in the main module.
    local godebug
    godebug="$(sed -n 's/^godebug \(.*\)/\1/p' "$gomod")"
    if [[ -n "$godebug" ]]; then echo; echo "godebug $godebug"; fi
  } >"$dir/go.mod"
  (cd "$dir" && GOFLAGS=-mod=mod go mod tidy) >&2
  touch "$dir/.ready-2"
  echo "$dir"
}

build_kube_cmd() { # NAME OUT VERSION
  local name="$1" out="$2" version="$3" src commit minor
  src="$(kubernetes_wrapper "$version")"
  commit="$(module_commit "k8s.io/kubernetes@$version")"
  minor="$(kube_minor "$version")"
  local ld="" pkg
  # Same variables as kubernetes/hack/lib/version.sh, so that --version and /version
  # report the real release instead of v0.0.0-master.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit=${commit:-unknown}"
    ld+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go build -trimpath -ldflags "-s -w$ld" -o "$out/$name" "k8s.io/kubernetes/cmd/$name")
}
build_kube_apiserver() { build_kube_cmd kube-apiserver "$@"; }
build_kube_controller_manager() { build_kube_cmd kube-controller-manager "$@"; }
build_kube_scheduler() { build_kube_cmd kube-scheduler "$@"; }
build_kubectl() { build_kube_cmd kubectl "$@"; }
build_kubelet() { build_kube_cmd kubelet "$@"; }
build_kube_proxy() { build_kube_cmd kube-proxy "$@"; }

etcd_wrapper() { # VERSION -> prints module dir
  local version="$1" dir="$CACHE/src/etcd-$1"
  if [[ -f "$dir/.ready" ]]; then echo "$dir"; return 0; fi
  rm -rf "$dir"; mkdir -p "$dir"
  cat >"$dir/go.mod" <<EOF
// Generated by tools/build-tools.sh from tools/versions.env; do not edit.
module fastship.local/tools/etcd

go $GO_MIN_VERSION

require (
	go.etcd.io/etcd/api/v3 $version
	go.etcd.io/etcd/client/pkg/v3 $version
	go.etcd.io/etcd/client/v3 $version
	go.etcd.io/etcd/pkg/v3 $version
	go.etcd.io/etcd/server/v3 $version
)

tool go.etcd.io/etcd/server/v3
EOF
  (cd "$dir" && GOFLAGS=-mod=mod go mod tidy) >&2
  touch "$dir/.ready"
  echo "$dir"
}

build_etcd() { # OUT VERSION
  local src
  src="$(etcd_wrapper "$2")"
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go build -trimpath -ldflags "-s -w" -o "$1/etcd" go.etcd.io/etcd/server/v3)
}

# --- the real node's runtime ----------------------------------------------------------------

# containerd without the snapshotters that need cgo or kernel features the node does not use.
containerd_cmd() { # NAME OUT VERSION
  go_install "$2" "-X github.com/containerd/containerd/v2/version.Version=$3" \
    "github.com/containerd/containerd/v2/cmd/$1@$3" -tags "no_btrfs no_devmapper no_zfs"
}
build_containerd() { containerd_cmd containerd "$@"; }
build_containerd_shim_runc_v2() { containerd_cmd containerd-shim-runc-v2 "$@"; }
build_ctr() { containerd_cmd ctr "$@"; }

build_coredns() { # OUT VERSION
  go_install "$1" "" "github.com/coredns/coredns@$2"
}

# kube-network-policies as released queues packets with the nftables `queue` expression,
# which kernels built without nft_queue refuse ("netlink receive: no such file or
# directory"), so every rule sync fails and nothing is enforced. tools/realnode/
# kube-network-policies.patch replaces it with the xtables NFQUEUE target through
# nft_compat, which such kernels have. The patch is part of the cache key.
build_kube_network_policies() { # OUT VERSION
  local out="$1" version="${2%-*}" dir src
  dir="$(go mod download -json "sigs.k8s.io/kube-network-policies@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
  [[ -d "$dir" ]] || { echo "cannot download sigs.k8s.io/kube-network-policies@$version" >&2; return 1; }
  src="$out/src"
  cp -r "$dir" "$src" && chmod -R u+w "$src"
  patch -d "$src" -p1 <"$ROOT/tools/realnode/kube-network-policies.patch"
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go build -trimpath -ldflags "-s -w" -o "$out/kube-network-policies" ./cmd)
  rm -rf "$src"
}

# skaffold's go.mod has replace and exclude directives, which `go install pkg@version`
# refuses: build it inside a copy of its module, as its own Makefile does.
build_skaffold() { # OUT VERSION
  local out="$1" version="$2" dir src
  dir="$(go mod download -json "github.com/GoogleContainerTools/skaffold/v2@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
  [[ -d "$dir" ]] || { echo "cannot download skaffold $version" >&2; return 1; }
  src="$out/src"
  cp -r "$dir" "$src" && chmod -R u+w "$src"
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
    -ldflags "-s -w -X github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version=$version" \
    -o "$out/skaffold" ./cmd/skaffold)
  rm -rf "$src"
}

# --- main ------------------------------------------------------------------------------

patch_key() { sha256sum "$ROOT/tools/realnode/kube-network-policies.patch" | cut -c1-8; }

tool_version() {
  case "$1" in
    helm) echo "$HELM_VERSION" ;;
    kwok | kwokctl) echo "$KWOK_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    kube-apiserver | kube-controller-manager | kube-scheduler | kubectl) echo "$KUBERNETES_VERSION" ;;
    metrics-server) echo "$METRICS_SERVER_VERSION" ;;
    kubelet | kube-proxy) echo "$KUBERNETES_VERSION" ;;
    containerd | containerd-shim-runc-v2 | ctr) echo "$CONTAINERD_VERSION" ;;
    coredns) echo "$COREDNS_VERSION" ;;
    skaffold) echo "$SKAFFOLD_VERSION" ;;
    kube-network-policies) echo "$KUBE_NETWORK_POLICIES_VERSION-$(patch_key)" ;;
    promtool) echo "$PROMETHEUS_VERSION" ;;
    registry) echo "$DISTRIBUTION_VERSION" ;;
    *) die "unknown tool '$1' (known: ${ALL_TOOLS[*]})" ;;
  esac
}

main() {
  local tools=("$@")
  (( ${#tools[@]} )) || tools=("${ALL_TOOLS[@]}")
  local t
  for t in "${tools[@]}"; do tool_version "$t" >/dev/null; done

  mkdir -p "$CACHE" "$BIN"
  # Fast path: everything cached, no Go needed, no lock taken.
  local missing=0
  for t in "${tools[@]}"; do
    [[ -x "$CACHE/$t-$(tool_version "$t")/$t" && "${TOOLS_REBUILD:-0}" != 1 ]] || missing=1
  done
  if (( missing )); then
    check_go
    exec 9>"$CACHE/.lock"
    if ! flock -n 9; then
      log "waiting for another build-tools run to finish (lock $CACHE/.lock) ..."
      flock 9
    fi
    # Half-built outputs of an interrupted run (we hold the lock, so nobody else is building).
    rm -rf "$CACHE"/*.tmp.*
  fi

  local start failed=()
  start="$(date +%s)"
  for t in "${tools[@]}"; do
    run_step "$t" "$(tool_version "$t")" "build_${t//-/_}" || failed+=("$t")
  done
  log "tools: ${#tools[@]} in $BIN, $(( $(date +%s) - start ))s total"
  if (( ${#failed[@]} )); then die "failed to build: ${failed[*]}"; fi
}

main "$@"
