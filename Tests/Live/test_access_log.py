# SPDX-License-Identifier: Apache-2.0
"""Live tests of the access log and what every response carries (issue 19): one line per request however it
ends (answered, refused, abandoned by its client, cut by the drain timeout), a request id on every line and every
response, the fields operators expect as JSON numbers, a choice of fields; and redirects that keep the request
(placeholders, a listener's HTTP→HTTPS redirect). Each behaviour runs over HTTP/1.1 and HTTP/2."""

import json
import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import PROTOCOLS, Jester, curl, free_port, raw_request, wait_for

ID_HEADER = "X-Correlation-Id"


def config(upstream, redirect_port, extra=""):
    return f"""
[http]
request_id_header = "{ID_HEADER}"

[upstreams.app]
targets = ["{upstream.address}"]
response_timeout = "3s"

[upstreams.dead]
targets = ["127.0.0.1:1"]

[[routes]]
listeners = ["main"]
path_prefix = "/"
upstream = "app"

[[routes]]
listeners = ["main"]
path_prefix = "/dead/"
upstream = "dead"

[[routes]]
listeners = ["main"]
path_prefix = "/www/"
redirect = {{ location = "https://www.{{hostname}}:8443{{target}}", status = 301 }}

[[routes]]
listeners = ["main"]
path_prefix = "/literal"
redirect = {{ location = "https://example.test/{{{{braces}}}}" }}

[[listeners]]
name = "plain"
address = "127.0.0.1:{redirect_port}"
redirect_to_https = 8443
{extra}
"""


@pytest.fixture(scope="module")
def jester(upstream):
    redirect_port = free_port()
    instance = Jester(config(upstream, redirect_port))
    instance.redirect_port = redirect_port
    yield instance
    instance.stop()


def exchange(*args, protocol=None):
    """Runs curl; returns (status, {lowercase name: value}, body)."""
    from conftest import PROTOCOL_FLAGS
    flags = [PROTOCOL_FLAGS[protocol]] if protocol else []
    result = subprocess.run(["curl", "-sS", "--max-time", "10", *flags, "-D", "-", *args],
                            capture_output=True, text=True, timeout=15)
    head, _, body = result.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    status = int(lines[0].split()[1])
    return status, {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}, body


def headers(*args, protocol=None):
    status, fields, _ = exchange(*args, protocol=protocol)
    return status, fields


def upstream_saw(body):
    """The values of the request id field the upstream's /echo received."""
    return [v for k, v in json.loads(body)["headers"] if k.lower() == ID_HEADER.lower()]


def line_with(jester, request_id):
    return wait_for(lambda: next((e for e in jester.access_log() if e["request_id"] == request_id), None),
                    timeout=3, what=f"the access line of {request_id}")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_response_and_line_has_the_request_id(jester, upstream, protocol):
    for path, expected in [("/echo", 200), ("/dead/x", 502), ("/www/a", 301)]:
        status, fields = headers(jester.url + path, protocol=protocol)
        assert status == expected
        request_id = fields[ID_HEADER.lower()]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id), fields
        line = line_with(jester, request_id)
        assert line["status"] == expected
        if path.startswith("/dead/"):
            # Said plainly, with the target (not SwiftNIO's nested error wording).
            assert line["error"] == "connect 127.0.0.1:1: connection refused", line
    # A client's own id is kept: sent upstream, returned, logged; the upstream's echo is not doubled.
    own = f"client-chosen-{protocol}"
    status, fields, body = exchange("-H", f"{ID_HEADER}: {own}", jester.url + "/echo?own", protocol=protocol)
    assert fields[ID_HEADER.lower()] == own and upstream_saw(body) == [own]
    assert line_with(jester, own)["status"] == 200
    # A generated one reaches the upstream as the client sees it.
    status, fields, body = exchange(jester.url + "/echo?generated", protocol=protocol)
    assert upstream_saw(body) == [fields[ID_HEADER.lower()]]
    # One too long to keep is replaced, upstream too.
    status, fields, body = exchange("-H", f"{ID_HEADER}: {'x' * 129}", jester.url + "/echo?long", protocol=protocol)
    replaced = fields[ID_HEADER.lower()]
    assert re.fullmatch(r"[0-9a-f]{32}", replaced) and upstream_saw(body) == [replaced]


def test_refused_requests_have_ids_too(jester):
    # A malformed request never reaches a route, and still gets an id, on the wire and in the log.
    answer = raw_request(jester.port, b"GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")
    request_id = re.search(rb"X-Correlation-Id: ([0-9a-f]{32})\r\n", answer).group(1).decode()
    assert line_with(jester, request_id)["status"] == 400


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_lines_have_client_upstream_and_timing_fields_as_numbers(jester, protocol):
    _, fields = headers("-A", "live-test-agent/1.0", "-e", "https://referrer.test/page", jester.url + "/slow?delay=0.2",
                        protocol=protocol)
    line = line_with(jester, fields[ID_HEADER.lower()])
    assert line["user_agent"] == "live-test-agent/1.0" and line["referer"] == "https://referrer.test/page"
    assert line["upstream_status"] == 200 and line["status"] == 200
    for name in ("upstream_connect_ms", "upstream_first_byte_ms", "upstream_duration_ms", "duration_ms"):
        assert isinstance(line[name], float), (name, line)
    assert line["upstream_connect_ms"] <= line["upstream_first_byte_ms"] <= line["upstream_duration_ms"]
    assert 200 <= line["upstream_first_byte_ms"] < 2000
    assert isinstance(line["bytes_out"], int) and line["bytes_out"] > 0
    # A local answer has no upstream fields.
    _, fields = headers(jester.url + "/www/x", protocol=protocol)
    line = line_with(jester, fields[ID_HEADER.lower()])
    assert not any(key.startswith("upstream") for key in line), line


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_client_that_gives_up_is_logged_as_499_when_it_left(jester, upstream, protocol):
    started = time.monotonic()
    # curl gives up after 1 s; the upstream would answer after 2.5 s (within the 3 s response timeout).
    status, _, _ = curl("-H", f"{ID_HEADER}: gave-up-{protocol}", jester.url + "/slow?delay=2.5", timeout=1,
                        protocol=protocol)
    assert status == 0 and time.monotonic() - started < 2
    line = line_with(jester, f"gave-up-{protocol}")
    assert line["status"] == 499, line
    assert 900 <= line["duration_ms"] < 1800, line
    assert "client" in line["error"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_redirects_keep_the_request(jester, protocol):
    status, fields = headers(jester.url + "/www/a/b?x=1&y", protocol=protocol)
    assert status == 301 and fields["location"] == "https://www.127.0.0.1:8443/www/a/b?x=1&y"
    status, fields = headers("-H", "Host: shop.example", jester.url + "/www/?q", protocol=protocol)
    assert fields["location"] == "https://www.shop.example:8443/www/?q"
    status, fields = headers(jester.url + "/literal", protocol=protocol)
    assert status == 302 and fields["location"] == "https://example.test/{braces}"
    # The listener that only sends clients to HTTPS: 308 keeps method and body; path and query survive.
    plain = f"http://127.0.0.1:{jester.redirect_port}"
    status, fields = headers("-X", "POST", "-H", "Host: shop.example:80", plain + "/cart/add?id=7", protocol=protocol)
    assert status == 308 and fields["location"] == "https://shop.example:8443/cart/add?id=7"
    assert re.fullmatch(r"[0-9a-f]{32}", fields[ID_HEADER.lower()])


def test_a_listener_redirect_needs_a_host(jester):
    answer = raw_request(jester.redirect_port, b"GET /x HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")


def test_fields_can_be_chosen_and_ordered(make_jester, upstream):
    instance = make_jester(f"""
[log]
access_log_fields = ["status", "request_id", "upstream_status", "method"]

[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
path_prefix = "/"
upstream = "app"
""")
    curl(instance.url + "/echo")

    def lines():
        return [json.loads(line) for line in instance.logs().splitlines() if line.startswith('{"status"')]
    line = wait_for(lines, timeout=3, what="the access line")[0]
    assert list(line) == ["status", "request_id", "upstream_status", "method"], line


def test_requests_cut_by_the_drain_timeout_are_logged(make_jester, upstream):
    instance = make_jester(f"""
[upstreams.app]
targets = ["{upstream.address}"]
response_timeout = "30s"

[[routes]]
path_prefix = "/"
upstream = "app"
""")
    results = {}

    def slow(protocol):
        results[protocol] = curl("-H", f"X-Request-Id: cut-{protocol}", instance.url + "/slow?delay=6",
                                 protocol=protocol, timeout=10)

    clients = [threading.Thread(target=slow, args=(protocol,)) for protocol in PROTOCOLS]
    for client in clients:
        client.start()
    wait_for(lambda: len([r for r in upstream.requests() if r["path"] == "/slow?delay=6"]) >= 2, timeout=5,
             what="both requests upstream")
    instance.ctl("drain", "--timeout", "1", timeout=20)
    for client in clients:
        client.join(timeout=10)
    for protocol in PROTOCOLS:
        line = wait_for(lambda: next((e for e in instance.access_log() if e["request_id"] == f"cut-{protocol}"), None),
                        timeout=5, what="the cut request's line")
        assert line["status"] == 0 and line["error"] == "cut at the drain timeout", line
        assert results[protocol][0] == 0
