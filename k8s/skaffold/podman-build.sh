#!/usr/bin/env bash
# The custom builder of skaffold.yaml's profile `realnode`: build the image with podman
# and copy it into the real node's containerd (tools/realnode.sh load). No registry and no
# Docker engine are involved.
#
#   k8s/skaffold/podman-build.sh          the image of the root Dockerfile
#   k8s/skaffold/podman-build.sh --dev    that image, then k8s/skaffold/Dockerfile.dev on
#                                         top (writable sources, `serve --reload`)
#
# skaffold sets IMAGE (the reference to build, e.g. fastship:3f2a1c0-dirty) and
# BUILD_CONTEXT. Environment of its own:
#   BASE_IMAGE   base of the root Dockerfile; default: the local Debian base that
#                tools/image/base-image.sh makes (cached after the first time)
#   IMAGE_CA     CA bundle handed to pip and apt as the build secret `ca`; default:
#                /etc/ssl/certs/ca-certificates.crt when it exists, empty: none
#   FASTSHIP_NODE_WORKDIR  the node to load the image into (see tools/realnode.sh)
#   FASTSHIP_BUILD_NETNS   network namespace file to run the builds in (see below)
#
# skaffold reads the image's ID through a Docker-compatible API (DOCKER_HOST: podman's,
# see tools/skaffold-node.sh) and deploys the reference `<name>:<image ID>`, so that
# reference is what the node gets.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PODMAN="$ROOT/tools/image/podman"
die() { printf 'podman-build: %s\n' "$*" >&2; exit 1; }

dev=0
case "${1:-}" in
  --dev) dev=1 ;;
  "") ;;
  *) die "unknown argument '$1' (expected nothing or --dev)" ;;
esac
[[ -n "${IMAGE:-}" ]] || die "IMAGE is not set: this script is run by skaffold (skaffold.yaml, profile realnode)"
context="${BUILD_CONTEXT:-$ROOT}"
[[ -f "$context/web/dist/index.html" ]] ||
  die "$context/web/dist is missing: the image serves the web UI; run \`make web-build\` first"

# Docker's normalisation: `fastship:tag` is docker.io/library/fastship:tag to containerd.
full_name() {
  local name=$1 first=${1%%/*}
  if [[ $name != */* ]]; then
    echo "docker.io/library/$name"
  elif [[ $first == *.* || $first == *:* || $first == localhost ]]; then
    echo "$name"
  else
    echo "docker.io/$name"
  fi
}

# The build reaches PyPI and Debian's mirror (only for layers not cached yet). On the real
# node skaffold runs inside the node's network namespace, which has no route out;
# FASTSHIP_BUILD_NETNS (set by tools/skaffold-node.sh) names a network namespace to build
# in instead: the machine's own.
host_net=()
if [[ -n "${FASTSHIP_BUILD_NETNS:-}" ]]; then
  host_net=(nsenter "--net=$FASTSHIP_BUILD_NETNS")
fi

if [[ -z "${BASE_IMAGE:-}" ]]; then
  BASE_IMAGE="$("${host_net[@]}" "$ROOT/tools/image/base-image.sh" | tail -n1)"
fi
IMAGE_CA="${IMAGE_CA-/etc/ssl/certs/ca-certificates.crt}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$context/pyproject.toml")"
revision="$(git -C "$context" rev-parse HEAD 2>/dev/null || echo unknown)"
labels=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE=")
secret=()
[[ -n "$IMAGE_CA" && -f "$IMAGE_CA" ]] && secret=(--secret "id=ca,src=$IMAGE_CA")

target="$(full_name "$IMAGE")"
if (( dev )); then
  base_tag="localhost/fastship-skaffold-base:${IMAGE##*:}"
  "${host_net[@]}" "$PODMAN" build --network host --layers --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    "${labels[@]}" "${secret[@]}" -t "$base_tag" "$context"
  "$PODMAN" build --network none --layers --build-arg "BASE=$base_tag" \
    -f "$context/k8s/skaffold/Dockerfile.dev" -t "$target" "$context"
  "$PODMAN" untag "$base_tag" >/dev/null 2>&1 || true
else
  "${host_net[@]}" "$PODMAN" build --network host --layers --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    "${labels[@]}" "${secret[@]}" -t "$target" "$context"
fi

id="$("$PODMAN" image inspect --format '{{.Id}}' "$target")"
id="${id#sha256:}"
by_id="${target%:*}:$id"
"$PODMAN" tag "$target" "$by_id"
"$ROOT/tools/realnode.sh" load "$by_id"
