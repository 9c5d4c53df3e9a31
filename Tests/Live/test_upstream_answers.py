# SPDX-License-Identifier: Apache-2.0
"""Answers an upstream should not give, over every client protocol: the worker survives them, the client gets a
clean answer, and the upstream connection that carried a refused answer is closed by Jester, never reused or
left waiting for the upstream to close it (which, after the client left, once killed the worker)."""

import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import wait_for
from loopback_server import LoopbackServer

PROTOCOLS = ["http1", "h2c"]


class ScriptedUpstream(LoopbackServer):
    """Answers every request head it reads with fixed raw bytes and keeps the connection open, recording how each
    connection ended: "jester" when Jester closed it, or the way the test told it to close ("fin", "rst")."""

    def __init__(self, answer):
        self.answer = answer
        self.connections = []
        self.ended = []
        self.lock = threading.Lock()
        super().__init__()

    def accepted(self, connection):
        with self.lock:
            self.connections.append(connection)

    def handle(self, connection):
        data = b""
        connection.settimeout(10)
        try:
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    with self.lock:
                        self.ended.append("jester")
                    return
                data += chunk
                while b"\r\n\r\n" in data:
                    _, data = data.split(b"\r\n\r\n", 1)
                    connection.sendall(self.answer)
        except OSError:
            return

    def close_all(self, how):
        """Closes every open connection from this side: with FIN, or with RST (SO_LINGER 0)."""
        with self.lock:
            open_ones, self.connections = self.connections, []
        for connection in open_ones:
            try:
                if how == "rst":
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    connection.close()
                else:
                    connection.shutdown(socket.SHUT_RDWR)
                    connection.close()
            except OSError:
                pass

    def stop(self):
        self.close()
        self.close_all("fin")


def jester_for(make_jester, upstream):
    return make_jester(f"""
[[routes]]
name = "app"
upstream = "app"

[upstreams.app]
targets = ["{upstream.address}"]
""")


def fetch(jester, protocol, path="/x"):
    """Status line and lowercased header lines of one GET, as the client saw them."""
    flag = ["--http2-prior-knowledge"] if protocol == "h2c" else ["--http1.1"]
    result = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-D", "-", "--max-time", "10", *flag,
                             jester.url + path], capture_output=True, text=True, timeout=15)
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return lines[0] if lines else result.stderr, [line.lower() for line in lines[1:]]


@pytest.mark.parametrize("close", ["fin", "rst"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_unasked_101_is_refused_and_cannot_kill_the_worker(make_jester, protocol, close):
    upstream = ScriptedUpstream(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n")
    try:
        jester = jester_for(make_jester, upstream)
        workers = jester.worker_pids()
        status, _ = fetch(jester, protocol)
        assert " 502" in status, status
        # The client has gone; Jester closed the connection that carried the refused answer by itself.
        wait_for(lambda: upstream.ended == ["jester"], timeout=5, what="Jester to close the upstream connection")
        # Whatever the upstream does with connections still open (none should be) cannot hurt the worker.
        upstream.close_all(close)
        time.sleep(0.3)
        assert jester.worker_pids() == workers, jester.logs()[-2000:]
        assert "Fatal error" not in jester.logs()
        assert " 502" in fetch(jester, protocol)[0]
        entries = [e for e in jester.access_log() if e.get("status") == 502]
        assert entries and "101" in entries[0].get("error", ""), entries
    finally:
        upstream.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("framing", [b"Content-Length: 5, 5\r\n", b"Content-Length: 5\r\nContent-Length: 5\r\n"])
def test_a_repeated_content_length_reaches_every_client_as_one_value(make_jester, protocol, framing):
    upstream = ScriptedUpstream(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\nhello")
    try:
        jester = jester_for(make_jester, upstream)
        status, fields = fetch(jester, protocol)
        assert " 200" in status, status
        assert [f for f in fields if f.startswith("content-length")] == ["content-length: 5"], fields
    finally:
        upstream.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_204_goes_on_without_content_length(make_jester, protocol):
    upstream = ScriptedUpstream(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-Kept: 1\r\n\r\n")
    try:
        jester = jester_for(make_jester, upstream)
        status, fields = fetch(jester, protocol)
        assert " 204" in status, status
        assert "x-kept: 1" in fields
        assert not [f for f in fields if f.startswith("content-length")], fields
    finally:
        upstream.stop()
