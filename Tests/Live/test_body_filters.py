# SPDX-License-Identifier: Apache-2.0
"""The pre-upstream phase's opt-in body access (issue 18, jester-pipeline(7)): a filter that reads the request body
(`hmac_signature`, a webhook signature over the whole body) gets all of it before the request goes anywhere, over
HTTP/1.1 and HTTP/2, with a length or chunked; a refused or oversized request never reaches the upstream, and an
accepted one reaches it byte for byte."""

import hashlib
import hmac
import socket
import subprocess
import time

import pytest

from conftest import Jester

PROTOCOLS = ["http1", "h2c"]
SECRET = b"It's a Secret to Everybody"


def signature(body):
    return "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def hooks(upstream, tmp_path_factory):
    secret = tmp_path_factory.mktemp("body-filters") / "webhook.secret"
    secret.write_bytes(SECRET + b"\n")
    instance = Jester(f"""
[http]
client_body_timeout = "1s"

[upstreams.app]
targets = ["{upstream.address}"]

[filters.github]
kind = "hmac_signature"
header = "X-Hub-Signature-256"
prefix = "sha256="
secret_file = "{secret}"
max_body = "64KiB"

[[routes]]
name = "hooks"
path_prefix = "/hooks/"
filters = ["github"]
upstream = "app"

[[routes]]
name = "matched"
path_prefix = "/matched/"
match_body = {{ regex = "push", max_size = "1KiB" }}
filters = ["github"]
upstream = "app"
""")
    yield instance
    instance.stop()


def post(jester, path, body, protocol, headers=(), chunked=False):
    """POSTs `body` with curl over `protocol`; the status and the response body."""
    args = ["curl", "-sS", "--max-time", "10", "--http2-prior-knowledge" if protocol == "h2c" else "--http1.1",
            "-o", "-", "-w", "\n%{http_code}", "--data-binary", "@-", "-H", "Content-Type: application/json"]
    if chunked:
        # Over HTTP/2 the body then comes in DATA frames without a content-length.
        args += ["-H", "Transfer-Encoding: chunked"]
    for header in headers:
        args += ["-H", header]
    result = subprocess.run(args + [jester.url + path], input=body, capture_output=True, timeout=15)
    assert result.returncode == 0, result.stderr.decode()
    out, _, code = result.stdout.rpartition(b"\n")
    return int(code), out


def reached(upstream, path):
    return sum(1 for r in upstream.requests() if r["path"] == path)


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_signed_body_passes_whole(hooks, upstream, protocol, chunked):
    body = b'{"ref": "refs/heads/main", "commits": [' + b'"x",' * 3000 + b'"y"]}'
    path = f"/hooks/{protocol}-{chunked}/upload"
    status, out = post(hooks, path, body, protocol, [f"X-Hub-Signature-256: {signature(body)}"], chunked)
    assert status == 200, out
    # The upstream got exactly the body the filter checked.
    assert f'"sha256": "{hashlib.sha256(body).hexdigest()}"' in out.decode() or hashlib.sha256(body).hexdigest() in out.decode()
    assert reached(upstream, path) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_bad_or_missing_signature_is_refused_before_the_upstream(hooks, upstream, protocol):
    body = b'{"ref": "refs/heads/main"}'
    for n, headers in enumerate([[f"X-Hub-Signature-256: {signature(body + b' ')}"], [],
                                 [f"X-Hub-Signature-256: {signature(body)[7:]}"]]):
        path = f"/hooks/bad-{protocol}-{n}/upload"
        status, _ = post(hooks, path, body, protocol, headers)
        assert status == 403, headers
        assert reached(upstream, path) == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_body_over_the_filters_limit_gets_413_and_reaches_nothing(hooks, upstream, protocol):
    body = b"z" * (64 * 1024 + 1)
    for chunked in (False, True):
        path = f"/hooks/big-{protocol}-{chunked}/upload"
        status, _ = post(hooks, path, body, protocol, [f"X-Hub-Signature-256: {signature(body)}"], chunked)
        assert status == 413
        assert reached(upstream, path) == 0


def test_an_http1_client_expecting_100_continue_is_told_to_send(hooks, upstream):
    body = b'{"zen": "keep it logically awesome"}'
    path = "/hooks/expect/upload"
    status, _ = post(hooks, path, body, "http1", [f"X-Hub-Signature-256: {signature(body)}", "Expect: 100-continue"])
    assert status == 200
    assert reached(upstream, path) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_body_matched_before_routing_is_read_on_for_the_filter(hooks, upstream, protocol):
    """A route chosen on the start of the body (match_body, 1 KiB) whose filter reads all of it: the body past the
    matchers' peek is held too, and checked whole."""
    body = b'{"action": "push", "padding": "' + b"p" * 8000 + b'"}'
    path = f"/matched/{protocol}/upload"
    status, _ = post(hooks, path, body, protocol, [f"X-Hub-Signature-256: {signature(body)}"])
    assert status == 200
    tampered = body.replace(b"ppp", b"qqq", 1)
    status, _ = post(hooks, path, tampered, protocol, [f"X-Hub-Signature-256: {signature(body)}"])
    assert status == 403
    assert reached(upstream, path) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_body_that_stops_coming_while_held_gets_408(hooks, upstream, protocol):
    """The body held for the filters is bounded in time too (client_body_timeout): two bytes, then nothing."""
    path = f"/hooks/stalled-{protocol}/upload"
    started = time.monotonic()
    if protocol == "http1":
        with socket.create_connection(("127.0.0.1", hooks.port), timeout=6) as client:
            client.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab".encode())
            assert client.recv(4096).startswith(b"HTTP/1.1 408")
    else:
        from test_http2 import raw_h2
        fields = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
                  ("content-length", "10")]
        frames = raw_h2(hooks.port, fields, body=b"ab", end_stream=False)
        heads = [payload for kind, _, stream, payload in frames if stream == 1 and kind == 0x1]
        assert heads, frames
    assert 0.8 < time.monotonic() - started < 3
    assert reached(upstream, path) == 0
    from conftest import wait_for
    wait_for(lambda: any(r.get("path", r.get("target")) == path and r["status"] == 408
                         and r.get("error") == "client body timeout" for r in hooks.access_log()),
             timeout=3, what="the 408 in the access log")
