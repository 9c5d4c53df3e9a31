#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds, then runs the pure and embedded tiers (swift test) and
# the live tier (pytest, real jester processes on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."

Packaging/setup.sh --test
swift build --build-tests

echo "== pure and embedded tiers (swift test)"
swift test --skip-build

echo "== live tier (real processes on loopback)"
cd Tests/Live
exec python3 -m pytest -q -p no:cacheprovider "$@"
