// Pins the kind release whose config loader and validation kindcheck runs
// (see build.sh). The node image in k8s/kind-config.yaml is this release's default.
module fastship.dev/tools/kindcheck

go 1.22

require sigs.k8s.io/kind v0.33.0
