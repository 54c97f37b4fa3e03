# warden: build, demo, test, bench.
#
#   make demo    the whole path on this machine: private containerd, shim installed, a Wasm
#                image run deny-by-default, a denial, the audit log verified
#   make test    unit tests and the integration tests on a real containerd (needs root)
#   make bench   start latency, memory and HTTP throughput/latency (wrk) against runc running
#                the same program natively (needs root)

SHELL := /bin/bash
CARGO ?= cargo
APT_PACKAGES := containerd runc protobuf-compiler libseccomp-dev pkg-config clang lld \
	wasi-libc libclang-rt-14-dev-wasm32 iproute2 procps ca-certificates wrk

.PHONY: all build shim-digest deps test unit integration lint demo bench clean

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

# Installs what it needs first (as `make demo` does): the integration tests need root,
# containerd and runc, and fail rather than skip without them.
test:
	@if [ "$$(id -u)" != 0 ]; then echo "make test starts private containerds: run it as root (make unit needs no root)" >&2; exit 1; fi
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory build
	$(CARGO) test --workspace --no-fail-fast

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
	$(CARGO) run --release -q -p warden-audit --example audit_bench -- 2000 100
	@# The shim just built (a `-p` build of it alone would unify features differently and
	@# rebuild every dependency in release, about as long again).
	WARDEN_SHIM_BIN="$$($(CARGO) metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/containerd-shim-warden-v1" \
		$(CARGO) run --release -q -p warden-test --bin bench

clean:
	$(CARGO) clean
