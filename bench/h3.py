#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""HTTP/3 beside HTTP/2 on the same Jester, same machine, same run: requests/s and Jester's CPU per request.

    bench/h3.py JESTER [--rounds N] [--requests N] [--clients N] [--path /small]

One worker pinned to CPU 0 serves a TLS listener with http3 = true in front of the benchmark's upstream (nginx,
bench/harness.py's); the clients run on CPU 1. HTTP/2: h2load, CLIENTS connections of up to 100 streams each.
HTTP/3: CLIENTS processes of Debian's ngtcp2 client (gtlsclient, C on the same ngtcp2 and nghttp3 as the server:
the fastest HTTP/3 client on Debian 12, whose curl and h2load have no HTTP/3), each one connection that sends its
share of the requests as streams become available. Rounds alternate the protocols and the report gives medians
and the ratio HTTP/3 ÷ HTTP/2 of CPU per request. Debian 12 ships no nginx or HAProxy with HTTP/3, so there is no
peer to run beside it.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402


def jester_config(work):
    return harness.jester_config(work, 1, 0, tls=True).replace(
        '[listeners.tls]', 'http3 = true\n[listeners.tls]', 1)


def jester_cpu(server):
    return harness.cpu_seconds(server.pids())


def http2_round(args):
    command = ["taskset", "-c", "1", "h2load", "-n", str(args.requests), "-c", str(args.clients), "-m", "100",
               "-t", "1", f"https://127.0.0.1:{harness.PROXY_PORT}{args.path}"]
    result = harness.run_h2load(command)
    if result["errors"] or result["non2xx"] or result["requests"] != args.requests:
        raise RuntimeError(f"h2load: {result}")
    return result["requests"]


def http3_round(args):
    share = args.requests // args.clients
    url = f"https://localhost:{harness.PROXY_PORT}{args.path}"
    clients = [subprocess.Popen(
        ["taskset", "-c", "1", "gtlsclient", "-q", "-n", str(share), "--exit-on-all-streams-close",
         "--max-data=1G", "127.0.0.1", str(harness.PROXY_PORT), url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(args.clients)]
    for client in clients:
        _, error = client.communicate(timeout=600)
        if client.returncode != 0:
            raise RuntimeError(f"gtlsclient failed: {error.decode()[-500:]}")
    return share * args.clients


def measure(server, run, args):
    before = jester_cpu(server)
    start = time.monotonic()
    requests = run(args)
    elapsed = time.monotonic() - start
    cpu = jester_cpu(server) - before
    return {"requests_per_second": requests / elapsed, "cpu_us_per_request": cpu / requests * 1e6}


def answered(args, work, protocol):
    """Requests the worker answered with a 2xx over `protocol` (from the metrics, which count as they happen)."""
    import re
    text = subprocess.run([str(Path(args.jester).with_name("jesterctl")), "metrics", "--socket",
                           str(work / "jester.sock")], capture_output=True, text=True, check=True).stdout
    return sum(float(value) for labels, value in re.findall(r'^jester_http_requests_total\{(.*)\} (\S+)$', text, re.M)
               if f'protocol="{protocol}"' in labels and 'status_class="2xx"' in labels)


def main(args):
    with tempfile.TemporaryDirectory(prefix="jester-h3-bench-") as directory:
        work = Path(directory)
        (work / "upstream.conf").write_text(harness.upstream_config(work))
        upstream = harness.Server("upstream", ["nginx", "-c", str(work / "upstream.conf")], "1", work / "up.log")
        (work / "jester.conf").write_text(jester_config(work))
        harness.wait_for_free_port(harness.PROXY_PORT)
        server = harness.Server("jester", [args.jester, "--config", str(work / "jester.conf")], "0",
                                work / "jester.log")
        try:
            harness.wait_for_http(harness.PROXY_PORT, tls=True)
            # Warm both paths (TLS, the upstream pool, the allocator).
            warm = argparse.Namespace(**{**vars(args), "requests": 2000})
            http2_round(warm)
            http3_round(warm)
            results = {"http2": [], "http3": []}
            for _ in range(args.rounds):
                results["http2"].append(measure(server, http2_round, args))
                results["http3"].append(measure(server, http3_round, args))
            # Every HTTP/3 request reached Jester and was answered (gtlsclient -q says nothing either way).
            expected = (2000 // args.clients + args.rounds * (args.requests // args.clients)) * args.clients
            if answered(args, work, "http3") != expected:
                raise SystemExit(f"HTTP/3: {answered(args, work, 'http3')} answered, {expected} sent")
        finally:
            server.stop()
            upstream.stop()
    report = {name: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
              for name, runs in results.items()}
    print(f"{args.rounds} rounds of {args.requests} requests ({args.path}), {args.clients} connections each, "
          "one worker on CPU 0, clients on CPU 1")
    for name in ("http2", "http3"):
        r = report[name]
        print(f"  {name}: {r['requests_per_second']:,.0f} requests/s, {r['cpu_us_per_request']:.1f} µs CPU per request")
    ratio = report["http3"]["cpu_us_per_request"] / report["http2"]["cpu_us_per_request"]
    print(f"  HTTP/3 ÷ HTTP/2 CPU per request: {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jester")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--path", default="/small")
    args = parser.parse_args()
    main(args)
