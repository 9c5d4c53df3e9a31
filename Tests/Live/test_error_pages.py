# SPDX-License-Identifier: Apache-2.0
"""Error pages (issue 21, jester-pipeline(7) ERROR PAGES), over HTTP/1.1 and HTTP/2 with curl: a listener's and a
route's `error_pages` give Jester's own errors their bodies (a page file with placeholders, a class page, RFC 9457
problem+json, a filter's refusal too), `intercept` replaces an upstream's error answer before any of it reaches the client, a route
without error pages keeps the plain text, and a HEAD gets no body."""

import json
import re
import subprocess

import pytest

from conftest import Jester, Upstream, free_port, raw_request, wait_for

PROTOCOLS = ["http1", "h2c"]


PAGES = {
    "404.html": "<h1>{status} {reason}</h1><p>request {request_id}</p>\n",
    "5xx.txt": "Sorry: {status} {reason} ({request_id})\n",
    "503.json": '{"error": "maintenance", "status": {status}, "request_id": "{request_id}"}\n',
}


class PagedJester(Jester):
    """A jester whose configuration directory holds the pages (`errors/`), named relative to the config file."""

    def write_config(self, body):
        (self.dir / "errors").mkdir(exist_ok=True)
        for name, text in PAGES.items():
            (self.dir / "errors" / name).write_text(text)
        super().write_config(body)


@pytest.fixture(scope="module")
def failing():
    server = Upstream(status=503)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def site(upstream, failing):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens: 502
    instance = PagedJester(f"""
error_pages = {{ pages = {{ "404" = "errors/404.html", "5xx" = "errors/5xx.txt" }} }}

[upstreams.app]
targets = ["{upstream.address}"]

[upstreams.dead]
targets = ["{dead}"]

[upstreams.failing]
targets = ["{failing.address}"]
max_fails = 0

[[routes]]
name = "dead"
path_prefix = "/dead/"
upstream = "dead"

[[routes]]
name = "api"
path_prefix = "/api/"
upstream = "dead"
error_pages = {{ format = "problem+json" }}

[[routes]]
name = "intercepted"
path_prefix = "/intercepted/"
upstream = "failing"
retries = 0
error_pages = {{ pages = {{ "503" = "errors/503.json" }}, intercept = ["503"] }}

[[routes]]
name = "passed"
path_prefix = "/passed/"
upstream = "failing"
retries = 0

[filters.office]
kind = "ip_rules"
allow = ["10.0.0.0/8"]

[[routes]]
name = "guarded"
path_prefix = "/guarded/"
upstream = "app"
filters = ["office"]
error_pages = {{ format = "problem+json" }}

[[routes]]
name = "plain"
path_prefix = "/plain/"
upstream = "dead"
error_pages = {{}}
""")
    yield instance
    instance.stop()


def request(jester, path, protocol, method="GET", headers=()):
    """One request with curl over `protocol`: status, fields (lowercase names), body."""
    args = ["curl", "-sS", "--max-time", "10", "--http2-prior-knowledge" if protocol == "h2c" else "--http1.1"]
    args += ["-I"] if method == "HEAD" else ["-D", "-", "-o", "-"]
    for header in headers:
        args += ["-H", header]
    result = subprocess.run(args + [jester.url + path], capture_output=True, timeout=15)
    assert result.returncode == 0, result.stderr.decode()
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), fields, body


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_request_no_route_takes_gets_the_listeners_404_page(site, protocol):
    status, fields, body = request(site, "/nowhere", protocol, headers=["X-Request-Id: page-test-1"])
    assert status == 404
    assert fields["content-type"] == "text/html; charset=utf-8"
    assert body == b"<h1>404 Not Found</h1><p>request page-test-1</p>\n"
    assert int(fields["content-length"]) == len(body)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_dead_upstream_gets_the_5xx_class_page(site, protocol):
    status, fields, body = request(site, "/dead/x", protocol)
    assert status == 502
    assert fields["content-type"] == "text/plain; charset=utf-8"
    assert body.startswith(b"Sorry: 502 Bad Gateway (") and body.endswith(b")\n")
    # The placeholder became the request's id: the one the access log records.
    request_id = body[len(b"Sorry: 502 Bad Gateway ("):-2].decode()
    assert len(request_id) >= 16 and "{" not in request_id


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_api_route_answers_problem_json(site, protocol):
    status, fields, body = request(site, "/api/items", protocol, headers=["X-Request-Id: api-test-7"])
    assert status == 502
    assert fields["content-type"] == "application/problem+json"
    assert json.loads(body) == {"type": "about:blank", "title": "Bad Gateway", "status": 502,
                                "request_id": "api-test-7"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_intercepted_upstream_503_is_replaced(site, failing, protocol):
    for attempt in range(2):  # the second on whatever connection the first left behind
        path = f"/intercepted/{protocol}/{attempt}"
        status, fields, body = request(site, path, protocol, headers=[f"X-Request-Id: icpt-{protocol}-{attempt}"])
        assert status == 503
        assert fields["content-type"] == "application/json"
        assert json.loads(body) == {"error": "maintenance", "status": 503,
                                    "request_id": f"icpt-{protocol}-{attempt}"}
        assert b"server_port" not in body  # the upstream's own body never reaches the client
        # (The line is written once the exchange ends, which may be just after the client has the response.)
        line = wait_for(lambda: next((r for r in reversed(site.access_log()) if r["target"] == path), None),
                        timeout=5, what=f"the access-log line of {path}")
        assert line["status"] == 503 and line["upstream_status"] == 503 and "error" not in line
    assert any(r["path"].startswith(f"/intercepted/{protocol}/") for r in failing.requests())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_without_intercept_the_upstreams_error_body_goes_through(site, protocol):
    status, fields, body = request(site, "/passed/x", protocol)
    assert status == 503
    assert b"server_port" in body


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_route_with_its_own_empty_error_pages_keeps_the_plain_text(site, protocol):
    status, fields, body = request(site, "/plain/x", protocol)
    assert status == 502
    assert fields["content-type"] == "text/plain; charset=utf-8"
    assert body == b"502 Bad Gateway\n"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_head_gets_the_pages_fields_without_a_body(site, protocol):
    status, fields, body = request(site, "/nowhere", protocol, method="HEAD")
    assert status == 404
    assert fields["content-type"] == "text/html; charset=utf-8"
    assert body == b""


def test_a_head_over_http1_ends_at_the_blank_line(site):
    # curl -I would not notice a body after the head; a keep-alive client would read it as the next response.
    answer = raw_request(site.port, b"HEAD /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 ") and b"text/html" in head
    assert rest == b""


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_filters_refusal_gets_the_routes_error_body(site, protocol):
    status, fields, body = request(site, "/guarded/x", protocol, headers=["X-Request-Id: refused-1"])
    assert status == 403
    assert fields["content-type"] == "application/problem+json"
    assert json.loads(body) == {"type": "about:blank", "title": "Forbidden", "status": 403, "request_id": "refused-1"}


def test_a_reload_reads_edited_pages_and_a_bad_one_keeps_the_old(site):
    page = site.dir / "errors" / "404.html"
    try:
        page.write_text("<p>edited {status}</p>\n")
        site.ctl("reload", check=True)
        assert request(site, "/nowhere", "http1")[2] == b"<p>edited 404</p>\n"
        page.write_text("x" * (64 * 1024 + 1))  # over the cap: refused at its place, the old pages keep serving
        result = site.ctl("reload")
        assert result.returncode != 0
        assert re.search(r"jester\.toml:\d+:\d+: error: errors/404\.html has 65537 bytes; a page may have at most 64KiB",
                         result.stdout + result.stderr), result.stdout + result.stderr
        assert request(site, "/nowhere", "h2c")[2] == b"<p>edited 404</p>\n"
    finally:
        page.write_text(PAGES["404.html"])
        site.ctl("reload", check=True)
