# SPDX-License-Identifier: Apache-2.0
"""jwt filters with `jwks_url`: the master fetches the key set from an identity provider (a scripted loopback
server here) before the workers start and every `jwks_refresh`, hands new sets to every worker, keeps the last
good set when the provider fails or answers with something that is not a key set, and starts without keys (401)
when the provider is down at start, picking them up once it answers."""

import json
import socket
import time

from conftest import curl, wait_for
from jwt_tokens import FIXTURES, rsa_jwk, rsa_key, sign
from loopback_server import LoopbackServer


class JWKSServer(LoopbackServer):
    """Serves `body` at any path with `status`, one request per connection, counting fetches; `refuse()` stops
    listening (connection refused from then on)."""

    def __init__(self, keys=None, status=200):
        self.status = status
        self.body = json.dumps({"keys": keys or []}).encode()
        self.fetches = 0
        super().__init__()

    def serve(self, keys=None, body=None, status=200):
        self.body = body if body is not None else json.dumps({"keys": keys}).encode()
        self.status = status

    def handle(self, connection):
        with connection:
            connection.settimeout(5)
            request = b""
            try:
                while b"\r\n\r\n" not in request:
                    chunk = connection.recv(4096)
                    if not chunk:
                        return
                    request += chunk
            except socket.timeout:
                return
            self.fetches += 1
            head = (f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n")
            connection.sendall(head.encode() + self.body)


def config(upstream, provider, refresh="1s"):
    return f"""
[upstreams.app]
targets = ["{upstream.address}"]

[filters.idp]
kind = "jwt"
algorithms = ["RS256"]
jwks_url = "http://{provider.address}/.well-known/jwks.json"
jwks_refresh = "{refresh}"

[[routes]]
path_prefix = "/"
upstream = "app"
filters = ["idp"]
"""


def token(key, kid):
    return sign({"sub": "alice", "exp": int(time.time()) + 3600}, key=key, kid=kid)


def statuses(jester, bearer, count=8):
    """The statuses of `count` requests with `bearer` (on separate connections, so both workers answer some)."""
    return {curl("-H", f"Authorization: Bearer {bearer}", jester.url + "/x")[0] for _ in range(count)}


def test_rotated_keys_reach_every_worker_and_failures_keep_the_last_set(make_jester, upstream, tmp_path):
    old_key, new_key = FIXTURES / "rsa.key", rsa_key(tmp_path / "rotated.key")
    old_jwk, new_jwk = rsa_jwk(old_key, "rsa-1"), rsa_jwk(new_key, "rsa-2")
    provider = JWKSServer([old_jwk])
    try:
        jester = make_jester(config(upstream, provider), workers=2)
        old_token, new_token = token(old_key, "rsa-1"), token(new_key, "rsa-2")
        # The set was fetched before the workers started: the first requests already pass.
        assert statuses(jester, old_token) == {200}
        assert statuses(jester, new_token) == {401}

        # The provider rotates: both keys for a while, then only the new one.
        provider.serve([old_jwk, new_jwk])
        wait_for(lambda: statuses(jester, new_token) == {200}, timeout=10, what="the added key on every worker")
        assert statuses(jester, old_token) == {200}
        provider.serve([new_jwk])
        wait_for(lambda: statuses(jester, old_token) == {401}, timeout=10, what="the removed key refused")
        assert statuses(jester, new_token) == {200}

        # Answers that are not a key set, an error status: the last good set stays.
        fetches = provider.fetches
        provider.serve(body=b'{"keys": "none"}')
        wait_for(lambda: provider.fetches >= fetches + 2, timeout=10, what="fetches of the broken set")
        provider.serve([new_jwk], status=503)
        fetches = provider.fetches
        # (Retried every second and reported at most once a second, so three make sure one is reported.)
        wait_for(lambda: provider.fetches >= fetches + 3, timeout=10, what="fetches answered 503")
        assert statuses(jester, new_token) == {200}
        assert statuses(jester, old_token) == {401}

        # The provider goes away: retries fail, tokens keep verifying with the last set.
        provider.close()
        time.sleep(3)
        assert statuses(jester, new_token) == {200}
        logs = jester.logs()
        assert "JWKS fetch failed; workers keep the last keys" in logs
        assert "not a usable JWK Set" in logs and "answered 503" in logs
        # At most one failure line per refresh interval (1 s), however often it retried.
        failures = [line for line in logs.splitlines() if "JWKS fetch failed" in line]
        assert len(failures) <= 10, failures
    finally:
        provider.close()


def test_a_provider_down_at_start_does_not_stall_it_and_its_keys_arrive_later(make_jester, upstream):
    key = FIXTURES / "rsa.key"
    provider = JWKSServer(status=503)
    try:
        started = time.monotonic()
        jester = make_jester(config(upstream, provider, refresh="1m"))
        assert time.monotonic() - started < 8
        bearer = token(key, "rsa-1")
        # No keys yet: tokens are refused (fail closed), and the log says so.
        assert statuses(jester, bearer, count=2) == {401}
        assert "JWKS fetch failed; no keys yet: tokens are refused" in jester.logs()
        # Retries back off from 1 s (well under the 1 minute refresh): the set arrives soon after the provider
        # answers.
        provider.serve([rsa_jwk(key, "rsa-1")])
        wait_for(lambda: statuses(jester, bearer, count=2) == {200}, timeout=10, what="keys after the provider recovered")
        assert "JWKS fetch works again" in jester.logs()
    finally:
        provider.close()


def test_a_reload_keeps_the_set_of_an_unchanged_url_and_fetches_a_new_one(make_jester, upstream, tmp_path):
    key, other_key = FIXTURES / "rsa.key", rsa_key(tmp_path / "other.key")
    provider = JWKSServer([rsa_jwk(key, "rsa-1")])
    other = JWKSServer([rsa_jwk(other_key, "other")])
    try:
        jester = make_jester(config(upstream, provider, refresh="1m"))
        bearer = token(key, "rsa-1")
        assert statuses(jester, bearer, count=2) == {200}
        # Reload with the same URL: no new fetch is needed for the new generation to verify tokens.
        fetches = provider.fetches
        generation = jester.status()["generation"]
        jester.ctl("reload", check=True)
        wait_for(lambda: jester.all_ready(generation + 1), what="the reloaded generation")
        assert statuses(jester, bearer, count=2) == {200}
        assert provider.fetches == fetches
        # Reload to another URL: fetched before the new workers start.
        jester.write_config(config(upstream, other, refresh="1m"))
        jester.ctl("reload", check=True)
        wait_for(lambda: jester.all_ready(generation + 2), what="the generation with the new URL")
        wait_for(lambda: all(w["generation"] == generation + 2 for w in jester.status()["workers"]),
                 what="the old generations drained")
        assert other.fetches == 1
        assert statuses(jester, token(other_key, "other"), count=2) == {200}
        assert statuses(jester, bearer, count=2) == {401}
    finally:
        provider.close()
        other.close()
