#!/usr/bin/env bash
# Checks that Node.js and npm are installed and recent enough to build the web
# interface; says what is missing and how to get it. Usage: web-check.sh MIN_NODE_VERSION
set -euo pipefail
min=${1:-20.19}
if ! command -v node >/dev/null || ! command -v "${NPM:-npm}" >/dev/null; then
    echo "The web interface needs Node.js >= $min and npm to build (https://nodejs.org," \
         "or your distribution's nodejs and npm packages)." >&2
    exit 1
fi
if ! have=$(node -p 'process.versions.node' 2>/dev/null); then
    echo "The web interface needs Node.js >= $min to build; \`node\` does not run." >&2
    exit 1
fi
if ! node -e '
    const [a, b] = process.argv[1].split(".").map(Number);
    const [x, y] = process.versions.node.split(".").map(Number);
    process.exit(x > a || (x === a && y >= b) ? 0 : 1);' "$min"; then
    echo "The web interface needs Node.js >= $min to build; found $have." >&2
    exit 1
fi
