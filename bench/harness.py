#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Runs Jester, nginx and HAProxy side by side against one upstream and writes the comparison.

Every proxy gets the same worker count and the same CPU set (taskset); the load generator and the upstream run on
the other CPUs. For each scenario the proxies run in alternating rounds (A B C A B C) so that drift on a shared
machine hits them all alike. Per run it records wrk's requests/s and latency percentiles, the CPU time the proxy's
processes spent (from /proc, which is steadier than requests/s when the machine has steal) and their peak RSS.
The load generator straight at the upstream is reported as the ceiling.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# HAProxy reserves two fds per connection for maxconn, so its maxconn (and the idle scenario) follow the fd limit.
MAX_CONNECTIONS = 10_050
UPSTREAM_PORT = 18080
PROXY_PORT = 18081
SMALL_BODY = "Hello from the benchmark upstream, a small fixed body of about one hundred bytes long.....\n"

# Scenario name → how to drive it. `path` is requested through the proxy; `workers` is given to every proxy.
SCENARIOS = {
    "keepalive-small": dict(path="/small", workers=1, connections=50,
                            about="HTTP/1.1 keep-alive, ~100 B response, 1 worker"),
    "keepalive-small-2w": dict(path="/small", workers=2, connections=100,
                               about="HTTP/1.1 keep-alive, ~100 B response, 2 workers (shares CPUs with the load)"),
    "new-connection": dict(path="/small", workers=1, connections=50, close=True,
                           about="a new TCP connection per request (Connection: close), 1 worker"),
    "body-64k": dict(path="/64k", workers=1, connections=20, about="64 KiB responses, keep-alive, 1 worker"),
    "body-1m": dict(path="/1m", workers=1, connections=10, about="1 MiB responses, keep-alive, 1 worker"),
    "upload-1m": dict(path="/upload", workers=1, connections=10, upload=1 << 20,
                      about="1 MiB request bodies (POST), keep-alive, 1 worker"),
    "routes-1000": dict(path="/r999/x", workers=1, connections=50, routes=1000,
                        about="1,000 path-prefix routes, request matching the last one, 1 worker"),
    "idle-10k": dict(path="/small", workers=1, idle=10_000,
                     about="10,000 idle keep-alive connections: memory per connection"),
    "https-keepalive": dict(path="/small", workers=1, connections=50, tls=True,
                            about="HTTPS keep-alive (TLS 1.3, ECDSA P-256), ~100 B response, 1 worker"),
    "h2-streams": dict(path="/small", workers=1, connections=10, streams=10, tls=True, h2=True,
                       about="HTTP/2 over TLS (h2load), 10 connections × 10 concurrent streams, ~100 B response, 1 worker"),
    "https-handshakes": dict(path="/small", workers=1, connections=20, tls=True, close=True,
                             about="a new TLS 1.3 handshake per request (ECDHE + ECDSA P-256, no resumption), 1 worker"),
}
# TLS scenarios: every proxy serves the same certificate (the test fixture, ECDSA P-256) with the same ciphers.
FIXTURES = Path(__file__).resolve().parents[1] / "Tests" / "Fixtures" / "tls"
TLS_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
               "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
QUICK = ["keepalive-small", "body-64k"]


# ---------------------------------------------------------------------------------------------------------------
# Processes and /proc

def descendants(root_pid):
    """The pid and every descendant of it, from /proc (proxies fork workers the harness does not know about)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError):
            continue
    found, queue = [], [root_pid]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def cpu_seconds(pids):
    """utime + stime of the given processes (a process that exited since is simply missing)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / CLOCK_TICKS


def memory_kib(pids, key):
    """Sum of one /proc/<pid>/status field (VmRSS, VmHWM) over the processes, in KiB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def steal_ticks():
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    values = [int(v) for v in fields]
    return values[7], sum(values)


def wait_for_http(port, path="/small", timeout=20.0, tls=False, headers=()):
    extra = "".join(f"{header}\r\n" for header in headers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as plain:
                s = plain
                if tls:
                    import ssl
                    context = ssl.create_default_context(cafile=str(FIXTURES / "ca.pem"))
                    s = context.wrap_socket(plain, server_hostname="localhost")
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{extra}Connection: close\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered 200 on 127.0.0.1:{port}{path}")


def wait_for_free_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return
            except OSError:
                time.sleep(0.05)
    raise RuntimeError(f"port {port} stayed busy")


class Server:
    """A process tree started under taskset and stopped with its whole process group."""

    def __init__(self, name, command, cpus, log_path):
        self.name = name
        self.log = open(log_path, "w")
        self.command = ["taskset", "-c", cpus, *command]
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def pids(self):
        return descendants(self.process.pid)

    def stop(self):
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        self.log.close()


# ---------------------------------------------------------------------------------------------------------------
# Configurations. Equal footing: same workers, access logs off, keep-alive to the upstream, X-Forwarded-For added,
# request bodies streamed (nginx's proxy_request_buffering off), responses buffered as each proxy does by default.

def upstream_config(work):
    files = work / "www"
    files.mkdir(exist_ok=True)
    (files / "64k").write_bytes(b"a" * 65536)
    (files / "1m").write_bytes(b"b" * (1 << 20))
    (files / "text-256k").write_bytes(prose(256 * 1024))
    return f"""
worker_processes 1;
daemon off;
pid {work}/upstream.pid;
error_log {work}/upstream-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{UPSTREAM_PORT} reuseport backlog=4096;
        root {files};
        location = /small {{ default_type text/plain; return 200 "{SMALL_BODY.strip()}\\n"; }}
        location = /upload {{ client_max_body_size 4m; return 200 "ok\\n"; }}
        location ^~ /r {{ default_type text/plain; return 200 "{SMALL_BODY.strip()}\\n"; }}
        # Cacheable answers (an hour's max-age) for the HTTP cache pairs (bench/pair.py --cache).
        location = /cacheable {{ default_type text/plain; add_header Cache-Control "max-age=3600";
                                 return 200 "{SMALL_BODY.strip()}\\n"; }}
        location ^~ /cacheable/ {{ alias {files}/; add_header Cache-Control "max-age=3600"; sendfile on; }}
        location / {{ sendfile on; }}
    }}
}}
"""


def prose(size):
    """`size` bytes of text that compresses like a web page (words in varied sentences, about 3:1 with gzip), the
    same every run, for the compression scenarios."""
    import random
    words = ("the a proxy request response header body upstream client server worker connection route filter "
             "cache compression stream protocol latency throughput memory buffer socket kernel event loop thread "
             "timeout retry balance target health metric trace span log error status reload upgrade config").split()
    generator = random.Random(21)
    out = bytearray()
    while len(out) < size:
        sentence = " ".join(generator.choice(words) for _ in range(generator.randint(5, 16)))
        out += (sentence.capitalize() + ". " + str(generator.randint(0, 99999)) + ("\n" if generator.random() < 0.2 else " ")).encode()
    return bytes(out[:size])


def route_paths(count):
    return [f"/r{i}/" for i in range(count)]


def jester_config(work, workers, routes, tls=False):
    lines = [f"""
[server]
workers = {workers}
pid_file = "{work}/jester.pid"
control_socket = "{work}/jester.sock"

[log]
level = "warning"
access_log = false

[http]
max_body_size = "4MiB"

[[listeners]]
name = "bench"
address = "127.0.0.1:{PROXY_PORT}"
backlog = 4096
{jester_tls() if tls else ""}
[upstreams.origin]
targets = ["127.0.0.1:{UPSTREAM_PORT}"]
max_idle_connections = 256  # as nginx's "keepalive 256"
"""]
    for index, path in enumerate(route_paths(routes)):
        lines.append(f'[[routes]]\nname = "r{index}"\npath_prefix = "{path}"\nupstream = "origin"\n')
    lines.append('[[routes]]\nname = "default"\npath_prefix = "/"\nupstream = "origin"\n')
    return "\n".join(lines)


def jester_tls():
    return f"""[listeners.tls]
ciphers = "{TLS_CIPHERS}"
[[listeners.tls.certificates]]
cert = "{FIXTURES / 'alpha.pem'}"
key = "{FIXTURES / 'alpha.key'}"
"""


def nginx_config(work, workers, routes, tls=False):
    proxy = ("proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; "
             "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_request_buffering off;")
    locations = "\n".join(f"        location {path} {{ {proxy} }}" for path in route_paths(routes))
    return f"""
worker_processes {workers};
worker_rlimit_nofile 65536;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    keepalive_requests 10000;
    keepalive_timeout 75s;
    client_max_body_size 4m;
    upstream origin {{ server 127.0.0.1:{UPSTREAM_PORT}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{PROXY_PORT} reuseport backlog=4096{" ssl http2" if tls else ""};
{nginx_tls() if tls else ""}
{locations}
        location / {{ {proxy} }}
    }}
}}
"""


def nginx_tls():
    return (f"        ssl_certificate {FIXTURES / 'alpha.pem'}; ssl_certificate_key {FIXTURES / 'alpha.key'};\n"
            f"        ssl_protocols TLSv1.2 TLSv1.3; ssl_ciphers {TLS_CIPHERS}; ssl_prefer_server_ciphers on;\n"
            "        ssl_session_tickets on; ssl_session_cache off;")


def haproxy_config(work, workers, routes, tls=False):
    binding = ""
    if tls:
        # HAProxy takes the certificate and key in one file.
        combined = work / "haproxy-cert.pem"
        combined.write_bytes((FIXTURES / "alpha.pem").read_bytes() + (FIXTURES / "alpha.key").read_bytes())
        binding = f" ssl crt {combined} alpn h2,http/1.1 ssl-min-ver TLSv1.2 ciphers {TLS_CIPHERS}"
    routing = "    default_backend origin\n"
    if routes:
        # A map is how HAProxy users express many routes: one lookup instead of a thousand ACLs.
        (work / "routes.map").write_text("".join(f"{path} origin\n" for path in route_paths(routes)))
        routing = f"    use_backend %[path,map_beg({work}/routes.map,origin)]\n"
    return f"""
global
    nbthread {workers}
    maxconn {MAX_CONNECTIONS}
    pidfile {work}/haproxy.pid
defaults
    mode http
    option http-keep-alive
    option forwardfor
    timeout connect 5s
    timeout client 75s
    timeout server 60s
    timeout http-keep-alive 75s
frontend bench
    bind 127.0.0.1:{PROXY_PORT} backlog 4096{binding}
{routing}backend origin
    http-reuse always
    server s1 127.0.0.1:{UPSTREAM_PORT} maxconn 1000
"""


def start_proxy(name, jester_bin, work, workers, routes, cpus, tls=False):
    if name == "direct":
        return None
    path = work / f"{name}.conf"
    if name == "jester":
        path.write_text(jester_config(work, workers, routes, tls))
        command = [jester_bin, "--config", str(path)]
    elif name == "nginx":
        path.write_text(nginx_config(work, workers, routes, tls))
        command = ["nginx", "-c", str(path)]
    elif name == "haproxy":
        path.write_text(haproxy_config(work, workers, routes, tls))
        command = ["haproxy", "-db", "-f", str(path)]
    else:
        raise ValueError(name)
    wait_for_free_port(PROXY_PORT)
    server = Server(name, command, cpus, work / f"{name}.log")
    try:
        wait_for_http(PROXY_PORT, tls=tls)
    except RuntimeError:
        server.stop()
        raise RuntimeError(f"{name} did not start: " + (work / f"{name}.log").read_text()[-2000:])
    return server


# ---------------------------------------------------------------------------------------------------------------
# Load

WRK_REPORT = """
done = function(summary, latency, requests)
   io.write(string.format("JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"bytes\\": %d, \\"errors\\": %d, "
      .. "\\"non2xx\\": %d, \\"p50\\": %d, \\"p99\\": %d, \\"p999\\": %d}\\n",
      summary.requests, summary.duration, summary.bytes,
      summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
      summary.errors.status, latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"""


def wrk_script(work, upload):
    script = WRK_REPORT
    if upload:
        script = (f'wrk.method = "POST"\nwrk.body = string.rep("u", {upload})\n'
                  'wrk.headers["Content-Type"] = "application/octet-stream"\n') + script
    path = work / f"wrk-{upload}.lua"
    path.write_text(script)
    return path


def wrk_command(scenario, port, duration, work, cpus):
    command = ["taskset", "-c", cpus, "wrk", "-t1", f"-c{scenario['connections']}", f"-d{duration}s",
               "--timeout", "5s", "-s", str(wrk_script(work, scenario.get("upload", 0)))]
    if scenario.get("close"):
        command += ["-H", "Connection: close"]
    scheme = "https" if scenario.get("tls") else "http"
    return command + [f"{scheme}://127.0.0.1:{port}{scenario['path']}"]


def h2load_command(scenario, port, duration, cpus):
    return ["taskset", "-c", cpus, "h2load", "-D", str(duration), "-c", str(scenario["connections"]),
            "-m", str(scenario["streams"]), "-t", "1", f"https://127.0.0.1:{port}{scenario['path']}"]


def run_h2load(command):
    """h2load's summary in wrk's report shape (it prints no latency percentiles: those stay empty)."""
    import re
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    text = result.stdout
    finished = re.search(r"finished in ([\d.]+)(m?s)", text)
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
    traffic = re.search(r"traffic: [^(]*\((\d+)\) total", text)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not (finished and done and traffic and codes):
        raise RuntimeError("h2load printed no summary: " + text + result.stderr)
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    return {"requests": int(done.group(1)), "duration_us": int(seconds * 1e6), "bytes": int(traffic.group(1)),
            "errors": int(done.group(2)) + int(done.group(3)),
            "non2xx": sum(int(codes.group(i)) for i in (2, 3, 4)), "p50": None, "p99": None, "p999": None}


def run_wrk(command):
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    for line in result.stdout.splitlines():
        if line.startswith("JSON "):
            return json.loads(line[5:])
    raise RuntimeError("wrk printed no report: " + result.stdout + result.stderr)


def hold_idle_connections(port, count):
    """Opens `count` connections, sends one request on each and keeps them open; returns the sockets."""
    request = b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n"
    held = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received or not received.endswith(SMALL_BODY.encode()):
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("proxy closed an idle connection early")
            received += chunk
        held.append(s)
    return held


def measure(name, scenario, args, work):
    """One run of one scenario against one target; returns its figures."""
    server = start_proxy(name, args.jester, work, scenario["workers"], scenario.get("routes", 0),
                         args.proxy_cpus if scenario["workers"] == 1 else args.all_cpus, scenario.get("tls", False))
    port = UPSTREAM_PORT if name == "direct" else PROXY_PORT
    try:
        pids = server.pids() if server else []
        if "idle" in scenario:
            if not server:
                return None
            time.sleep(0.5)
            before = memory_kib(server.pids(), "VmRSS")
            held = hold_idle_connections(port, scenario["idle"])
            time.sleep(1.0)
            after = memory_kib(server.pids(), "VmRSS")
            for s in held:
                s.close()
            return dict(bytes_per_connection=(after - before) * 1024 / scenario["idle"],
                        rss_mib=after / 1024, connections=scenario["idle"])
        load_cpus = args.load_cpus if scenario["workers"] == 1 else args.all_cpus
        if scenario.get("h2"):
            make_command, run_load = (lambda d: h2load_command(scenario, port, d, load_cpus)), run_h2load
        else:
            make_command, run_load = (lambda d: wrk_command(scenario, port, d, work, load_cpus)), run_wrk
        run_load(make_command(1))
        pids = server.pids() if server else []
        cpu_before = cpu_seconds(pids)
        command = make_command(args.duration)
        report = run_load(command)
        cpu_after = cpu_seconds(pids)
        seconds = report["duration_us"] / 1e6
        requests = max(report["requests"], 1)
        return dict(
            rps=report["requests"] / seconds,
            mib_per_s=report["bytes"] / seconds / (1 << 20),
            p50_us=report["p50"], p99_us=report["p99"], p999_us=report["p999"],
            errors=report["errors"], non2xx=report["non2xx"],
            cpu_us_per_request=(cpu_after - cpu_before) * 1e6 / requests if server else None,
            peak_rss_mib=memory_kib(pids, "VmHWM") / 1024 if server else None,
            command=" ".join(command[3:]))
    finally:
        if server:
            server.stop()


# ---------------------------------------------------------------------------------------------------------------
# Report

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(runs):
    keys = set().union(*(r.keys() for r in runs)) - {"command"}
    summary = {k: median([r.get(k) for r in runs]) for k in keys}
    summary["command"] = runs[0].get("command")
    return summary


def fmt(value, digits=0):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def machine_description():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} × {model}, Linux {platform.release()}"


def version_of(command):
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def current_commit():
    return subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                          capture_output=True, text=True).stdout.strip()


def write_report(results, args, steal_percent, path):
    commit = args.commit
    lines = [
        "# Jester benchmarks",
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Commit: `{commit}`",
        f"- Machine: {machine_description()}; CPU steal during the run: {steal_percent:.1f} %",
        f"- Versions: {version_of([args.jester, 'version'])}; {version_of(['nginx', '-v'])}; "
        f"{version_of(['haproxy', '-v'])}; {version_of(['wrk', '-v'])}",
        f"- Command: `bench/run {' '.join(args.argv)}` — rounds: {args.rounds}, {args.duration} s per run, "
        f"proxies pinned to CPU {args.proxy_cpus} (two-worker runs: {args.all_cpus}), wrk and the upstream "
        f"(nginx, 1 worker) to CPU {args.load_cpus}; figures are medians over the rounds, which alternate the "
        "proxies (A B C A B C).",
        "- CPU µs/req is user + system time of all the proxy's processes over the run divided by requests "
        "served: the figure to judge on when the machine has steal. Ratios are Jester ÷ other: below 1 is better "
        "for CPU, above 1 is better for requests/s.",
        "",
    ]
    for name, runs in results.items():
        scenario = SCENARIOS[name]
        lines += [f"## {name}: {scenario['about']}", ""]
        if "idle" in scenario:
            lines += [f"Connections held: {scenario['idle']:,} (bounded by this machine's open-file limit).", "",
                      "| proxy | bytes per idle connection | RSS with all open (MiB) |", "|---|---:|---:|"]
            for proxy, summary in runs.items():
                if summary:
                    lines.append(f"| {proxy} | {fmt(summary['bytes_per_connection'])} | "
                                 f"{fmt(summary['rss_mib'], 1)} |")
            j, h, n = (runs.get(p) or {} for p in ("jester", "haproxy", "nginx"))
            lines += ["", f"Memory per idle connection, Jester/HAProxy: "
                          f"{ratio(j.get('bytes_per_connection'), h.get('bytes_per_connection'))}, "
                          f"Jester/nginx: {ratio(j.get('bytes_per_connection'), n.get('bytes_per_connection'))}",
                      ""]
            continue
        lines += ["| proxy | req/s | MiB/s | p50 µs | p99 µs | p99.9 µs | CPU µs/req | peak RSS MiB | errors |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for proxy, s in runs.items():
            lines.append(f"| {proxy} | {fmt(s['rps'])} | {fmt(s['mib_per_s'], 1)} | {fmt(s['p50_us'])} | "
                         f"{fmt(s['p99_us'])} | {fmt(s['p999_us'])} | {fmt(s['cpu_us_per_request'], 1)} | "
                         f"{fmt(s['peak_rss_mib'], 1)} | {fmt((s['errors'] or 0) + (s['non2xx'] or 0))} |")
        j = runs.get("jester")
        if j:
            lines.append("")
            for other in ("haproxy", "nginx"):
                o = runs.get(other)
                if o:
                    lines.append(f"- Jester/{other}: CPU per request {ratio(j['cpu_us_per_request'], o['cpu_us_per_request'])}, "
                                 f"requests/s {ratio(j['rps'], o['rps'])}, p99 {ratio(j['p99_us'], o['p99_us'])}")
            if runs.get("direct"):
                lines.append(f"- Jester/direct (the ceiling): bytes/s {ratio(j['mib_per_s'], runs['direct']['mib_per_s'])}")
        shown = runs.get("jester") or next(iter(runs.values()))
        lines += ["", f"Load (through the proxy): `{shown['command']}`", ""]
    path.write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jester", required=True)
    parser.add_argument("--quick", action="store_true", help="two scenarios, one round of 5 s")
    parser.add_argument("--only", help="comma-separated scenarios: " + ", ".join(SCENARIOS))
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--duration", type=int)
    parser.add_argument("--proxies", default="jester,haproxy,nginx")
    parser.add_argument("--proxy-cpus", default="0")
    parser.add_argument("--load-cpus", default=None)
    parser.add_argument("--output", default=str(HERE / "BENCHMARKS.md"))
    args = parser.parse_args()
    args.argv = [a for a in sys.argv[1:] if not a.startswith("--jester") and a != args.jester]
    args.commit = current_commit()  # before this run rewrites bench/BENCHMARKS.md and results.json
    cpus = os.cpu_count() or 1
    args.all_cpus = f"0-{cpus - 1}"
    args.load_cpus = args.load_cpus or ("1" if cpus == 2 else f"1-{cpus - 1}" if cpus > 2 else "0")
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (5 if args.quick else 10)
    names = args.only.split(",") if args.only else (QUICK if args.quick else list(SCENARIOS))
    for name in names:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}")
    proxies = args.proxies.split(",")

    # Raise the open-file limit as far as this machine allows (containers often cap the hard limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    global MAX_CONNECTIONS
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    MAX_CONNECTIONS = min(MAX_CONNECTIONS, (limit - 200) // 2)
    SCENARIOS["idle-10k"]["idle"] = min(SCENARIOS["idle-10k"]["idle"], MAX_CONNECTIONS - 50)
    work = Path(tempfile.mkdtemp(prefix="jester-bench-"))
    os.chmod(work, 0o755)
    (work / "upstream.conf").write_text(upstream_config(work))
    os.chmod(work / "www", 0o755)
    wait_for_free_port(UPSTREAM_PORT)
    upstream = Server("upstream", ["nginx", "-c", str(work / "upstream.conf")], args.load_cpus,
                      work / "upstream.log")
    steal_start = steal_ticks()
    results = {}
    try:
        wait_for_http(UPSTREAM_PORT)
        for name in names:
            scenario = SCENARIOS[name]
            # The direct run is the plain-HTTP ceiling: there is none for idle memory or for TLS.
            targets = proxies if "idle" in scenario or scenario.get("tls") else ["direct", *proxies]
            runs = {target: [] for target in targets}
            for round_number in range(args.rounds):
                for target in targets:
                    figures = measure(target, scenario, args, work)
                    if figures:
                        runs[target].append(figures)
                    shown = {k: round(v, 1) for k, v in (figures or {}).items() if isinstance(v, float)}
                    print(f"{name} round {round_number + 1} {target}: {shown}", flush=True)
            results[name] = {target: summarise(r) if r else None for target, r in runs.items()}
    finally:
        upstream.stop()
    steal_end = steal_ticks()
    steal = 100.0 * (steal_end[0] - steal_start[0]) / max(steal_end[1] - steal_start[1], 1)
    # The raw figures go next to the report, so a run with --output elsewhere leaves bench/ untouched.
    Path(args.output).with_name("results.json").write_text(json.dumps(results, indent=2))
    write_report(results, args, steal, Path(args.output))
    print(Path(args.output).read_text())
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
