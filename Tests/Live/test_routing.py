# SPDX-License-Identifier: Apache-2.0
"""Live routing tests: every matcher of [[routes]], specificity and priority, rewrites, splits, header edits and
route timeouts, through a real jester, each over HTTP/1.1 and HTTP/2 (one request exchange serves both)."""

import subprocess

import pytest

from conftest import PROTOCOL_FLAGS, PROTOCOLS, curl, wait_for

# How a client sees a response cut short: HTTP/1.1 ends the connection early (curl: partial transfer, 18); HTTP/2
# resets the stream (curl: 92, stream error), or ends it early.
CUT_SHORT = {"http1": {18}, "h2c": {18, 92}}


def route(name, **settings):
    lines = [f'name = "{name}"'] + [f"{key} = {value}" for key, value in settings.items()]
    lines.append(f'respond = {{ status = 200, body = "{name}" }}')
    return "\n[[routes]]\n" + "\n".join(lines) + "\n"


ROUTES = "".join([
    route("fallback", path_prefix='"/"'),
    route("api-get", path_prefix='"/api"', methods='["GET", "HEAD"]'),
    route("api-post", path_prefix='"/api"', methods='["POST"]'),
    route("exact", path='"/api/health"'),
    route("user", path_prefix='"/api"', path_regex='"^/api/users/[0-9]+$"'),
    route("canary", path_prefix='"/app"', match_headers='[{ name = "X-Env", value = "canary" }]'),
    route("bot", path_prefix='"/app"', match_headers='[{ name = "User-Agent", regex = "(?i)bot" }]'),
    route("debug", path_prefix='"/app"', match_headers='[{ name = "X-Debug", present = true }]',
          match_query='[{ name = "trace", present = true }]'),
    route("app", path_prefix='"/app"'),
    route("v2", path_prefix='"/q"', match_query='[{ name = "v", value = "2" }]'),
    route("office", path_prefix='"/internal"', sources='["10.0.0.0/8"]'),
    route("local", path_prefix='"/internal"', sources='["127.0.0.0/8", "::1"]'),
    route("no-legacy", path_prefix='"/legacy"', match_headers='[{ name = "X-Legacy", present = false }]'),
    route("maintenance", path_prefix='"/"', match_headers='[{ name = "X-Maintenance", value = "on" }]',
          priority="10"),
])


def body(jester, path, *args, protocol="http1"):
    code, text, error = curl(jester.url + path, *args, protocol=protocol)
    assert code == 200, (path, code, error)
    return text.decode()


@pytest.fixture(scope="module")
def routes_jester():
    """One instance for both protocols: the routes answer locally and keep no state."""
    from conftest import Jester
    jester = Jester(ROUTES)
    yield jester
    jester.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_matcher_and_fallthrough(routes_jester, protocol):
    jester = routes_jester

    def body_of(path, *args):
        return body(jester, path, *args, protocol=protocol)

    assert body_of("/api/things") == "api-get"
    assert body_of("/api/things", "-X", "POST") == "api-post"
    assert body_of("/api/things", "-X", "DELETE") == "fallback"  # no /api route takes DELETE: falls through
    assert body_of("/api/health") == "exact"  # an exact path wins over the /api prefix routes
    assert body_of("/api/health/x") == "api-get"
    assert body_of("/api/users/42") == "user"  # a path regex wins over plain routes of its prefix
    assert body_of("/api/users/abc") == "api-get"
    assert body_of("/app/x", "-H", "X-Env: canary") == "canary"
    assert body_of("/app/x", "-H", "X-Env: stable") == "app"
    assert body_of("/app/x", "-A", "SuperBot/2.0") == "bot"
    assert body_of("/app/x?trace", "-H", "X-Debug: 1") == "debug"  # both conditions
    assert body_of("/app/x", "-H", "X-Debug: 1") == "app"  # one of two: not enough
    assert body_of("/q/x?a=1&v=2") == "v2"
    assert body_of("/q/x?v=20") == "fallback"
    assert body_of("/internal/x") == "local"  # the client is 127.0.0.1, not in 10.0.0.0/8
    assert body_of("/legacy") == "no-legacy"
    assert body_of("/legacy", "-H", "X-Legacy: yes") == "fallback"
    # priority beats specificity: every path, while the header is set
    assert body_of("/api/health", "-H", "X-Maintenance: on") == "maintenance"


def test_invalid_matchers_are_rejected_with_locations(make_jester, tmp_path):
    import subprocess
    from conftest import JESTER
    config = tmp_path / "bad.toml"
    config.write_text("""
[[listeners]]
name = "main"
address = "127.0.0.1:1"

[[routes]]
path_regex = "^/users/[0-9+$"
methods = ["get"]
sources = ["10.0.0.0/33"]
match_headers = [{ name = "X-A", value = "1", present = true }]
respond = { status = 200 }
""")
    result = subprocess.run([JESTER, "config", "validate", str(config)], capture_output=True, text=True)
    assert result.returncode == 1
    for expected in [":7:", "invalid regular expression", ":8:", "'get' is not a method", ":9:",
                     "'10.0.0.0/33' is not an address or network", "exactly one of 'value', 'regex' or 'present'"]:
        assert expected in result.stderr, (expected, result.stderr)


def echo(jester, path, *args, protocol="http1"):
    import json
    code, text, error = curl(jester.url + path, "-i", *args, protocol=protocol)
    assert code == 200, (path, code, error, text)
    head, _, body = text.partition(b"\r\n\r\n")
    fields = {}
    for line in head.decode().split("\r\n")[1:]:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    return json.loads(body), fields


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_splits_rewrites_and_header_edits(make_jester, protocol):
    from collections import Counter
    from conftest import Upstream
    stable, canary = Upstream(), Upstream()
    try:
        jester = make_jester(f"""
[upstreams.stable]
targets = ["{stable.address}"]

[upstreams.canary]
targets = ["{canary.address}"]

[[routes]]
path_prefix = "/split"
split = [{{ upstream = "stable", weight = 3 }}, {{ upstream = "canary", weight = 1 }}]

[[routes]]
path_prefix = "/sticky"
split = [{{ upstream = "stable", weight = 50 }}, {{ upstream = "canary", weight = 50 }}]
split_key = "cookie:session"

[[routes]]
path_prefix = "/strip"
strip_prefix = true
upstream = "stable"

[[routes]]
path_prefix = "/v1"
replace_prefix = "/api/v2"
upstream = "stable"
upstream_host = "backend.internal"

[[routes]]
path_prefix = "/old"
rewrite = {{ regex = "^/old/([a-z]+)/([0-9]+)$", replacement = "/new/$2/$1" }}
upstream = "stable"
request_headers = {{ set = {{ "X-Env" = "prod" }}, add = {{ "X-Added" = "1" }}, remove = ["X-Secret"] }}
response_headers = {{ set = {{ "Cache-Control" = "no-store" }}, remove = ["Content-Type"] }}
""")
        ports = Counter(echo(jester, "/split/x", protocol=protocol)[0]["server_port"] for _ in range(40))
        assert ports == {stable.port: 30, canary.port: 10}, ports
        # A split key keeps each session on one side; different sessions use both.
        sides = {}
        for session in range(16):
            cookie = f"Cookie: a=b; session=s{session}"
            seen = {echo(jester, "/sticky/x", "-H", cookie, protocol=protocol)[0]["server_port"] for _ in range(3)}
            assert len(seen) == 1, seen
            sides[session] = seen.pop()
        assert set(sides.values()) == {stable.port, canary.port}, sides

        assert echo(jester, "/strip/a/b?q=1", protocol=protocol)[0]["path"] == "/a/b?q=1"
        assert echo(jester, "/strip", protocol=protocol)[0]["path"] == "/"
        body, _ = echo(jester, "/v1/users?x", protocol=protocol)
        assert body["path"] == "/api/v2/users?x"
        headers = {name.lower(): value for name, value in body["headers"]}
        assert headers["host"] == "backend.internal" and headers["x-forwarded-host"].startswith("127.0.0.1")

        body, fields = echo(jester, "/old/items/42", "-H", "X-Env: dev", "-H", "X-Secret: s3cr3t", protocol=protocol)
        assert body["path"] == "/new/42/items"
        sent = [(name.lower(), value) for name, value in body["headers"]]
        assert ("x-env", "prod") in sent and ("x-env", "dev") not in sent
        assert ("x-added", "1") in sent and not [v for n, v in sent if n == "x-secret"]
        assert fields["cache-control"] == ["no-store"] and "content-type" not in fields
        assert echo(jester, "/old/unmatched", protocol=protocol)[0]["path"] == "/old/unmatched"  # no match: unchanged
    finally:
        stable.stop()
        canary.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_route_timeouts_override_the_pools(make_jester, protocol):
    import time
    from conftest import Upstream
    upstream = Upstream()
    try:
        jester = make_jester(f"""
[upstreams.app]
targets = ["{upstream.address}"]
response_timeout = "10s"

[[routes]]
path_prefix = "/quick"
upstream = "app"
response_timeout = "500ms"

[[routes]]
path_prefix = "/bounded"
upstream = "app"
timeout = "1s"

[[routes]]
path_prefix = "/"
upstream = "app"
""")
        started = time.monotonic()
        assert curl(jester.url + "/quick/slow?delay=3", protocol=protocol)[0] == 504
        # A sub-second response_timeout is kept to the millisecond (not rounded down to 0 s).
        assert curl(jester.url + "/quick/slow?delay=0.1", protocol=protocol)[0] == 200
        assert time.monotonic() - started < 2
        assert curl(jester.url + "/slow?delay=1", protocol=protocol)[0] == 200  # the pool's 10 s applies elsewhere
        started = time.monotonic()
        assert curl(jester.url + "/bounded/slow?delay=3", protocol=protocol)[0] == 504
        assert 0.9 < time.monotonic() - started < 2.5
        # A response already under way when the whole-exchange timeout passes is cut short, visibly: curl
        # reports a partial transfer or a reset stream, never a complete-looking response.
        result = subprocess.run(["curl", "-sS", "-o", "/dev/null", "--limit-rate", "2M", "--max-time", "20",
                                 PROTOCOL_FLAGS[protocol], jester.url + "/bounded/download?size=100000000"],
                                capture_output=True, text=True)
        assert result.returncode in CUT_SHORT[protocol], (result.returncode, result.stderr)
    finally:
        upstream.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_read_timeout_cuts_a_stalled_response_visibly(make_jester, upstream, protocol):
    import time
    jester = make_jester(f"""
[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
path_prefix = "/strict"
upstream = "app"
read_timeout = "500ms"

[[routes]]
path_prefix = "/"
upstream = "app"
read_timeout = "3s"
""")
    started = time.monotonic()
    result = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}", "--max-time", "10",
                             PROTOCOL_FLAGS[protocol], jester.url + "/strict/stall?delay=3"],
                            capture_output=True, text=True)
    assert result.returncode in CUT_SHORT[protocol], result  # cut short, never a complete-looking response
    assert result.stdout == "1024"
    assert time.monotonic() - started < 2.5
    # A pause shorter than the route's read_timeout is fine.
    code, body, _ = curl(jester.url + "/stall?delay=1", protocol=protocol)
    assert code == 200 and len(body) == 2048
    wait_for(lambda: any(entry.get("error") == "upstream read timeout" for entry in jester.access_log()),
             what="the timeout in the access log")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_routes_match_on_the_body_and_forward_it_intact(make_jester, upstream, protocol):
    import hashlib
    import json as jsonlib
    jester = make_jester(f"""
[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
name = "gold"
path_prefix = "/orders"
match_body = {{ json = [{{ path = "customer.tier", value = "gold" }}] }}
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
""")
    gold = jsonlib.dumps({"customer": {"tier": "gold"}, "items": list(range(200))}).encode()
    import subprocess as sp

    def post(data, *headers, path="/orders/echo"):
        result = sp.run(["curl", "-sS", PROTOCOL_FLAGS[protocol], "-o", "-", "-w", "\n%{http_code}", "-X", "POST",
                         "--data-binary", "@-",
                         *[item for header in headers for item in ("-H", header)], jester.url + path],
                        input=data, capture_output=True, timeout=20)
        text, _, status = result.stdout.rpartition(b"\n")
        return int(status), text

    status, text = post(gold, "Content-Type: application/json")
    assert status == 200
    headers = {name.lower(): value for name, value in jsonlib.loads(text)["headers"]}
    assert headers.get("x-lane") == "priority" and jsonlib.loads(text)["body_length"] == len(gold)
    # The body reached the upstream byte for byte, chunked too.
    status, text = post(gold, "Transfer-Encoding: chunked", path="/orders/upload")
    assert status == 200 and jsonlib.loads(text)["sha256"] == hashlib.sha256(gold).hexdigest()
    silver = gold.replace(b"gold", b"silver")
    status, text = post(silver)
    assert status == 200 and "x-lane" not in {n.lower() for n, _ in jsonlib.loads(text)["headers"]}
    assert post(b'<?xml version="1.0"?><order/>')[0] == 415
    # A body beyond max_size is not judged as JSON (it cannot be parsed whole): the plain route takes it.
    big = jsonlib.dumps({"customer": {"tier": "gold"}, "pad": "x" * 20000}).encode()
    status, text = post(big)
    assert status == 200 and "x-lane" not in {n.lower() for n, _ in jsonlib.loads(text)["headers"]}
    # Expect: 100-continue works: Jester asks for the body itself.
    status, _ = post(gold, "Expect: 100-continue")
    assert status == 200
    wait_for(lambda: {"gold", "xml", "orders"} <= {e.get("route") for e in jester.access_log()}, what="routes logged")
