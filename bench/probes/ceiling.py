#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Large bodies against the direct ceiling: 1 MiB responses, each target alone on CPU 0 (wrk and the upstream on
CPU 1), two alternating rounds, bytes/s as a share of wrk straight at the upstream (issue 4's "≥ 90 % of the
ceiling" target). Targets are named as for bench/pair.py:

    bench/probes/ceiling.py .build/release/jester probe:epoll probe:epoll-splice haproxy
"""

import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness  # noqa: E402
import pair  # noqa: E402


def transfer_mib(port):
    output = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c10", "-d6s", f"http://127.0.0.1:{port}/1m"],
                            capture_output=True, text=True).stdout
    match = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", output)
    return float(match.group(1)) * {"GB": 1024, "MB": 1, "KB": 1 / 1024}[match.group(2)]


def main():
    targets = ["direct"] + sys.argv[1:]
    work, upstream = pair.start_upstream("jester-ceiling-")
    results = {target: [] for target in targets}
    try:
        for _ in range(2):
            for target in targets:
                if target == "direct":
                    results[target].append(transfer_mib(harness.UPSTREAM_PORT))
                    continue
                harness.wait_for_free_port(harness.PROXY_PORT)
                command = pair.configuration(work, target, "side", harness.PROXY_PORT, False)
                server = harness.Server("side", command, "0", work / "side.log")
                try:
                    harness.wait_for_http(harness.PROXY_PORT)
                    results[target].append(transfer_mib(harness.PROXY_PORT))
                finally:
                    server.stop()
    finally:
        upstream.stop()
    ceiling = sum(results["direct"]) / len(results["direct"])
    for target, values in results.items():
        mean = sum(values) / len(values)
        print(f"{target}: {mean:,.0f} MiB/s, {mean / ceiling:.2f} of the ceiling")


if __name__ == "__main__":
    main()
