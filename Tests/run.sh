#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole test suite: installs what it needs, builds, then runs the pure and embedded tiers (swift test) and
# the live tier (pytest, real jester processes on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."

Packaging/setup.sh --test
# The installer just ran: a browser test that finds no browser fails instead of skipping.
export JESTER_REQUIRE_BROWSER=1
swift build --build-tests

echo "== pure and embedded tiers (swift test)"
swift test --skip-build

# Bounded fuzzing of the parsers a client or a control-socket peer feeds (about 2.5 minutes). The config target stays
# manual: it reaches toml++'s own assertions, upstream bugs Jester contains (Tests/Fuzz/README.md) but cannot fix.
echo "== fuzzing (http1, http2, http3, control; ${JESTER_FUZZ_SECONDS:-30} s each)"
Tests/Fuzz/run.sh "${JESTER_FUZZ_SECONDS:-30}" http1 http2 http3 control

echo "== live tier (real processes on loopback)"
cd Tests/Live
exec python3 -m pytest -q -p no:cacheprovider "$@"
