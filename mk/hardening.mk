# Hardening: the load benchmark (the fuzzing, security and fault tests run in `make test`,
# under tests/hardening/). Included by the root Makefile.

.PHONY: bench-load test-hardening

## bench-load: 60 s at 100 connections on a read/write item mix against one worker on Postgres (needs wrk)
bench-load: venv
	$(PY) -m bench.load

## test-hardening: only the fuzzing, access-control, attack, input, secrecy and fault tests
test-hardening: venv
	$(BIN)/pytest tests/hardening
