# SPDX-License-Identifier: Apache-2.0
"""gRPC through Jester, end to end: a real grpcio server behind an HTTP/2 pool and a real grpcio client in front,
over h2c and TLS; unary, server, client and bidirectional streaming, trailers, status codes, deadlines.

The peers run under Debian's /usr/bin/python3, where python3-grpcio is installed (Packaging/setup.sh --test)."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import curl, free_port, wait_for

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "Fixtures" / "tls"
PYTHON = "/usr/bin/python3"


class GRPCServer:
    def __init__(self, tls=False):
        self.port = free_port()
        extra = [str(FIXTURES / "alpha.pem"), str(FIXTURES / "alpha.key")] if tls else []
        self.process = subprocess.Popen([PYTHON, str(HERE / "grpc_peer.py"), "server", str(self.port), *extra],
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    def stop(self):
        self.process.kill()
        self.process.wait()


def run_client(target, ca=None):
    result = subprocess.run([PYTHON, str(HERE / "grpc_peer.py"), "client", target, *([ca] if ca else [])],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


EXPECTED = {
    "unary": "echo:hello", "unary_trailer": "unary", "server_stream": ["part-0", "part-1", "part-2", "part-3"],
    "client_stream": "a+b+c", "bidi": ["X", "YZ"], "big_unary": (3 << 20) + 5,
    "fail": ["PERMISSION_DENIED", "no entry"], "deadline": "DEADLINE_EXCEEDED",
}


def jester_config(server, target_tls=False):
    tls = f'\n[upstreams.grpc.tls]\nca = "{FIXTURES / "ca.pem"}"\nserver_name = "localhost"\n' if target_tls else ""
    return f"""
[listeners.tls]
[[listeners.tls.certificates]]
cert = "{FIXTURES / 'alpha.pem'}"
key = "{FIXTURES / 'alpha.key'}"

[[listeners]]
name = "h2c"
address = "127.0.0.1:{{h2c_port}}"

[[routes]]
name = "grpc"
upstream = "grpc"

[upstreams.grpc]
targets = ["{server.address if hasattr(server, 'address') else f'127.0.0.1:{server.port}'}"]
protocol = "h2"
{tls}"""


@pytest.fixture
def grpc_server():
    server = GRPCServer()
    yield server
    server.stop()


def test_grpc_end_to_end_over_tls_and_h2c(make_jester, grpc_server):
    h2c_port = free_port()
    jester = make_jester(jester_config(grpc_server).replace("{h2c_port}", str(h2c_port)), workers=2)
    for target, ca in ((f"localhost:{jester.port}", str(FIXTURES / "ca.pem")), (f"127.0.0.1:{h2c_port}", None)):
        results = run_client(target, ca)
        for key, value in EXPECTED.items():
            assert results[key] == value, (target, key, results)
        # The deadline travelled (grpc-timeout) and was enforced by the client, promptly.
        assert results["deadline_seconds"] < 2
        assert results["slow_ok"].startswith("slept, remaining was")
    log = jester.access_log()
    assert any(entry.get("upstream") == "grpc" and entry.get("status") == 200 for entry in log)


def in_flight(jester):
    rows = json.loads(jester.ctl("upstreams", "--json", check=True).stdout)
    return sum(row["active"] for row in rows)


@pytest.mark.parametrize("protocol", ["h2c", "http1"])
def test_requests_ended_early_give_their_upstream_stream_back(make_jester, grpc_server, protocol):
    """A body over max_body_size (413) and a target that answers before the body is all sent both end the
    exchange early: the stream on the shared HTTP/2 connection must be reset there, not left open holding a
    stream slot, the pool's count of requests in flight, and (for HTTP/2 clients) a delegate that outlives
    the client's connection."""
    h2c_port = free_port()
    config = jester_config(grpc_server).replace("{h2c_port}", str(h2c_port)).replace(
        '[[routes]]\nname = "grpc"', '[[routes]]\nname = "small"\npath = "/jester.Test/ClientStream"\n'
        'upstream = "grpc"\nmax_body_size = "4k"\n\n[[routes]]\nname = "grpc"')
    jester = make_jester(config)
    workers = jester.worker_pids()
    flag = "--http2-prior-knowledge" if protocol == "h2c" else "--http1.1"
    frame = b"\x00" + (1000).to_bytes(4, "big") + b"x" * 1000
    url = f"http://127.0.0.1:{h2c_port}/jester.Test/"
    # No Content-Length (a body read from a pipe): the limit trips while the body streams, after the stream to
    # the target has opened (the first frame went ahead on its own).
    too_big = subprocess.Popen(["curl", "-sS", flag, "-o", "/dev/null", "-w", "%{http_code}", "-T", "-",
                                "-X", "POST", "-H", "content-type: application/grpc", "-H", "te: trailers",
                                url + "ClientStream"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    too_big.stdin.write(frame)
    too_big.stdin.flush()
    time.sleep(0.5)
    too_big.stdin.write(frame * 64)
    too_big.stdin.close()
    assert too_big.stdout.read() == b"413", too_big.stderr.read()
    too_big.wait(timeout=10)
    # The target answers while the client is still sending (its pipe stays open for 3 s more).
    early = subprocess.Popen(f"(cat; sleep 3) | curl -sS {flag} -o /dev/null -T - -X POST "
                             f"-H 'content-type: application/grpc' -H 'te: trailers' {url}Early", shell=True,
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    early.stdin.write(frame)
    early.stdin.close()
    try:
        wait_for(lambda: any(e.get("target", "").endswith("/Early") for e in jester.access_log()), timeout=5,
                 what="the early answer")
        # (Workers report their counts about once a second.)
        wait_for(lambda: in_flight(jester) == 0, timeout=2.5, what="the early answer's stream to be given back")
    finally:
        early.kill()
        early.wait()
    time.sleep(0.3)
    # The target's stream for the 413 was reset; before, the worker kept it and died when the target's events
    # reached the stream after the client's connection was gone.
    assert jester.worker_pids() == workers and "Fatal error" not in jester.logs(), jester.logs()[-3000:]
    wait_for(lambda: in_flight(jester) == 0, timeout=3, what="every upstream stream to be given back")
    assert run_client(f"127.0.0.1:{h2c_port}")["unary"] == "echo:hello"


def test_grpc_to_a_tls_target_with_alpn_h2(make_jester):
    server = GRPCServer(tls=True)
    try:
        h2c_port = free_port()
        jester = make_jester(jester_config(server, target_tls=True).replace("{h2c_port}", str(h2c_port)))
        results = run_client(f"127.0.0.1:{h2c_port}")
        assert results["unary"] == "echo:hello" and results["bidi"] == ["X", "YZ"]
        assert results["fail"] == ["PERMISSION_DENIED", "no entry"]
    finally:
        server.stop()


def test_an_http1_client_reaches_an_h2_pool(make_jester, grpc_server):
    """HTTP/1.1 in front, HTTP/2 behind: the request (a gRPC frame in a chunked body) crosses as a stream."""
    h2c_port = free_port()
    jester = make_jester(jester_config(grpc_server).replace("{h2c_port}", str(h2c_port)))
    frame = b"\x00" + (5).to_bytes(4, "big") + b"hello"
    result = subprocess.run(["curl", "-sS", "--http1.1", "-i", "-X", "POST", "-H", "content-type: application/grpc",
                             "-H", "Transfer-Encoding: chunked", "--data-binary", "@-",
                             f"http://127.0.0.1:{h2c_port}/jester.Test/Unary"],
                            input=frame, capture_output=True, timeout=20)
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), result.stdout[:300]
    # The length-prefixed answer; the status trailer is dropped for an HTTP/1.1 client.
    assert body.endswith(b"echo:hello"), body


def test_a_target_going_away_fails_streams_cleanly(make_jester):
    server = GRPCServer()
    h2c_port = free_port()
    jester = make_jester(jester_config(server).replace("{h2c_port}", str(h2c_port)))
    assert run_client(f"127.0.0.1:{h2c_port}")["unary"] == "echo:hello"
    server.stop()
    # The target is gone: calls fail as UNAVAILABLE (a 502 or a reset), the worker keeps serving.
    result = subprocess.run([PYTHON, "-c", f"""
import grpc
channel = grpc.insecure_channel("127.0.0.1:{h2c_port}")
try:
    channel.unary_unary("/jester.Test/Unary")(b"x", timeout=10)
    print("no error")
except grpc.RpcError as error:
    print(error.code().name)
"""], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "UNAVAILABLE", result.stdout + result.stderr
    assert jester.all_ready()


def test_sticky_cookies_hold_on_an_h2_pool_for_both_client_protocols(make_jester):
    servers = [GRPCServer(), GRPCServer()]
    try:
        h2c_port = free_port()
        jester = make_jester(f"""
[[listeners]]
name = "h2c"
address = "127.0.0.1:{h2c_port}"

[[routes]]
upstream = "grpc"

[upstreams.grpc]
targets = ["127.0.0.1:{servers[0].port}", "127.0.0.1:{servers[1].port}"]
protocol = "h2"
sticky_cookie = "SRV"
""")
        frame = b"\x00" + (2).to_bytes(4, "big") + b"hi"

        def who(version, cookie=None):
            result = subprocess.run(["curl", "-sS", version, "-D", "-", "-o", "-", "-X", "POST",
                                     "-H", "content-type: application/grpc", "-H", "te: trailers",
                                     *(["-H", f"Cookie: {cookie}"] if cookie else []), "--data-binary", "@-",
                                     f"http://127.0.0.1:{h2c_port}/jester.Test/Who"],
                                    input=frame, capture_output=True, timeout=20)
            text = result.stdout.decode("latin-1")
            port = re.search(r"port:(\d+)", text)
            cookies = [line.split(":", 1)[1].strip().split(";")[0] for line in text.splitlines()
                       if line.lower().startswith("set-cookie:")]
            assert port, text
            return int(port.group(1)), cookies

        for version in ("--http2-prior-knowledge", "--http1.1"):
            port, cookies = who(version)
            assert len(cookies) == 1 and cookies[0].startswith("SRV="), cookies
            # Round robin would alternate; the cookie holds the client to its target, and is not set again.
            for _ in range(4):
                assert who(version, cookies[0]) == (port, [])
    finally:
        for server in servers:
            server.stop()
