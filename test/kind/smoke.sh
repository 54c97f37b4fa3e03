#!/usr/bin/env bash
# warden's smoke test in a kind cluster, for your CI (test/kind/kind-smoke.yml runs it on
# GitHub Actions). It needs docker, kind, kubectl and what `make image` and `make examples`
# need; it cannot run where there is no Docker.
#
#   test/kind/smoke.sh             create a cluster, install warden, run a Wasm pod and a
#                                  denied one, delete the cluster
#   test/kind/smoke.sh --dry-run   print every command instead of running it (needs none of
#                                  the tools above)
#   test/kind/smoke.sh --keep      keep the cluster afterwards (to look around)
#
# Environment (all optional):
#   WARDEN_KIND_CLUSTER   cluster name (warden-smoke)
#   KIND_NODE_IMAGE       kind node image (kind's default); Kubernetes 1.30+ for the node guard
#   WARDEN_IMAGES_DIR     where `make image` and `make examples` write image archives
#                         (<repo>/target/images)
#   WARDEN_HELLO_EXPECT   text the hello pod's log must contain (Hello)
#   WARDEN_SMOKE_TIMEOUT  how long each wait may take, in seconds with an `s` (300s)
set -euo pipefail

usage() {
	sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
}

DRY_RUN=0
KEEP=0
while (($#)); do
	case "$1" in
	--dry-run) DRY_RUN=1 ;;
	--keep) KEEP=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		echo "smoke.sh: unknown argument: $1 (see --help)" >&2
		exit 2
		;;
	esac
	shift
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER=${WARDEN_KIND_CLUSTER:-warden-smoke}
IMAGES_DIR=${WARDEN_IMAGES_DIR:-$REPO/target/images}
INSTALLER_ARCHIVE=$IMAGES_DIR/warden-installer.tar
HELLO_ARCHIVE=$IMAGES_DIR/warden-example-hello.tar
HELLO_EXPECT=${WARDEN_HELLO_EXPECT:-Hello}
TIMEOUT=${WARDEN_SMOKE_TIMEOUT:-300s}
MANIFESTS=$REPO/test/kind/manifests
[[ $TIMEOUT =~ ^[0-9]+s$ ]] || {
	echo "smoke.sh: WARDEN_SMOKE_TIMEOUT must be seconds such as 300s, not '$TIMEOUT'" >&2
	exit 2
}
NS=warden-smoke

# Commands are printed on the original stdout, also from inside $(...).
exec 3>&1

say() {
	printf '== %s\n' "$*" >&3
}

# Runs a command, or prints it under --dry-run.
run() {
	if ((DRY_RUN)); then
		printf '+ %s\n' "$(quote "$@")" >&3
		return 0
	fi
	printf '+ %s\n' "$(quote "$@")" >&2
	"$@"
}

# Runs a command for its output; under --dry-run prints it and outputs $DRY_OUTPUT.
capture() {
	if ((DRY_RUN)); then
		printf '+ %s\n' "$(quote "$@")" >&3
		printf '%s' "${DRY_OUTPUT:-}"
		return 0
	fi
	"$@"
}

quote() {
	local out="" arg
	for arg in "$@"; do
		out+="$(printf '%q' "$arg") "
	done
	printf '%s' "${out% }"
}

fail() {
	echo "smoke.sh: FAILED: $*" >&2
	exit 1
}

need() {
	((DRY_RUN)) && return 0
	command -v "$1" >/dev/null || fail "$1 is not on PATH"
}

# What a failed run leaves to look at, before the cluster goes.
diagnose() {
	((DRY_RUN)) && return 0
	echo "---- diagnostics" >&2
	kubectl get nodes --show-labels >&2 || true
	kubectl get pods -A -o wide >&2 || true
	kubectl -n warden-system describe daemonset/warden-installer >&2 || true
	kubectl -n warden-system logs -l app.kubernetes.io/component=installer --tail=200 \
		--all-containers --prefix >&2 || true
	kubectl -n "$NS" describe pods >&2 || true
}

cleanup() {
	local status=$?
	trap - EXIT
	if ((status != 0)); then
		diagnose
	fi
	if ((KEEP)); then
		say "keeping cluster $CLUSTER (kind delete cluster --name $CLUSTER)"
	else
		say "deleting the cluster"
		run kind delete cluster --name "$CLUSTER" || true
	fi
	exit "$status"
}

for tool in docker kind kubectl make; do
	need "$tool"
done

say "creating kind cluster $CLUSTER"
trap cleanup EXIT
create=(kind create cluster --name "$CLUSTER" --wait 120s)
if [[ -n ${KIND_NODE_IMAGE:-} ]]; then
	create+=(--image "$KIND_NODE_IMAGE")
fi
run "${create[@]}"
run kubectl config use-context "kind-$CLUSTER"

say "building and loading the images"
run make -C "$REPO" image IMAGES_DIR="$IMAGES_DIR"
run make -C "$REPO" examples IMAGES_DIR="$IMAGES_DIR"
run kind load image-archive "$INSTALLER_ARCHIVE" --name "$CLUSTER"
run kind load image-archive "$HELLO_ARCHIVE" --name "$CLUSTER"

say "installing warden (runtimeclass/overlays/kind)"
run kubectl apply -k "$REPO/runtimeclass/overlays/kind"
run kubectl -n warden-system rollout status daemonset/warden-installer --timeout="$TIMEOUT"
run kubectl wait node --all --for=jsonpath='{.metadata.labels.warden\.dev/ready}'=true \
	--timeout="$TIMEOUT"
handler=$(DRY_OUTPUT=warden capture kubectl get runtimeclass warden -o jsonpath='{.handler}')
[[ $handler == warden ]] || fail "RuntimeClass warden has handler '$handler', not 'warden'"

say "a Wasm pod under the strict profile"
run kubectl apply -f "$MANIFESTS/namespace.yaml"
run kubectl apply -f "$MANIFESTS/hello.yaml"
runtime_class=$(DRY_OUTPUT=warden capture kubectl -n "$NS" get pod warden-hello \
	-o jsonpath='{.spec.runtimeClassName}')
[[ $runtime_class == warden ]] || fail "pod warden-hello has runtimeClassName '$runtime_class'"
# The RuntimeClass admission plugin copies the RuntimeClass's overhead into the pod.
overhead=$(DRY_OUTPUT=16Mi capture kubectl -n "$NS" get pod warden-hello \
	-o jsonpath='{.spec.overhead.memory}')
[[ -n $overhead ]] || fail "pod warden-hello got no overhead from RuntimeClass warden"
run kubectl -n "$NS" wait pod/warden-hello --for=jsonpath='{.status.phase}'=Succeeded \
	--timeout="$TIMEOUT"
logs=$(DRY_OUTPUT=$HELLO_EXPECT capture kubectl -n "$NS" logs warden-hello)
[[ $logs == *"$HELLO_EXPECT"* ]] || fail "warden-hello's log does not say '$HELLO_EXPECT': $logs"

say "a pod asking for a profile its namespace may not use is denied"
run kubectl apply -f "$MANIFESTS/denied.yaml"
denied=0
deadline=$((SECONDS + ${TIMEOUT%s}))
while ((SECONDS < deadline)); do
	described=$(DRY_OUTPUT='rule profile.namespace' capture kubectl -n "$NS" describe pod warden-denied)
	if [[ $described == *"rule profile.namespace"* ]]; then
		denied=1
		break
	fi
	sleep 5
done
((denied)) || fail "pod warden-denied was not denied with rule profile.namespace"
phase=$(DRY_OUTPUT=Failed capture kubectl -n "$NS" get pod warden-denied -o jsonpath='{.status.phase}')
[[ $phase != Running && $phase != Succeeded ]] || fail "pod warden-denied ran (phase $phase)"

say "passed"
