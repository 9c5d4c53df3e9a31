#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The long version of the reload-under-load test: 1000 reloads (or $1) with route changes, steady keep-alive,
# new-connection and proxied traffic, zero failed requests. Not part of the suite's time budget (~5 minutes).
set -euo pipefail
cd "$(dirname "$0")"
JESTER_RELOADS="${1:-1000}" exec python3 -m pytest -q -s -p no:cacheprovider test_lifecycle.py \
    -k test_twenty_reloads_under_load_lose_nothing
