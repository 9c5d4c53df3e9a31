# SPDX-License-Identifier: Apache-2.0
"""Request filters on the one exchange (issue 18): IP rules, basic auth, JWT and rate limits, each over HTTP/1.1 and
HTTP/2, against real jester processes, a real upstream and curl. A refused request must never reach the upstream."""

import json
import socket
import subprocess
import threading
import time

import pytest

from conftest import HERE, free_port, wait_for
from jwt_tokens import FIXTURES, rsa_jwk, rsa_key, sign

PROTOCOLS = ["http1", "h2c"]
HTPASSWD = FIXTURES / "htpasswd"  # bob, carol, dave (bcrypt), erin; password "<user>-secret"
JWKS = FIXTURES / "jwks.json"     # kid rsa-1 is Tests/Fixtures/auth/rsa.key


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)

    def upstream_header(self, name):
        """A request field as the upstream (upstream.py's echo) saw it."""
        values = [v for k, v in self.json()["headers"] if k.lower() == name.lower()]
        return values[0] if values else None


def request(jester, path, protocol, headers=(), user=None, timeout=10, source=None):
    """One request with curl over `protocol` (from the loopback address `source`, if given); the response's
    status, fields (lowercase names) and body."""
    args = ["curl", "-sS", "-i", "--max-time", str(timeout),
            "--http2-prior-knowledge" if protocol == "h2c" else "--http1.1"]
    if source:
        args += ["--interface", source]
    for header in headers:
        args += ["-H", header]
    if user:
        args += ["-u", user]
    result = subprocess.run(args + [jester.url + path], capture_output=True, timeout=timeout + 5)
    assert result.returncode == 0, result.stderr.decode()
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), value.strip())
    return Response(int(lines[0].split()[1]), fields, body)


def upstream_count(upstream, path_prefix):
    return sum(1 for r in upstream.requests() if r["path"].startswith(path_prefix))


@pytest.fixture(scope="module")
def gateway(upstream, tmp_path_factory):
    """One instance with a route per filter kind (module-wide: starting jester is the slow part)."""
    from conftest import Jester
    secret_file = tmp_path_factory.mktemp("filters") / "hs.key"
    secret_file.write_bytes(b"s" * 32)
    jester = Jester(f"""
[upstreams.app]
targets = ["{upstream.address}"]

[filters.office]
kind = "ip_rules"
allow = ["10.0.0.0/8"]

[filters.loopback]
kind = "ip_rules"
allow = ["127.0.0.0/8", "::1"]
deny = ["127.0.0.2"]

[filters.staff]
kind = "basic_auth"
realm = "staff"
htpasswd = "{HTPASSWD}"

[filters.api]
kind = "jwt"
algorithms = ["RS256", "ES256"]
jwks_file = "{JWKS}"
issuers = ["https://issuer.test"]
audiences = ["api"]
leeway = "5s"
forward_claims = {{ sub = "X-User" }}

[filters.admins]
kind = "jwt"
algorithms = ["RS256"]
jwks_file = "{JWKS}"
require_claims = {{ scope = "admin" }}

[filters.shared_secret]
kind = "jwt"
algorithms = ["HS256"]
secret_file = "{secret_file}"

[filters.five_a_minute]
kind = "rate_limit"
rate = 5
per = "1m"
burst = 4
key = ["client_address"]

[filters.per_user]
kind = "rate_limit"
rate = 2
per = "1m"
burst = 1
key = ["claim:sub"]

[[routes]]
path_prefix = "/office/"
filters = ["office"]
upstream = "app"

[[routes]]
path_prefix = "/loopback/"
filters = ["loopback"]
upstream = "app"

[[routes]]
path_prefix = "/staff/"
filters = ["staff"]
upstream = "app"

[[routes]]
path_prefix = "/api/"
filters = ["api", "per_user"]
upstream = "app"

[[routes]]
path_prefix = "/admin/"
filters = ["admins"]
upstream = "app"

[[routes]]
path_prefix = "/hs/"
filters = ["shared_secret"]
upstream = "app"

[[routes]]
path_prefix = "/limited/"
filters = ["five_a_minute"]
upstream = "app"

[[routes]]
path_prefix = "/fixed/"
filters = ["office"]
respond = {{ status = 200, body = "fixed\\n" }}
""", workers=2, server_settings="")
    yield jester
    jester.stop()


def claims(**extra):
    now = int(time.time())
    return {"iss": "https://issuer.test", "aud": "api", "sub": "alice", "iat": now, "exp": now + 300, **extra}


# MARK: IP rules

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ip_rules_refuse_with_403_before_any_upstream_work(gateway, upstream, protocol):
    before = upstream_count(upstream, "/office/")
    response = request(gateway, f"/office/{protocol}", protocol)
    assert response.status == 403
    # A fixed answer behind the same filter is refused too: filters run before the route's action.
    assert request(gateway, "/fixed/x", protocol).status == 403
    assert upstream_count(upstream, "/office/") == before
    assert request(gateway, f"/loopback/{protocol}", protocol).status == 200
    line = [r for r in gateway.access_log() if r["target"] == f"/office/{protocol}"][-1]
    assert line["status"] == 403 and "not allowed" in line["error"] and "upstream" not in line


# MARK: Basic auth

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_basic_auth_challenges_refuses_and_admits(gateway, upstream, protocol):
    before = upstream_count(upstream, "/staff/")
    missing = request(gateway, "/staff/a", protocol)
    assert missing.status == 401
    assert missing.header("www-authenticate") == 'Basic realm="staff", charset="UTF-8"'
    assert request(gateway, "/staff/a", protocol, user="bob:wrong").status == 401
    assert request(gateway, "/staff/a", protocol, user="nobody:bob-secret").status == 401
    assert request(gateway, "/staff/a", protocol, headers=["Authorization: Basic !!!"]).status == 401
    assert upstream_count(upstream, "/staff/") == before
    # SHA-256-crypt, SHA-512-crypt and bcrypt users (bcrypt runs off the event loop, then from the cache).
    for user in ("bob", "carol", "dave", "dave"):
        assert request(gateway, f"/staff/{user}", protocol, user=f"{user}:{user}-secret").status == 200
    line = [r for r in gateway.access_log() if r["target"] == "/staff/dave"][-1]
    assert line["user"] == "dave"


# MARK: JWT

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_valid_token_passes_and_its_claims_are_forwarded(gateway, protocol):
    token = sign(claims(sub=f"alice-{protocol}"))
    response = request(gateway, "/api/echo", protocol,
        headers=[f"Authorization: Bearer {token}", "X-User: mallory"])
    assert response.status == 200
    # The forwarded claim replaces whatever the client claimed to be.
    assert response.upstream_header("X-User") == f"alice-{protocol}"
    es = sign(claims(sub=f"es-{protocol}"), alg="ES256", key=FIXTURES / "ec256.key", kid="ec256-1")
    assert request(gateway, "/api/echo", protocol, headers=[f"Authorization: Bearer {es}"]).status == 200


BAD_TOKENS = {
    "missing": lambda: None,
    "not bearer": lambda: "Basic Ym9iOmJvYi1zZWNyZXQ=",
    "malformed": lambda: "Bearer abc.def",
    "alg none": lambda: "Bearer " + sign(claims(), alg="none"),
    "algorithm not allowed": lambda: "Bearer " + sign(claims(), alg="HS256", secret=b"s" * 32),
    # The classic confusion: an HMAC "signed" with the RSA public key as the secret.
    "confusion": lambda: "Bearer " + sign(claims(), alg="HS256", secret=(FIXTURES / "rsa.pub.pem").read_bytes()),
    "bad signature": lambda: "Bearer " + sign(claims())[:-6] + "AAAAAA",
    "unknown key": lambda: "Bearer " + sign(claims(), kid="nope"),
    "expired": lambda: "Bearer " + sign(claims(exp=int(time.time()) - 60)),
    "not yet valid": lambda: "Bearer " + sign(claims(nbf=int(time.time()) + 60)),
    "wrong issuer": lambda: "Bearer " + sign(claims(iss="https://evil.test")),
    "wrong audience": lambda: "Bearer " + sign(claims(aud="other")),
    "oversize": lambda: "Bearer " + sign(claims(padding="x" * 9000)),
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_bad_token_class_gets_401_and_reaches_nothing(gateway, upstream, protocol):
    before = upstream_count(upstream, "/api/")
    for case, make in BAD_TOKENS.items():
        value = make()
        response = request(gateway, f"/api/{case.replace(' ', '-')}", protocol,
            headers=[f"Authorization: {value}"] if value else [])
        assert response.status == 401, case
        challenge = response.header("www-authenticate")
        assert challenge.startswith("Bearer"), (case, challenge)
        if value and value.startswith("Bearer "):
            assert 'error="invalid_token"' in challenge, (case, challenge)
    assert upstream_count(upstream, "/api/") == before


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_valid_identity_without_the_required_claim_gets_403(gateway, upstream, protocol):
    before = upstream_count(upstream, "/admin/")
    user = request(gateway, "/admin/x", protocol, headers=[f"Authorization: Bearer {sign(claims(scope='read'))}"])
    assert user.status == 403 and "insufficient_scope" in user.header("www-authenticate")
    assert upstream_count(upstream, "/admin/") == before
    admin = sign(claims(scope="read admin"))
    assert request(gateway, "/admin/x", protocol, headers=[f"Authorization: Bearer {admin}"]).status == 200


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_hmac_tokens_with_a_shared_secret(gateway, protocol):
    good = sign(claims(), alg="HS256", secret=b"s" * 32, kid=None)
    assert request(gateway, "/hs/x", protocol, headers=[f"Authorization: Bearer {good}"]).status == 200
    forged = sign(claims(), alg="HS256", secret=b"t" * 32, kid=None)
    assert request(gateway, "/hs/x", protocol, headers=[f"Authorization: Bearer {forged}"]).status == 401


def test_keys_rotated_in_the_jwks_file_while_serving(make_jester, upstream, tmp_path):
    old_key, new_key = rsa_key(tmp_path / "old.key"), rsa_key(tmp_path / "new.key")
    jwks = tmp_path / "keys.jwks"
    jwks.write_text(json.dumps({"keys": [rsa_jwk(old_key, "old")]}))
    jester = make_jester(f"""
[upstreams.app]
targets = ["{upstream.address}"]

[filters.api]
kind = "jwt"
algorithms = ["RS256"]
jwks_file = "{jwks}"

[[routes]]
filters = ["api"]
upstream = "app"
""", workers=2)
    old_token, new_token = sign(claims(), key=old_key, kid="old"), sign(claims(), key=new_key, kid="new")
    for protocol in PROTOCOLS:
        assert request(jester, "/r", protocol, headers=[f"Authorization: Bearer {old_token}"]).status == 200
        assert request(jester, "/r", protocol, headers=[f"Authorization: Bearer {new_token}"]).status == 401
    # Rotation: the new key is published beside the old one, then the old one is withdrawn.
    jwks.write_text(json.dumps({"keys": [rsa_jwk(old_key, "old"), rsa_jwk(new_key, "new")]}))
    jester.ctl("reload", "--wait", check=True)
    for protocol in PROTOCOLS:
        assert request(jester, "/r", protocol, headers=[f"Authorization: Bearer {old_token}"]).status == 200
        assert request(jester, "/r", protocol, headers=[f"Authorization: Bearer {new_token}"]).status == 200
    jwks.write_text(json.dumps({"keys": [rsa_jwk(new_key, "new")]}))
    jester.ctl("reload", "--wait", check=True)
    for protocol in PROTOCOLS:
        assert request(jester, "/r", protocol, headers=[f"Authorization: Bearer {old_token}"]).status == 401
        assert request(jester, "/r", protocol, headers=[f"Authorization: Bearer {new_token}"]).status == 200


# MARK: Rate limits

def test_instance_limit_counts_every_worker_and_both_protocols(gateway, upstream):
    """Five a minute for this client, over new connections (spread over both workers) and both protocols."""
    before = upstream_count(upstream, "/limited/")
    statuses = [request(gateway, "/limited/x", PROTOCOLS[i % 2]) for i in range(9)]
    assert [r.status for r in statuses] == [200] * 5 + [429] * 4
    assert upstream_count(upstream, "/limited/") == before + 5
    allowed, refused = statuses[0], statuses[-1]
    assert allowed.header("ratelimit-policy") == '"five_a_minute";q=5;w=60;jester-burst=4'
    assert allowed.header("ratelimit").startswith('"five_a_minute";r=4;t=')
    assert refused.header("ratelimit").startswith('"five_a_minute";r=0;t=')
    assert 1 <= int(refused.header("retry-after")) <= 12


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_limit_keyed_by_a_token_claim(gateway, protocol):
    token = sign(claims(sub=f"claim-{protocol}"))
    other = sign(claims(sub=f"other-{protocol}"))
    statuses = [request(gateway, "/api/x", protocol, headers=[f"Authorization: Bearer {token}"]).status
                for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert request(gateway, "/api/x", protocol, headers=[f"Authorization: Bearer {other}"]).status == 200


def limited(make_jester, upstream, rate, per, burst=0, workers=2, extra=""):
    return make_jester(f"""
[upstreams.app]
targets = ["{upstream.address}"]

[filters.limit]
kind = "rate_limit"
rate = {rate}
per = "{per}"
burst = {burst}
{extra}

[[routes]]
filters = ["limit"]
upstream = "app"
""", workers=workers)


def test_a_limit_holds_across_a_reload_and_an_upgrade(make_jester, upstream):
    jester = limited(make_jester, upstream, rate=6, per="1m", burst=5)
    ok = lambda i: request(jester, "/r", PROTOCOLS[i % 2]).status == 200
    assert all(ok(i) for i in range(2))
    jester.ctl("reload", "--wait", check=True)
    assert all(ok(i) for i in range(2))
    jester.ctl("upgrade", "--wait", check=True)
    assert all(ok(i) for i in range(2))
    # Six in the minute, whatever generation or process counted them.
    assert [request(jester, "/r", p).status for p in PROTOCOLS] == [429, 429]


def hammer(jester, protocol, seconds, threads=8):
    """Requests as fast as `threads` clients can send them, each on new connections (so they land on every
    worker); the statuses seen and the span from the first to the last request sent."""
    statuses, times = [], []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client():
        while time.monotonic() < deadline:
            sent = time.monotonic()
            status = request(jester, "/r", protocol).status
            with lock:
                statuses.append(status)
                times.append(sent)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return statuses, max(times) - min(times)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_n_per_second_holds_within_one_over_many_connections_and_two_workers(make_jester, upstream, protocol):
    rate, burst = 10, 3
    jester = limited(make_jester, upstream, rate=rate, per="1s", burst=burst)
    statuses, span = hammer(jester, protocol, seconds=2.0)
    allowed = statuses.count(200)
    assert set(statuses) <= {200, 429}
    # GCRA admits 1 + burst at once, then one every 1/rate: over the span the requests were sent in, that is
    # 1 + burst + span * rate, give or take the one whose turn falls just inside or outside the span.
    expected = 1 + burst + span * rate
    print(f"{protocol}: {allowed} allowed of {len(statuses)} in {span:.3f} s, expected {expected:.1f}")
    assert expected - 1.5 <= allowed <= expected + 1.5


# MARK: Cluster scope

class Redis:
    def __init__(self, port):
        self.port = port
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close() or True,
            what="redis-server")

    def stop(self):
        self.process.kill()
        self.process.wait()


def test_two_instances_share_one_cluster_limit_through_redis(make_jester, upstream):
    redis = Redis(free_port())
    try:
        extra = f'scope = "cluster"\nredis = {{ address = "127.0.0.1:{redis.port}", timeout = "100ms" }}'
        first = limited(make_jester, upstream, rate=4, per="1m", burst=3, workers=1, extra=extra)
        second = limited(make_jester, upstream, rate=4, per="1m", burst=3, workers=1, extra=extra)
        statuses = [request((first, second)[i % 2], "/r", PROTOCOLS[i // 2 % 2]).status for i in range(6)]
        assert statuses == [200] * 4 + [429] * 2
        # Redis gone: fail open (the default), and no request waits longer than the timeout. (From another
        # client: this one's refusal is remembered locally until its Retry-After, Redis or not.)
        redis.stop()
        for jester in (first, second):
            for protocol in PROTOCOLS:
                started = time.monotonic()
                assert request(jester, "/r", protocol, source="127.0.0.3").status == 200
                assert time.monotonic() - started < 1.0
        assert request(first, "/r", "http1").status == 429
        assert "redis unavailable" in first.logs()
        # Redis back (empty): limits again, once the limiter has reconnected.
        redis.start()
        wait_for(lambda: [request(first, "/r", "http1", source="127.0.0.4").status for _ in range(5)].count(429) > 0,
            timeout=10, what="limits back")
    finally:
        redis.stop()


def test_cluster_limit_fails_closed_when_configured(make_jester, upstream):
    port = free_port()  # nothing listens there
    extra = f'scope = "cluster"\nredis = {{ address = "127.0.0.1:{port}", timeout = "50ms", on_failure = "deny" }}'
    jester = limited(make_jester, upstream, rate=100, per="1s", workers=1, extra=extra)
    for protocol in PROTOCOLS:
        response = request(jester, "/r", protocol)
        assert response.status == 503 and response.header("retry-after") == "1"


class PasswordRedis(Redis):
    """A redis-server that wants a password (requirepass), with an ACL user allowed Jester's keys only; it
    listens on both loopback addresses, so a host name for it works whichever the resolver gives first."""
    PASSWORD, USER, USER_PASSWORD = "door key", "limiter", "limiter-key"

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "-::1", "--save", "",
             "--appendonly", "no", "--requirepass", self.PASSWORD],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.cli("PING") == "PONG", what="redis-server")
        assert self.cli("ACL", "SETUSER", self.USER, "on", ">" + self.USER_PASSWORD, "~jester:*", "+@all") == "OK"

    def cli(self, *args):
        result = subprocess.run(["redis-cli", "-p", str(self.port), "--no-auth-warning", "-a", self.PASSWORD, *args],
            capture_output=True, text=True, timeout=5)
        return result.stdout.strip()


@pytest.fixture(scope="module")
def password_redis(tmp_path_factory):
    """The shared redis-server of the tests below, and files holding the right and a wrong password."""
    redis = PasswordRedis(free_port())
    files = tmp_path_factory.mktemp("redis-passwords")
    for name, password in [("right", PasswordRedis.PASSWORD), ("user", PasswordRedis.USER_PASSWORD),
                           ("wrong", "not the key")]:
        (files / name).write_text(password + "\n")
    redis.files = files
    yield redis
    redis.stop()


def test_cluster_limits_authenticate_with_a_password_or_an_acl_user(make_jester, upstream, password_redis):
    """requirepass (AUTH password) and an ACL user (AUTH user password) in database 2, the server named by host
    name: both count, in their own database."""
    files, port = password_redis.files, password_redis.port
    plain = (f'scope = "cluster"\nredis = {{ address = "127.0.0.1:{port}", key_prefix = "jester:plain:", '
             f'password_file = "{files}/right" }}')
    acl = (f'scope = "cluster"\nredis = {{ address = "localhost:{port}", key_prefix = "jester:acl:", '
           f'username = "limiter", password_file = "{files}/user", database = 2 }}')
    for extra, database in [(plain, "0"), (acl, "2")]:
        jester = limited(make_jester, upstream, rate=2, per="1m", burst=1, workers=1, extra=extra)
        statuses = [request(jester, "/r", protocol).status for protocol in PROTOCOLS * 2]
        assert statuses == [200, 200, 429, 429], jester.logs()
        prefix = "jester:plain:" if database == "0" else "jester:acl:"
        assert password_redis.cli("-n", database, "KEYS", prefix + "*") != ""
        assert "redis unavailable" not in jester.logs()
    assert password_redis.cli("-n", "0", "KEYS", "jester:acl:*") == ""


def test_a_refused_redis_password_gets_the_failure_policy_at_once(make_jester, upstream, password_redis):
    """A wrong password is Redis down: the configured on_failure, answered without waiting for the (long)
    timeout, and logged with Redis's reason."""
    files, port = password_redis.files, password_redis.port
    redis = (f'address = "127.0.0.1:{port}", timeout = "3s", password_file = "{files}/wrong"')
    jester = make_jester(f"""
[upstreams.app]
targets = ["{upstream.address}"]

[filters.open]
kind = "rate_limit"
rate = 1
scope = "cluster"
redis = {{ {redis} }}

[filters.closed]
kind = "rate_limit"
rate = 1
scope = "cluster"
redis = {{ {redis}, on_failure = "deny" }}

[[routes]]
path_prefix = "/open"
filters = ["open"]
upstream = "app"

[[routes]]
path_prefix = "/closed"
filters = ["closed"]
upstream = "app"
""")
    for protocol in PROTOCOLS:
        for path, status in [("/open", 200), ("/open", 200), ("/closed", 503), ("/closed", 503)]:
            started = time.monotonic()
            assert request(jester, path, protocol).status == status
            assert time.monotonic() - started < 1.0
    wait_for(lambda: "WRONGPASS" in jester.logs(), timeout=5, what="the refusal logged")
    assert "not the key" not in jester.logs()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_cluster_limit_with_delay_delays_instead_of_refusing(make_jester, upstream, password_redis, protocol):
    """5 a second (one per 200 ms), no burst, delay = 3: of five requests at once one passes at once, three wait
    their turn (about 200, 400 and 600 ms) and only the fifth is refused."""
    extra = (f'delay = 3\nscope = "cluster"\nredis = {{ address = "127.0.0.1:{password_redis.port}", '
             f'key_prefix = "jester:delay-{protocol}:", password_file = "{password_redis.files}/right" }}')
    jester = limited(make_jester, upstream, rate=5, per="1s", workers=1, extra=extra)
    results = []
    lock = threading.Lock()

    def client():
        started = time.monotonic()
        response = request(jester, "/r", protocol)
        with lock:
            results.append((response.status, time.monotonic() - started, response))

    clients = [threading.Thread(target=client) for _ in range(5)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200, 200, 200, 200, 429], jester.logs()
    waits = sorted(elapsed for status, elapsed, _ in results if status == 200)
    # The last admitted waited for its turn (three intervals, less the clients' start-up spread); nothing waited
    # past its turn by much.
    assert waits[-1] >= 0.45 and waits[-1] < 1.5, waits
    delayed = [response for status, elapsed, response in results if status == 200 and elapsed >= 0.15]
    assert delayed and all(";t=" not in r.header("ratelimit") for r in delayed)
