#!/usr/bin/env bash
# Build kindcheck (see kindcheck.go) for the kind version pinned in go.mod, once per
# version, into ${FASTSHIP_CACHE:-$HOME/.cache/fastship}/tools/kindcheck-<version>/,
# and print the binary's path. Needs Go and the Go module proxy (or a warm module cache).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
command -v go >/dev/null || { echo "kindcheck: go not found on PATH (Go >= 1.22 is needed)" >&2; exit 1; }

cd "$here"
version=$(go list -m -f '{{.Version}}' sigs.k8s.io/kind)
[[ $version == v* ]] || { echo "kindcheck: no sigs.k8s.io/kind version pinned in $here/go.mod" >&2; exit 1; }
out_dir="${FASTSHIP_CACHE:-$HOME/.cache/fastship}/tools/kindcheck-$version"
out="$out_dir/kindcheck"
if [[ -x $out && $out -nt $here/kindcheck.go ]]; then
    echo "$out"
    exit 0
fi

# Downloads kind's module source and checks it against go.sum.
module_dir=$(go mod download -json "sigs.k8s.io/kind@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[[ -d $module_dir ]] || { echo "kindcheck: could not download sigs.k8s.io/kind@$version" >&2; exit 1; }

# kind's loader and validation are internal packages: build kindcheck.go as a package of
# the kind module itself, in a copy of the module (the module cache stays untouched).
work=$(mktemp -d)
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
cp -R "$module_dir" "$work/kind"
chmod -R u+w "$work/kind"
mkdir -p "$work/kind/pkg/fastshipkindcheck"
cp "$here/kindcheck.go" "$work/kind/pkg/fastshipkindcheck/main.go"
mkdir -p "$out_dir"
(
    cd "$work/kind"
    GOFLAGS=-mod=readonly GOWORK=off CGO_ENABLED=0 \
        go build -trimpath -tags fastship_kindcheck -o "$work/kindcheck" ./pkg/fastshipkindcheck
)
mv "$work/kindcheck" "$out"
echo "$out"
