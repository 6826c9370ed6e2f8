#!/usr/bin/env bash
# Make the local Debian base image that the image tests build on, because no
# container registry is reachable from these machines: debootstrap a minimal
# Debian with Debian's python3 and python3-venv (Python 3.11 on bookworm), and
# import it into podman.
#
# The root filesystem is cached as a tarball outside the repository, keyed by the
# suite, the packages and RECIPE (bump it when the steps below change), so that it
# is made once per machine:
#   ${FASTSHIP_CACHE:-$HOME/.cache/fastship}/image/
# Prints the image name on stdout, e.g. localhost/fastship-base:bookworm-3f2a9c1d,
# and also tags it localhost/fastship-base:<suite> for use by hand.
#
# Environment:
#   FASTSHIP_CACHE        cache root (default $HOME/.cache/fastship)
#   DEBIAN_SUITE          default bookworm (Python 3.11); needs Python >= 3.11
#   DEBIAN_MIRROR         default http://deb.debian.org/debian
#   BASE_IMAGE_REBUILD=1  ignore the cached tarball and image
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${FASTSHIP_CACHE:-$HOME/.cache/fastship}/image
packages=python3,python3-venv
RECIPE=1
key=$(printf '%s\n%s\n%s\n' "$suite" "$packages" "$RECIPE" | sha256sum | cut -c1-8)
name=localhost/fastship-base:$suite-$key
tarball=$cache/debian-$suite-python3-$key.tar
podman=$here/podman

log() { printf 'base-image: %s\n' "$*" >&2; }

if [[ ${BASE_IMAGE_REBUILD:-0} == 1 ]]; then
    rm -f "$tarball"
    "$podman" rmi --force "$name" >/dev/null 2>&1 || true
fi

if "$podman" image exists "$name"; then
    log "$name is present"
    "$podman" tag "$name" "${name%:*}:$suite"
    echo "$name"
    exit 0
fi

if [[ ! -s $tarball ]]; then
    [[ $(id -u) -eq 0 ]] || { log "debootstrap needs root"; exit 1; }
    command -v debootstrap >/dev/null || {
        log "debootstrap is not installed: apt-get install debootstrap"
        exit 1
    }
    mkdir -p "$cache"
    root=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    log "debootstrap $suite ($packages) from $mirror"
    started=$SECONDS
    if ! debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" \
        >"$cache/debootstrap.log" 2>&1; then
        tail -n 30 "$cache/debootstrap.log" >&2
        log "debootstrap failed; the whole log is $cache/debootstrap.log"
        exit 1
    fi
    # Package sources as in Debian's own images, so that `apt-get update` in a
    # Dockerfile finds security updates too.
    security=${mirror%/debian}/debian-security
    cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
SOURCES
    # What an official slim image also leaves out: package lists, downloaded
    # packages, logs, documentation.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
        "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log \
        "$root"/var/log/apt/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
    tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    log "rootfs made in $((SECONDS - started)) s: $(du -h "$tarball" | cut -f1)"
fi

log "importing $tarball as $name"
"$podman" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --quiet "$tarball" "$name" >/dev/null
"$podman" tag "$name" "${name%:*}:$suite"
echo "$name"
