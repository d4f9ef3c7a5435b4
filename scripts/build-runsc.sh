#!/usr/bin/env bash
# Builds gVisor's runsc from Debian's source package golang-gvisor-gvisor with the patches in
# scripts/runsc-patches: the root-network-namespace check that keeps runsc's own network stack
# (--network=sandbox) from starting on current kernels, which memory snapshots need (runsc refuses
# to checkpoint a sandbox on host networking); upstream's fix for epoll after a restore, which
# reported events of file descriptors a process had closed before the checkpoint; and a restore
# that takes the target spec's hostname (said by `runsc --version`). Everything comes from the
# Debian mirror this host's apt already uses; the build runs in a throw-away mmdebstrap chroot, so the host gets no Go toolchain.
# The result is cached by (source version, patches' hash); a second run only prints its path.
#
#   bash scripts/build-runsc.sh      # as root; prints /var/cache/capsule/runsc/<key>/runsc
#
# Settings (environment): CAPSULE_RUNSC_CACHE (default /var/cache/capsule/runsc), CAPSULE_RUNSC_REFRESH
# (1: read the source index even when a build with these patches is cached),
# CAPSULE_RUNSC_SUITE (trixie: the suite whose runsc setup.sh installs), CAPSULE_BUILD_JOBS
# (parallel Go compiles, default: the core count; the build runs at nice 19 and idle I/O anyway).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=common.sh
. "$ROOT/scripts/common.sh"
case "${1:-}" in
  "") ;;
  -h|--help) sed -n '2,16s/^# \{0,1\}//p' "$0"; exit 0 ;;
  *) die "usage: bash scripts/build-runsc.sh" ;;
esac
as_root "$ROOT/scripts/build-runsc.sh" "$@"

CACHE_ROOT=${CAPSULE_RUNSC_CACHE:-/var/cache/capsule/runsc}
SUITE=${CAPSULE_RUNSC_SUITE:-trixie}
JOBS=${CAPSULE_BUILD_JOBS:-$(nproc)}
SRC_PKG=golang-gvisor-gvisor
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
STEPS=4
step=0

# The backports: quilt patches (scripts/runsc-patches, in the order of its `series`) added to the
# package's own series. Their names and bytes are part of the cache key.
PATCHES_DIR="$ROOT/scripts/runsc-patches"
mapfile -t PATCHES < <(grep -v '^#' "$PATCHES_DIR/series" | sed '/^$/d')
[ "${#PATCHES[@]}" -gt 0 ] || die "$PATCHES_DIR/series lists no patch"
patches_digest() {
  local p
  for p in "${PATCHES[@]}"; do printf '%s\n' "$p"; cat "$PATCHES_DIR/$p"; done | sha256sum | cut -c1-12
}

# A build with these patches is reused without reading the source index (offline too, and a
# second set-up stays fast); CAPSULE_RUNSC_REFRESH=1 reads the index and builds a newer Debian
# revision of the source if there is one.
if [ -z "${CAPSULE_RUNSC_REFRESH:-}" ]; then
  for cached in "$CACHE_ROOT"/*-"$(patches_digest)"/runsc; do
    if [ -x "$cached" ] && "$cached" --version >/dev/null 2>&1; then
      note "cached: $(basename "$(dirname "$cached")")"
      echo "$cached"
      exit 0
    fi
  done
fi

# The same mirror lookup as setup.sh's runsc step: the Debian mirror this host's apt uses.
mirror=$(grep -rhoE '^(URIs:|deb)[[:space:]]+[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
  | awk '{print $2}' | grep -v -- '-security' | grep -E '/debian/?$' | head -1 || true)
[ -n "$mirror" ] || die "this host's apt has no Debian mirror to fetch $SRC_PKG from"
mirror=${mirror%/}

tmp=$(mktemp -d /tmp/capsule-runsc-build.XXXXXX)
# --one-file-system: should a failed mmdebstrap leave its /proc or /dev mounts, rm stops at them.
trap 'rm -rf --one-file-system "$tmp"' EXIT

# ---------------------------------------------------------------------------------------------
say "source index ($SUITE, $mirror)"
# A private apt state: deb-src for one suite, without touching the host's sources. apt checks
# the suite's InRelease signature against Debian's keyring, so the stanza read below is signed data.
mkdir -p "$tmp/apt/lists/partial" "$tmp/apt/cache/archives/partial"
echo "deb-src [signed-by=$KEYRING] $mirror $SUITE main" >"$tmp/apt/sources.list"
aptopts=(-o Dir::Etc::SourceList="$tmp/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State::Lists="$tmp/apt/lists" -o Dir::Cache="$tmp/apt/cache" -o APT::Sandbox::User=root)
apt-get "${aptopts[@]}" update -q >/dev/null
stanza=$(apt-cache "${aptopts[@]}" showsrc --only-source "$SRC_PKG" | awk -v RS= 'NR == 1')
[ -n "$stanza" ] || die "$SUITE has no source package $SRC_PKG"
field() { printf '%s\n' "$stanza" | sed -n "s/^$1: //p"; }
version=$(field Version)
directory=$(field Directory)
upstream=${version%-*}
installed=$(runsc --version 2>/dev/null | sed -n 's/^runsc version //p' | head -1 || true)
[ -z "$installed" ] || [ "$installed" = "$upstream" ] \
  || note "warning: the installed runsc is $installed, $SUITE's source is $upstream"
key="$version-$(patches_digest)"
out="$CACHE_ROOT/$key/runsc"
note "$SRC_PKG $version, cache key $key"

if [ -x "$out" ] && "$out" --version >/dev/null 2>&1; then
  note "cached"
  echo "$out"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
say "fetch and verify the source"
# The tarballs' SHA-256 sums come from the signed index's stanza, which carries the .dsc's own
# Checksums-Sha256. The .dsc itself is not fetched: a mirror proxy here answers 404 for it
# while it serves the tarballs, and nothing in it beyond those sums is needed to build.
src="$tmp/src"
mkdir -p "$src"
printf '%s\n' "$stanza" | sed -n '/^Checksums-Sha256:/,/^[^ ]/{/^ /p}' | grep -v '\.dsc$' >"$tmp/sums"
[ -s "$tmp/sums" ] || die "the $SRC_PKG stanza lists no SHA-256 sums"
while read -r sum _size name; do
  curl -fsS --retry 3 -o "$tmp/$name" "$mirror/$directory/$name"
  printf '%s  %s\n' "$sum" "$tmp/$name" | sha256sum --quiet -c - || die "$name does not match its SHA-256 in the signed index"
done <"$tmp/sums"
tar -xf "$tmp"/*.orig.tar.* -C "$src" --strip-components=1
tar -xf "$tmp"/*.debian.tar.* -C "$src"
for p in "${PATCHES[@]}"; do
  cp "$PATCHES_DIR/$p" "$src/debian/patches/$p"
  echo "$p" >>"$src/debian/patches/series"
done
note "verified $(wc -l <"$tmp/sums") files; patches added to debian/patches: ${PATCHES[*]}"

# ---------------------------------------------------------------------------------------------
say "build in a $SUITE chroot (nice 19, idle I/O, $JOBS jobs)"
# The chroot gets the package's Build-Depends from the mirror (apt-get build-dep reads them, arch
# qualifiers and all, from debian/control), then dpkg-buildpackage applies the quilt series and
# builds the arch package (runsc) only; nocheck skips the package's Go unit tests: set-up needs
# the binary, and gVisor's own test suite is not Capsule's to run.
started=$(date +%s)
nice -n 19 ionice -c3 mmdebstrap --mode=root --variant=buildd --quiet \
  --customize-hook="mkdir -p \"\$1/build\" && cp -a '$src' \"\$1/build/src\"" \
  --customize-hook='chroot "$1" apt-get -q -y --no-install-recommends build-dep /build/src >/dev/null' \
  --customize-hook="chroot \"\$1\" sh -c 'cd /build/src && DEB_BUILD_OPTIONS=\"nocheck parallel=$JOBS\" dpkg-buildpackage -B --no-sign' >'$tmp/build.log' 2>&1 || { tail -40 '$tmp/build.log' >&2; exit 1; }" \
  "$SUITE" "$tmp/chroot" "deb [signed-by=$KEYRING] $mirror $SUITE main"
debs=("$tmp"/chroot/build/runsc_*.deb)
[ -f "${debs[0]}" ] || die "the build made no runsc .deb (log: tail of $tmp/build.log above)"
dpkg-deb -x "${debs[0]}" "$tmp/deb"
note "built in $(($(date +%s) - started)) s"

# ---------------------------------------------------------------------------------------------
say "cache"
built="$tmp/deb/usr/bin/runsc"
[ "$("$built" --version | sed -n 's/^runsc version //p' | head -1)" = "$upstream" ] \
  || die "the built runsc does not report version $upstream"
# Into place by rename, so a present cache path is always a whole binary.
mkdir -p "$CACHE_ROOT/$key"
install -m 0755 "$built" "$out.tmp"
mv -f "$out.tmp" "$out"
note "$(sha256sum "$out" | cut -c1-64)"
echo "$out"
