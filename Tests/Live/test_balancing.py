# SPDX-License-Identifier: Apache-2.0
"""Live balancing tests: several real upstream processes behind one pool, each scenario over HTTP/1.1 and HTTP/2
(one request exchange serves both; a scenario that fails over one of them is drift)."""

import http.client
import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import PROTOCOLS, Upstream, curl, free_port, wait_for


@pytest.fixture
def upstreams():
    servers = []

    def start(count, status=None):
        started = [Upstream(status=status) for _ in range(count)]
        servers.extend(started)
        return started

    yield start
    for server in servers:
        server.stop()


def pool(targets, **options):
    lines = [f"{key} = {json.dumps(value)}" for key, value in options.items()]
    return f"""
[upstreams.app]
targets = [{", ".join(targets)}]
{chr(10).join(lines)}

[[routes]]
path_prefix = "/"
upstream = "app"
"""


def served_by(port, count, path="/echo", headers=None, protocol="http1", concurrently=True):
    """Which upstream port answered each of `count` requests: keep-alive requests in turn on one connection over
    HTTP/1.1; over HTTP/2, one curl per request, eight at a time unless not `concurrently` (Debian's curl 7.88.1
    cannot reuse a prior-knowledge connection, curl/curl#10634, and nghttp interleaves concurrent streams' bodies in
    its output). `headers(index)` gives each request's extra fields."""
    if protocol != "http1":
        def one(index):
            fields = [item for k, v in (headers(index) if headers else {}).items() for item in ("-H", f"{k}: {v}")]
            code, body, error = curl(f"http://127.0.0.1:{port}{path}", *fields, protocol=protocol)
            assert code == 200, (code, body, error)
            return json.loads(body)["server_port"]
        with ThreadPoolExecutor(8 if concurrently else 1) as clients:
            return list(clients.map(one, range(count)))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    ports = []
    for index in range(count):
        connection.request("GET", path, headers=(headers(index) if headers else {}))
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body)
        ports.append(json.loads(body)["server_port"])
    connection.close()
    return ports


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_weighted_round_robin_gives_each_target_its_share(make_jester, upstreams, protocol):
    a, b, c = upstreams(3)
    jester = make_jester(pool([f'"{a.address}"', f'{{ address = "{b.address}", weight = 2 }}',
                               f'{{ address = "{c.address}", weight = 3 }}']))
    counts = Counter(served_by(jester.port, 600, protocol=protocol))
    assert counts == {a.port: 100, b.port: 200, c.port: 300}, counts


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("algorithm", ["least_requests", "random_two", "least_latency"])
def test_every_algorithm_spreads_over_all_targets(make_jester, upstreams, algorithm, protocol):
    servers = upstreams(3)
    jester = make_jester(pool([f'"{s.address}"' for s in servers], balance=algorithm))
    counts = Counter(served_by(jester.port, 300, protocol=protocol))
    assert set(counts) == {s.port for s in servers}, counts
    if algorithm != "least_latency":  # least latency may favour the fastest; the others spread evenly
        assert min(counts.values()) > 50, counts


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_consistent_hashing_by_header_keeps_each_key_on_one_target(make_jester, upstreams, protocol):
    servers = upstreams(3)
    jester = make_jester(pool([f'"{s.address}"' for s in servers], balance="hash", hash_key="header:X-User"))
    # One request at a time: bounded loads send a key elsewhere while its target carries more than its share.
    def users(index):
        return {"X-User": f"user-{index % 20}"}
    first = served_by(jester.port, 60, headers=users, protocol=protocol, concurrently=False)
    again = served_by(jester.port, 60, headers=users, protocol=protocol, concurrently=False)
    by_user = {}
    for index, port in enumerate(first + again):
        by_user.setdefault(index % 20, set()).add(port)
    assert all(len(ports) == 1 for ports in by_user.values()), by_user
    assert len({next(iter(p)) for p in by_user.values()}) >= 2  # 20 users do not all land on one target


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_backup_serves_only_when_the_primaries_cannot(make_jester, upstreams, protocol):
    primary, backup = upstreams(2)
    jester = make_jester(pool([f'"{primary.address}"', f'{{ address = "{backup.address}", backup = true }}']))
    assert set(served_by(jester.port, 20, protocol=protocol)) == {primary.port}
    primary.stop()
    # Connections to the primary are refused: each request is retried on the backup, nothing fails.
    for _ in range(20):
        code, body, _ = curl(jester.url + "/echo", protocol=protocol)
        assert code == 200 and json.loads(body)["server_port"] == backup.port
    wait_for(lambda: "upstream target ejected" in jester.logs(), what="the dead primary ejected")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_connect_failures_are_retried_on_another_target(make_jester, upstreams, protocol):
    live = upstreams(1)[0]
    dead = [f'"127.0.0.1:{free_port()}"' for _ in range(2)]  # nothing listens there
    jester = make_jester(pool(dead + [f'"{live.address}"'], max_fails=0))  # never ejected: every attempt counts
    for _ in range(30):
        code, body, _ = curl(jester.url + "/echo", protocol=protocol)
        assert code == 200 and json.loads(body)["server_port"] == live.port
    # With one attempt per request, a dead target's requests fail.
    jester.write_config(pool(dead + [f'"{live.address}"'], max_fails=0, connect_attempts=1))
    jester.ctl("reload", check=True)
    codes = Counter(curl(jester.url + "/echo", protocol=protocol)[0] for _ in range(30))
    assert codes[502] == 20 and codes[200] == 10, codes


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_target_answering_5xx_is_ejected(make_jester, upstreams, protocol):
    good = upstreams(2)
    bad = upstreams(1, status=503)[0]
    # retries = 0: every 503 reaches the client, so they can be counted.
    jester = make_jester(pool([f'"{s.address}"' for s in good + [bad]], max_fails=3, fail_timeout="30s")
                         + "retries = 0\n")
    codes = Counter(curl(jester.url + "/echo", protocol=protocol)[0] for _ in range(60))
    # Round-robin sends every third request to the bad target until its third 503 in a row ejects it.
    assert codes[503] == 3 and codes[200] == 57, codes
    assert "upstream target ejected" in jester.logs()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_target_killed_under_load_shifts_traffic(make_jester, upstreams, protocol):
    servers = upstreams(3)
    jester = make_jester(pool([f'"{s.address}"' for s in servers], max_fails=2), workers=2)
    stop = threading.Event()
    results = Counter()
    errors = []

    def client():
        while not stop.is_set():
            code, body, error = curl(jester.url + "/echo", timeout=10, protocol=protocol)
            results[code] += 1
            if code != 200:
                errors.append((code, error))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(1)
    servers[0].stop()
    killed_at = sum(results.values())
    time.sleep(2)
    stop.set()
    for thread in threads:
        thread.join()
    # Only requests in flight on the killed target may fail (3 clients: at most 3); new ones go elsewhere.
    print(f"requests {dict(results)}, {killed_at} before the kill, failures {errors}")
    assert len(errors) <= 3, errors
    assert sum(results.values()) - killed_at > 20
    after = Counter(served_by(jester.port, 30, protocol=protocol))
    assert servers[0].port not in after and set(after) == {servers[1].port, servers[2].port}


def targets_report(jester):
    result = jester.ctl("upstreams", "--json", check=True)
    return {row["state"]["target"]: row for row in json.loads(result.stdout)}


def test_active_health_checks_run_in_the_master_and_steer_every_worker(make_jester, upstreams):
    good = upstreams(1)[0]
    bad = upstreams(1, status=503)[0]
    checked = pool([f'"{good.address}"', f'"{bad.address}"'], max_fails=0) \
        .replace("max_fails = 0", 'max_fails = 0\nhealth_check = { path = "/healthz", interval = "200ms", rise = 2, fall = 2 }')
    jester = make_jester(checked, workers=2)
    # (Both first checks decide at once, but they finish in either order: wait for both.)
    wait_for(lambda: [targets_report(jester)[target.address]["state"]["health"] for target in (bad, good)]
             == ["unhealthy", "healthy"], what="bad target unhealthy, good one healthy")
    # Both workers got the word: no request reaches the failing target.
    assert set(served_by(jester.port, 40)) == {good.port}
    # Checked once per instance, not once per worker: about one check per interval.
    # (5 per second at interval 200ms; once per worker would be 10.)
    probes = len([r for r in bad.requests() if r["path"] == "/healthz"])
    time.sleep(2.0)
    in_two_seconds = len([r for r in bad.requests() if r["path"] == "/healthz"]) - probes
    assert 4 <= in_two_seconds <= 13, in_two_seconds
    # A target that goes away turns unhealthy too; when all are unhealthy, requests still go somewhere.
    good.stop()
    wait_for(lambda: targets_report(jester)[good.address]["state"]["health"] == "unhealthy", what="stopped target unhealthy")
    # Every target unhealthy: health is ignored rather than refusing everything; the 503 target answers (502
    # when its 503 is retried on the stopped one).
    assert curl(jester.url + "/echo")[0] in (502, 503)
    text = jester.ctl("upstreams", check=True).stdout
    assert "HEALTH" in text and "unhealthy" in text


def test_upstream_drain_and_enable_under_load_lose_nothing(make_jester, upstreams):
    a, b = upstreams(2)
    jester = make_jester(pool([f'"{a.address}"', f'"{b.address}"']), workers=2)
    stop = threading.Event()
    failures = []
    counts = Counter()

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", jester.port, timeout=10)
        while not stop.is_set():
            try:
                connection.request("GET", "/echo")
                response = connection.getresponse()
                body = response.read()
                if response.status != 200:
                    failures.append(response.status)
                else:
                    counts[json.loads(body)["server_port"]] += 1
            except Exception as error:
                failures.append(repr(error))
                connection.close()

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        result = jester.ctl("upstream", "drain", "app", a.address, check=True)
        assert "drain on every worker" in result.stdout
        time.sleep(0.2)
        before = counts[a.port]
        time.sleep(1.0)
        assert counts[a.port] == before and counts[b.port] > 0, counts  # no new request reaches a
        assert targets_report(jester)[a.address]["state"]["admin"] == "drain"
        # The admin state survives a reload.
        jester.ctl("reload", check=True)
        before = counts[a.port]
        time.sleep(0.5)
        assert counts[a.port] == before
        jester.ctl("upstream", "enable", "app", a.address, check=True)
        wait_for(lambda: counts[a.port] > before, what="a serving again")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures[:10]
    # The workers report their counters every second.
    wait_for(lambda: all(row["requests"] > 0 for row in targets_report(jester).values()), what="counters reported")
    bad = jester.ctl("upstream", "drain", "app", "127.0.0.1:1")
    assert bad.returncode != 0 and "has no target" in bad.stderr


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_retries_send_failed_idempotent_requests_elsewhere(make_jester, upstreams, protocol):
    good = upstreams(1)[0]
    unavailable = upstreams(1, status=503)[0]
    closing = upstreams(1, status="close")[0]
    base = pool([f'"{good.address}"', f'"{unavailable.address}"', f'"{closing.address}"'], max_fails=0)
    jester = make_jester(base)
    # GET: a 503 or a connection closed without an answer is retried on another target (one retry by default,
    # which the failed target is excluded from, so with three targets the second attempt may fail too).
    codes = Counter(curl(jester.url + "/echo", protocol=protocol)[0] for _ in range(60))
    assert codes[200] >= 35 and set(codes) <= {200, 502, 503}, codes
    assert "upstream target" not in jester.logs()  # max_fails = 0: no ejections muddle the counts
    # Two retries: every GET reaches the good target.
    jester.write_config(base + "retries = 2\n")
    jester.ctl("reload", check=True)
    codes = Counter(curl(jester.url + "/echo", protocol=protocol)[0] for _ in range(60))
    assert codes == {200: 60}, codes
    # POST is not idempotent: its failures reach the client (the 503 as the target sent it).
    codes = Counter(curl(jester.url + "/echo", "-X", "POST", protocol=protocol)[0] for _ in range(30))
    assert codes[200] == 10 and codes[503] == 10 and codes[502] == 10, codes
    # ... unless the route says so.
    jester.write_config(base + "retries = 2\nretry_non_idempotent = true\n")
    jester.ctl("reload", check=True)
    codes = Counter(curl(jester.url + "/echo", "-X", "POST", protocol=protocol)[0] for _ in range(30))
    assert codes == {200: 30}, codes


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_circuit_breaker_answers_at_once_while_the_pool_fails(make_jester, upstreams, protocol):
    bad = upstreams(1, status=503)[0]
    jester = make_jester(pool([f'"{bad.address}"'], max_fails=0).replace(
        "max_fails = 0", 'max_fails = 0\ncircuit_breaker = { minimum_requests = 5, failure_percent = 50, open_for = "2s" }')
        + "retries = 0\n")
    bodies = [curl(jester.url + "/echo", protocol=protocol) for _ in range(20)]
    assert all(code == 503 for code, _, _ in bodies)
    from_target = [body for _, body, _ in bodies if b"server_port" in body]
    assert len(from_target) == 5, len(from_target)  # the breaker opened after 5 failures: the rest are Jester's
    hits = len(bad.requests())
    time.sleep(2.2)
    # Half-open: probes reach the target again (and fail, so it opens again).
    assert b"server_port" in curl(jester.url + "/echo", protocol=protocol)[1]
    assert len(bad.requests()) == hits + 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_circuit_breaker_limits_requests_in_flight(make_jester, upstreams, protocol):
    slow = upstreams(1)[0]
    jester = make_jester(pool([f'"{slow.address}"']).replace(
        "[[routes]]", 'circuit_breaker = { max_requests = 2 }\n\n[[routes]]'))
    results = []

    def request():
        results.append(curl(jester.url + "/slow?delay=1", protocol=protocol)[0])

    threads = [threading.Thread(target=request) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 200, 503, 503, 503], results


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sticky_cookie_keeps_a_client_on_its_target(make_jester, upstreams, protocol):
    servers = upstreams(3)
    jester = make_jester(pool([f'"{s.address}"' for s in servers], sticky_cookie="SRV"))

    def get(cookie=None):
        cookie_field = ["-H", f"Cookie: theme=dark; SRV={cookie}"] if cookie else []
        code, text, error = curl(jester.url + "/echo", "-i", *cookie_field, protocol=protocol)
        assert code == 200, (code, error)
        head, _, body = text.partition(b"\r\n\r\n")
        cookies = [line.split(":", 1)[1].strip() for line in head.decode().split("\r\n")[1:]
                   if line.lower().startswith("set-cookie:")]
        return json.loads(body)["server_port"], (cookies[0] if cookies else None)

    port, set_cookie = get()
    assert set_cookie.startswith("SRV=") and "HttpOnly" in set_cookie and "Path=/" in set_cookie
    token = set_cookie.split(";")[0].split("=", 1)[1]
    assert str(port) not in token  # opaque: the token does not reveal the address
    # With the cookie: always the same target, and no new cookie.
    for _ in range(12):
        assert get(token) == (port, None)
    # Without it: the balancer spreads clients, each told its own target.
    assert len({get()[0] for _ in range(9)}) == 3
    # An unknown token is treated as no cookie.
    assert get("0123456789abcdef")[1] is not None
    # The target goes away: the client moves, and is told its new target.
    target = next(s for s in servers if s.port == port)
    jester.ctl("upstream", "disable", "app", target.address, check=True)
    wait_for(lambda: get(token)[0] != port, what="the sticky client moved off the disabled target")
    moved, new_cookie = get(token)
    assert moved != port and new_cookie and new_cookie.split(";")[0] != f"SRV={token}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_max_requests_per_target_spreads_then_refuses_fast(make_jester, upstreams, protocol):
    servers = upstreams(2)
    jester = make_jester(pool([f'"{servers[0].address}"', f'{{ address = "{servers[1].address}", max_requests = 2 }}'],
                              max_requests_per_target=1))
    results = []

    def slow():
        started = time.monotonic()
        code, body, _ = curl(f"{jester.url}/slow?delay=1.5", protocol=protocol)
        results.append((code, time.monotonic() - started, json.loads(body)["server_port"] if code == 200 else None))

    threads = [threading.Thread(target=slow) for _ in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    # The fourth finds both targets full (1 + 2 in flight): 503 at once.
    started = time.monotonic()
    code, _, _ = curl(f"{jester.url}/slow?delay=1.5", protocol=protocol)
    assert code == 503 and time.monotonic() - started < 0.5
    for thread in threads:
        thread.join()
    assert sorted(code for code, _, _ in results) == [200, 200, 200]
    assert Counter(port for _, _, port in results) == {servers[0].port: 1, servers[1].port: 2}
    wait_for(lambda: any("max_requests" in entry.get("error", "") for entry in jester.access_log()),
             what="the refusal in the access log")


def test_targets_named_by_host_follow_dns_changes(make_jester):
    """The master looks the name up every resolve_interval and every worker follows. /etc/hosts stands in for
    DNS (the name maps to loopback addresses only, and the file is restored)."""
    from pathlib import Path
    hosts = Path("/etc/hosts")
    original = hosts.read_text()
    name = "jester-resolve-test.invalid"
    port = free_port()
    first, second = Upstream(host="127.0.0.2", port=port), Upstream(host="127.0.0.3", port=port)
    try:
        hosts.write_text(original + f"\n127.0.0.2 {name}\n")
        jester = make_jester(pool([f'"{name}:{port}"'], resolve_interval="1s"), workers=2)

        def answered_by():
            code, body, _ = curl(f"{jester.url}/echo")
            assert code == 200
            return json.loads(body)["server_address"]

        assert {answered_by() for _ in range(6)} == {"127.0.0.2"}
        hosts.write_text(original + f"\n127.0.0.3 {name}\n")
        wait_for(lambda: all(answered_by() == "127.0.0.3" for _ in range(6)), timeout=10,
                 what="every worker following the new address")
        assert "upstream target address changed" in jester.logs()
        # The name stops resolving: the last address keeps serving.
        hosts.write_text(original)
        wait_for(lambda: "keeping its last address" in jester.logs(), timeout=10, what="the failed lookup logged")
        assert {answered_by() for _ in range(4)} == {"127.0.0.3"}
    finally:
        hosts.write_text(original)
        first.stop()
        second.stop()
