# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the live tier: real jester processes, a real upstream, real clients, on loopback only."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from loopback_server import LoopbackServer

ROOT = Path(__file__).resolve().parents[2]
# The release build (Packaging/setup.sh makes it): what ships. See setup.sh for why not the debug build.
BIN = Path(os.environ.get("JESTER_BIN_DIR", ROOT / ".build" / "release"))
JESTER = str(BIN / "jester")
JESTERCTL = str(BIN / "jesterctl")
HERE = Path(__file__).resolve().parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=15.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


class Upstream:
    def __init__(self, status=None, tls=None, client_ca=None, host="127.0.0.1", port=None):
        self.port = port or free_port()
        self.host = host
        extra = ["--close"] if status == "close" else (["--status", str(status)] if status else [])
        if host != "127.0.0.1":
            extra += ["--host", host]
        if tls:  # (certificate file, key file)
            extra += ["--tls", *tls] + (["--client-ca", client_ca] if client_ca else [])
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "upstream.py"), str(self.port), *extra], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def requests(self):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/__requests", timeout=5) as response:
            return json.loads(response.read())

    def stop(self):
        self.process.kill()
        self.process.wait()


class Jester:
    """One jester master with its workers, on a config written for the test."""

    def __init__(self, config_body, workers=1, extra_env=None, binary=None, server_settings=""):
        self.dir = Path(tempfile.mkdtemp(prefix="jester-live-"))
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.socket = str(self.dir / "control.sock")
        self.config_path = self.dir / "jester.toml"
        self.workers = workers
        self.server_settings = server_settings
        self.write_config(config_body)
        self.log = open(self.dir / "jester.log", "w+")
        env = dict(os.environ, **(extra_env or {}))
        self.process = subprocess.Popen(
            [binary or JESTER, "--config", str(self.config_path)], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        wait_for(lambda: self.all_ready(), what="workers ready")

    def write_config(self, body):
        header = f"""
[server]
workers = {self.workers}
pid_file = "{self.dir}/jester.pid"
control_socket = "{self.socket}"
drain_timeout = "5s"
{self.server_settings}

[[listeners]]
name = "main"
address = "127.0.0.1:{self.port}"
"""
        self.config_path.write_text(header + body)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def ctl(self, *args, check=False, user=None, groups=(), timeout=60):
        command = [JESTERCTL, *args, "--socket", self.socket]
        if user:
            import pwd
            entry = pwd.getpwnam(user)
            membership = [f"--groups={','.join(str(g) for g in groups)}"] if groups else ["--clear-groups"]
            command = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", *membership, *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def status(self):
        result = self.ctl("status", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def all_ready(self, generation=None):
        if self.process.poll() is not None:
            raise AssertionError("jester exited: " + self.logs())
        status = self.status()
        generation = generation or status["generation"]
        workers = [w for w in status["workers"] if w["generation"] == generation]
        return len(workers) == self.workers and all(w["state"] == "ready" for w in workers)

    def worker_pids(self):
        return [w["pid"] for w in self.status()["workers"]]

    def logs(self):
        self.log.flush()
        return (self.dir / "jester.log").read_text()

    def access_log(self):
        return [json.loads(line) for line in self.logs().splitlines()
                if line.startswith("{") and '"type":"access"' in line]

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def upstream():
    server = Upstream()
    yield server
    server.stop()


@pytest.fixture
def make_jester():
    instances = []

    def factory(config_body, **kwargs):
        instance = Jester(config_body, **kwargs)
        instances.append(instance)
        return instance

    yield factory
    for instance in instances:
        instance.stop()


# The client protocols every behaviour scenario runs over (issue 18): one request exchange serves both, and a
# scenario that passes over one and fails over the other is a drift bug. h2c is HTTP/2 with prior knowledge.
PROTOCOLS = ["http1", "h2c"]
PROTOCOL_FLAGS = {"http1": "--http1.1", "h2c": "--http2-prior-knowledge"}


def curl(*args, timeout=30, protocol=None):
    """Runs curl (over `protocol`, one of PROTOCOLS, when given); returns (status code, body, stderr)."""
    flags = [PROTOCOL_FLAGS[protocol]] if protocol else []
    result = subprocess.run(
        ["curl", "-sS", "--max-time", str(timeout), *flags, "-o", "-", "-w", "\n%{http_code}", *args],
        capture_output=True, timeout=timeout + 5)
    body, _, code = result.stdout.rpartition(b"\n")
    return int(code or 0), body, result.stderr.decode()


def raw_request(port, data, timeout=5.0, read_all=True):
    """Sends raw bytes and returns everything the server answered until it closed (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(data)
        chunks = []
        try:
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if not read_all:
                    break
        except socket.timeout:
            pass
        return b"".join(chunks)


class SteadyLoad:
    """Steady traffic for lifecycle tests: keep-alive clients (reconnecting when told `Connection: close`, as
    clients do), a new-connection client and, with `proxied_path`, a proxied new-connection client. Every
    connection error, reset, timeout, non-200 or unexpected body is a failure. Use as a context manager."""

    def __init__(self, port, expect=b"serving\n", proxied_path=None, keepalive_clients=2, tls_ca=None):
        self.port = port
        # With tls_ca (a CA file): every client speaks HTTPS and verifies the server against it.
        self.tls_ca = tls_ca
        self.expect = expect
        self.failures = []
        self.counts = {"keepalive": 0, "new": 0}
        self.stop = None
        self.threads = []
        targets = [lambda: self.keepalive_client("/", "keepalive")] * keepalive_clients
        targets.append(lambda: self.new_connection_client("/", "new"))
        if proxied_path:
            # Proxied keep-alive too: a drain that begins while a response streams must not close under the client.
            self.counts["proxied"] = 0
            self.counts["keepalive-proxied"] = 0
            targets.append(lambda: self.new_connection_client(proxied_path, "proxied"))
            targets.append(lambda: self.keepalive_client(proxied_path, "keepalive-proxied"))
        self.targets = targets

    def keepalive_client(self, path, key):
        import http.client
        if self.tls_ca:
            import ssl
            context = ssl.create_default_context(cafile=self.tls_ca)
            connection = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=5, context=context)
        else:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while not self.stop.is_set():
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                if response.status != 200 or (path == "/" and body != self.expect):
                    self.failures.append((key, response.status, body))
                self.counts[key] += 1
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()  # a draining worker said so: reconnect
            except Exception as error:  # a reset or timeout is a failed request
                self.failures.append((key, repr(error)))
                connection.close()

    def new_connection_client(self, path, key):
        while not self.stop.is_set():
            if self.tls_ca:
                code, body, error = curl("--cacert", self.tls_ca, f"https://127.0.0.1:{self.port}{path}", timeout=5)
            else:
                code, body, error = curl(f"http://127.0.0.1:{self.port}{path}", timeout=5)
            if code != 200 or (path == "/" and body != self.expect):
                self.failures.append((key, code, body, error))
            self.counts[key] += 1

    def __enter__(self):
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=target) for target in self.targets]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join()
        return False

    def assert_nothing_failed(self):
        assert not self.failures, self.failures[:10]
        assert all(self.counts.values()), self.counts


class StaleKeepAliveUpstream(LoopbackServer):
    """Answers the first request on each connection with keep-alive, then closes the connection without an
    answer when a second request arrives on it: the race of an upstream's idle timeout, made deterministic."""

    def __init__(self):
        self.requests = []
        super().__init__()

    def handle(self, connection):
        with connection:
            answered = False
            data = b""
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                data += chunk
                if b"\r\n\r\n" not in data:
                    continue
                head, _, data = data.partition(b"\r\n\r\n")
                self.requests.append(head.split(b"\r\n", 1)[0].decode())
                if answered:
                    # Reset rather than FIN so that the proxy sees the failure whatever it has written.
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                answered = True
