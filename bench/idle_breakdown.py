#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Where the memory of an idle keep-alive connection goes, object by object.

    bench/idle_breakdown.py JESTER_BINARY [--connections 4000] [--frames 3]

Starts the benchmark's upstream and Jester (one worker) with bench/support/live_allocations.c preloaded, opens
the connections the idle-10k scenario opens (one request each, then idle) and reports the worker's RSS growth and
live heap bytes per connection, by allocation size, with the code that made each allocation (a handful of
connections are traced). The figures behind bench/PERFORMANCE.md's memory section.
"""

import argparse
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import harness  # noqa: E402

TRACED = 3  # connections opened while backtraces are kept


def snapshot(pid):
    os.kill(pid, signal.SIGRTMIN + 5)
    time.sleep(0.5)
    with open(f"/tmp/live-{pid}") as f:
        return {int(size): int(live) for size, live in (line.split() for line in f)}


def symbolize(binary, trace_path):
    """(size, [function, ...]) for each traced allocation still live, innermost Jester/NIO frame first."""
    blocks = []
    for block in open(trace_path).read().split("== size ")[1:]:
        lines = block.strip().splitlines()
        offsets = [m.group(1) for line in lines[1:] if (m := re.search(r"\(\+(0x[0-9a-f]+)\)", line))
                   and os.path.basename(binary) in line]
        blocks.append((int(lines[0]), offsets))
    unique = sorted({offset for _, offsets in blocks for offset in offsets})
    if not unique:
        return []
    names = subprocess.run(["addr2line", "-f", "-e", binary, *unique], capture_output=True, text=True).stdout.splitlines()[::2]
    readable = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(names),
                              capture_output=True, text=True).stdout.splitlines()
    by_offset = dict(zip(unique, readable))
    # Frames without a symbol (the allocator's call stubs) say nothing.
    return [(size, [by_offset[offset] for offset in offsets if by_offset[offset] != "??"]) for size, offsets in blocks]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jester")
    parser.add_argument("--connections", type=int, default=4000)
    parser.add_argument("--frames", type=int, default=3, help="frames shown per allocation site")
    args = parser.parse_args()
    binary = os.path.realpath(args.jester)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = Path(tempfile.mkdtemp(prefix="jester-idle-"))
    os.chmod(work, 0o755)
    library = work / "live_allocations.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(library), str(HERE / "support" / "live_allocations.c"),
                    "-ldl"], check=True)
    (work / "upstream.conf").write_text(harness.upstream_config(work))
    os.chmod(work / "www", 0o755)
    (work / "jester.toml").write_text(harness.jester_config(work, 1, 0))
    harness.wait_for_free_port(harness.UPSTREAM_PORT)
    harness.wait_for_free_port(harness.PROXY_PORT)
    upstream = harness.Server("upstream", ["nginx", "-c", str(work / "upstream.conf")], "1", work / "upstream.log")
    os.environ["LD_PRELOAD"] = str(library)
    jester = harness.Server("jester", [binary, "--config", str(work / "jester.toml")], "0", work / "jester.log")
    del os.environ["LD_PRELOAD"]
    try:
        harness.wait_for_http(harness.UPSTREAM_PORT)
        harness.wait_for_http(harness.PROXY_PORT)
        time.sleep(0.5)
        pids = jester.pids()
        worker = max(pids)  # spawned after the master
        rss_before = harness.memory_kib(pids, "VmRSS")
        before = snapshot(worker)
        half = (args.connections - TRACED) // 2
        held = harness.hold_idle_connections(harness.PROXY_PORT, half)
        os.kill(worker, signal.SIGRTMIN + 6)
        time.sleep(0.2)
        held += harness.hold_idle_connections(harness.PROXY_PORT, TRACED)
        os.kill(worker, signal.SIGRTMIN + 6)
        held += harness.hold_idle_connections(harness.PROXY_PORT, args.connections - half - TRACED)
        time.sleep(1.0)
        rss_after = harness.memory_kib(pids, "VmRSS")
        after = snapshot(worker)
        n = len(held)
        print(f"{n} idle connections: RSS {(rss_after - rss_before) * 1024 / n:,.0f} bytes per connection")
        total = 0
        print("live heap allocations per connection, by usable size:")
        for size in sorted(set(before) | set(after)):
            delta = after.get(size, 0) - before.get(size, 0)
            total += delta * size
            if abs(delta) >= n * 0.5:
                print(f"  {size:5d} B × {delta / n:.2f}")
        print(f"live heap bytes per connection: {total / n:,.0f}")
        print(f"what made them (the {TRACED} traced connections; innermost frames first):")
        seen = set()
        for size, frames in symbolize(binary, f"/tmp/trace-{worker}"):
            key = (size, tuple(frames[:2]))
            if key in seen:
                continue
            seen.add(key)
            print(f"  {size:5d} B  " + "  <-  ".join(frame[:90] for frame in frames[:args.frames]))
        for s in held:
            s.close()
    finally:
        jester.stop()
        upstream.stop()


if __name__ == "__main__":
    main()
