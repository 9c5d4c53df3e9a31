# SPDX-License-Identifier: Apache-2.0
"""CORS as a request filter (issue 21, jester-pipeline(7)), over HTTP/1.1 and HTTP/2 with curl: preflights are
answered by Jester (204, or 403 when they ask for an origin, method or header not allowed) and never reach the
upstream; actual requests go on, and their responses carry Access-Control-Allow-Origin and the rest for allowed
origins, nothing for refused ones, and Vary: Origin either way."""

import subprocess
import zlib

import pytest

from conftest import Jester
from jwt_tokens import FIXTURES

PROTOCOLS = ["http1", "h2c"]
HTPASSWD = FIXTURES / "htpasswd"  # bob's password is "bob-secret"
PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


class Response:
    def __init__(self, status, fields, body):
        self.status, self.fields, self.body = status, fields, body

    def values(self, name):
        """Every value of the fields called `name`, in order (HTTP/2 names arrive lowercase)."""
        return [value for key, value in self.fields if key == name.lower()]

    def header(self, name):
        values = self.values(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else None

    def cors_fields(self):
        return [key for key, _ in self.fields if key.startswith("access-control-")]


def request(jester, path, protocol, method="GET", headers=(), user=None):
    """One request with curl over `protocol`: status, every field (lowercase names, in order), body."""
    args = ["curl", "-sS", "-i", "--max-time", "10", "-X", method,
            "--http2-prior-knowledge" if protocol == "h2c" else "--http1.1"]
    for header in headers:
        args += ["-H", header]
    if user:
        args += ["-u", user]
    result = subprocess.run(args + [jester.url + path], capture_output=True, timeout=15)
    assert result.returncode == 0, result.stderr.decode()
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields.append((name.strip().lower(), value.strip()))
    return Response(int(lines[0].split()[1]), fields, body)


def preflight(jester, path, protocol, origin, method="PUT", headers=None, extra=()):
    fields = [f"Origin: {origin}", f"Access-Control-Request-Method: {method}", *extra]
    if headers:
        fields.append(f"Access-Control-Request-Headers: {headers}")
    return request(jester, path, protocol, method="OPTIONS", headers=fields)


def reached(upstream, path):
    """How many requests for exactly `path` the upstream saw."""
    return sum(1 for r in upstream.requests() if r["path"] == path)


@pytest.fixture(scope="module")
def site(upstream):
    instance = Jester(f"""
[upstreams.app]
targets = ["{upstream.address}"]

[filters.browsers]
kind = "cors"
allow_origins = ["https://app.example.com", "https://*.example.org"]
allow_methods = ["GET", "POST", "PUT"]
allow_headers = ["Content-Type", "X-Request-Token"]
expose_headers = ["X-Total-Count"]
allow_credentials = true
max_age = "10m"

[filters.anyone]
kind = "cors"
allow_origins = "*"
allow_private_network = true

[filters.staff]
kind = "basic_auth"
realm = "staff"
htpasswd = "{HTPASSWD}"

[[routes]]
path_prefix = "/api/"
filters = ["browsers"]
upstream = "app"

[[routes]]
path_prefix = "/public/"
filters = ["anyone"]
upstream = "app"

[[routes]]
path_prefix = "/private/"
filters = ["browsers", "staff"]
upstream = "app"
""")
    yield instance
    instance.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_allowed_preflight_is_answered_by_jester(site, upstream, protocol):
    path = f"/api/preflight-{protocol}"
    response = preflight(site, path, protocol, "https://app.example.com", headers="content-type,x-request-token")
    assert response.status == 204, response.fields
    assert response.header("access-control-allow-origin") == "https://app.example.com"
    assert response.header("access-control-allow-credentials") == "true"
    assert response.header("access-control-allow-methods") == "GET, POST, PUT"
    assert response.header("access-control-allow-headers") == "Content-Type, X-Request-Token"
    assert response.header("access-control-max-age") == "600"
    assert response.header("vary") == PREFLIGHT_VARY
    # RFC 9110 §8.6: no Content-Length on a 204, and no body.
    assert response.header("content-length") is None and response.body == b""
    assert reached(upstream, path) == 0
    line = [r for r in site.access_log() if r["target"] == path][-1]
    assert line["status"] == 204 and "error" not in line and "upstream" not in line


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("origin, method, headers, why", [
    ("https://evil.example.com", "GET", None, "origin https://evil.example.com is not allowed"),
    ("https://app.example.com.evil.net", "GET", None, "is not allowed"),
    ("https://evil-example.org", "GET", None, "is not allowed"),
    ("http://app.example.com", "GET", None, "is not allowed"),
    ("https://app.example.com:8443", "GET", None, "is not allowed"),
    ("https://app.example.com", "DELETE", None, "method DELETE is not allowed"),
    ("https://app.example.com", "PUT", "content-type,authorization", "header authorization is not allowed"),
])
def test_a_refused_preflight_gets_403_and_never_reaches_the_upstream(site, upstream, protocol, origin, method,
                                                                     headers, why):
    path = f"/api/refused-{protocol}-{zlib.crc32(repr((origin, method, headers)).encode())}"
    response = preflight(site, path, protocol, origin, method=method, headers=headers)
    assert response.status == 403
    assert response.cors_fields() == [], "a refused preflight allows nothing"
    assert response.header("vary") == PREFLIGHT_VARY
    assert reached(upstream, path) == 0
    line = [r for r in site.access_log() if r["target"] == path][-1]
    assert line["status"] == 403 and line["error"].startswith("cors browsers: preflight refused: ")
    assert why in line["error"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wildcard_subdomains_and_private_network_preflights(site, upstream, protocol):
    for origin in ("https://shop.example.org", "https://eu.api.example.org"):
        response = preflight(site, f"/api/sub-{protocol}", protocol, origin, method="POST")
        assert response.status == 204
        assert response.header("access-control-allow-origin") == origin
    assert preflight(site, f"/api/sub-{protocol}", protocol, "https://example.org").status == 403
    # Private Network Access: refused where not allowed, answered where it is.
    pna = ["Access-Control-Request-Private-Network: true"]
    assert preflight(site, f"/api/pna-{protocol}", protocol, "https://app.example.com", extra=pna).status == 403
    response = preflight(site, f"/public/pna-{protocol}", protocol, "https://anyone.test", method="GET", extra=pna)
    assert response.status == 204
    assert response.header("access-control-allow-private-network") == "true"
    assert response.header("access-control-allow-origin") == "*"
    assert reached(upstream, f"/api/sub-{protocol}") + reached(upstream, f"/public/pna-{protocol}") == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_actual_request_from_an_allowed_origin_gets_its_fields(site, upstream, protocol):
    path = f"/api/actual-{protocol}"
    response = request(site, path, protocol, headers=["Origin: https://app.example.com"])
    assert response.status == 200
    assert response.header("access-control-allow-origin") == "https://app.example.com"
    assert response.header("access-control-allow-credentials") == "true"
    assert response.header("access-control-expose-headers") == "X-Total-Count"
    assert "Origin" in response.values("vary")
    assert response.header("access-control-allow-methods") is None, "methods belong to preflights"
    assert reached(upstream, path) == 1
    # An OPTIONS without Access-Control-Request-Method is no preflight: the upstream answers it.
    options = request(site, path, protocol, method="OPTIONS", headers=["Origin: https://app.example.com"])
    assert options.status == 200 and options.header("access-control-allow-origin") == "https://app.example.com"
    assert reached(upstream, path) == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_upstreams_own_cors_fields_give_way_to_the_routes(site, protocol):
    # An upstream that allows every origin itself: on a cors route only Jester's answer reaches the browser.
    path = "/api/download?size=3&access-control-allow-origin=*"
    allowed = request(site, path, protocol, headers=["Origin: https://app.example.com"])
    assert allowed.values("access-control-allow-origin") == ["https://app.example.com"]
    refused = request(site, path, protocol, headers=["Origin: https://evil.example.com"])
    assert refused.cors_fields() == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_refused_origins_and_requests_without_one_go_on_with_vary_only(site, upstream, protocol):
    for index, headers in enumerate([["Origin: https://evil.example.com"], ["Origin: null"], []]):
        path = f"/api/plain-{protocol}-{index}"
        response = request(site, path, protocol, headers=headers)
        assert response.status == 200, headers
        assert response.cors_fields() == [], headers
        # Vary: Origin even here, so that no cache hands this answer to an allowed origin.
        assert response.values("vary") == ["Origin"], headers
        assert reached(upstream, path) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_any_origin_is_star_on_every_response_without_vary(site, upstream, protocol):
    for headers in (["Origin: https://anyone.test"], []):
        response = request(site, f"/public/any-{protocol}", protocol, headers=headers)
        assert response.status == 200
        assert response.header("access-control-allow-origin") == "*"
        assert response.header("access-control-allow-credentials") is None
        assert response.values("vary") == []
    response = preflight(site, f"/public/any-{protocol}", protocol, "https://anyone.test", method="POST")
    assert response.status == 204 and response.header("access-control-allow-origin") == "*"
    assert response.header("access-control-allow-methods") == "GET, HEAD, POST"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cors_before_authentication_answers_preflights_and_labels_refusals(site, upstream, protocol):
    path = f"/private/items-{protocol}"
    # A preflight carries no credentials; cors answers it before basic_auth could refuse it.
    assert preflight(site, path, protocol, "https://app.example.com", method="GET").status == 204
    # A request without credentials is refused by basic_auth, and the browser may read why (the 401 carries them).
    refused = request(site, path, protocol, headers=["Origin: https://app.example.com"])
    assert refused.status == 401
    assert refused.header("access-control-allow-origin") == "https://app.example.com"
    assert refused.header("access-control-allow-credentials") == "true"
    assert reached(upstream, path) == 0
    admitted = request(site, path, protocol, headers=["Origin: https://app.example.com"], user="bob:bob-secret")
    assert admitted.status == 200 and admitted.header("access-control-allow-origin") == "https://app.example.com"
    assert reached(upstream, path) == 1
