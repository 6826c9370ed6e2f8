# syntax=docker/dockerfile:1
#
# One image for the three roles of fastship, chosen by the command:
#   (default)                      the API on 0.0.0.0:8000
#   python -m app migrate          database migrations (the operator's Job)
#   python -m app wait-for-schema  the app pods' init container
#   python -m fastship_operator    the kopf operator
#
# Build (docs/image.md has the details, the proxy-CA secret and a Debian base):
#   make web-build        # the web interface into web/dist, copied below
#   podman build -t localhost/fastship:dev .
#   docker buildx build -t fastship:dev .
#
# Layers, from the least to the most often changed: base, tini and the runtime
# user, the dependency venv (changes with pyproject.toml or constraints.txt), the
# web interface's static files, the fastship code (changes with every commit),
# then labels. A code change reuses everything above the code layer and rebuilds
# in seconds.

# Any Debian-based image with Python >= 3.11 and its venv module (on Debian:
# python3 and python3-venv). Builder and runtime stages use the same base, so the
# venv's interpreter is the runtime's interpreter.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

# The build backend named in pyproject.toml, pinned; it stays in the builder.
ARG SETUPTOOLS_VERSION=80.9.0
ARG WHEEL_VERSION=0.45.1

# What this build is: OCI labels, FASTSHIP_BUILD_VERSION (the version the service
# reports) and /opt/fastship/build-info.
ARG VERSION=0.0.0+dev
ARG REVISION=unknown
ARG SOURCE=

# ---------------------------------------------------------------------------------
# debs: one `apt-get update` for the whole build: binutils for the builder, and
# tini's package for the runtime stage, which installs it without a network.
# A proxy's CA bundle may be passed as the build secret `ca`
# (--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt). It is mounted for the
# commands that download and is in no layer. Without it apt and pip use their own
# trust store.
FROM ${BASE_IMAGE} AS debs
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    set -eu; \
    ca=""; if [ -s /run/secrets/ca ]; then ca="-o Acquire::https::CAInfo=/run/secrets/ca"; fi; \
    apt-get $ca update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get $ca install -y -qq --no-install-recommends binutils >/dev/null; \
    mkdir -p /debs; cd /debs; apt-get $ca download tini; \
    rm -rf /var/lib/apt/lists/*

# ---------------------------------------------------------------------------------
# deps: the runtime dependencies in /opt/venv, installed from constraints.txt.
FROM debs AS deps
ARG SETUPTOOLS_VERSION
ARG WHEEL_VERSION
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml constraints.txt ./
# Only wheels: the builder has no compiler, and nothing is compiled at build time.
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    set -eu; \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca SSL_CERT_FILE=/run/secrets/ca; fi; \
    python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "fastship needs Python >= 3.11 in BASE_IMAGE, found " + sys.version.split()[0])'; \
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/python -m pip install --quiet --only-binary=:all: --no-compile \
        -c constraints.txt -r requirements.txt; \
    /opt/venv/bin/python -m pip uninstall --quiet --yes pip setuptools; \
    # Size: some wheels ship their native modules with debug symbols. Python's
    # extension modules (*.so) also lose their static
    # symbol tables, as Debian strips its own libraries (0.8 MB; the dynamic symbols
    # stay); the libraries the wheels bundle (*.so.N) only lose debug symbols.
    find /opt/venv -name '*.so*' -type f | while read -r lib; do \
        case "$lib" in \
            *.so) strip --strip-unneeded "$lib" ;; \
            *) if readelf -S "$lib" | grep -q '[.]debug_'; then strip --strip-debug "$lib"; fi ;; \
        esac; \
    done; \
    # Byte-compiled once here: at run time the root filesystem is read-only. Without
    # column ranges (PEP 657), 8 % less: tracebacks through these libraries name file
    # and line but underline no expression.
    /opt/venv/bin/python -X no_debug_ranges -m compileall -q -j 0 \
        --invalidation-mode unchecked-hash /opt/venv/lib; \
    python3 -m venv /opt/build; \
    /opt/build/bin/python -m pip install --quiet --only-binary=:all: \
        "setuptools==${SETUPTOOLS_VERSION}" "wheel==${WHEEL_VERSION}"; \
    # The fastship code goes to /opt/fastship (its own layer); this makes the venv see it.
    purelib=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))'); \
    echo /opt/fastship > "$purelib/fastship.pth"

# ---------------------------------------------------------------------------------
# code: fastship's packages `app` and `fastship_operator` as an installed wheel in
# /opt/fastship, byte-compiled (the runtime root filesystem is read-only).
FROM deps AS code
COPY pyproject.toml README.m[d] ./
COPY app ./app
COPY operator ./operator
# The build's identity goes into this layer too. Besides recording it, that makes
# a new VERSION or REVISION rebuild this layer and everything after it: podman 4.3
# (buildah 1.28) takes LABEL and ENV steps from its cache without looking at the
# build arguments they expand, and would keep the previous build's labels.
ARG VERSION
ARG REVISION
ARG SOURCE
RUN set -eu; \
    /opt/build/bin/python -m pip wheel --quiet --no-deps --no-build-isolation --no-index \
        --wheel-dir /tmp/dist . ; \
    /opt/build/bin/python -m pip install --quiet --no-deps --no-index --no-compile \
        --target /opt/fastship /tmp/dist/*.whl; \
    # Console scripts would point at the builder's interpreter; `python -m app` is the CLI.
    rm -rf /opt/fastship/bin; \
    /opt/venv/bin/python -m compileall -q --invalidation-mode unchecked-hash /opt/fastship; \
    printf 'version=%s\nrevision=%s\nsource=%s\n' "$VERSION" "$REVISION" "$SOURCE" \
        > /opt/fastship/build-info; \
    /opt/venv/bin/python -c 'import app.cli, fastship_operator'

# ---------------------------------------------------------------------------------
# runtime
FROM ${BASE_IMAGE} AS runtime
# tini as PID 1: forwards SIGTERM to the server and reaps orphaned processes.
RUN --mount=type=bind,from=debs,source=/debs,target=/debs \
    set -eu; \
    dpkg --install /debs/tini_*.deb >/dev/null; \
    rm -f /var/log/dpkg.log; \
    groupadd --system --gid 10001 fastship; \
    useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin fastship

COPY --from=deps /opt/venv /opt/venv
# The web interface: static files that `make web-build` (which `make image` runs first)
# builds on the host into web/dist; the image needs no Node.js (docs/image.md).
COPY web/dist /opt/fastship/web/dist
COPY --from=code /opt/fastship /opt/fastship

# MALLOC_MMAP_THRESHOLD_: glibc returns each argon2 hash's 19 MiB to the system when
# it is freed, rather than keeping it resident per hashing thread (bench/README.md,
# "Side by side: the allocator").
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_MMAP_THRESHOLD_=1048576 \
    FASTSHIP_HOST=0.0.0.0 \
    FASTSHIP_SQLITE_PATH=/tmp/fastship.db
# A read-only, root-owned working directory: `python -m` puts it on sys.path.
WORKDIR /opt/fastship
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["tini", "--"]
CMD ["python", "-m", "app", "serve"]

ARG VERSION
ARG REVISION
ARG SOURCE
LABEL org.opencontainers.image.title="fastship" \
      org.opencontainers.image.description="fastship: the API, its migrations and its Kubernetes operator" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"
ENV FASTSHIP_BUILD_VERSION=${VERSION}
