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

.PHONY: node-up node-down node-status node-shell

## node-up: start the local cluster with a real node (root; containerd, kubelet, CoreDNS) in its own network namespace
node-up: tools
	@tools/realnode.sh up

## node-down: stop the real-node cluster and remove everything it made
node-down:
	@tools/realnode.sh down

## node-status: say whether the real-node cluster is up
node-status:
	@tools/realnode.sh status

## node-shell: a shell inside the real node's network namespace, with KUBECONFIG and the tools on PATH
node-shell:
	@tools/realnode.sh exec bash
