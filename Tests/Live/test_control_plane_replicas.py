# SPDX-License-Identifier: Apache-2.0
"""Control-plane replicas on one etcd (issue 25): two `jester control-plane --etcd` processes share a real etcd
server (Debian's etcd-server, v3 API) and three Jester data planes list both. A change made through either
replica is served by every data plane and listed by both; one replica killed while changes are being made through
it loses no change it answered, and the data planes that streamed from it move to the other and converge on its
newest version."""

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

from conftest import Jester, free_port, wait_for
from test_control_plane import ControlPlane
from test_control_plane_stream import FIXTURES, get, route, served

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


class Etcd:
    """One etcd member on loopback, in its own directory."""

    def __init__(self):
        self.directory = tempfile.TemporaryDirectory(prefix="jester-etcd-")
        client, peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{client}"
        self.log = open(os.path.join(self.directory.name, "log"), "w+")
        self.process = subprocess.Popen([
            ETCD, "--name", "test", "--data-dir", os.path.join(self.directory.name, "data"),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"test=http://127.0.0.1:{peer}"], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self.healthy, timeout=30, what="etcd to answer")

    def healthy(self):
        assert self.process.poll() is None, "etcd exited"
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                return b'"true"' in response.read()
        except OSError:
            return False

    def close(self):
        self.process.kill()
        self.process.wait(timeout=15)
        self.log.close()
        self.directory.cleanup()


@pytest.fixture(scope="module")
def etcd():
    assert os.access(ETCD, os.X_OK), "etcd is not installed (Packaging/setup.sh --test installs etcd-server)"
    server = Etcd()
    yield server
    server.close()


def replica(etcd, prefix, grpc_port=None):
    return ControlPlane(grpc_port=grpc_port, extra=["--etcd", etcd.url, "--etcd-prefix", prefix])


def data_plane(node, ports, tmp_path):
    addresses = ", ".join(f'"127.0.0.1:{port}"' for port in ports)
    files = tmp_path / f"{node}-files"
    files.mkdir(exist_ok=True)
    return Jester(f"""
[control_plane]
address = [{addresses}]
node = "{node}"
state_file = "{tmp_path}/{node}-snapshot.json"
files = "{files}"

[[routes]]
name = "from-file"
path_prefix = "/"
respond = {{ status = 200, body = "bootstrap\\n" }}
""")


def planes(replica_):
    return {p["node"]: p for p in replica_.request("GET", "/api/v1/data-planes")[2]["data_planes"]}


def versions(replica_):
    return replica_.request("GET", "/api/v1/versions")[2]


def test_replicas_share_versions_and_a_killed_one_loses_nothing_it_answered(etcd, tmp_path):
    prefix = f"/jester-test/{time.monotonic_ns()}/"
    first, second = replica(etcd, prefix), replica(etcd, prefix)
    # Two data planes start on the first replica, one on the second; each lists both.
    instances = [data_plane("edge-1", [first.grpc_port, second.grpc_port], tmp_path),
                 data_plane("edge-2", [first.grpc_port, second.grpc_port], tmp_path),
                 data_plane("edge-3", [second.grpc_port, first.grpc_port], tmp_path)]
    try:
        wait_for(lambda: sorted(planes(first)) == ["edge-1", "edge-2"] and list(planes(second)) == ["edge-3"],
                 what="the data planes on their first replicas")
        # A change through either replica reaches every data plane and both replicas' history.
        status, headers, result = first.request("PUT", "/api/v1/routes/cp", route("one\n"))
        assert status == 201, result
        for instance in instances:
            wait_for(lambda: served(instance, "/cp/x", "one\n"), what="version 1 served")
        wait_for(lambda: versions(second)["current"] == 1, what="the second replica to read version 1")
        status, _, result = second.request("PUT", "/api/v1/routes/cp", route("two\n"), headers={"If-Match": '"v1"'})
        assert status == 200 and result["version"] == 2, result
        for instance in instances:
            wait_for(lambda: served(instance, "/cp/x", "two\n"), what="version 2 served")
        # Both replicas list the history and the audit records made through the other.
        wait_for(lambda: versions(first)["current"] == 2, what="the first replica to read version 2")
        assert versions(first) == versions(second)
        # (The record of version 2 is written after the version itself: wait for it.)
        wait_for(lambda: [(r["outcome"], r["version"]) for r in first.request("GET", "/api/v1/audit")[2]["records"]
                          if r["actor"] == "alice"] == [("accepted", 1), ("accepted", 2)],
                 what="the second replica's audit record listed by the first")
        # An edit made over a stale version through the other replica is refused, not stored over it.
        status, _, result = first.request("PUT", "/api/v1/routes/cp", route("stale\n"), headers={"If-Match": '"v1"'})
        assert status == 412, result

        # Changes keep arriving through the first replica while it is killed.
        answered = {}
        stop = threading.Event()

        def change():
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    status, _, result = first.request("PUT", "/api/v1/routes/cp", route(f"change {n}\n"))
                except OSError:
                    return
                if status == 200:
                    answered[result["version"]] = f"change {n}\n"

        writer = threading.Thread(target=change)
        writer.start()
        wait_for(lambda: len(answered) >= 5, what="changes made through the first replica")
        first.stop(signal.SIGKILL)
        stop.set()
        writer.join(timeout=15)
        # Every change the killed replica answered is in the history the other one serves.
        wait_for(lambda: versions(second)["current"] >= max(answered), what="the second replica to read them all")
        for number, body in answered.items():
            status, _, version = second.request("GET", f"/api/v1/versions/{number}")
            assert status == 200 and version["document"]["routes"][0]["respond"]["body"] == body, version
        # The data planes that streamed from it move to the second replica and converge on its newest version.
        status, _, result = second.request("PUT", "/api/v1/routes/cp", route("after\n"))
        assert status == 200, result
        newest = result["version"]
        for instance in instances:
            wait_for(lambda: served(instance, "/cp/x", "after\n"), timeout=30, what="the newest version served")
        wait_for(lambda: {node: (p["connected"], p["running"]) for node, p in planes(second).items()}
                 == {f"edge-{n}": (True, newest) for n in (1, 2, 3)}, timeout=30,
                 what="every data plane on the second replica, running its newest version")
        for instance in instances:
            control = instance.status()["control_plane"]
            assert control["address"] == f"127.0.0.1:{second.grpc_port}" and control["version"] == newest, control
        # The killed replica, started again, reads what it missed and serves the same history.
        again = replica(etcd, prefix)
        try:
            assert versions(again) == versions(second)
        finally:
            again.close()
        assert get(instances[0], "/x")[0] == 404
    finally:
        for instance in instances:
            instance.stop()
        first.close()
        second.close()


def test_a_refusal_heard_at_one_replica_holds_at_the_other(etcd, tmp_path):
    prefix = f"/jester-test/{time.monotonic_ns()}/"
    first, second = replica(etcd, prefix), replica(etcd, prefix)
    # Its snapshot files directory lacks the CA file the version names.
    instance = data_plane("edge-1", [first.grpc_port, second.grpc_port], tmp_path)
    try:
        wait_for(lambda: planes(first).get("edge-1", {}).get("connected"), what="edge-1 on the first replica")
        status, _, result = first.request("PUT", "/api/v1/snapshot", {
            "routes": [{"name": "cp", **route("ca\n")}, {"name": "tls", "path_prefix": "/tls/", "upstream": "secure"}],
            "upstreams": {"secure": {"targets": ["127.0.0.1:9"], "tls": {"ca": "upstream-ca.pem"}}}})
        assert status == 200, result
        refused = wait_for(lambda: planes(first)["edge-1"].get("last_refusal"), what="the NACK at the first replica")
        assert refused["version"] == 1 and "upstream-ca.pem" in refused["detail"], refused
        # The other replica lists it from the store.
        wait_for(lambda: planes(second).get("edge-1", {}).get("refused_versions") == [1], what="the refusal shared")
        # edge-1 moves to the second replica, which does not push it version 1 again.
        first.stop(signal.SIGKILL)
        wait_for(lambda: planes(second)["edge-1"]["connected"], timeout=30, what="edge-1 on the second replica")
        time.sleep(1)
        listed = planes(second)["edge-1"]
        assert listed["last_refusal"] == refused and "outstanding" not in listed, listed
        assert served(instance, "/cp/x", "bootstrap\n")
        # The operator puts the file in place and asks for a retry: version 1 is applied.
        shutil.copy(FIXTURES / "ca.pem", tmp_path / "edge-1-files" / "upstream-ca.pem")
        assert second.request("POST", "/api/v1/data-planes/edge-1/retry")[0] == 200
        wait_for(lambda: served(instance, "/cp/x", "ca\n"), what="version 1 served after the retry")
    finally:
        instance.stop()
        first.close()
        second.close()


def test_a_replica_refuses_to_start_without_etcd(tmp_path):
    from conftest import JESTER
    result = subprocess.run([JESTER, "control-plane", "--listen", f"127.0.0.1:{free_port()}", "--grpc-listen", "off",
                             "--etcd", f"http://127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "cannot reach etcd" in result.stderr, result.stderr
    result = subprocess.run([JESTER, "control-plane", "--listen", f"127.0.0.1:{free_port()}", "--grpc-listen", "off",
                             "--etcd", "etcd.internal:2379"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "expected http://HOST:PORT" in result.stderr, result.stderr
