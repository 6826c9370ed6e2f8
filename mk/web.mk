# The web interface (web/, see web/README.md). Included by the root Makefile.
#
# web/dist is built from web/src with the npm packages pinned by web/package-lock.json;
# the service serves it at / (app/web.py). Node.js and npm are needed to build it,
# never to serve it.

NPM           ?= npm
WEB_SOURCES   := $(shell find web/src -type f 2>/dev/null) web/index.html web/vite.config.ts \
                 web/tsconfig.json web/package.json
WEB_NODE_MIN  := 20.19

.PHONY: web-build web-if-possible web-api web-dev web-test

web/node_modules/.package-lock.json: web/package-lock.json
	@tools/web-check.sh $(WEB_NODE_MIN)
	cd web && $(NPM) ci --no-audit --no-fund
	@touch $@

web/dist/index.html: web/node_modules/.package-lock.json $(WEB_SOURCES)
	cd web && $(NPM) run --silent build

## web-build: build the web interface into web/dist (needs Node.js >= 20.19 and npm; runs npm ci first)
web-build: web/dist/index.html

# `make run` builds the interface when npm is there, and serves the API alone (with a
# page at / saying how to build the interface) when it is not.
web-if-possible:
	@if tools/web-check.sh $(WEB_NODE_MIN) >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory web-build; \
	elif [ ! -f web/dist/index.html ]; then \
		tools/web-check.sh $(WEB_NODE_MIN) || true; \
		echo "serving the API only: the web interface at / says how to build it"; \
	fi

## web-api: regenerate web/src/api/schema.d.ts from the service's OpenAPI document
web-api: venv web/node_modules/.package-lock.json
	$(PY) -m tests.web.apitypes

## web-dev: Vite's dev server with hot reload on :5173, the API from `make run` on :8000
web-dev: web/node_modules/.package-lock.json
	cd web && $(NPM) exec --offline -- vite

## web-test: the browser tests (Chromium with Playwright against a running service)
web-test: venv web-build
	$(BIN)/pytest tests/web
