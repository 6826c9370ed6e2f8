# The dev loop on a kind cluster, or on the local cluster's real node (the dev-node-* targets); see
# docs/dev-loop.md. Included by the root Makefile.
#
# Each target first checks the programs it drives and stops with the version it needs.
# Versions: kind runs the node image pinned in k8s/kind-config.yaml (the default of
# kind v0.33.0, see tools/kindcheck/go.mod); skaffold.yaml uses schema v4beta13, read
# by skaffold v2.15.0 and later; skaffold drives helm 3 (>= 3.2) as a post-renderer,
# which helm 4 changed, so helm 4 needs a skaffold release after v2.16.

KIND_CLUSTER   ?= fastship
KIND_CONTEXT   := kind-$(KIND_CLUSTER)
DEV_NAMESPACE  := fastship
KIND_MIN       := 0.33.0
SKAFFOLD_MIN   := 2.15.0
HELM_MIN       := 3.2.0
DOCKER_MIN     := 20.10.0
KUBECTL_MIN    := 1.30.0
PODMAN_MIN     := 4.3.0
# helm and kubectl: from PATH, else the ones `make tools` builds.
DEV_PATH       := $(PATH):$(CURDIR)/.tools/bin
DEV_CHECK      := PATH="$(DEV_PATH)" tools/dev-check.sh

.PHONY: kind-up kind-down dev dev-run dev-prod dev-delete dev-check test-kind \
	dev-node dev-node-run dev-node-prod dev-node-delete dev-node-check

# The real node (tools/realnode.sh, `sudo make node-up`): skaffold runs inside its network
# namespace through tools/skaffold-node.sh, builds with podman and copies the image into
# the node (profiles realnode and realnode-dev of skaffold.yaml). Root; no Docker, no kind.
NODE_CHECK     := $(DEV_CHECK) podman=$(PODMAN_MIN) kubectl=$(KUBECTL_MIN) skaffold=$(SKAFFOLD_MIN) helm=$(HELM_MIN) realnode=up
SKAFFOLD_NODE  := PATH="$(DEV_PATH)" tools/skaffold-node.sh skaffold

## dev-check: check docker, kind, kubectl, skaffold and helm for the dev loop on kind (names the versions needed; dev-node-check for the real node)
dev-check:
	@$(DEV_CHECK) docker=$(DOCKER_MIN) kind=$(KIND_MIN) kubectl=$(KUBECTL_MIN) skaffold=$(SKAFFOLD_MIN) helm=$(HELM_MIN)

## kind-up: create the kind cluster "fastship" (k8s/kind-config.yaml) with metrics-server and a restricted namespace
kind-up:
	@$(DEV_CHECK) docker=$(DOCKER_MIN) kind=$(KIND_MIN) kubectl=$(KUBECTL_MIN)
	@if kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
		echo "kind cluster $(KIND_CLUSTER) exists (make kind-down deletes it)"; \
	else \
		kind create cluster --name '$(KIND_CLUSTER)' --config k8s/kind-config.yaml --wait 120s; \
	fi
	@export PATH="$(DEV_PATH)"; set -e; \
	kubectl --context '$(KIND_CONTEXT)' apply -k k8s/kind/metrics-server; \
	kubectl --context '$(KIND_CONTEXT)' apply -f k8s/kind/namespace.yaml; \
	echo "waiting for metrics-server"; \
	kubectl --context '$(KIND_CONTEXT)' -n kube-system rollout status deployment/metrics-server --timeout 180s; \
	echo "kind cluster $(KIND_CLUSTER) is up: kubectl context $(KIND_CONTEXT), namespace $(DEV_NAMESPACE). Next: make dev"

## dev: skaffold dev on the kind cluster: build, deploy, sync app/**/*.py, stream logs (Ctrl+C removes the release)
dev: web-build
	@$(DEV_CHECK) docker=$(DOCKER_MIN) kind=$(KIND_MIN) kubectl=$(KUBECTL_MIN) skaffold=$(SKAFFOLD_MIN) helm=$(HELM_MIN) context=$(KIND_CONTEXT)
	PATH="$(DEV_PATH)" skaffold dev --profile dev --kube-context '$(KIND_CONTEXT)' --port-forward=user

## dev-run: skaffold run (the chart's defaults) on the kind cluster and return; dev-delete removes it
dev-run: web-build
	@$(DEV_CHECK) docker=$(DOCKER_MIN) kind=$(KIND_MIN) kubectl=$(KUBECTL_MIN) skaffold=$(SKAFFOLD_MIN) helm=$(HELM_MIN) context=$(KIND_CONTEXT)
	PATH="$(DEV_PATH)" skaffold run --kube-context '$(KIND_CONTEXT)'

## dev-prod: skaffold run -p prod (HPA on, two replicas at least) on the kind cluster, with port-forward until Ctrl+C
dev-prod: web-build
	@$(DEV_CHECK) docker=$(DOCKER_MIN) kind=$(KIND_MIN) kubectl=$(KUBECTL_MIN) skaffold=$(SKAFFOLD_MIN) helm=$(HELM_MIN) context=$(KIND_CONTEXT)
	PATH="$(DEV_PATH)" skaffold run --profile prod --kube-context '$(KIND_CONTEXT)' --port-forward=user

## dev-delete: skaffold delete: uninstall the release from the kind cluster (the cluster stays)
dev-delete:
	@$(DEV_CHECK) kubectl=$(KUBECTL_MIN) skaffold=$(SKAFFOLD_MIN) helm=$(HELM_MIN) context=$(KIND_CONTEXT)
	PATH="$(DEV_PATH)" skaffold delete --kube-context '$(KIND_CONTEXT)'

## kind-down: delete the kind cluster "fastship" and everything in it
kind-down:
	@$(DEV_CHECK) docker=$(DOCKER_MIN) kind=$(KIND_MIN)
	kind delete cluster --name '$(KIND_CLUSTER)'

## test-kind: run the cluster tests (all but the kwok-only ones) against the kind cluster instead of the local control plane
test-kind: venv
	@$(DEV_CHECK) kind=$(KIND_MIN) context=$(KIND_CONTEXT)
	@mkdir -p .data && kind get kubeconfig --name '$(KIND_CLUSTER)' > .data/kind-kubeconfig && chmod 600 .data/kind-kubeconfig
	FASTSHIP_KUBECONFIG=$(CURDIR)/.data/kind-kubeconfig $(BIN)/pytest -m "cluster and not kwok"

## dev-node-check: check podman, kubectl, skaffold, helm and a running real node for the dev loop on it
dev-node-check:
	@$(NODE_CHECK)

## dev-node: skaffold dev on the real node (root): build with podman, deploy, sync app/**/*.py; port-forwards in the node's network (make node-shell)
dev-node: web-build
	@$(NODE_CHECK)
	$(SKAFFOLD_NODE) dev --port-forward

## dev-node-run: skaffold run on the real node (the chart's defaults) and return; dev-node-delete removes it
dev-node-run: web-build
	@$(NODE_CHECK)
	$(SKAFFOLD_NODE) run

## dev-node-prod: skaffold run -p prod (HPA on, two replicas at least) on the real node
dev-node-prod: web-build
	@$(NODE_CHECK)
	$(SKAFFOLD_NODE) run --profile prod

## dev-node-delete: skaffold delete on the real node, and stop podman's API service (the node stays)
dev-node-delete:
	@$(NODE_CHECK)
	$(SKAFFOLD_NODE) delete
	@tools/skaffold-node.sh stop
