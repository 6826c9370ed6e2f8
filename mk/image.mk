# The container image (see docs/image.md). Included by the root Makefile.
#
#   make image                       build localhost/fastship:<version> on the official
#                                    Python base (needs a registry to pull it from)
#   make image BASE_IMAGE=localhost/fastship-base:bookworm
#                                    build on the local Debian base (make base-image)
#   make image CONTAINER_ENGINE=docker   build with docker (BuildKit) instead of podman

CONTAINER_ENGINE ?= tools/image/podman
IMAGE_NAME       ?= localhost/fastship
IMAGE_VERSION    ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_REVISION   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE_SOURCE     ?= $(shell git config --get remote.origin.url 2>/dev/null)
BASE_IMAGE       ?=
# A CA bundle handed to pip and apt as the build secret `ca` (a TLS-inspecting
# proxy's CA). Empty: none. It never lands in a layer.
IMAGE_CA         ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)

comma := ,
IMAGE_BUILD_ARGS = \
	--build-arg VERSION=$(IMAGE_VERSION) \
	--build-arg REVISION=$(IMAGE_REVISION) \
	--build-arg SOURCE=$(IMAGE_SOURCE) \
	$(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
	$(if $(IMAGE_CA),--secret id=ca$(comma)src=$(IMAGE_CA))

.PHONY: image base-image

## image: build the container image localhost/fastship:<version> (BASE_IMAGE=... to change the base)
image: web-build
	$(CONTAINER_ENGINE) build --network host $(IMAGE_BUILD_ARGS) \
		-t $(IMAGE_NAME):$(IMAGE_VERSION) .

## base-image: make the local Debian base image localhost/fastship-base:bookworm (debootstrap, cached)
base-image:
	@tools/image/base-image.sh
