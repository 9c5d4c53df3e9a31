#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the Debian package (jester_<version>_<arch>.deb) with dpkg-buildpackage and checks it with lintian.
#
#   Packaging/build-deb.sh [--version VERSION] [--output DIR]
#
# Installs its own build dependencies from Debian (the Swift toolchain must already be on PATH). The source tree
# is synced into .build/deb/jester/ with Packaging/debian as its debian/ directory; SwiftPM builds in
# .build/deb-scratch, which survives between runs, so a rebuild compiles only what changed. --version adds a
# changelog entry (for test upgrades); the .deb, .buildinfo and .changes land in --output (default .build/deb).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
version=""
output="$root/.build/deb"
while [ $# -gt 0 ]; do
    case "$1" in
        --version) version="$2"; shift 2 ;;
        --output) output="$2"; shift 2 ;;
        *) echo "usage: $0 [--version VERSION] [--output DIR]" >&2; exit 2 ;;
    esac
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
packages=(dpkg-dev debhelper lintian rsync pkgconf libssl-dev libnghttp2-dev libngtcp2-dev
          libngtcp2-crypto-gnutls-dev libnghttp3-dev libgnutls28-dev libcrypt-dev zlib1g-dev
          libbrotli-dev libzstd-dev)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

work="$root/.build/deb"
tree="$work/jester"
mkdir -p "$tree" "$output"
# rsync keeps unchanged files as they are (same inode and mtime), which SwiftPM's incremental build relies on.
rsync -a --delete --exclude=/.build --exclude=/.git --exclude=/debian ./ "$tree/"
rsync -a --delete Packaging/debian/ "$tree/debian/"
if [ -n "$version" ]; then
    {
        echo "jester ($version) unstable; urgency=medium"
        echo
        echo "  * Rebuild as $version."
        echo
        echo " -- Jester Developers <jester-dev@lists.jester-proxy.org>  $(date -R)"
        echo
        cat Packaging/debian/changelog
    } > "$tree/debian/changelog"
fi
rm -f "$work"/jester_*.deb "$work"/jester_*.buildinfo "$work"/jester_*.changes "$work"/jester-dbgsym_*.deb

cd "$tree"
SCRATCH="$root/.build/deb-scratch" dpkg-buildpackage -b -us -uc
cd "$work"
deb=$(ls jester_*.deb)
echo "== lintian $deb"
lintian --fail-on error,warning --info "$deb"
if [ "$output" != "$work" ]; then
    mv jester_*.deb jester_*.buildinfo jester_*.changes "$output"/
    ls jester-dbgsym_*.deb >/dev/null 2>&1 && mv jester-dbgsym_*.deb "$output"/
fi
echo "built $output/$deb"
