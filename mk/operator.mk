# The fastship operator (see docs/operator.md). Included by the root Makefile.

.PHONY: operator-run bench-operator

## operator-run: run the operator against the current kubectl context's namespace (KUBECONFIG)
operator-run: venv
	@$(PY) -m fastship_operator --namespace "$${FASTSHIP_OPERATOR_NAMESPACE:-$$(kubectl config view --minify -o jsonpath='{..namespace}' 2>/dev/null || echo default)}" --liveness http://127.0.0.1:8080/healthz

## bench-operator: time from a Migration/AppConfig change to Job created / Deployment annotated (20 changes, local kwok cluster)
bench-operator: venv tools
	$(PY) -m bench.operator --changes 20
