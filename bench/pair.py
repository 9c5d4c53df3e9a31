#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Paired comparison: two proxies on the same CPU at the same time, for a before/after ratio that steal cannot skew.

    bench/pair.py A B [--rounds N] [--path /small] [--close | --h2] [--duration S]
    bench/pair.py A B --idle 10000
    bench/pair.py A B --scenario ratelimit|ratelimit-flood|jwt-rs256|jwt-es256|jwt-hs256 [--bare-a]
    bench/pair.py A A --config-a '[metrics]\nenabled = false'     (one setting's cost, same binary)
    bench/pair.py nginx JESTER --cache --path /cacheable            (cache hits beside nginx's proxy_cache)
    bench/pair.py JESTER JESTER --policy pre_route                   (a header-only Wasm policy's cost, side B only)

A and B are each a Jester binary, "haproxy", "nginx" or a floor probe from bench/probes ("probe:nio",
"probe:epoll": bytes relayed to the upstream; "probe:epoll-splice": relayed without a copy; "probe:nio-respond",
"probe:epoll-respond": a fixed answer, no upstream; built by bench/probes/run). Both run at once, one worker each, pinned to CPU 0, each
driven by its own wrk on CPU 1 against the benchmark's upstream (bench/harness.py's configurations, on two ports).
Whatever the machine does during a round (steal, frequency, a neighbour's cache) it does to both, so the ratio of
their CPU time per request is steady to about ±1 % where alternating runs drift by ±15 %. This is the tool for
"run the benchmark before and after a hot-path change"; bench/harness.py remains the report against nginx and
HAProxy (requests/s and latency need a core to themselves, which this mode does not give).

--scenario adds a request filter to both sides, written as each proxy writes it (bench/filter_scenarios.py: a rate
limit per client address, or a JWT check, with the token on every request); --bare-a leaves it off side A while A
still gets the same requests, so B − A is the filter's own CPU per request.
"""

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import filter_scenarios  # noqa: E402
import harness  # noqa: E402


def configuration(work, kind, name, port, tls, scenario=None, extra="", nginx_gzip=None, cache=False, policy=None):
    """Command line of one side, with its configuration written to `work` (with `scenario`'s filter, if any; a
    Jester side gets `extra` appended: TOML tables such as `[metrics]` or `[tracing]`)."""
    listen = f"127.0.0.1:{harness.PROXY_PORT}"
    if kind.startswith("probe:"):
        if scenario:
            raise SystemExit("the floor probes run no filters: pair them without --scenario")
        flavour, _, mode = kind[len("probe:"):].partition("-")
        binary = str(harness.HERE / "probes" / ".build" / "release" / f"{flavour}-probe")
        if mode == "respond":
            return [binary, "respond", f"127.0.0.1:{port}"]
        return [binary, mode or "pass", f"127.0.0.1:{port}", f"127.0.0.1:{harness.UPSTREAM_PORT}"]
    if kind in ("haproxy", "nginx"):
        text = (harness.haproxy_config if kind == "haproxy" else harness.nginx_config)(work, 1, 0, tls)
        text = text.replace(listen, f"127.0.0.1:{port}").replace(f"{kind}.pid", f"{name}.pid")
        if scenario:
            text = scenario.apply(kind, text, work)
        if nginx_gzip is not None and kind == "nginx":
            text = text.replace("http {", "http {\n    gzip on; gzip_comp_level %d; gzip_types text/plain; "
                                "gzip_proxied any; gzip_min_length 1000;" % nginx_gzip, 1)
        if cache and kind == "nginx":
            # nginx's shared cache as its docs set it up: a keys zone, files under the work directory.
            text = text.replace("http {", f"http {{\n    proxy_cache_path {work}/{name}-cache levels=1:2 "
                                "keys_zone=bench:10m max_size=1g inactive=60m use_temp_path=off;", 1)
            text = text.replace("proxy_request_buffering off;", "proxy_request_buffering off; proxy_cache bench;")
        elif cache:
            raise SystemExit("--cache pairs Jester with nginx (HAProxy's cache is a small in-memory one)")
        path = work / f"{name}.conf"
        path.write_text(text)
        return ["haproxy", "-db", "-f", str(path)] if kind == "haproxy" else ["nginx", "-c", str(path)]
    text = (harness.jester_config(work, 1, 0, tls).replace(listen, f"127.0.0.1:{port}")
            .replace("jester.pid", f"{name}.pid").replace("jester.sock", f"{name}.sock"))
    if scenario:
        text = scenario.apply("jester", text, work)
    if cache:
        text = text.replace('name = "default"\npath_prefix = "/"\nupstream = "origin"\n',
                            'name = "default"\npath_prefix = "/"\nupstream = "origin"\ncache = true\n')
        text += f'\n[cache]\npath = "{work}/{name}-cache"\n'
    if policy:
        text = with_policy(text, work, policy)
    if extra:
        text += "\n" + extra.replace("\\n", "\n") + "\n"
    path = work / f"{name}.toml"
    path.write_text(text)
    return [kind, "--config", str(path)]


def with_policy(text, work, stage):
    """A Jester configuration with the benchmark's header-only policy (bench/policies/set_header.c, built here
    with the SDK) on every request at `stage`: on the listener for pre_route, on every route otherwise."""
    module = work / "set_header.wasm"
    if not module.exists():
        sdk = harness.HERE.parent / "SDK"
        clang = "/opt/swift/usr/bin/clang" if Path("/opt/swift/usr/bin/clang").exists() else "clang"
        subprocess.run([clang, "--target=wasm32", "-O2", "-ffreestanding", "-nostdlib", "-mbulk-memory",
                        "-I", str(sdk / "c"), "-Wl,--no-entry", "-Wl,--strip-debug", "-o", str(module),
                        str(harness.HERE / "policies" / "set_header.c"), str(sdk / "c" / "jester_policy.c")],
                       check=True)
        module.chmod(0o644)
    attachment = f'policies = [{{ policy = "bench", stage = "{stage}" }}]\n'
    if stage == "pre_route":
        text = text.replace("backlog = 4096\n", "backlog = 4096\n" + attachment, 1)
    else:
        text = text.replace('upstream = "origin"\n', 'upstream = "origin"\n' + attachment)
    return text + f'\n[policies.bench]\nmodule = "{module}"\n'


def cpu_seconds(server):
    """(user, system) seconds of a side's processes."""
    user = system = 0
    for pid in server.pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except (OSError, IndexError):
            pass
    return user / harness.CLOCK_TICKS, system / harness.CLOCK_TICKS


def start_upstream(prefix):
    """Raises the fd limit (HAProxy sizes maxconn by it), writes the benchmark's upstream into a new work directory
    and starts it on CPU 1; returns the directory and the running upstream."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    harness.MAX_CONNECTIONS = min(harness.MAX_CONNECTIONS, (hard - 200) // 2)
    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(work, 0o755)
    (work / "upstream.conf").write_text(harness.upstream_config(work))
    os.chmod(work / "www", 0o755)
    harness.wait_for_free_port(harness.UPSTREAM_PORT)
    upstream = harness.Server("upstream", ["nginx", "-c", str(work / "upstream.conf")], "1", work / "upstream.log")
    try:
        harness.wait_for_http(harness.UPSTREAM_PORT)
    except Exception:
        upstream.stop()
        raise
    return work, upstream


def refusals(output, requests, answered):
    """", N % not 2xx" (and wrk's socket errors: a proxy closing after a refusal shows there) when there were any,
    so a scenario shows whether its requests passed or were refused."""
    if answered:
        match = re.search(answered, output)
        other = requests - int(match.group(1)) if match else 0
    else:
        match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        other = int(match.group(1)) if match else 0
    text = f", {100 * other / max(requests, 1):.1f} % not 2xx" if other else ""
    errors = re.search(r"Socket errors: (.*)", output)
    return text + (f", socket errors: {errors.group(1)}" if errors else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--path", default="/small")
    parser.add_argument("--close", action="store_true", help="a new connection per request")
    parser.add_argument("--h2", action="store_true",
                        help="HTTP/2 over TLS: h2load, 10 connections × 10 streams (the h2-streams scenario)")
    parser.add_argument("--idle", type=int, metavar="N",
                        help="no load: hold N idle keep-alive connections (one request each) on each side in turn "
                             "and report the RSS each grew by, per connection")
    parser.add_argument("--scenario", choices=filter_scenarios.SCENARIOS,
                        help="a request filter on both sides (bench/filter_scenarios.py)")
    parser.add_argument("--config-a", default="", metavar="TOML",
                        help="appended to side A's Jester configuration (\\n for newlines), e.g. "
                             "'[metrics]\\nenabled = false': the same binary on both sides, one setting apart")
    parser.add_argument("--config-b", default="", metavar="TOML", help="the same for side B")
    parser.add_argument("--header", action="append", default=[], metavar="FIELD",
                        help="a request field every request carries on both sides (e.g. 'Accept-Encoding: gzip')")
    parser.add_argument("--nginx-gzip", type=int, metavar="LEVEL",
                        help="nginx sides compress text/plain with gzip at LEVEL (pair with a Jester side given "
                             "--config-b 'compression = { algorithms = [\"gzip\"], level = LEVEL, ... }')")
    parser.add_argument("--cache", action="store_true",
                        help="both sides cache (nginx's proxy_cache, Jester's cache = true) and every request is a hit "
                             "after the first: use --path /cacheable or /cacheable/64k")
    parser.add_argument("--policy", choices=["pre_route", "pre_upstream", "post_response"],
                        help="side B (a Jester) runs a header-only Wasm policy at this stage on every request "
                             "(bench/policies/set_header.c): B − A is a policy call's cost")
    parser.add_argument("--bare-a", action="store_true",
                        help="with --scenario: side A without the filter (same requests), so B − A is its cost")
    args = parser.parse_args()
    if args.bare_a and not args.scenario:
        parser.error("--bare-a needs --scenario")

    work, upstream = start_upstream("jester-pair-")
    scenario = filter_scenarios.SCENARIOS[args.scenario] if args.scenario else None
    headers = list(args.header)
    if scenario:
        scenario.prepare(work)
        headers = headers + scenario.headers
        print(f"scenario {args.scenario}: {scenario.about}" + ("; A without the filter" if args.bare_a else ""),
              flush=True)
    sides = []
    try:
        for name, kind, port in (("a", args.a, harness.PROXY_PORT), ("b", args.b, harness.PROXY_PORT + 10)):
            harness.wait_for_free_port(port)
            filtered = scenario if not (name == "a" and args.bare_a) else None
            command = configuration(work, kind, name, port, args.h2, filtered,
                                    args.config_a if name == "a" else args.config_b, args.nginx_gzip, args.cache,
                                    args.policy if name == "b" else None)
            sides.append((harness.Server(name, command, "0", work / f"{name}.log"), port))
            try:
                harness.wait_for_http(port, tls=args.h2, headers=headers)
            except RuntimeError:
                raise SystemExit(f"{kind} did not start: " + (work / f"{name}.log").read_text()[-2000:])
        if args.idle:
            for (server, port), name in zip(sides, ("A", "B")):
                before = harness.memory_kib(server.pids(), "VmRSS")
                held = harness.hold_idle_connections(port, args.idle)
                time.sleep(1.0)
                grown = harness.memory_kib(server.pids(), "VmRSS") - before
                for connection in held:
                    connection.close()
                print(f"{name}: {grown * 1024 / args.idle:,.0f} B per idle connection "
                      f"(RSS +{grown / 1024:.1f} MiB over {args.idle:,})", flush=True)
            return
        ratios, differences = [], []
        fields = [argument for header in headers for argument in ("-H", header)]
        for round_number in range(args.rounds):
            before = [cpu_seconds(server) for server, _ in sides]
            if args.h2:
                commands = [["taskset", "-c", "1", "h2load", "-D", str(args.duration), "-c10", "-m10", "-t1", *fields,
                             f"https://127.0.0.1:{port}{args.path}"] for _, port in sides]
                # h2load counts a 4xx as done but not as succeeded: a filter scenario counts every answer.
                pattern = (r"requests: \d+ total, \d+ started, (\d+) done" if scenario
                           else r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded")
                answered = r"status codes: (\d+) 2xx"
            else:
                commands = [["taskset", "-c", "1", "wrk", "-t1", "-c50", f"-d{args.duration}s",
                             *(["-H", "Connection: close"] if args.close else []), *fields,
                             f"http://127.0.0.1:{port}{args.path}"] for _, port in sides]
                pattern = r"(\d+) requests in"
                answered = None
            load = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for command in commands]
            outputs = [process.communicate()[0] for process in load]
            after = [cpu_seconds(server) for server, _ in sides]
            requests = [int(re.search(pattern, output).group(1)) for output in outputs]
            user = [(after[i][0] - before[i][0]) / requests[i] * 1e6 for i in range(2)]
            system = [(after[i][1] - before[i][1]) / requests[i] * 1e6 for i in range(2)]
            micros = [user[i] + system[i] for i in range(2)]
            ratios.append(micros[1] / micros[0])
            differences.append(micros[1] - micros[0])
            print(f"round {round_number + 1}: A {micros[0]:.1f} µs/req (user {user[0]:.1f}, system {system[0]:.1f}; "
                  f"{requests[0]:,} requests{refusals(outputs[0], requests[0], answered)}), B {micros[1]:.1f} µs/req "
                  f"(user {user[1]:.1f}, system {system[1]:.1f}; {requests[1]:,}"
                  f"{refusals(outputs[1], requests[1], answered)}), B/A {ratios[-1]:.3f}, B − A "
                  f"{differences[-1]:+.1f} µs", flush=True)
        print(f"CPU per request, B/A: median {statistics.median(ratios):.3f} over {args.rounds} rounds; B − A: "
              f"median {statistics.median(differences):+.1f} µs")
    finally:
        for server, _ in sides:
            server.stop()
        upstream.stop()


if __name__ == "__main__":
    main()
