#!/usr/bin/env bash
# fetch-debian-go.sh DEST: puts Debian trixie's Go toolchain (golang-1.24-go and
# golang-1.24-src, the packages behind trixie's golang-go 1.24) in DEST, extracted with
# `dpkg-deb -x`, unless DEST already holds it. The Go example builds with DEST/usr/lib/go-1.24.
#
# The approach of test/src/containerd_versions.rs, which fetches trixie's containerd: apt-get
# with a private sources list (suite trixie on the mirror of the system's Debian source, or
# $DEBIAN_MIRROR), private lists and cache in a work dir that is removed afterwards; nothing of
# the system's apt state changes. apt checks the packages against trixie's signed Release file
# (the Debian archive keyring); this script also pins their versions and sha256 digests, so a
# mirror that moved on (a trixie point release) fails here, naming the pin to update, instead of
# building with another Go. DEST appears by a rename, whole, and holds `warden-fetched`, the
# record of what was fetched. Runs as root or not (apt's download sandbox user is root's own).
set -euo pipefail

# package=version sha256, one per line: trixie's golang-go 2:1.24~2 depends on these.
PINS="golang-1.24-go=1.24.4-1 93c6c109bbc0f1d55523282a16739d10634499c04f6d066a6aa58b67b687a44f
golang-1.24-src=1.24.4-1 c396bc2c2e94606e0a060cff52b9bbbf1d7cefacb040eb3c40a55604111e66e1"
GO_RELEASE=go1.24.4
SUITE=trixie
KEYRING=${DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}

dest=${1:?usage: fetch-debian-go.sh DEST}
go_bin=$dest/usr/lib/go-1.24/bin/go
[[ -x $go_bin && -f $dest/warden-fetched ]] && exit 0

# The mirror of the system's Debian main archive (not -security): the first `.../debian` URI
# of /etc/apt/sources.list or a .list/.sources file of sources.list.d.
mirror() {
	if [[ -n ${DEBIAN_MIRROR:-} ]]; then
		echo "$DEBIAN_MIRROR"
		return
	fi
	local files=() uri
	[[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
	for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] && files+=("$f")
	done
	if ((${#files[@]})); then
		uri=$(grep -hoE '(^URIs:[[:space:]]*|^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)https?://[^[:space:]]+/debian/?([[:space:]]|$)' "${files[@]}" 2>/dev/null |
			grep -oE 'https?://[^[:space:]]+' | head -n 1 || true)
		if [[ -n $uri ]]; then
			echo "${uri%/}"
			return
		fi
	fi
	echo http://deb.debian.org/debian
}

mkdir -p "$(dirname "$dest")"
exec 9>"$dest.lock"
flock 9
# Another process may have fetched it while this one waited.
[[ -x $go_bin && -f $dest/warden-fetched ]] && exit 0

[[ -f $KEYRING ]] || { echo "fetch-debian-go: $KEYRING is missing (apt-get install debian-archive-keyring)" >&2; exit 1; }
started=$(date +%s)
work=$(mktemp -d "$dest.work-XXXXXX")
partial=$(mktemp -d "$dest.partial-XXXXXX")
trap 'rm -rf "$work" "$partial"' EXIT
uri=$(mirror)
echo "deb [signed-by=$KEYRING] $uri $SUITE main" >"$work/sources.list"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/download"
apt_options=(
	-o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=/dev/null
	-o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
	-o Acquire::Languages=none -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
)
# apt drops to user _apt to download, who cannot write into a root-owned work dir.
[[ $(id -u) == 0 ]] && apt_options+=(-o APT::Sandbox::User=root)
apt-get -q "${apt_options[@]}" update >"$work/update.log" 2>&1 || {
	cat "$work/update.log" >&2
	echo "fetch-debian-go: apt-get update of $uri $SUITE failed" >&2
	exit 1
}
packages=$(awk '{print $1}' <<<"$PINS")
# shellcheck disable=SC2086 # one word per package
(cd "$work/download" && apt-get -q "${apt_options[@]}" download $packages) >"$work/download.log" 2>&1 || {
	cat "$work/download.log" >&2
	echo "fetch-debian-go: cannot download $packages from $uri $SUITE: has trixie moved on? Update PINS in $0" >&2
	exit 1
}
while read -r spec sha256; do
	name=${spec%%=*}
	version=${spec#*=}
	deb=$(find "$work/download" -name "${name}_${version//:/%3a}_*.deb" | head -n 1)
	[[ -n $deb ]] || { echo "fetch-debian-go: apt-get left no $name $version .deb" >&2; exit 1; }
	got=$(sha256sum "$deb" | cut -d' ' -f1)
	[[ $got == "$sha256" ]] || { echo "fetch-debian-go: $(basename "$deb") has sha256 $got, pinned $sha256" >&2; exit 1; }
	dpkg-deb -x "$deb" "$partial"
	echo "package = $(basename "$deb") sha256:$got" >>"$partial/warden-fetched"
done <<<"$PINS"
version=$("$partial/usr/lib/go-1.24/bin/go" version)
[[ $version == *"$GO_RELEASE "* ]] || { echo "fetch-debian-go: the packages hold '$version', not $GO_RELEASE" >&2; exit 1; }
printf 'suite = %s\nmirror = %s\nversion = %s\nfetched_in_s = %s\n' "$SUITE" "$uri" "$version" \
	"$(($(date +%s) - started))" >>"$partial/warden-fetched"
chmod 0755 "$partial"
rm -rf "$dest"
mv "$partial" "$dest"
echo "fetch-debian-go: $version from Debian $SUITE ($uri) in $dest"
