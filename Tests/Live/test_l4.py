# SPDX-License-Identifier: Apache-2.0
"""Live tests of tcp listeners: raw stream relaying to a pool, Redis through Jester, PROXY protocol both ways."""

import shutil
import socket
import subprocess
import time

import pytest

from conftest import free_port, wait_for
from loopback_server import LoopbackServer


class StreamServer(LoopbackServer):
    """A TCP upstream: records a PROXY protocol header if one comes first, then answers each connection with
    "<name> <bytes received>\\n" once the client half-closes (or echoes line by line with echo=True)."""

    def __init__(self, name, echo=False):
        self.name = name
        self.echo = echo
        self.headers = []
        super().__init__()

    def handle(self, connection):
        with connection:
            data = b""
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                data += chunk
                if data.startswith(b"PROXY ") and b"\r\n" in data:
                    line, _, data = data.partition(b"\r\n")
                    self.headers.append(line.decode())
                elif data.startswith(b"\r\n\r\n\x00\r\nQUIT\n") and len(data) >= 16:
                    length = 16 + int.from_bytes(data[14:16], "big")
                    if len(data) >= length:
                        self.headers.append(data[:length])
                        data = data[length:]
                if self.echo and b"\n" in data:
                    line, _, data = data.partition(b"\n")
                    connection.sendall(line.upper() + b"\n")
            if not self.echo:
                connection.sendall(f"{self.name} {len(data)}\n".encode())

    def stop(self):
        self.close()


def tcp_config(port, targets, listener_extra="", pool_extra=""):
    return f"""
[[listeners]]
name = "stream"
address = "127.0.0.1:{port}"
protocol = "tcp"
upstream = "streams"
{listener_extra}

[upstreams.streams]
targets = [{", ".join(f'"{t}"' for t in targets)}]
{pool_extra}

[[routes]]
listeners = ["main"]
respond = {{ status = 200, body = "http\\n" }}
"""


def exchange(port, payload, header=b""):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(header + payload)
        client.shutdown(socket.SHUT_WR)  # half-close: the server answers after our end
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        return answer.decode()


def test_streams_are_relayed_balanced_and_half_closed(make_jester):
    a, b = StreamServer("a"), StreamServer("b")
    try:
        port = free_port()
        jester = make_jester(tcp_config(port, [a.address, b.address]), workers=2)
        answers = [exchange(port, b"x" * 100_000) for _ in range(10)]
        assert {answer.split()[1] for answer in answers} == {"100000"}, answers
        assert {answer.split()[0] for answer in answers} == {"a", "b"}, answers
        # The HTTP listener of the same instance still serves HTTP.
        from conftest import curl
        assert curl(jester.url + "/")[1] == b"http\n"
        # A target taken out by an operator gets no new streams.
        jester.ctl("upstream", "disable", "streams", a.address, check=True)
        assert {exchange(port, b"y").split()[0] for _ in range(6)} == {"b"}
    finally:
        a.stop()
        b.stop()


def test_proxy_protocol_from_a_trusted_balancer_to_the_target(make_jester):
    target = StreamServer("t")
    try:
        port = free_port()
        make_jester(tcp_config(port, [target.address], listener_extra='proxy_protocol_from = ["127.0.0.0/8"]',
                               pool_extra='send_proxy_protocol = "v1"'))
        # The balancer in front says the client is 203.0.113.7; the target hears the same.
        answer = exchange(port, b"hello", header=b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n")
        assert answer == "t 5\n", answer
        assert target.headers[-1] == f"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443"
        # A trusted source that sends no header is refused.
        assert exchange(port, b"GET / HTTP/1.1\r\n\r\n") == ""
    finally:
        target.stop()


def test_proxy_protocol_v2_names_the_real_client(make_jester):
    target = StreamServer("t")
    try:
        port = free_port()
        make_jester(tcp_config(port, [target.address], pool_extra='send_proxy_protocol = "v2"'))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"abc")
            client.shutdown(socket.SHUT_WR)
            local_port = client.getsockname()[1]
            assert client.recv(100) == b"t 3\n"
        header = target.headers[-1]
        assert header[12] == 0x21 and header[13] == 0x11  # v2 PROXY, TCP over IPv4
        assert header[16:20] == bytes([127, 0, 0, 1]) and int.from_bytes(header[24:26], "big") == local_port
        assert int.from_bytes(header[26:28], "big") == port
    finally:
        target.stop()


def test_idle_streams_are_closed(make_jester):
    target = StreamServer("t", echo=True)
    try:
        port = free_port()
        make_jester(tcp_config(port, [target.address], listener_extra='idle_timeout = "1s"'))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"ping\n")
            assert client.recv(100) == b"PING\n"
            started = time.monotonic()
            assert client.recv(100) == b""  # closed by Jester after a second of silence
            assert 0.8 < time.monotonic() - started < 3
    finally:
        target.stop()


@pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed (Packaging/setup.sh --test)")
def test_redis_through_a_tcp_listener(make_jester, tmp_path):
    redis_port, port = free_port(), free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(redis_port), "ping"], capture_output=True,
                                        text=True).stdout.strip() == "PONG", what="redis")
        make_jester(tcp_config(port, [f"127.0.0.1:{redis_port}"]), workers=2)

        def cli(*args):
            return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        assert cli("set", "jester", "relayed") == "OK"
        assert cli("get", "jester") == "relayed"
        # A pipeline of 10,000 commands over one connection, through the relay's backpressure.
        commands = "".join(f"SET key{i} {'v' * 100}\r\n" for i in range(10_000)) + "DBSIZE\r\n"
        result = subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=commands, capture_output=True,
                                text=True, timeout=30)
        assert "errors: 0, replies: 10001" in result.stdout, result.stdout
        assert cli("dbsize") == "10001"
    finally:
        redis.terminate()
        redis.wait()


# PROXY protocol on HTTP listeners (and below TLS).

def http_proxied_config(upstream, trusted='["127.0.0.0/8"]'):
    return (f"proxy_protocol_from = {trusted}\n\n[[routes]]\nname = \"api\"\nupstream = \"app\"\n\n"
            f'[upstreams.app]\ntargets = ["{upstream.address}"]\n')


def v2_header(source, destination, source_port, destination_port):
    import ipaddress
    source = ipaddress.ip_address(source)
    addresses = (source.packed + ipaddress.ip_address(destination).packed
                 + source_port.to_bytes(2, "big") + destination_port.to_bytes(2, "big"))
    family = 0x21 if source.version == 6 else 0x11  # TCP over IPv6 / IPv4
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, family]) + len(addresses).to_bytes(2, "big") + addresses)


def forwarded_for(answer):
    import json
    body = answer.split(b"\r\n\r\n", 1)[1]
    headers = {name.lower(): value for name, value in json.loads(body)["headers"]}
    return headers.get("x-forwarded-for")


def test_http_listener_takes_the_client_from_a_proxy_header(make_jester, upstream):
    from conftest import raw_request
    jester = make_jester(http_proxied_config(upstream))
    request = b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = raw_request(jester.port, b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n" + request)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert forwarded_for(answer) == "203.0.113.7"
    answer = raw_request(jester.port, v2_header("2001:db8::42", "::1", 4444, 443) + request)
    assert forwarded_for(answer) == "2001:db8::42"
    # A trusted balancer must send the header: a bare request is refused (closed), never served as the balancer.
    assert raw_request(jester.port, request) == b""
    wait_for(lambda: any(entry.get("client") == "203.0.113.7" for entry in jester.access_log()),
             what="the access log naming the real client")


def test_http_listener_ignores_proxy_headers_from_untrusted_clients(make_jester, upstream):
    from conftest import raw_request
    jester = make_jester(http_proxied_config(upstream, trusted='["10.0.0.0/8"]'))
    answer = raw_request(jester.port, b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\nGET /echo HTTP/1.1\r\n"
                                      b"Host: x\r\nConnection: close\r\n\r\n")
    # Not a trusted balancer: the header is just a malformed request line.
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    answer = raw_request(jester.port, b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert forwarded_for(answer) == "127.0.0.1"


class ProxyAwareHTTPServer(LoopbackServer):
    """An HTTP/1.1 server behind send_proxy_protocol: each connection must start with a PROXY header, which the
    answers echo; records how many connections it saw."""

    def __init__(self):
        self.connections = 0
        super().__init__()

    def accepted(self, connection):
        self.connections += 1

    def handle(self, connection):
        with connection:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = connection.recv(4096)
                if not chunk:
                    return
                data += chunk
            proxy_line = data.split(b"\r\n", 1)[0] if data.startswith(b"PROXY ") else b"no header"
            body = proxy_line + b"\n"
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            # Stays open (keep-alive) until the client closes.
            while connection.recv(4096):
                pass

    def stop(self):
        self.close()


def test_http_pool_sends_a_proxy_header_per_client_connection(make_jester):
    import http.client
    target = ProxyAwareHTTPServer()
    try:
        jester = make_jester(f'\n[[routes]]\nname = "api"\nupstream = "app"\n\n[upstreams.app]\n'
                             f'targets = ["127.0.0.1:{target.port}"]\nsend_proxy_protocol = "v1"\n')
        lines = []
        for _ in range(3):
            connection = http.client.HTTPConnection("127.0.0.1", jester.port, timeout=5)
            connection.request("GET", "/")
            response = connection.getresponse()
            lines.append(response.read().decode())
            client_port = connection.sock.getsockname()[1]
            connection.close()
            assert lines[-1].startswith(f"PROXY TCP4 127.0.0.1 127.0.0.1 {client_port} {jester.port}"), lines[-1]
        # Connections carry one client's header, so they are never reused for another client.
        assert target.connections == 3
    finally:
        target.stop()
