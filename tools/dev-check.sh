#!/usr/bin/env bash
# Check the programs of the dev loop (mk/dev.mk, docs/dev-loop.md) before using them.
#
#   tools/dev-check.sh docker=20.10.0 kind=0.33.0 kubectl=1.30.0 skaffold=2.15.0 helm=3.2.0 context=kind-fastship
#   tools/dev-check.sh podman=4.3.0 kubectl=1.30.0 skaffold=2.15.0 helm=3.2.0 realnode=up
#
# PROGRAM=MIN: PROGRAM must be on PATH and at least version MIN (docker: also a running
# daemon). context=NAME: kubectl must know the context NAME (the kind cluster exists).
# realnode=up: the local cluster's real node must be up (tools/realnode.sh status; root).
# Prints one line per problem, naming what is needed, and exits 1 if there is any.
set -uo pipefail

problems=()
found_skaffold=""
found_helm=""

problem() { problems+=("$*"); }

# "v1.2.3-rc.1+meta" -> "1.2.3"
plain_version() { sed -E 's/^[^0-9]*([0-9]+(\.[0-9]+){0,2}).*/\1/' <<<"$1"; }

# version_ge A B: A >= B
version_ge() { [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1) == "$2" ]]; }

version_of() {
    local tool=$1 out
    case $tool in
        docker) out=$(docker version --format '{{.Client.Version}}' 2>/dev/null) ;;
        kind) out=$(kind version 2>/dev/null | awk '{print $2}') ;;
        kubectl) out=$(kubectl version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -n1) ;;
        skaffold) out=$(skaffold version 2>/dev/null) ;;
        helm) out=$(helm version --template '{{.Version}}' 2>/dev/null) ;;
        podman) out=$(podman version --format '{{.Client.Version}}' 2>/dev/null) ;;
        *) return 2 ;;
    esac
    plain_version "$out"
}

install_hint() {
    case $1 in
        docker) echo "install Docker Engine or Docker Desktop: https://docs.docker.com/get-docker/" ;;
        kind) echo "install: https://kind.sigs.k8s.io/docs/user/quick-start/#installation" ;;
        kubectl) echo "install: https://kubernetes.io/docs/tasks/tools/, or \`make tools\` builds one into .tools/bin" ;;
        skaffold) echo "install: https://skaffold.dev/docs/install/" ;;
        helm) echo "install: https://helm.sh/docs/intro/install/, or \`make tools\` builds one into .tools/bin" ;;
        podman) echo "install: apt-get install podman runc (.ci/packages.txt)" ;;
    esac
}

known="docker kind kubectl skaffold helm podman"

for arg in "$@"; do
    name=${arg%%=*}
    want=${arg#*=}
    if [[ $name == context || $name == realnode ]]; then
        continue
    fi
    if [[ -z $want || $name == "$arg" ]]; then
        echo "dev-check: bad argument '$arg' (expected PROGRAM=MIN_VERSION or context=NAME)" >&2
        exit 2
    fi
    if [[ " $known " != *" $name "* ]]; then
        echo "dev-check: unknown program '$name' (known: $known)" >&2
        exit 2
    fi
    if ! command -v "$name" >/dev/null 2>&1; then
        problem "$name not found on PATH: version $want or newer is needed; $(install_hint "$name")"
        continue
    fi
    have=$(version_of "$name")
    if [[ -z $have ]]; then
        problem "$name: could not read its version; version $want or newer is needed"
        continue
    fi
    if ! version_ge "$have" "$want"; then
        problem "$name $have is too old: version $want or newer is needed; $(install_hint "$name")"
        continue
    fi
    case $name in
        docker)
            if ! docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; then
                problem "docker: no Docker daemon answers (is Docker running, and may this user use it?)"
            fi
            ;;
        skaffold) found_skaffold=$have ;;
        helm) found_helm=$have ;;
    esac
done

# skaffold passes itself to helm as --post-renderer; helm 4 takes only plugins there,
# which skaffold releases up to v2.16 do not handle.
if [[ -n $found_helm && -n $found_skaffold ]] && version_ge "$found_helm" 4.0.0 \
    && ! version_ge "$found_skaffold" 2.17.0; then
    problem "helm $found_helm with skaffold $found_skaffold: skaffold up to v2.16 cannot use helm 4 (post-renderers became plugins); install helm 3 (3.2.0 or newer) or a newer skaffold"
fi

for arg in "$@"; do
    [[ ${arg%%=*} == context ]] || continue
    context=${arg#*=}
    command -v kubectl >/dev/null 2>&1 || continue
    if ! kubectl config get-contexts -o name 2>/dev/null | grep -qx "$context"; then
        problem "kubectl has no context $context: create the cluster with \`make kind-up\`"
    fi
done

for arg in "$@"; do
    [[ ${arg%%=*} == realnode ]] || continue
    if [[ ${arg#*=} != up ]]; then
        echo "dev-check: bad argument '$arg' (expected realnode=up)" >&2
        exit 2
    fi
    if [[ $(id -u) -ne 0 ]]; then
        problem "the real node needs root: run this as root (sudo make ...)"
    elif ! "$(dirname "${BASH_SOURCE[0]}")/realnode.sh" status >/dev/null 2>&1; then
        problem "no real node is up in ${FASTSHIP_NODE_WORKDIR:-the default workdir}: start one with \`sudo make node-up\`"
    fi
done

if ((${#problems[@]})); then
    printf 'dev loop: %s\n' "${problems[@]}" >&2
    exit 1
fi
exit 0
