#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs everything Jester needs on Debian 12 (the Swift toolchain must already be on PATH), builds it, and,
# with --run, starts the demo upstream and Jester on Config/jester.toml in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
packages=(pkg-config libssl-dev libnghttp2-dev libngtcp2-dev libngtcp2-crypto-gnutls-dev libnghttp3-dev
          libgnutls28-dev libcrypt-dev zlib1g-dev libbrotli-dev libzstd-dev curl python3)
if [ "${1:-}" = "--test" ]; then
    packages+=(python3-pytest wrk util-linux systemd gcc libc6-dev mandoc man-db redis-server redis-tools openssl curl testssl.sh python3-grpcio python3-protobuf python3-venv nghttp2-client ngtcp2-client python3-jsonschema graphviz prometheus etcd-server python3-brotli python3-zstandard wabt
              zsh fish
              chromium chromium-driver)
fi
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

if [ "${1:-}" = "--test" ]; then
    # The live tier's OTLP receiver (Tests/Live/otlp_receiver.py) parses exports with opentelemetry-proto, which
    # Debian does not package: a venv over Debian's python3 and its python3-protobuf, with the last release that
    # supports protobuf 4 (Debian 12 has 4.21) and nothing else from PyPI.
    venv="${JESTER_TEST_VENV:-/var/tmp/jester-test-venv}"
    [ -x "$venv/bin/python3" ] || /usr/bin/python3 -m venv --system-site-packages "$venv"
    "$venv/bin/python3" -c 'import opentelemetry.proto' 2>/dev/null \
        || "$venv/bin/python3" -m pip install -q --no-deps opentelemetry-proto==1.25.0
fi
if [ "${1:-}" = "--test" ]; then
    # schemathesis (Tests/Live/test_admin_api.py holds the admin API to Docs/admin-openapi.yaml with it) is not in
    # Debian: a venv of its own, since it needs newer jsonschema and hypothesis than Debian's python3 has.
    stvenv="${JESTER_SCHEMATHESIS_VENV:-/var/tmp/jester-schemathesis-venv}"
    [ -x "$stvenv/bin/python3" ] || /usr/bin/python3 -m venv "$stvenv"
    [ -x "$stvenv/bin/st" ] || "$stvenv/bin/python3" -m pip install -q 'schemathesis>=4,<5'
fi
if [ "${1:-}" = "--test" ]; then
    # selenium from PyPI (Tests/Live/dashboard_browser.py drives Debian's chromium through chromium-driver with
    # it; Debian 12's python3-selenium is years older than the chromium it would drive): a venv of its own, like
    # schemathesis's, run only by that driver.
    brvenv="${JESTER_BROWSER_VENV:-/var/tmp/jester-browser-venv}"
    [ -x "$brvenv/bin/python3" ] || /usr/bin/python3 -m venv "$brvenv"
    "$brvenv/bin/python3" -c 'import selenium' 2>/dev/null || "$brvenv/bin/python3" -m pip install -q 'selenium>=4,<5'
fi
if [ "${1:-}" = "--test" ]; then
    # zig (PyPI's ziglang wheel) for the Wasm policy SDK's second compiler (JesterWasmTests builds SDK/examples with
    # the Swift toolchain's clang and with zig; SDK/build-examples.sh finds this venv): a venv of its own.
    zigvenv="${JESTER_ZIG_VENV:-/var/tmp/jester-zig-venv}"
    [ -x "$zigvenv/bin/python3" ] || /usr/bin/python3 -m venv "$zigvenv"
    "$zigvenv/bin/python3" -c 'import ziglang' 2>/dev/null || "$zigvenv/bin/python3" -m pip install -q 'ziglang>=0.13,<1'
fi
if [ "${1:-}" = "--test" ]; then
    # aioquic from PyPI: an HTTP/3 client independent of ngtcp2/nghttp3 for Tests/Live/test_http3_sessions.py
    # (Debian 12 packages none, and its h2load is built without HTTP/3): a venv of its own.
    h3venv="${JESTER_AIOQUIC_VENV:-/var/tmp/jester-aioquic-venv}"
    [ -x "$h3venv/bin/python3" ] || /usr/bin/python3 -m venv "$h3venv"
    "$h3venv/bin/python3" -c 'import aioquic' 2>/dev/null || "$h3venv/bin/python3" -m pip install -q 'aioquic>=1,<2'
fi
# The prometheus package (for promtool and the live scrape test, which starts its own server) enables a system
# service on :9090, the demo upstream's port, and etcd-server one on :2379: tests need the programs (the control
# plane's replica test starts its own etcd), not the services.
if [ "${1:-}" = "--test" ] && command -v systemctl >/dev/null; then
    for service in prometheus prometheus-node-exporter etcd; do
        if systemctl is-enabled "$service" >/dev/null 2>&1; then
            $SUDO systemctl disable --now "$service" >/dev/null 2>&1 || true
        fi
    done
fi

# Release: what ships, what the benchmark measures, and what the live tests run. (Debug builds of SwiftNIO assert
# that a readable listening socket always yields a connection; with the listener shared between a worker and its
# successor during a reload, the other process may have taken it, so that assertion would kill a worker.)
# shellcheck disable=SC2046  # word splitting of the flag list is intended
swift build -c release $(grep -v '^#' Packaging/swift-release-flags) ${JESTER_BUILD_FLAGS:-}

if [ "${1:-}" = "--run" ]; then
    export JESTER_RUN_DIR="${JESTER_RUN_DIR:-/tmp/jester-run}"
    mkdir -p "$JESTER_RUN_DIR"
    # The demo upstream behind the /app/ route.
    python3 Tests/Live/upstream.py 9090 >/dev/null &
    upstream=$!
    trap 'kill $upstream 2>/dev/null' EXIT
    echo "Jester on http://127.0.0.1:8080/ (try /, /app/echo, /old-docs);"
    echo "control it with: JESTER_CONTROL_SOCKET=$JESTER_RUN_DIR/control.sock .build/release/jesterctl status"
    .build/release/jester --config Config/jester.toml
fi
