# SPDX-License-Identifier: Apache-2.0
"""Live HTTP/2 tests: real jester workers speaking HTTP/2 (nghttp2) to curl, nghttp, h2load and raw frames,
over TLS (ALPN) and with prior knowledge (h2c), proxying to real HTTP/1.1 upstreams."""

import hashlib
import json
import os
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import SteadyLoad, curl, wait_for

FIXTURES = Path(__file__).resolve().parents[1] / "Fixtures" / "tls"
CA = str(FIXTURES / "ca.pem")


def config(upstream, tls=True, extra_listener=""):
    body = extra_listener + "\n"
    if tls:
        body += (f'[listeners.tls]\n[[listeners.tls.certificates]]\ncert = "{FIXTURES / "alpha.pem"}"\n'
                 f'key = "{FIXTURES / "alpha.key"}"\n')
    return body + f"""
[[routes]]
name = "hello"
path = "/hello"
respond = {{ status = 200, body = "hello\\n", headers = {{ "X-Local" = "yes" }} }}

[[routes]]
name = "app"
upstream = "app"
response_headers = {{ set = {{ "X-Edited" = "1" }} }}

[upstreams.app]
targets = ["{upstream.address}"]
"""


def h2(*args, timeout=30):
    return curl("--http2", "--cacert", CA, *args, timeout=timeout)


def test_alpn_negotiates_h2_and_requests_are_translated(make_jester, upstream):
    jester = make_jester(config(upstream))
    base = f"https://127.0.0.1:{jester.port}"
    result = subprocess.run(["curl", "-sS", "--http2", "--cacert", CA, "-D", "-", "-o", "/dev/null", base + "/hello"],
                            capture_output=True, text=True, timeout=10)
    assert result.stdout.startswith("HTTP/2 200"), result.stdout
    assert "x-local: yes" in result.stdout.lower()
    code, body, error = h2("-H", "Cookie: a=1", "-H", "Cookie: b=2", base + "/echo?x=1")
    assert code == 200, error
    echo = json.loads(body)
    headers = {name.lower(): value for name, value in echo["headers"]}
    assert echo["path"] == "/echo?x=1"
    assert headers["host"] == f"127.0.0.1:{jester.port}"  # :authority
    assert headers["cookie"] == "a=1; b=2"  # crumbs joined (RFC 9113 §8.2.3)
    assert headers["x-forwarded-proto"] == "https"
    # The upstream's HTTP/1.1 response comes back as HTTP/2, with the route's edits and no connection fields.
    result = subprocess.run(["curl", "-sS", "--http2", "--cacert", CA, "-D", "-", "-o", "/dev/null", base + "/echo"],
                            capture_output=True, text=True, timeout=10)
    lowered = result.stdout.lower()
    assert lowered.startswith("http/2 200") and "x-edited: 1" in lowered
    assert "connection:" not in lowered and "keep-alive" not in lowered and "transfer-encoding" not in lowered


def test_prior_knowledge_h2c_and_no_upgrade(make_jester, upstream):
    jester = make_jester(config(upstream, tls=False))
    code, body, error = curl("--http2-prior-knowledge", jester.url + "/hello")
    assert (code, body) == (200, b"hello\n"), error
    # Upgrade: h2c is a smuggling vector: answered in HTTP/1.1, and never forwarded.
    result = subprocess.run(["curl", "-sS", "--http2", "-D", "-", "-o", "/dev/null", jester.url + "/echo"],
                            capture_output=True, text=True, timeout=10)
    assert result.stdout.startswith("HTTP/1.1 200"), result.stdout
    forwarded = [r for r in upstream.requests() if r.get("path") == "/echo"]
    assert forwarded and all("h2c" not in json.dumps(r.get("headers", "")).lower() for r in forwarded)


def test_http2_off_falls_back_to_http1(make_jester, upstream):
    jester = make_jester(config(upstream, extra_listener="http2 = false"))
    result = subprocess.run(["curl", "-sS", "--http2", "--cacert", CA, "-o", "/dev/null", "-w", "%{http_version}",
                             f"https://127.0.0.1:{jester.port}/hello"], capture_output=True, text=True, timeout=10)
    assert result.stdout == "1.1"


def test_large_bodies_stream_both_ways_intact(make_jester, upstream, tmp_path):
    jester = make_jester(config(upstream))
    base = f"https://127.0.0.1:{jester.port}"
    data = os.urandom(3 << 20)
    (tmp_path / "upload.bin").write_bytes(data)
    # No content-length on the HTTP/2 side: the upstream gets it chunked, byte for byte.
    code, body, error = h2("-T", str(tmp_path / "upload.bin"), "-X", "POST", base + "/upload")
    assert code == 200, error
    assert json.loads(body) == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    result = subprocess.run(["curl", "-sS", "--http2", "--cacert", CA, "-o", "/dev/null", "-w", "%{size_download}",
                             base + "/download?size=30000000"], capture_output=True, text=True, timeout=30)
    assert result.stdout == "30000000", result.stderr


def test_a_slow_reader_does_not_make_jester_buffer(make_jester, upstream):
    jester = make_jester(config(upstream))
    worker = jester.worker_pids()[0]

    def rss():
        return int(next(line for line in Path(f"/proc/{worker}/status").read_text().splitlines()
                        if line.startswith("VmRSS")).split()[1])

    before = rss()
    # 200 MB at 1 MB/s for 3 s: the upstream must be paused, not read into memory.
    subprocess.run(["curl", "-sS", "--http2", "--cacert", CA, "--limit-rate", "1M", "--max-time", "3", "-o",
                    "/dev/null", f"https://127.0.0.1:{jester.port}/download?size=200000000"], capture_output=True)
    assert rss() - before < 40_000, f"worker RSS grew by {rss() - before} KiB"


def test_h2load_many_streams(make_jester, upstream):
    jester = make_jester(config(upstream), workers=2)
    result = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "16", f"https://127.0.0.1:{jester.port}/hello"],
                            capture_output=True, text=True, timeout=60)
    assert "2000 succeeded, 0 failed" in result.stdout, result.stdout[-1500:]
    assert "status codes: 2000 2xx" in result.stdout
    result = subprocess.run(["h2load", "-n", "200", "-c", "2", "-m", "4", f"https://127.0.0.1:{jester.port}/echo"],
                            capture_output=True, text=True, timeout=60)
    assert "200 succeeded, 0 failed" in result.stdout, result.stdout[-1500:]


def test_nghttp_sees_settings_and_no_push(make_jester, upstream):
    jester = make_jester(config(upstream, tls=False))
    result = subprocess.run(["nghttp", "-nv", jester.url + "/hello"], capture_output=True, text=True, timeout=10)
    assert "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):128" in result.stdout, result.stdout
    assert "SETTINGS_ENABLE_PUSH(0x02):0" in result.stdout
    assert ":status: 200" in result.stdout


# Raw frames: what curl and nghttp would never send.

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    """An HPACK literal field without indexing, new name, no Huffman coding (RFC 7541 §6.2.2)."""
    name, value = name.encode(), value.encode()
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def raw_h2(port, fields, stream=1, body=None, end_stream=True):
    """Sends one request as raw frames (with `body`, HEADERS then one DATA frame, ending the stream unless not
    `end_stream`); returns the frames received as (type, flags, stream, payload)."""
    block = b"".join(literal(n, v) for n, v in fields)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        if body is None:
            connection.sendall(PREFACE + frame(0x4, 0, 0) + frame(0x1, 0x5, stream, block))
        else:
            connection.sendall(PREFACE + frame(0x4, 0, 0) + frame(0x1, 0x4, stream, block)
                               + frame(0x0, 0x1 if end_stream else 0, stream, body))
        frames = []
        data = b""
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                chunk = connection.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
            while len(data) >= 9:
                length = int.from_bytes(data[:3], "big")
                if len(data) < 9 + length:
                    break
                frames.append((data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF, data[9:9 + length]))
                data = data[9 + length:]
            if any(kind in (0x1, 0x3, 0x7) and sid in (stream, 0) for kind, _, sid, _ in frames if kind != 0x4):
                break
        return frames


BASE = [(":method", "GET"), (":scheme", "http"), (":path", "/echo"), (":authority", "x")]


@pytest.mark.parametrize("bad", [
    [("Upper-Case", "x")],  # RFC 9113 §8.2.1: uppercase names are malformed
    [("connection", "close")],  # §8.2.2: connection-specific
    [("transfer-encoding", "chunked")],
    [("te", "gzip")],
    [("x-bad", "a\r\nb")],
    [("x-nul", "a\x00b")],
    [(":path", "/other")],  # a repeated pseudo-header
])
def test_malformed_requests_are_reset_and_never_forwarded(make_jester, upstream, bad):
    jester = make_jester(config(upstream, tls=False))
    before = len(upstream.requests())
    frames = raw_h2(jester.port, BASE + bad)
    kinds = [kind for kind, _, sid, _ in frames if sid == 1]
    assert 0x3 in kinds or any(kind == 0x7 for kind, _, _, _ in frames), frames  # RST_STREAM or GOAWAY
    assert 0x1 not in kinds  # no response HEADERS
    assert len(upstream.requests()) == before


def test_content_length_disagreeing_with_data_is_reset(make_jester, upstream):
    jester = make_jester(config(upstream, tls=False))
    before = len(upstream.requests())
    for declared, sent in (("10", b"abc"), ("2", b"abc")):
        fields = [(":method", "POST"), (":scheme", "http"), (":path", "/upload"), (":authority", "x"),
                  ("content-length", declared)]
        frames = raw_h2(jester.port, fields, body=sent)
        resets = [payload for kind, _, sid, payload in frames if kind == 0x3 and sid == 1]
        # RST_STREAM with PROTOCOL_ERROR (RFC 9113 §8.1.1), no response, and nothing forwarded: a small declared
        # body is held until the stream ends, where nghttp2 finds the mismatch.
        assert resets and int.from_bytes(resets[0], "big") == 0x1, frames
        assert not any(kind == 0x1 and sid == 1 for kind, _, sid, _ in frames)
    time.sleep(0.3)
    assert len(upstream.requests()) == before


def test_drain_sends_goaway_and_loses_no_request(make_jester, upstream):
    """A reload under HTTP/2 load: every stream the old workers accepted is answered; the only streams not
    served are those opened after the final GOAWAY, which the server never processed and RFC 9113 §6.8 lets a
    client retry (browsers, curl and gRPC do; h2load counts them as errors, at most the streams it keeps in
    flight)."""
    jester = make_jester(config(upstream), workers=2)
    load = subprocess.Popen(["h2load", "-D", "4", "-c", "4", "-m", "8", f"https://127.0.0.1:{jester.port}/hello"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1)
    jester.ctl("reload", "--wait", check=True)
    out, _ = load.communicate(timeout=30)
    succeeded = int(out.split(" succeeded")[0].split()[-1])
    failed = int(out.split(" failed")[0].split()[-1])
    assert succeeded > 100, out[-1500:]
    assert failed <= 4 * 8, out[-1500:]
    assert ", 0 4xx, 0 5xx" in out, out[-1500:]  # nothing answered with an error
    assert not [e for e in jester.access_log() if e.get("status", 200) >= 400], "a stream was answered with an error"


def test_rapid_reset_flood_gets_goaway_and_others_are_served(make_jester, upstream):
    """CVE-2023-44487: streams opened and reset at once. nghttp2's reset-rate limit answers with GOAWAY; the
    worker stays healthy for everyone else."""
    jester = make_jester(config(upstream, tls=False))
    block = b"".join(literal(n, v) for n, v in [(":method", "GET"), (":scheme", "http"), (":path", "/hello"),
                                                 (":authority", "x")])
    flood = PREFACE + frame(0x4, 0, 0) + b"".join(
        frame(0x1, 0x5, stream, block) + frame(0x3, 0, stream, struct.pack(">I", 8)) for stream in range(1, 8001, 2))
    goaway = None
    with socket.create_connection(("127.0.0.1", jester.port), timeout=5) as connection:
        try:
            connection.sendall(flood)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed on us mid-flood: fine, the GOAWAY came first
        data = b""
        try:
            while chunk := connection.recv(65536):
                data += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    responses = 0
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        if data[3] == 0x7:
            goaway = int.from_bytes(data[9 + 4:9 + 8], "big")
        responses += data[3] == 0x1
        data = data[9 + length:]
    # nghttp2 ends the session (INTERNAL_ERROR in its CVE fix; ENHANCE_YOUR_CALM in later versions) long before
    # the 4,000 streams are worked through.
    assert goaway in (0x2, 0xB), f"GOAWAY error {goaway}"
    assert responses < 4000
    code, body, _ = curl("--http2-prior-knowledge", jester.url + "/hello")
    assert (code, body) == (200, b"hello\n")
    assert jester.all_ready()


@pytest.mark.parametrize("flood", ["ping", "settings", "continuation"])
def test_frame_floods_end_the_session_and_spare_the_worker(make_jester, upstream, flood):
    """PING and SETTINGS floods (ACKs the client never reads) and an endless CONTINUATION chain are bounded by
    nghttp2's limits: the session ends, the worker stays up and serves others."""
    jester = make_jester(config(upstream, tls=False))
    pids = jester.worker_pids()
    if flood == "ping":
        frames = b"".join(frame(0x6, 0, 0, b"12345678") for _ in range(20000))
    elif flood == "settings":
        frames = b"".join(frame(0x4, 0, 0) for _ in range(20000))
    else:
        start = literal(":method", "GET") + literal(":scheme", "http") + literal(":path", "/hello")
        frames = frame(0x1, 0x1, 1, start) + b"".join(frame(0x9, 0, 1, literal(f"x-{i}", "y" * 50)) for i in range(20000))
    closed = False
    with socket.create_connection(("127.0.0.1", jester.port), timeout=5) as connection:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # read nothing back: ACKs pile up
        try:
            connection.sendall(PREFACE + frame(0x4, 0, 0) + frames)
            time.sleep(1)
            data = b""
            while chunk := connection.recv(65536):
                data += chunk
            closed = True
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        except socket.timeout:
            closed = False
    assert closed, "the session survived the flood"
    code, body, _ = curl("--http2-prior-knowledge", jester.url + "/hello")
    assert (code, body) == (200, b"hello\n")
    assert jester.worker_pids() == pids


def test_idle_connection_closes_after_keepalive_timeout_counted_from_its_last_stream(make_jester, upstream):
    """An HTTP/2 connection with no stream open gets GOAWAY and is closed after keepalive_timeout; every stream
    puts the clock back, so a connection that keeps being used stays open."""
    jester = make_jester(config(upstream, tls=False) + '\n[http]\nkeepalive_timeout = "1s"\n')
    block = b"".join(literal(n, v) for n, v in [(":method", "GET"), (":scheme", "http"), (":path", "/hello"),
                                                 (":authority", "x")])
    with socket.create_connection(("127.0.0.1", jester.port), timeout=5) as connection:
        received = bytearray()

        def read_until(done, seconds):
            """Reads frames until `done(frames)` or the peer closes; returns (frames, closed)."""
            connection.settimeout(0.1)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                frames, data = [], bytes(received)
                while len(data) >= 9 and len(data) >= 9 + int.from_bytes(data[:3], "big"):
                    length = int.from_bytes(data[:3], "big")
                    frames.append((data[3], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF))
                    data = data[9 + length:]
                if done(frames):
                    return frames, False
                try:
                    chunk = connection.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    return frames, True
                received.extend(chunk)
            return frames, False

        connection.sendall(PREFACE + frame(0x4, 0, 0) + frame(0x1, 0x5, 1, block))
        frames, closed = read_until(lambda f: (0x0, 1) in f, 3)
        assert (0x0, 1) in frames and not closed, frames
        # 0.6 s later (within the timeout) a second stream, and 0.6 s after that the connection is still open:
        # more than a second after the first stream, less than one after the second.
        time.sleep(0.6)
        connection.sendall(frame(0x1, 0x5, 3, block))
        frames, closed = read_until(lambda f: (0x0, 3) in f, 3)
        assert (0x0, 3) in frames and not closed, frames
        answered = time.monotonic()
        frames, closed = read_until(lambda f: False, 0.6)
        assert not closed and (0x7, 0) not in frames, frames
        frames, closed = read_until(lambda f: False, 3)
        assert closed, "the idle connection was not closed"
        assert (0x7, 0) in frames, "no GOAWAY before the close"
        assert 0.9 <= time.monotonic() - answered <= 2.5


BODY_ROUTES = """
[http]
client_body_timeout = "1s"

[[routes]]
name = "gold"
path_prefix = "/orders"
match_body = {{ json = [{{ path = "customer.tier", value = "gold" }}], max_size = "1MiB" }}
upstream = "app"
request_headers = {{ set = {{ "X-Lane" = "priority" }} }}

[[routes]]
name = "xml"
path_prefix = "/orders"
match_body = {{ regex = "^<\\\\?xml", max_size = 64 }}
respond = {{ status = 415, body = "no xml here" }}

[[routes]]
name = "orders"
path_prefix = "/orders"
upstream = "app"

[upstreams.app]
targets = ["{address}"]
"""


def test_body_matchers_route_http2_requests_and_pass_the_body_on_intact(make_jester, upstream, tmp_path):
    """The body arrives in DATA frames after the route would be chosen: it is held (and acknowledged, so a
    max_size above the stream's 64 KiB window cannot stall the client) until the matchers have seen enough."""
    jester = make_jester(BODY_ROUTES.format(address=upstream.address))

    def post(data, path="/orders/echo", *extra):
        (tmp_path / "body").write_bytes(data)
        result = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "-", "-w", "\n%{http_code}",
                                 "--data-binary", f"@{tmp_path / 'body'}", *extra, jester.url + path],
                                capture_output=True, timeout=20)
        text, _, status = result.stdout.rpartition(b"\n")
        return int(status), text

    def lane(text):
        return {name.lower(): value for name, value in json.loads(text)["headers"]}.get("x-lane")

    # 300 KB, past the stream window and within max_size: judged whole, routed on it, forwarded byte for byte.
    gold = json.dumps({"customer": {"tier": "gold"}, "pad": "x" * 300_000}).encode()
    status, text = post(gold)
    assert status == 200 and lane(text) == "priority" and json.loads(text)["body_length"] == len(gold)
    status, text = post(gold, "/orders/upload")
    assert status == 200 and json.loads(text)["sha256"] == hashlib.sha256(gold).hexdigest()
    status, text = post(gold.replace(b"gold", b"silver"))
    assert status == 200 and lane(text) is None
    # Past max_size the JSON cannot be judged: the plain route takes it, still intact.
    huge = json.dumps({"customer": {"tier": "gold"}, "pad": "x" * (1 << 20)}).encode()
    status, text = post(huge, "/orders/upload")
    assert status == 200 and json.loads(text)["sha256"] == hashlib.sha256(huge).hexdigest()
    # Answered locally: the held body is dropped and still acknowledged, so a dozen such requests at once on one
    # connection (far past its window) all complete. (nghttp: curl 7.88 cannot reuse an h2c connection.)
    xml = b'<?xml version="1.0"?>' + b"<pad/>" * 8000
    (tmp_path / "body").write_bytes(xml)
    result = subprocess.run(["nghttp", "-v", "--timeout=10", "-d", str(tmp_path / "body"),
                             *[jester.url + f"/orders/{n}" for n in range(12)]],
                            capture_output=True, text=True, timeout=30)
    assert result.stdout.count(":status: 415") == 12, result.stdout[-2000:]
    wait_for(lambda: {"gold", "xml", "orders"} <= {e.get("route") for e in jester.access_log()}, what="routes logged")


def test_a_body_that_stops_coming_before_the_matchers_decide_gets_408(make_jester, upstream):
    jester = make_jester(BODY_ROUTES.format(address=upstream.address))
    before = len(upstream.requests())
    block = b"".join(literal(n, v) for n, v in [(":method", "POST"), (":scheme", "http"), (":path", "/orders/x"),
                                                (":authority", "x")])
    with socket.create_connection(("127.0.0.1", jester.port), timeout=5) as connection:
        connection.sendall(PREFACE + frame(0x4, 0, 0) + frame(0x1, 0x4, 1, block) + frame(0x0, 0, 1, b'{"cust'))
        wait_for(lambda: any(e.get("status") == 408 and e.get("error") == "client body timeout"
                             for e in jester.access_log()), timeout=5, what="a 408 for the stalled body")
    assert len(upstream.requests()) == before


def frames_until_closed(connection, timeout=3.0):
    """Reads frames until the peer closes the connection; returns them and whether it closed within `timeout`."""
    connection.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    closed = False
    while time.monotonic() < deadline:
        try:
            chunk = connection.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    frames = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        frames.append((data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF, data[9:9 + length]))
        data = data[9 + length:]
    return frames, closed


GET_BLOCK = b"".join(literal(n, v) for n, v in [(":method", "GET"), (":scheme", "http"), (":path", "/hello"),
                                                  (":authority", "x")])


@pytest.mark.parametrize("case", ["client-goaway", "connection-error", "skipped-stream"])
def test_the_connection_closes_as_soon_as_the_session_ends(make_jester, upstream, case):
    """Once nghttp2 is done with a session (either side's GOAWAY and no stream left, or a connection error), the
    socket closes at once, not after keepalive_timeout (h2spec 6.8, 5.4.1, 5.1.1)."""
    jester = make_jester(config(upstream, tls=False))
    with socket.create_connection(("127.0.0.1", jester.port), timeout=5) as connection:
        connection.sendall(PREFACE + frame(0x4, 0, 0) + frame(0x1, 0x5, 1, GET_BLOCK))
        if case == "client-goaway":
            # (Its last stream id names streams this side never opens, server-initiated ones: none.)
            connection.sendall(frame(0x7, 0, 0, struct.pack(">II", 0, 0)))
        elif case == "connection-error":
            connection.sendall(frame(0x0, 0, 0, b"x"))  # DATA on stream 0 (RFC 9113 §6.1: PROTOCOL_ERROR)
        else:
            # Stream 5, then HEADERS on 3, which opening 5 closed (RFC 9113 §5.1.1).
            connection.sendall(frame(0x1, 0x5, 5, GET_BLOCK) + frame(0x1, 0x5, 3, GET_BLOCK))
        frames, closed = frames_until_closed(connection)
    assert closed, frames
    answered = [sid for kind, flags, sid, _ in frames if kind == 0x1]
    if case == "client-goaway":
        assert answered == [1], frames  # the stream in flight is still answered, then the connection closes
    else:
        goaway = [payload for kind, _, _, payload in frames if kind == 0x7]
        assert goaway and struct.unpack(">I", goaway[-1][4:8])[0] == 1, frames  # PROTOCOL_ERROR
        assert 3 not in answered


def test_an_http2_only_listener_ends_anything_but_the_preface(make_jester, upstream):
    """http2_only: a plain-text connection is HTTP/2 from its first byte, so an invalid preface (h2spec 3.5) or an
    HTTP/1.1 request ends it, without an HTTP/1.1 answer; h2c clients are served as before."""
    jester = make_jester(config(upstream, tls=False, extra_listener="http2_only = true"))
    code, body, _ = curl("--http2-prior-knowledge", f"{jester.url}/hello")
    assert code == 200 and body == b"hello\n"
    for opening in (b"INVALID CONNECTION PREFACE\r\n\r\n", b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", jester.port), timeout=5) as connection:
            connection.sendall(opening)
            connection.settimeout(3)
            received = b""
            try:
                while chunk := connection.recv(65536):
                    received += chunk
            except ConnectionResetError:
                pass
        assert not received.startswith(b"HTTP/1"), received
        # Nothing, or HTTP/2 frames only (a SETTINGS, a GOAWAY).
        assert received == b"" or received[3] in (0x4, 0x7), received
    code, _, _ = curl("--http1.1", f"{jester.url}/hello")
    assert code == 0  # no HTTP/1.1 answer at all
