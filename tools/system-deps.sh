#!/usr/bin/env bash
# Installs the Debian packages the test suite needs (.ci/packages.txt) when any is
# missing: with apt-get as root, otherwise it prints the command to run and fails.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t wanted < <(grep -vE '^\s*(#|$)' .ci/packages.txt)
missing=()
for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
    echo "system packages: all present (${wanted[*]})"
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "missing system packages: ${missing[*]}; install them with your package manager" >&2
    exit 1
fi
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO=sudo
    else
        echo "missing system packages: ${missing[*]}" >&2
        echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi
echo "installing system packages: ${missing[*]}"
${SUDO:-} apt-get update -qq
DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian may start system-wide servers; the tests start their own on free ports.
if command -v service >/dev/null; then
    ${SUDO:-} service postgresql stop >/dev/null 2>&1 || true
    ${SUDO:-} service redis-server stop >/dev/null 2>&1 || true
fi
