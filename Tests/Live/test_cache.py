# SPDX-License-Identifier: Apache-2.0
"""The shared HTTP cache (issue 21, RFC 9111): a route's `cache` answers from one store shared by every worker,
over HTTP/1.1 and HTTP/2: fresh hits, revalidation with 304, Vary, what must not be stored, request coalescing
across workers, a reload and a restart that keep it warm, purges, stale-if-error, invalidation by unsafe methods,
and a poisoning attempt through an unkeyed header."""

import hashlib
import http.client
import shutil
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import Jester, wait_for

PROTOCOLS = ["http1", "h2c"]
BIG = bytes(range(256)) * 8192  # 2 MiB


class Origin:
    """An origin whose answers the tests choose by path, counting what reaches it."""

    def __init__(self):
        self.counts = {}
        self.seen = {}
        self.lock = threading.Lock()
        self.failing = set()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(head=True)

            def do_GET(self):
                self.answer()

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(length)
                fields = [("Cache-Control", "no-store")]
                if self.path.endswith("/created"):
                    # What the POST made or changed lives elsewhere (RFC 9111 §4.4: invalidated too).
                    fields.append(("Location", "/fresh/invalidated-elsewhere"))
                self.reply(201 if self.path.endswith("/created") else 200, fields, b"posted\n")

            def reply(self, status, fields, body, head=False):
                self.send_response(status)
                for name, value in fields:
                    self.send_header(name, value)
                if status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head and status != 304:
                    self.wfile.write(body)

            def answer(self, head=False):
                path = self.path
                with origin.lock:
                    count = origin.counts.get(path, 0) + 1
                    origin.counts[path] = count
                    origin.seen[path] = dict(self.headers.items())
                kind = path.split("/")[1]
                body = f"{path} #{count}\n".encode()
                if kind == "fresh":
                    self.reply(200, [("Cache-Control", "max-age=300"), ("ETag", '"v1"')], body, head)
                elif kind == "slow":
                    time.sleep(0.4)
                    self.reply(200, [("Cache-Control", "max-age=300")], body, head)
                elif kind == "stale":
                    if self.headers.get("If-None-Match") == '"s1"':
                        self.reply(304, [("Cache-Control", "max-age=300"), ("ETag", '"s1"')], b"")
                    else:
                        self.reply(200, [("Cache-Control", "max-age=0"), ("ETag", '"s1"')], body, head)
                elif kind == "veryslow":
                    time.sleep(2.5)  # past lock_timeout
                    self.reply(200, [("Cache-Control", "max-age=300")], body, head)
                elif kind == "truncated":
                    # Declares more than it sends, then closes: a response cut short.
                    self.send_response(200)
                    self.send_header("Cache-Control", "max-age=300")
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.wfile.write(b"only part of it")
                    self.wfile.flush()
                    self.close_connection = True
                elif kind == "limited":
                    self.reply(200, [("Cache-Control", "max-age=300")], b"x" * 4096, head)
                elif kind == "swr":
                    fields = [("Cache-Control", "max-age=1, stale-while-revalidate=60"), ("ETag", '"w1"')]
                    if self.headers.get("If-None-Match") == '"w1"':
                        # Fresh for a minute once revalidated: with max-age=1 (and Date's whole seconds) the
                        # refreshed entry could be stale again before the test's next request on a slow machine.
                        self.reply(304, [("Cache-Control", "max-age=60, stale-while-revalidate=60"), ("ETag", '"w1"')],
                                   b"")
                    else:
                        self.reply(200, fields, body, head)
                elif kind == "vary":
                    language = self.headers.get("Accept-Language", "none")
                    self.reply(200, [("Cache-Control", "max-age=300"), ("Vary", "Accept-Language")],
                               f"{language} #{count}\n".encode(), head)
                elif kind == "nostore":
                    self.reply(200, [("Cache-Control", "no-store")], body, head)
                elif kind == "private":
                    self.reply(200, [("Cache-Control", "private, max-age=300")], body, head)
                elif kind == "cookie":
                    self.reply(200, [("Cache-Control", "max-age=300"), ("Set-Cookie", "session=abc")], body, head)
                elif kind == "poison":
                    # An origin that trusts an unkeyed header to build links (the classic poisoning vector).
                    host = self.headers.get("X-Original-Host", "origin.example")
                    self.reply(200, [("Cache-Control", "max-age=300")], f"link to {host} #{count}\n".encode(), head)
                elif kind == "big":
                    self.reply(200, [("Cache-Control", "max-age=300"), ("Content-Type", "application/octet-stream")],
                               BIG, head)
                elif kind == "flaky":
                    if path in origin.failing:
                        # An error page larger than one read: answering from the store must not wait for it.
                        self.reply(500, [], b"down\n" * 40000, head)
                    else:
                        self.reply(200, [("Cache-Control", "max-age=1, stale-if-error=300")], body, head)
                else:
                    self.reply(404, [], b"no\n", head)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.server.server_address[1]}"

    def count(self, path):
        with self.lock:
            return self.counts.get(path, 0)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


CONFIG = """
[cache]
path = "{cache}"
max_size = "64MiB"
lock_timeout = "1500ms"

[upstreams.app]
targets = ["{origin}"]

[upstreams.sticky]
targets = ["{origin}"]
sticky_cookie = "srv"

[[routes]]
name = "limited"
path_prefix = "/limited/"
upstream = "app"
cache = {{ max_object_size = "1KiB" }}

[[routes]]
name = "sticky"
path_prefix = "/fresh/sticky/"
upstream = "sticky"
cache = true

[[routes]]
name = "cached"
path_prefix = "/"
upstream = "app"
cache = {{ unkeyed_headers = ["x-original-host"] }}
"""


@pytest.fixture(scope="module")
def origin():
    server = Origin()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cache_dir():
    path = Path(tempfile.mkdtemp(prefix="jester-cache-")) / "store"
    path.parent.chmod(0o755)  # the workers' user must reach it
    yield path
    shutil.rmtree(path.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def cached(origin, cache_dir):
    instance = Jester(CONFIG.format(cache=cache_dir, origin=origin.address), workers=2)
    yield instance
    instance.stop()


def fetch(jester, path, protocol="http1", headers=(), method=None):
    """One request with curl: the status, the fields (lowercase names) and the body."""
    args = ["curl", "-sS", "--max-time", "30", "--http2-prior-knowledge" if protocol == "h2c" else "--http1.1"]
    args += ["-I"] if method == "HEAD" else ["-D", "-", "-o", "-"]
    if method and method != "HEAD":
        args += ["-X", method, "--data", "x"]
    for header in headers:
        args += ["-H", header]
    result = subprocess.run(args + [jester.url + path], capture_output=True, timeout=40)
    assert result.returncode == 0, result.stderr.decode()
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), fields, body


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fresh_response_is_served_from_the_cache(cached, origin, protocol):
    path = f"/fresh/{protocol}"
    status, fields, first = fetch(cached, path, protocol)
    assert status == 200
    assert "fwd=uri-miss" in fields["cache-status"] and "stored" in fields["cache-status"]
    for _ in range(3):
        status, fields, body = fetch(cached, path, protocol)
        assert status == 200 and body == first
        assert fields["cache-status"].startswith("jester; hit"), fields
        assert "age" in fields
    assert origin.count(path) == 1
    # HEAD is answered from the stored GET: its length, no body.
    status, fields, body = fetch(cached, path, protocol, method="HEAD")
    assert status == 200 and fields["content-length"] == str(len(first)) and "hit" in fields["cache-status"]
    # The client's own validator matches the stored ETag: 304 from the cache.
    status, fields, body = fetch(cached, path, protocol, headers=['If-None-Match: "v1"'])
    assert status == 304 and body == b""
    assert origin.count(path) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stale_entry_is_revalidated_with_a_304(cached, origin, protocol):
    path = f"/stale/{protocol}"
    status, _, first = fetch(cached, path, protocol)
    assert status == 200
    status, fields, body = fetch(cached, path, protocol)
    # Stored stale (max-age=0, with a validator): the origin is asked with If-None-Match and answers 304; the client
    # gets the stored body, now fresh.
    assert status == 200 and body == first
    assert "fwd=stale" in fields["cache-status"] and "fwd-status=304" in fields["cache-status"]
    assert origin.seen[path].get("If-None-Match") == '"s1"'
    status, fields, body = fetch(cached, path, protocol)
    assert "hit" in fields["cache-status"] and body == first
    assert origin.count(path) == 2


def test_stale_while_revalidate_answers_at_once_and_refreshes_in_the_background(cached, origin):
    path = "/swr/a"
    _, _, first = fetch(cached, path)
    time.sleep(2.1)  # stale now, within stale-while-revalidate
    status, fields, body = fetch(cached, path)
    assert status == 200 and body == first
    assert "hit" in fields["cache-status"] and "stale-while-revalidate" in fields["cache-status"]
    # One refresh, with the stored validator, after the client had its answer.
    wait_for(lambda: origin.count(path) == 2, timeout=5, what="background refresh")
    assert origin.seen[path].get("If-None-Match") == '"w1"'
    _, fields, body = fetch(cached, path)
    assert body == first and "stale-while-revalidate" not in fields["cache-status"], fields
    assert origin.count(path) == 2


def test_vary_keeps_one_variant_per_value(cached, origin):
    path = "/vary/a"
    _, _, english = fetch(cached, path, headers=["Accept-Language: en"])
    _, _, german = fetch(cached, path, headers=["Accept-Language: de"])
    assert english.startswith(b"en") and german.startswith(b"de")
    for language, expected in (("en", english), ("de", german)):
        _, fields, body = fetch(cached, path, "h2c", headers=[f"Accept-Language: {language}"])
        assert body == expected and "hit" in fields["cache-status"]
    assert origin.count(path) == 2


@pytest.mark.parametrize("kind", ["nostore", "private", "cookie"])
def test_responses_that_must_not_be_shared_are_not_stored(cached, origin, kind):
    path = f"/{kind}/x"
    for _ in range(3):
        status, fields, _ = fetch(cached, path)
        assert status == 200 and "hit" not in fields.get("cache-status", "")
    assert origin.count(path) == 3


def test_requests_with_credentials_or_cookies_bypass_the_cache(cached, origin):
    path = "/fresh/credentials"
    fetch(cached, path)
    _, fields, _ = fetch(cached, path, headers=["Authorization: Bearer t"])
    assert "hit" not in fields.get("cache-status", "")
    _, fields, _ = fetch(cached, path, headers=["Cookie: a=b"])
    assert "hit" not in fields.get("cache-status", "")
    assert origin.count(path) == 3


def test_unkeyed_header_cannot_poison_the_cache(cached, origin):
    path = "/poison/page"
    status, _, body = fetch(cached, path, headers=["X-Original-Host: evil.example"])
    # The origin never saw the unkeyed field, so what it answered (and the cache stored) is the honest page.
    assert b"evil" not in body and b"origin.example" in body
    assert "X-Original-Host" not in origin.seen[path]
    _, fields, body = fetch(cached, path)
    assert b"evil" not in body and "hit" in fields["cache-status"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_large_body_is_stored_and_served_whole(cached, origin, protocol):
    path = f"/big/{protocol}"
    for expected in ("fwd=uri-miss", "hit"):
        status, fields, body = fetch(cached, path, protocol)
        assert status == 200 and expected in fields["cache-status"]
        assert hashlib.sha256(body).digest() == hashlib.sha256(BIG).digest()
    assert origin.count(path) == 1


def test_concurrent_cold_requests_make_one_upstream_fetch(cached, origin):
    """100 requests for one cold key, spread over both workers, while the origin takes 0.6 s: one fetch, the others
    wait for it (Cache-Status: collapsed) instead of going upstream."""
    path = "/slow/coalesced"
    results = []
    lock = threading.Lock()

    def one():
        connection = http.client.HTTPConnection("127.0.0.1", cached.port, timeout=20)
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        with lock:
            results.append((response.status, response.getheader("Cache-Status"), body))
        connection.close()

    threads = [threading.Thread(target=one) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 100
    assert all(status == 200 for status, _, _ in results)
    assert len({body for _, _, body in results}) == 1
    assert origin.count(path) == 1
    assert any("collapsed" in (status or "") for _, status, _ in results)


def test_stale_if_error_serves_the_stored_response(cached, origin):
    path = "/flaky/a"
    _, _, first = fetch(cached, path)
    time.sleep(2.1)  # max-age=1: stale now
    origin.failing.add(path)
    status, fields, body = fetch(cached, path)
    assert status == 200 and body == first, fields
    origin.failing.discard(path)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_clients_conditional_on_a_cold_key_stores_the_whole_body(cached, origin, protocol):
    """The client's validator matches what the origin sends (a 304 to the client), and the full response is
    still what the cache keeps for everyone else."""
    path = f"/fresh/cold-conditional-{protocol}"
    status, _, body = fetch(cached, path, protocol, headers=["If-None-Match: *"])
    assert status == 304 and body == b""
    status, fields, body = fetch(cached, path, protocol)
    assert status == 200 and "hit" in fields["cache-status"]
    assert body == f"{path} #1\n".encode()


def test_unsafe_method_invalidates_the_target(cached, origin):
    path = "/fresh/invalidated"
    fetch(cached, path)
    _, fields, _ = fetch(cached, path)
    assert "hit" in fields["cache-status"]
    status, _, _ = fetch(cached, path, method="POST")
    assert status == 200
    _, fields, _ = fetch(cached, path)
    assert "hit" not in fields["cache-status"]
    assert origin.count(path) == 2
    # The answer's same-origin Location is invalidated as well.
    elsewhere = "/fresh/invalidated-elsewhere"
    fetch(cached, elsewhere)
    assert "hit" in fetch(cached, elsewhere)[1]["cache-status"]
    status, _, _ = fetch(cached, "/fresh/created", method="POST")
    assert status == 201
    assert "hit" not in fetch(cached, elsewhere)[1]["cache-status"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_hit_on_a_sticky_pool_sets_no_cookie(cached, origin, protocol):
    """A cache answer names no target: the fetch's answer pins the client, a hit leaves it where it was."""
    path = f"/fresh/sticky/{protocol}"
    _, fields, _ = fetch(cached, path, protocol)
    assert fields.get("set-cookie", "").startswith("srv=")
    _, fields, _ = fetch(cached, path, protocol)
    assert "hit" in fields["cache-status"] and "set-cookie" not in fields


def test_hits_hold_no_descriptors(cached, origin):
    """Hundreds of hits and misses leave the workers' open descriptors where they were: hits share the worker's
    memo of open entries, misses close what they opened."""
    import os

    def descriptors():
        return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in cached.worker_pids())

    fetch(cached, "/fresh/descriptors")
    before = descriptors()
    connection = http.client.HTTPConnection("127.0.0.1", cached.port, timeout=10)
    for index in range(300):
        connection.request("GET", "/fresh/descriptors" if index % 2 else f"/nostore/descriptors{index}")
        response = connection.getresponse()
        response.read()
        assert response.status == 200
    connection.close()
    assert descriptors() - before < 20


def test_the_cache_is_in_the_metrics(cached, origin):
    fetch(cached, "/fresh/metrics")
    fetch(cached, "/fresh/metrics")
    text = cached.ctl("metrics", check=True).stdout
    samples = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
               if line.startswith("jester_cache_")}
    assert samples["jester_cache_hits_total"] >= 1 and samples["jester_cache_misses_total"] >= 1
    assert samples["jester_cache_stores_total"] >= 1 and samples["jester_cache_entries"] >= 1
    assert samples["jester_cache_size_bytes"] > 0


def test_status_and_purge(cached, origin):
    fetch(cached, "/fresh/purge-one")
    fetch(cached, "/fresh/purge-dir/a")
    fetch(cached, "/fresh/purge-dir/b")
    report = cached.ctl("cache", "status", "--json", check=True)
    assert '"entries"' in report.stdout
    result = cached.ctl("cache", "purge", f"http://127.0.0.1:{cached.port}/fresh/purge-one", check=True)
    assert "1" in result.stdout
    _, fields, _ = fetch(cached, "/fresh/purge-one")
    assert "hit" not in fields["cache-status"]
    result = cached.ctl("cache", "purge", "--prefix", f"http://127.0.0.1:{cached.port}/fresh/purge-dir/", check=True)
    assert "2" in result.stdout
    for name in ("a", "b"):
        _, fields, _ = fetch(cached, f"/fresh/purge-dir/{name}")
        assert "hit" not in fields["cache-status"]
    assert origin.count("/fresh/purge-dir/a") == 2


def test_responses_cut_short_or_too_large_are_not_stored(cached, origin):
    path = "/truncated/a"
    for _ in range(2):
        result = subprocess.run(["curl", "-sS", "--max-time", "10", cached.url + path], capture_output=True, timeout=20)
        assert result.returncode != 0  # the client sees it incomplete
    assert origin.count(path) == 2
    path = "/limited/big"
    for _ in range(2):
        status, fields, body = fetch(cached, path)
        assert status == 200 and len(body) == 4096 and "hit" not in fields["cache-status"]
    assert "detail=too-large" in fields["cache-status"] or "stored" not in fields["cache-status"]
    assert origin.count(path) == 2


def test_waiting_is_bounded_by_lock_timeout(cached, origin):
    """The fetch takes longer than lock_timeout: the others stop waiting and go upstream themselves."""
    path = "/veryslow/a"
    statuses = []

    def one():
        statuses.append(fetch(cached, path)[0])

    threads = [threading.Thread(target=one) for _ in range(3)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join(20)
    assert statuses == [200, 200, 200]
    # Not 3 x 2.5 s one after another, and more than one fetch (the waiters gave up at 1.5 s).
    assert time.monotonic() - started < 6.5
    assert origin.count(path) >= 2


def test_an_unreachable_cache_path_stops_the_start(tmp_path, origin):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    config = tmp_path / "jester.toml"
    from conftest import JESTER, free_port
    config.write_text(f"""
[server]
workers = 1
pid_file = "{tmp_path}/jester.pid"
control_socket = "{tmp_path}/control.sock"

[[listeners]]
name = "main"
address = "127.0.0.1:{free_port()}"
""" + CONFIG.format(cache=private / "store", origin=origin.address))
    result = subprocess.run([JESTER, "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "not searchable by the workers' user" in result.stdout + result.stderr


def test_binary_upgrade_keeps_the_cache_warm(cached, origin):
    path = "/fresh/upgrade"
    fetch(cached, path)
    result = cached.ctl("upgrade", "--wait", "--json", check=True)
    assert '"success":true' in result.stdout.replace(" ", ""), result.stdout
    _, fields, _ = fetch(cached, path)
    assert "hit" in fields["cache-status"]
    assert origin.count(path) == 1
    assert '"entries"' in cached.ctl("cache", "status", "--json", check=True).stdout


def test_reload_keeps_the_cache_warm(cached, origin):
    path = "/fresh/reload"
    fetch(cached, path)
    generation = cached.status()["generation"]
    cached.ctl("reload", check=True)
    wait_for(lambda: cached.status()["generation"] > generation and cached.all_ready(), what="new generation")
    _, fields, _ = fetch(cached, path)
    assert "hit" in fields["cache-status"]
    assert origin.count(path) == 1


def test_restart_rebuilds_the_index_from_the_files(origin, cache_dir, cached):
    path = "/fresh/restart"
    host = ["Host: cache.example"]  # the key's authority, the same on the new instance's port
    fetch(cached, path, headers=host)
    cached.stop()
    again = Jester(CONFIG.format(cache=cache_dir, origin=origin.address), workers=1)
    try:
        _, fields, _ = fetch(again, path, headers=host)
        assert "hit" in fields["cache-status"], again.logs()
        assert origin.count(path) == 1
    finally:
        again.stop()
