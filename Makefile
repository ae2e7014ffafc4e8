# Two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
TOOLS := $(CURDIR)/.tools/bin
export PATH := $(TOOLS):$(PATH)
CARGO ?= cargo

.PHONY: all build tools test lint-rust unit chart-test image test-image demo bench-webhook bench-agent e2e clean

all: build

build:
	$(CARGO) build --release --workspace

tools:
	@scripts/install-tools.sh

## Everything CI runs: formatting, clippy, all tests (unit, integration against
## real OpenBao/PostgreSQL, chart rendering and schema validation).
## Property tests run from a fixed seed, so a CI run is repeatable; set
## PROPTEST_RNG_SEED=random (or any other seed) to explore further.
export PROPTEST_RNG_SEED ?= 20261201

test: tools lint-rust
	$(CARGO) test --workspace --all-targets --no-fail-fast
	@if [ -x scripts/test-chart.sh ]; then scripts/test-chart.sh; fi
	@CARGO=$(CARGO) scripts/test-image.sh

## The image, without Docker: static binaries, target/image/vault-injector.oci.tar
## (docker/podman load, kind load image-archive, ctr import), the SBOM
## target/image/vault-injector.cdx.json. IMAGE_REPOSITORY and IMAGE_TAG name it.
image:
	@CARGO=$(CARGO) scripts/build-image.sh

## Builds the image and runs it in fresh namespaces (root; docs/install.md).
test-image: tools
	@CARGO=$(CARGO) scripts/test-image.sh

lint-rust:
	$(CARGO) fmt --all -- --check
	@CARGO=$(CARGO) scripts/check-deps.sh
	@python3 scripts/check-modules.py
	$(CARGO) clippy --workspace --all-targets -- -D warnings

demo: tools
	@scripts/demo.sh

bench-webhook:
	@scripts/install-tools.sh --bench
	@scripts/bench-webhook.sh

bench-agent: tools
	@scripts/bench-agent.sh

## End-to-end tests against a real cluster (KUBECONFIG must be set).
e2e:
	@test -n "$$KUBECONFIG" || { echo "e2e: set KUBECONFIG to a cluster (see docs/e2e.md)"; exit 2; }
	$(CARGO) test -p vault-injector --test it -- --ignored --test-threads=1 e2e::

clean:
	$(CARGO) clean
	rm -rf .tools .demo
