#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the SDK's examples (SDK/examples/*.c, each with the runtime SDK/c/jester_policy.c) into OUTDIR as
# NAME.wasm, with the toolchain's clang (the default) or zig:
#   SDK/build-examples.sh OUTDIR [clang|zig]
# CLANG overrides the clang (default: /opt/swift/usr/bin/clang when present, else clang); ZIG_PYTHON the Python
# that has the ziglang package (default: /var/tmp/jester-zig-venv/bin/python3, as Packaging/setup.sh --test
# installs it, else python3).
set -euo pipefail
sdk="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: build-examples.sh OUTDIR [clang|zig]}"
compiler="${2:-clang}"
mkdir -p "$out"
flags=(-O2 -ffreestanding -nostdlib -mbulk-memory -Wall -Werror -I "$sdk/c" -Wl,--no-entry -Wl,--strip-debug)
case "$compiler" in
clang)
    clang="${CLANG:-}"
    [ -n "$clang" ] || { [ -x /opt/swift/usr/bin/clang ] && clang=/opt/swift/usr/bin/clang || clang=clang; }
    cc=("$clang" --target=wasm32)
    ;;
zig)
    python="${ZIG_PYTHON:-}"
    venv=/var/tmp/jester-zig-venv/bin/python3
    [ -n "$python" ] || { [ -x "$venv" ] && python="$venv" || python=python3; }
    cc=("$python" -m ziglang cc --target=wasm32-freestanding)
    ;;
*)
    echo "build-examples.sh: unknown compiler $compiler (clang or zig)" >&2
    exit 2
    ;;
esac
for source in "$sdk"/examples/*.c; do
    name="$(basename "$source" .c)"
    "${cc[@]}" "${flags[@]}" -o "$out/$name.wasm" "$source" "$sdk/c/jester_policy.c"
done
echo "built $(ls "$out"/*.wasm | wc -l) policies into $out with $compiler"
