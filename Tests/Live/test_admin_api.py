# SPDX-License-Identifier: Apache-2.0
"""The admin API (jester-admin(7)): auth and roles, the configuration's ETag, reload outcomes, target actions in
one pool and across pools, the instance drain, the Unix-socket mode, [admin] following a reload, the refusal of a
non-loopback address without tokens, and schemathesis holding the live API to Docs/admin-openapi.yaml."""

import http.client
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import JESTER, ROOT, Jester, Upstream, curl, free_port, wait_for

WRITE = "write-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"
# Packaging/setup.sh --test installs schemathesis in its own venv (it pins libraries Debian's python has older).
SCHEMATHESIS = Path(os.environ.get("JESTER_SCHEMATHESIS_VENV", "/var/tmp/jester-schemathesis-venv")) / "bin" / "st"


def tokens_file(directory):
    path = Path(directory) / "admin-tokens"
    path.write_text(f"# operators\nwrite {WRITE}\nread {READ}\n")
    os.chmod(path, 0o600)
    return path


def body(admin_port, tokens, upstreams, extra=""):
    a, b = upstreams
    return f"""
[admin]
address = "127.0.0.1:{admin_port}"
tokens_file = "{tokens}"
{extra}

[upstreams.app]
targets = ["{a.address}", "{b.address}"]

[upstreams.other]
targets = ["{a.address}"]

[[routes]]
path_prefix = "/"
upstream = "app"
"""


def api(port, method, path, token=WRITE, headers=None, body=None):
    """One request on a fresh connection: (status, headers as a dict with lowercase names, parsed JSON or None).
    `body`: bytes or text as given, anything else sent as its JSON."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    fields = dict(headers or {})
    if token:
        fields["Authorization"] = f"Bearer {token}"
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        fields.setdefault("Content-Type", "application/json")
    connection.request(method, path, body=body, headers=fields)
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    data = json.loads(raw) if raw and response.getheader("Content-Type") == "application/json" else None
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


@pytest.fixture(scope="module")
def upstreams():
    servers = [Upstream(), Upstream()]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def admin(upstreams):
    directory = tempfile.mkdtemp(prefix="jester-admin-")
    tokens = tokens_file(directory)
    port = free_port()
    instance = Jester(body(port, tokens, upstreams))
    instance.admin_port = port
    instance.tokens = tokens
    yield instance
    instance.stop()


def test_no_token_and_a_wrong_token_get_401_with_a_bearer_challenge(admin):
    for token in (None, "not-a-valid-token-at-all"):
        status, headers, error = api(admin.admin_port, "GET", "/api/v1/status", token=token)
        assert status == 401
        assert headers["www-authenticate"].startswith("Bearer")
        assert error["status"] == 401 and error["message"]
    status, _, _ = api(admin.admin_port, "GET", "/api/v1/status", token=None,
                       headers={"Authorization": f"Basic {WRITE}"})
    assert status == 401


def test_a_read_token_reads_but_may_not_act(admin):
    status, _, report = api(admin.admin_port, "GET", "/api/v1/status", token=READ)
    assert status == 200 and report["generation"] >= 1 and report["workers"][0]["state"] == "ready"
    assert report["listeners"][0]["name"] == "main"
    for path in ("/api/v1/reload", "/api/v1/drain", "/api/v1/targets/127.0.0.1:1/drain"):
        status, headers, error = api(admin.admin_port, "POST", path, token=READ)
        assert status == 403, path
        assert "insufficient_scope" in headers["www-authenticate"] and "write" in error["message"]


def test_unknown_paths_and_methods(admin):
    assert api(admin.admin_port, "GET", "/api/v1/nothing")[0] == 404
    status, headers, error = api(admin.admin_port, "GET", "/api/v1/reload")
    assert status == 405 and headers["allow"] == "POST" and error["status"] == 405
    # A body over the limit is refused before it is read.
    with socket.create_connection(("127.0.0.1", admin.admin_port), timeout=10) as connection:
        connection.sendall(b"POST /api/v1/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n")
        assert connection.recv(65536).startswith(b"HTTP/1.1 413 ")


def test_keep_alive_and_pipelined_requests_are_answered_in_order(admin):
    request = (f"GET /api/v1/status HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {READ}\r\n\r\n"
               f"GET /api/v1/nothing HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {READ}\r\n"
               "Connection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", admin.admin_port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 OK")
    assert received.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 404 Not Found" in received


def test_config_is_redacted_with_the_hash_as_etag_and_304_when_unchanged(admin):
    status, headers, config = api(admin.admin_port, "GET", "/api/v1/config", token=READ)
    assert status == 200
    assert headers["etag"] == f'"{config["hash"]}"'
    assert "[admin]" in config["effective_configuration"] and WRITE not in config["effective_configuration"]
    status, headers, body_ = api(admin.admin_port, "GET", "/api/v1/config", token=READ,
                                 headers={"If-None-Match": headers["etag"]})
    assert status == 304 and body_ is None and headers["etag"] == f'"{config["hash"]}"'
    assert api(admin.admin_port, "GET", "/api/v1/config", token=READ,
               headers={"If-None-Match": '"0000"'})[0] == 200
    status, _, graph = api(admin.admin_port, "GET", "/api/v1/routes", token=READ)
    assert status == 200 and graph["format_version"] == 1 and graph["hash"] == config["hash"]


def test_drain_a_target_in_every_pool_then_in_one_pool(admin, upstreams):
    shared = upstreams[0].address
    status, _, result = api(admin.admin_port, "POST", f"/api/v1/targets/{shared}/drain")
    assert status == 200 and result["pools"] == ["app", "other"] and result["admin"] == "drain"
    _, _, listing = api(admin.admin_port, "GET", "/api/v1/upstreams", token=READ)
    states = {(pool["name"], t["address"]): t["admin"] for pool in listing["pools"] for t in pool["targets"]}
    assert states == {("app", shared): "drain", ("app", upstreams[1].address): "enabled", ("other", shared): "drain"}
    assert all(pool["fail_open"] is False for pool in listing["pools"])
    status, _, result = api(admin.admin_port, "POST", f"/api/v1/upstreams/other/targets/{shared.replace(':', '%3A')}"
                                                        "/enable")
    assert status == 200 and result["pools"] == ["other"]
    _, _, listing = api(admin.admin_port, "GET", "/api/v1/upstreams", token=READ)
    states = {(pool["name"], t["address"]): t["admin"] for pool in listing["pools"] for t in pool["targets"]}
    assert states[("other", shared)] == "enabled" and states[("app", shared)] == "drain"
    assert api(admin.admin_port, "POST", f"/api/v1/targets/{shared}/enable")[0] == 200
    for path in ("/api/v1/upstreams/nope/targets/127.0.0.1:1/drain", f"/api/v1/upstreams/other/targets/"
                 f"{upstreams[1].address}/drain", "/api/v1/targets/127.0.0.1:1/disable"):
        status, _, error = api(admin.admin_port, "POST", path)
        assert status == 404 and error["status"] == 404, path


def test_reload_answers_with_its_outcome_and_follows_admin_changes(admin, upstreams):
    status, _, result = api(admin.admin_port, "POST", "/api/v1/reload")
    assert status == 200 and result["success"] and result["errors"] == []
    generation = result["generation"]
    # A broken file: 422 with the errors, the old generation serving.
    good = admin.config_path.read_text()
    admin.config_path.write_text(good + "\nlisteners = 3\n")
    try:
        status, _, result = api(admin.admin_port, "POST", "/api/v1/reload")
    finally:
        admin.config_path.write_text(good)
    assert status == 422 and not result["success"] and result["generation"] == generation
    assert any("jester.toml" in error for error in result["errors"])
    _, _, report = api(admin.admin_port, "GET", "/api/v1/status", token=READ)
    assert report["generation"] == generation and report["last_failed_reload"]["kind"] == "reload"
    # A new address: the reload answers on the old socket, then only the new one serves.
    new_port = free_port()
    admin.write_config(body(new_port, admin.tokens, upstreams))
    status, _, result = api(admin.admin_port, "POST", "/api/v1/reload")
    assert status == 200 and result["generation"] == generation + 1
    old_port, admin.admin_port = admin.admin_port, new_port
    assert api(new_port, "GET", "/api/v1/status", token=READ)[0] == 200
    with pytest.raises(OSError):
        api(old_port, "GET", "/api/v1/status", token=READ)


def test_a_reload_that_cannot_bind_the_new_admin_address_fails_and_the_old_one_serves(admin, upstreams):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        admin.write_config(body(taken.getsockname()[1], admin.tokens, upstreams))
        status, _, result = api(admin.admin_port, "POST", "/api/v1/reload")
    admin.write_config(body(admin.admin_port, admin.tokens, upstreams))
    assert status == 422 and "bind" in " ".join(result["errors"])
    assert api(admin.admin_port, "GET", "/api/v1/status", token=READ)[0] == 200


# MARK: The shared HTTP cache (GET /api/v1/cache, POST /api/v1/cache/purge)

NOT_ENABLED = "the HTTP cache is not enabled: no route caches"
# upstream.py's /download with the Cache-Control the query asks for: cacheable for five minutes.
CACHEABLE = "download?size=64&cache-control=max-age%3D300"


@pytest.fixture(scope="module")
def cached_admin(upstreams):
    directory = Path(tempfile.mkdtemp(prefix="jester-admin-cache-"))
    directory.chmod(0o755)  # the workers' user must reach the store below it
    port = free_port()
    a, _ = upstreams
    instance = Jester(f"""
[admin]
address = "127.0.0.1:{port}"
tokens_file = "{tokens_file(directory)}"

[cache]
path = "{directory / 'store'}"

[upstreams.app]
targets = ["{a.address}"]

[[routes]]
path_prefix = "/"
upstream = "app"
cache = true
""")
    instance.admin_port = port
    yield instance
    instance.stop()
    shutil.rmtree(directory, ignore_errors=True)


def cache_status(instance, path):
    """GET `path` through the proxy: its Cache-Status field (RFC 9211), after checking the answer is a 200."""
    connection = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=30)
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200
    return response.getheader("Cache-Status", "")


def stored_and_hit(instance, path):
    """Makes sure `path` is stored: the first request may store it, the next must be a hit."""
    cache_status(instance, path)
    assert cache_status(instance, path).startswith("jester; hit"), path


def test_cache_status_is_jesterctls_and_a_purge_by_uri_makes_the_next_request_a_miss(cached_admin):
    path = f"/one/{CACHEABLE}"
    stored_and_hit(cached_admin, path)
    status, _, report = api(cached_admin.admin_port, "GET", "/api/v1/cache", token=READ)
    assert status == 200 and report["entries"] >= 1 and report["hits"] >= 1 and report["byte_budget"] > 0
    assert report == json.loads(cached_admin.ctl("cache", "status", "--json", check=True).stdout)
    # The key is the request's URI as the cache keys it: scheme, Host, path and query.
    key = f"http://127.0.0.1:{cached_admin.port}{path}"
    status, _, result = api(cached_admin.admin_port, "POST", "/api/v1/cache/purge", body={"uri": key})
    assert status == 200 and result == {"removed": 1}
    assert "fwd=uri-miss" in cache_status(cached_admin, path)
    _, _, after = api(cached_admin.admin_port, "GET", "/api/v1/cache", token=READ)
    assert after["misses"] == report["misses"] + 1
    # Nothing under the key: not an error.
    status, _, result = api(cached_admin.admin_port, "POST", "/api/v1/cache/purge", body={"uri": key + "&never"})
    assert status == 200 and result == {"removed": 0}


def test_a_cache_purge_by_prefix_removes_every_key_under_it_and_no_other(cached_admin):
    base = f"http://127.0.0.1:{cached_admin.port}"
    inside, outside = [f"/dir/a/{CACHEABLE}", f"/dir/b/{CACHEABLE}"], f"/elsewhere/{CACHEABLE}"
    for path in inside + [outside]:
        stored_and_hit(cached_admin, path)
    status, _, result = api(cached_admin.admin_port, "POST", "/api/v1/cache/purge", body={"prefix": base + "/dir/"})
    assert status == 200 and result == {"removed": 2}
    for path in inside:
        assert "fwd=uri-miss" in cache_status(cached_admin, path), path
    assert cache_status(cached_admin, outside).startswith("jester; hit")


def test_cache_requests_refused_for_their_body_token_or_method_purge_nothing(cached_admin):
    port, path = cached_admin.admin_port, f"/kept/{CACHEABLE}"
    stored_and_hit(cached_admin, path)
    everything = {"prefix": f"http://127.0.0.1:{cached_admin.port}/"}
    for sent, reason in ((None, "no body"), ("uri=/kept", "not JSON"), ({}, 'neither "uri" nor "prefix"'),
                         ({"uri": "http://a/", "prefix": "http://a/"}, "together"),
                         ({"prefx": "http://a/"}, 'unknown member "prefx"'), ({"uri": 7}, "must be a string"),
                         ({"prefix": ""}, "would purge everything"), ({"uri": "/kept"}, "absolute http://")):
        status, _, error = api(port, "POST", "/api/v1/cache/purge", body=sent)
        assert status == 400 and error["status"] == 400 and reason in error["message"], (sent, error)
    # Roles: reading the figures needs a token, purging a write token; a read token's body is not even judged.
    assert api(port, "GET", "/api/v1/cache", token=None)[0] == 401
    for sent in (everything, {}):
        status, headers, error = api(port, "POST", "/api/v1/cache/purge", token=READ, body=sent)
        assert status == 403 and "insufficient_scope" in headers["www-authenticate"] and "write" in error["message"]
    assert api(port, "POST", "/api/v1/cache/purge", token=None, body=everything)[0] == 401
    # A browser's cross-site post, whatever its token.
    status, _, error = api(port, "POST", "/api/v1/cache/purge", body=everything,
                           headers={"Origin": "https://evil.example"})
    assert status == 403, error
    status, headers, _ = api(port, "GET", "/api/v1/cache/purge")
    assert status == 405 and headers["allow"] == "POST"
    status, headers, _ = api(port, "POST", "/api/v1/cache", body=everything)
    assert status == 405 and headers["allow"] == "GET"
    assert cache_status(cached_admin, path).startswith("jester; hit")


def test_cache_endpoints_are_404_when_no_route_caches(admin):
    status, _, error = api(admin.admin_port, "GET", "/api/v1/cache", token=READ)
    assert status == 404 and error["message"] == NOT_ENABLED
    status, _, error = api(admin.admin_port, "POST", "/api/v1/cache/purge", body={"prefix": "http://a/"})
    assert status == 404 and error["message"] == NOT_ENABLED


def conforms_to_the_openapi_document(port, *operations):
    """schemathesis against the API on `port` (bounded examples, a fixed seed): its answers' statuses, content
    types and bodies are what Docs/admin-openapi.yaml says."""
    result = subprocess.run(
        [str(SCHEMATHESIS), "run", str(ROOT / "Docs" / "admin-openapi.yaml"),
         "--url", f"http://127.0.0.1:{port}", "-H", f"Authorization: Bearer {WRITE}",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance",
         *operations, "--max-examples", "10", "--seed", "1", "--no-shrink", "--request-timeout", "20"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


@pytest.mark.skipif(not SCHEMATHESIS.exists(), reason="schemathesis is not installed (Packaging/setup.sh --test)")
def test_the_live_api_conforms_to_its_openapi_document(admin):
    # Every operation but the instance drain (tested below on its own instance); the cache's answer 404 here.
    conforms_to_the_openapi_document(admin.admin_port, "--exclude-operation-id", "drain")


@pytest.mark.skipif(not SCHEMATHESIS.exists(), reason="schemathesis is not installed (Packaging/setup.sh --test)")
def test_the_cache_endpoints_conform_to_the_openapi_document_when_a_route_caches(cached_admin):
    conforms_to_the_openapi_document(cached_admin.admin_port, "--include-operation-id", "getCache",
                                     "--include-operation-id", "purgeCache")


def test_drain_answers_then_the_instance_stops(upstreams, tmp_path):
    port = free_port()
    instance = Jester(body(port, tokens_file(tmp_path), upstreams))
    try:
        status, headers, result = api(port, "POST", "/api/v1/drain")
        assert status == 202 and result["stopping"] is True and headers["connection"] == "close"
        assert instance.process.wait(timeout=20) == 0
    finally:
        instance.stop()


def test_unix_socket_mode_without_tokens(upstreams, tmp_path):
    path = tmp_path / "admin.sock"
    a, b = upstreams
    instance = Jester(f"""
[admin]
socket = "{path}"

[upstreams.app]
targets = ["{a.address}"]

[[routes]]
path_prefix = "/"
upstream = "app"
""")
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        result = subprocess.run(["curl", "-sS", "--unix-socket", str(path), "-X", "POST", "-w", "\n%{http_code}",
                                 f"http://admin/api/v1/targets/{a.address}/drain"],
                                capture_output=True, text=True, timeout=30)
        answer, _, code = result.stdout.rpartition("\n")
        assert code == "200" and json.loads(answer)["pools"] == ["app"], result.stdout + result.stderr
    finally:
        instance.stop()
    assert not path.exists()


def test_a_non_loopback_address_without_tokens_is_refused_at_validate_time(tmp_path):
    config = tmp_path / "jester.toml"
    config.write_text(f"""
[admin]
address = "0.0.0.0:{free_port()}"

[[listeners]]
name = "main"
address = "127.0.0.1:{free_port()}"
""")
    result = subprocess.run([JESTER, "config", "validate", str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"{config}:3:1: error:" in result.stderr and "needs 'tokens_file'" in result.stderr, result.stderr
    tokens = tokens_file(tmp_path)
    os.chmod(tokens, 0o644)
    config.write_text(config.read_text().replace("[admin]", f'[admin]\ntokens_file = "{tokens}"'))
    result = subprocess.run([JESTER, "config", "validate", str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "chmod o-rw" in result.stderr, result.stderr
    os.chmod(tokens, 0o600)
    result = subprocess.run([JESTER, "config", "validate", str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_the_admin_socket_survives_a_binary_upgrade(admin):
    _, _, before = api(admin.admin_port, "GET", "/api/v1/status", token=READ)
    # Connections queued while the master execs wait in the handed-over socket's backlog.
    admin.ctl("upgrade", check=True)
    status, _, after = api(admin.admin_port, "GET", "/api/v1/status", token=READ)
    assert status == 200 and after["pid"] == before["pid"] and after["generation"] == before["generation"] + 1
    assert api(admin.admin_port, "GET", "/api/v1/status", token=None)[0] == 401


def test_a_real_prometheus_scrapes_the_metrics_and_answers_queries_about_them(admin, tmp_path):
    """GET /metrics (a read token) scraped by Debian's Prometheus on loopback; the series come back through its
    query API, so names, labels and the exposition format are what a real scraper accepts."""
    for _ in range(3):
        assert curl(admin.url + "/echo")[0] == 200
    status, headers, _ = api(admin.admin_port, "GET", "/metrics", token=READ)
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert api(admin.admin_port, "GET", "/metrics", token=None)[0] == 401
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: jester
    metrics_path: /metrics
    authorization:
      credentials: {READ}
    static_configs:
      - targets: ["127.0.0.1:{admin.admin_port}"]
""")
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def query(expression):
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())["data"]["result"]
        requests = wait_for(lambda: query('sum(jester_http_requests_total{route="route-1",status_class="2xx"})'),
                            timeout=20, what="Prometheus to scrape and answer")
        assert float(requests[0]["value"][1]) >= 3
        up = query('up{job="jester"}')
        assert up and up[0]["value"][1] == "1"
        assert query("jester_master_generation")
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=10)
