#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Snapshot propagation from the control plane (issue 25): latency from a REST change to its push reaching every
data plane (p50/p99), and the control plane's CPU per push, with 1, 10 and 50 data planes and 1,000 and 10,000
routes.

    bench/control_plane.py [--jester .build/release/jester] [--pushes 50] [--planes 1,10,50] [--routes 1000,10000]
                           [--etcd]

With --etcd the control plane is two replicas sharing a real etcd (Debian's etcd-server): changes are made
through the first, and the data planes stream from the second, so each push also crosses etcd (the version's
transaction, the second replica's watch and read). CPU per push is then both replicas' together.

The data planes are simulated: each is a gRPC stream (grpcio, Debian's python3-grpcio) that says hello, takes
every push and acknowledges it at once, so what is measured is the control plane (validation of the change,
storing the version durably, encoding and sending the push) and the loopback, not a reload. A real master adds
its reload transaction (a new generation) on top; test_control_plane_stream.py holds that to a bound.

Run on an otherwise idle machine; the figures go to bench/BENCHMARKS.md ("Control plane").
"""

import argparse
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
METHOD = "/jester.controlplane.v1.SnapshotStream/Stream"


# Protobuf by hand: the stream's messages are four small ones (Proto/jester/controlplane/v1/snapshot_stream.proto).
def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def hello(node):
    return field(1, field(1, node.encode()))


def ack(version, nonce):
    return field(2, varint(1 << 3 | 0) + varint(version) + field(2, nonce.encode()))


def parse(data):
    """Fields of one message: number -> value (varint int or bytes)."""
    fields, offset = {}, 0
    while offset < len(data):
        key, offset = read_varint(data, offset)
        number, kind = key >> 3, key & 7
        if kind == 0:
            fields[number], offset = read_varint(data, offset)
        elif kind == 2:
            length, offset = read_varint(data, offset)
            fields[number], offset = data[offset:offset + length], offset + length
        else:
            raise ValueError(f"wire type {kind}")
    return fields


def read_varint(data, offset):
    value = shift = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7


class SimulatedDataPlane(threading.Thread):
    """One stream: hello, then an ACK for every push, noting when each version arrived."""

    def __init__(self, port, node):
        super().__init__(daemon=True)
        self.port, self.node = port, node
        self.arrived = {}
        self.changed = threading.Condition()
        self.outbound = queue.Queue()

    def requests(self):
        yield hello(self.node)
        while True:
            item = self.outbound.get()
            if item is None:
                return
            yield item

    def run(self):
        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        call = channel.stream_stream(METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            for message in call(self.requests()):
                snapshot = parse(parse(message)[1])
                version, nonce = snapshot.get(1, 0), snapshot[2].decode()
                with self.changed:
                    self.arrived[version] = time.monotonic()
                    self.changed.notify_all()
                self.outbound.put(ack(version, nonce))
        except grpc.RpcError:
            pass

    def wait_for(self, version, timeout=120):
        deadline = time.monotonic() + timeout
        with self.changed:
            while version not in self.arrived:
                if not self.changed.wait(deadline - time.monotonic()):
                    raise TimeoutError(f"{self.node} never got version {version}")
            return self.arrived[version]

    def close(self):
        self.outbound.put(None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body):
    data = json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as response:
        return json.loads(response.read())


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def wait_healthy(url):
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def scenario(jester, planes, routes, pushes, etcd=False):
    directory = tempfile.mkdtemp(prefix="jester-cp-bench-")
    rest, stream = free_port(), free_port()
    processes = []
    store = ["--data-dir", f"{directory}/store"]
    if etcd:
        client, peer = free_port(), free_port()
        url = f"http://127.0.0.1:{client}"
        # On the second core: the replicas share the first. A version of 10,000 routes is over etcd's default
        # request limit (1.5 MiB).
        processes.append(subprocess.Popen(
            ["taskset", "-c", "1", shutil.which("etcd") or "/usr/bin/etcd", "--name", "bench",
             "--data-dir", f"{directory}/etcd", "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls",
             f"http://127.0.0.1:{peer}", "--initial-cluster", f"bench=http://127.0.0.1:{peer}",
             "--max-request-bytes", str(32 << 20)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_healthy(url + "/health")
        store = ["--etcd", url, "--etcd-prefix", "/bench/"]
    # With etcd: the first replica takes the changes, the second streams to the data planes.
    writer = subprocess.Popen(
        ["taskset", "-c", "0", jester, "control-plane", "--listen", f"127.0.0.1:{rest}",
         "--grpc-listen", "off" if etcd else f"127.0.0.1:{stream}", *store, "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes.append(writer)
    measured = [writer]
    if etcd:
        pusher_rest = free_port()
        pusher = subprocess.Popen(
            ["taskset", "-c", "0", jester, "control-plane", "--listen", f"127.0.0.1:{pusher_rest}",
             "--grpc-listen", f"127.0.0.1:{stream}", *store, "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(pusher)
        measured.append(pusher)
    simulated = []
    try:
        wait_healthy(f"http://127.0.0.1:{rest}/healthz")
        if etcd:
            wait_healthy(f"http://127.0.0.1:{pusher_rest}/healthz")
        document = {"routes": [{"name": f"r{n}", "path_prefix": f"/r{n}/",
                                "respond": {"status": 200, "body": f"route {n}\n"}} for n in range(routes)]}
        started = time.monotonic()
        version = request(rest, "PUT", "/api/v1/snapshot", document)["version"]
        first = time.monotonic() - started
        simulated = [SimulatedDataPlane(stream, f"sim-{n}") for n in range(planes)]
        for plane in simulated:
            plane.start()
        for plane in simulated:
            plane.wait_for(version)
        latencies = []
        cpu_before = sum(cpu_seconds(process.pid) for process in measured)
        for n in range(pushes):
            sent = time.monotonic()
            version = request(rest, "PUT", "/api/v1/routes/r0",
                              {"path_prefix": "/r0/", "respond": {"status": 200, "body": f"push {n}\n"}})["version"]
            latencies += [plane.wait_for(version) - sent for plane in simulated]
        cpu = (sum(cpu_seconds(process.pid) for process in measured) - cpu_before) / pushes
        return {"planes": planes, "routes": routes, "pushes": pushes, "first_version_s": round(first, 3),
                "p50_ms": round(percentile(latencies, 50) * 1000, 2),
                "p99_ms": round(percentile(latencies, 99) * 1000, 2),
                "cpu_ms_per_push": round(cpu * 1000, 2)}
    finally:
        for plane in simulated:
            plane.close()
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jester", default=str(ROOT / ".build" / "release" / "jester"))
    parser.add_argument("--pushes", type=int, default=50)
    parser.add_argument("--planes", default="1,10,50")
    parser.add_argument("--routes", default="1000,10000")
    parser.add_argument("--etcd", action="store_true", help="two replicas on one etcd (see above)")
    arguments = parser.parse_args()
    print("planes  routes  first version  p50 ms  p99 ms  control-plane CPU ms/push")
    for routes in [int(r) for r in arguments.routes.split(",")]:
        for planes in [int(p) for p in arguments.planes.split(",")]:
            result = scenario(arguments.jester, planes, routes, arguments.pushes, etcd=arguments.etcd)
            print(f"{planes:>6}  {routes:>6}  {result['first_version_s']:>11} s  {result['p50_ms']:>6}  "
                  f"{result['p99_ms']:>6}  {result['cpu_ms_per_push']:>8}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
