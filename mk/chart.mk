# The Helm chart (charts/fastship). Included by the root Makefile.

.PHONY: chart-lint chart-docs chart-test

## chart-lint: helm lint --strict the chart
chart-lint: tools
	$(TOOLS_BIN)/helm lint --strict --kube-version 1.36.0 charts/fastship

## chart-docs: rewrite the chart README's values table and schema descriptions from values.yaml
chart-docs: venv
	$(PY) -m tests.chart.valuesdoc

## chart-test: the chart's tests (render matrix, values, docs; install on the local cluster)
chart-test: venv tools
	$(BIN)/pytest tests/chart
