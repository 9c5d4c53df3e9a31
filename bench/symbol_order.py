#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes Packaging/symbol-order.txt: the functions Jester runs to start and idle, in the order it first runs them,
for the release link to place together (lld's --symbol-ordering-file; Packaging/swift-release-flags).

    bench/symbol_order.py [--out Packaging/symbol-order.txt] [--fresh]
    bench/symbol_order.py JESTER_BINARY LINK_MAP [...]

Without arguments it links the release build as the package does (Packaging/swift-release-flags,
--static-swift-stdlib, .build/deb-scratch) with a link map; or give it such a build and the map its link wrote
(`-Xlinker -Map=FILE -Xlinker --no-demangle`): the order names sections, the unit the linker moves, and the map
says which function lies where. The script runs it with bench/support/text_pages.c preloaded on a configuration
like the shipped one (a plain and a TLS listener, a fixed answer, a proxied route to a local upstream, a redirect),
sends each listener a few requests over HTTP/1.1 and HTTP/2, lets it idle and stops it; the sections (functions,
with Packaging/swift-release-flags' -function-sections) each process entered are the order: the workers' first, in
the order they first ran, then the master's.

Why: the kernel maps code in 64 KiB fault-around windows, so start-up code spread over the binary's 20 MiB of text
cost an idle worker about 11 MiB of resident code, shared among the processes but counted in each one's PSS
(bench/PERFORMANCE.md, Footprint). Placed together, that code fits in a few MiB.

The recorder misses a function only ever called from the pages it already has open (text_pages.c says why);
run the script a second time on a build linked with the first order, which moves such a function away from its
caller, and it is found (names the existing order lists stay while the binary has them; --fresh forgets them). Names that no longer exist after a change are skipped by the linker and new functions
land where they would anyway, so a stale order costs memory, never correctness: regenerate after large changes.
"""

import argparse
import bisect
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import harness  # noqa: E402  (the TLS fixtures and the readiness probe)
PAGE = 4096

CONFIG = """
[server]
workers = 2
pid_file = "{dir}/jester.pid"
control_socket = "{dir}/control.sock"

[log]
level = "info"
access_log = true

[[listeners]]
name = "public"
address = "127.0.0.1:{http_port}"

[[listeners]]
name = "secure"
address = "127.0.0.1:{https_port}"
{tls}
[upstreams.app]
targets = ["127.0.0.1:{upstream_port}"]

[[routes]]
name = "hello"
path_prefix = "/"
respond = {{ status = 200, body = "Hello from Jester!\\n", headers = {{ "Content-Type" = "text/plain; charset=utf-8" }} }}

[[routes]]
name = "app"
path_prefix = "/app/"
upstream = "app"

[[routes]]
name = "old-docs"
path_prefix = "/old-docs"
redirect = {{ location = "/app/docs", status = 301 }}
"""


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (the standard library's name)
        body = b"upstream\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *arguments):
        pass


def build(work):
    """Links the release build as the package links it, with a map; returns (binary, map). In a build directory
    of its own: Packaging/build-deb.sh builds the same flags from a copy of the tree, and sharing its directory
    from another root would make each rebuild everything."""
    scratch = ROOT / ".build" / "order-scratch"
    link_map = work / "jester.map"
    flags = [word for line in (ROOT / "Packaging" / "swift-release-flags").read_text().splitlines()
             if not line.startswith("#") for word in line.split()]
    subprocess.run(["swift", "build", "-c", "release", "--static-swift-stdlib", "--scratch-path", str(scratch),
                    *flags, "-Xlinker", f"-Map={link_map}", "-Xlinker", "--no-demangle", "--product", "jester"],
                   cwd=ROOT, check=True)
    return str(scratch / "release" / "jester"), link_map


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def record(binary, work):
    """Runs the scenario; returns (master pid, {pid: [code address entered, ...] in first-seen order})."""
    library = work / "text_pages.so"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(library), str(HERE / "support" / "text_pages.c")],
                   check=True)
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    http_port, https_port = free_port(), free_port()
    config = work / "jester.toml"
    config.write_text(CONFIG.format(dir=work, http_port=http_port, https_port=https_port,
                                    upstream_port=upstream.server_address[1], tls=harness.jester_tls()))
    entries_dir = work / "entries"
    entries_dir.mkdir()
    environment = dict(os.environ, LD_PRELOAD=str(library), TEXT_PAGES_DIR=str(entries_dir),
                       SWIFT_BACKTRACE="enable=no")
    master = subprocess.Popen([binary, "--config", str(config)], env=environment,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        harness.wait_for_http(http_port, path="/", timeout=120)  # every page change faults: start-up takes seconds
        time.sleep(10)  # both workers up
        for path in ["/", "/app/x", "/old-docs", "/"]:
            subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{http_port}{path}"], timeout=10)
            subprocess.run(["curl", "-s", "-k", "--http2", "-o", "/dev/null", f"https://127.0.0.1:{https_port}{path}"],
                           timeout=10)
        time.sleep(3)  # idle: timers, the master's heartbeat
    finally:
        master.send_signal(signal.SIGTERM)
        master.wait(timeout=60)
        upstream.shutdown()
    entered = {}
    for path in entries_dir.iterdir():
        entered[int(path.name.split(".")[1])] = [int(line, 16) for line in path.read_text().split()]
    return master.pid, entered


def text_sections(link_map):
    """(start, size, name) of every input section of .text, by address, from lld's link map. The name is the
    section's first symbol that no other section has: the linker moves every section that has a listed name, and
    the outlined helpers Swift copies into many objects share theirs.

    A section without a symbol cannot be named to the linker and stays where it is: Swift's private functions
    (.Lobjectdestroy…) are not in the symbol table. They cost the few 64 KiB windows an idle worker still maps
    outside the placed code.
    """
    line_format = re.compile(r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+( +)(.*)$")
    sections, in_text, pending = [], False, None
    with open(link_map) as lines:
        for line in lines:
            match = line_format.match(line)
            if not match:
                continue
            depth, name = len(match.group(3)), match.group(4)
            if depth == 1:  # an output section
                in_text = name == ".text"
            elif in_text and depth == 9:  # an input section; its symbols follow at depth 17
                pending = [int(match.group(1), 16), int(match.group(2), 16), []]
                sections.append(pending)
            elif in_text and depth == 17 and pending is not None:
                pending[2].append(name)
    uses = Counter(name for _, _, names in sections for name in set(names))
    named = []
    for start, size, names in sections:
        unique = [name for name in names if uses[name] == 1]
        if size > 0 and (unique or names):
            named.append((start, size, (unique or names)[0]))
    return named


def pages_of(start, size):
    return range(start - start % PAGE, start + size, PAGE)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", nargs="?")
    parser.add_argument("link_map", nargs="?")
    parser.add_argument("--out", default=str(ROOT / "Packaging" / "symbol-order.txt"))
    parser.add_argument("--fresh", action="store_true", help="forget the names the existing order lists")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jester-order-") as directory:
        if arguments.binary is None:
            arguments.binary, arguments.link_map = build(Path(directory))
        elif arguments.link_map is None:
            parser.error("a binary needs the link map its link wrote")
        master, entered = record(arguments.binary, Path(directory))
        sections = text_sections(arguments.link_map)
    workers = [pid for pid in entered if pid != master and len(entered[pid]) > 1000]
    if master not in entered or len(workers) < 2:
        sys.exit(f"symbol_order: expected a master and two workers, recorded {sorted(entered)}")
    # Workers first (they are the many processes), each adding what the previous did not run; the master last.
    order = []
    for pid in sorted(workers) + [master]:
        order.extend(entered[pid])
    order = list(dict.fromkeys(order))
    entered_pages = {address - address % PAGE for address in order}

    starts = [start for start, _, _ in sections]
    names, skipped = [], set()
    for address in order:
        index = bisect.bisect_right(starts, address) - 1
        if index < 0 or address >= sections[index][0] + sections[index][1]:
            continue  # padding between sections, or code the map does not name
        start, size, name = sections[index]
        # A section moves whole. Some libraries' objects keep most of their code in one unsplit .text section
        # (the standard library's is 1.6 MB): moving one of those for the few pages of it that run would pull
        # megabytes of code that never runs in among the code that does. Small sections always move; large ones
        # only when most of their pages run.
        span = pages_of(start, size)
        if size > 2 * PAGE and sum(page in entered_pages for page in span) * 2 < len(span):
            skipped.add(name)
            continue
        names.append(name)
    # The recorder can miss a function that runs beside its caller (text_pages.c); one an earlier run found
    # stays, after this run's, as long as the binary still has it.
    previous = Path(arguments.out)
    if previous.exists() and not arguments.fresh:
        known = {name for _, _, name in sections}
        names += [line.strip() for line in previous.read_text().splitlines()
                  if line.strip() in known and not line.startswith("#")]
    names = list(dict.fromkeys(names))
    worker_pages = len({address - address % PAGE for pid in workers for address in entered[pid]})
    header = [
        "# Jester's start-up and idle functions, in the order a worker first runs them, then the master's.",
        "# Written by bench/symbol_order.py (see its description); read by the release link",
        "# (Packaging/swift-release-flags). Regenerate after large changes; stale names are skipped.",
        f"# {len(names)} sections; this run entered {len(order)} code addresses on {len(entered_pages)} pages",
        f"# ({worker_pages} pages by a worker) and left {len(skipped)} large sections that mostly do not run in place.",
    ]
    Path(arguments.out).write_text("\n".join(header + names) + "\n")
    # SwiftPM does not know the order is an input of the link: remove what it linked, so the next build relinks.
    for scratch in (ROOT / ".build").glob("*/release"):
        for product in ("jester", "jesterctl"):
            (scratch / product).unlink(missing_ok=True)
    print(f"{arguments.out}: {len(names)} sections, {len(entered_pages)} pages ({worker_pages} by the workers), "
          f"{len(skipped)} large sections left in place")


if __name__ == "__main__":
    main()
