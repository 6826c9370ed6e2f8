# Local Kubernetes toolchain and test cluster (see docs/local-cluster.md).
# Included by the root Makefile; paths are relative to the repository root.

include tools/versions.env

TOOLS_BIN := $(CURDIR)/.tools/bin
export TOOLS_BIN

.PHONY: tools cluster-up cluster-down cluster-kubeconfig

## tools: build the pinned Kubernetes tools once into ~/.cache/fastship/tools, link them into .tools/bin
tools:
	@tools/build-tools.sh

## cluster-up: start the local kwok cluster and print its kubeconfig path
cluster-up: tools
	@tools/cluster.sh up

## cluster-down: stop and delete the local kwok cluster
cluster-down:
	@tools/cluster.sh down

## cluster-kubeconfig: print the kubeconfig path of the local cluster
cluster-kubeconfig:
	@tools/cluster.sh kubeconfig
