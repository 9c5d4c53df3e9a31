# SPDX-License-Identifier: Apache-2.0
"""Live tests of the instance's metrics (issue 20, jester-metrics(7)) through `jesterctl metrics`: totals summed
over the master and every worker survive a reload and a killed worker (a counter never drops), the master's own
series follow reloads and restarts, totals carry on across binary upgrades, and the exposition passes
`promtool check metrics` in both formats."""

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import Jester, Upstream, curl, free_port, raw_request, wait_for
from loopback_server import LoopbackServer


@pytest.fixture(scope="module")
def jester(upstream):
    instance = Jester(f"""
[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
name = "app"
path_prefix = "/"
upstream = "app"
""", workers=2)
    yield instance
    instance.stop()


def scrape(jester, *args):
    result = jester.ctl("metrics", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def sample(text, name, **labels):
    """The value of the sample `name` whose labels include `labels` (0 when there is none)."""
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match.group(3))
    return 0.0


def connections(jester):
    return sample(scrape(jester), "jester_downstream_connections_total", listener="main", protocol="http1")


def make_connections(jester, count):
    for _ in range(count):
        status, _, error = curl("--http1.1", jester.url + "/")
        assert status == 200, error


def test_connections_are_counted_summed_over_workers(jester):
    before = connections(jester)
    make_connections(jester, 6)
    # An HTTP/1 connection on a listener that serves HTTP/2 is counted once it closes (its protocol known).
    wait_for(lambda: connections(jester) >= before + 6, what="six connections counted")
    assert sample(scrape(jester), "jester_downstream_connections_active", listener="main", protocol="http1") == 0


def test_totals_survive_a_reload(jester):
    make_connections(jester, 3)
    before = connections(jester)
    reloads = sample(scrape(jester), "jester_master_reloads_total", result="success")
    generation = sample(scrape(jester), "jester_master_generation")
    assert jester.ctl("reload", "--wait", check=True)
    text = scrape(jester)
    assert connections(jester) >= before
    assert sample(text, "jester_master_reloads_total", result="success") == reloads + 1
    assert sample(text, "jester_master_generation") == generation + 1
    make_connections(jester, 2)
    wait_for(lambda: connections(jester) >= before + 2, what="the new generation's connections counted")


def test_totals_survive_a_killed_worker(jester):
    make_connections(jester, 4)
    wait_for(lambda: connections(jester) > 0, what="connections counted")
    before = connections(jester)
    restarts = sample(scrape(jester), "jester_master_worker_restarts_total")
    victim = jester.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    # Scrapes while the master reaps and respawns it: the total never goes down.
    seen = [connections(jester)]
    wait_for(lambda: victim not in jester.worker_pids() and jester.all_ready(), what="the worker respawned")
    seen.append(connections(jester))
    assert all(value >= before for value in seen), seen
    assert sample(scrape(jester), "jester_master_worker_restarts_total") == restarts + 1
    make_connections(jester, 2)
    wait_for(lambda: connections(jester) >= before + 2, what="connections after the respawn counted")


def test_totals_survive_binary_upgrades_and_keep_counting(make_jester, upstream):
    """The table is handed to the new program across `jesterctl upgrade` (UpgradeHandOver): what the old
    program's workers counted, a request still in flight on one of them included, is neither lost nor counted
    twice once they drain and exit, and the new generation's requests add to it. Twice, so a program that was
    itself started by an upgrade hands the table on too."""
    jester = make_jester(f"""
[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
name = "app"
path_prefix = "/"
upstream = "app"
""", workers=2)
    labels = dict(listener="main", route="app", upstream="app", target=upstream.address, protocol="http1",
                  status_class="2xx")

    def requests(expected, what):
        wait_for(lambda: sample(scrape(jester), "jester_http_requests_total", **labels) == expected, timeout=5,
                 what=what)
        return scrape(jester)

    def send(count):
        for _ in range(count):
            status, _, error = curl("--http1.1", jester.url + "/echo")
            assert status == 200, error

    send(6)
    before = requests(6, "six requests counted")
    for round, (more, total) in enumerate([(4, 11), (2, 13)]):
        generation = sample(before, "jester_master_generation")
        workers = set(jester.worker_pids())
        in_flight = []
        if round == 0:
            # Answered a second from now by an adopted worker of the old program, which counts it.
            slow = threading.Thread(target=lambda: in_flight.append(curl("--http1.1", jester.url + "/slow?delay=1")))
            slow.start()
            time.sleep(0.2)
        # --wait: until the adopted generation has drained and its workers have exited (their partitions
        # retired into the master's).
        jester.ctl("upgrade", "--wait", check=True)
        assert not workers & set(jester.worker_pids())
        if round == 0:
            slow.join()
            assert in_flight[0][0] == 200, in_flight
            before = requests(7, "the request in flight across the upgrade counted")
        after = scrape(jester)
        assert sample(after, "jester_master_generation") == generation + 1
        # Requests are counted as they end: exactly what was counted before. (A connection is counted once it
        # closes, which may be just after the scrape before: never lower.)
        for name, series in [("jester_http_requests_total", labels),
                             ("jester_http_request_duration_seconds_count", dict(listener="main", route="app"))]:
            assert sample(after, name, **series) == sample(before, name, **series), (round, name)
        connections = dict(listener="main", protocol="http1")
        assert sample(after, "jester_downstream_connections_total", **connections) >= sample(
            before, "jester_downstream_connections_total", **connections)
        send(more)
        before = requests(total, f"the requests after upgrade {round + 1} counted on top")


def test_configuration_series_exist_from_zero(jester):
    text = scrape(jester)
    target = jester.config_path.read_text().split('targets = ["')[1].split('"')[0]
    assert re.search(
        rf'^jester_http_requests_total\{{listener="main",route="app",upstream="app",target="{re.escape(target)}",'
        r'protocol="http2",status_class="5xx"\} \d+$', text, re.M)
    assert 'jester_upstream_connect_duration_seconds_bucket{upstream="app"' in text


def test_promtool_accepts_the_text_exposition(jester):
    text = scrape(jester)
    assert "# EOF" not in text
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    # promtool exits 0 and says nothing when it finds no problem.
    assert result.returncode == 0 and not result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.parametrize("args", [("--openmetrics",), ("--accept", "application/openmetrics-text; version=1.0.0")])
def test_openmetrics_is_negotiated(jester, args):
    # (promtool reads only the text format: OpenMetrics is checked for what differs.)
    text = scrape(jester, *args)
    assert text.endswith("# EOF\n")
    assert "# TYPE jester_downstream_connections counter\n" in text
    assert "# UNIT jester_http_request_duration_seconds seconds\n" in text


def test_metrics_flags_conflict(jester):
    result = jester.ctl("metrics", "--openmetrics", "--accept", "text/plain")
    assert result.returncode == 64
    assert "cannot be combined" in result.stderr


@pytest.mark.parametrize("protocol", ["http1", "h2c"])
def test_requests_are_counted_by_route_target_protocol_and_status(jester, upstream, protocol):
    """The request path counts each finished request once: by listener, route, upstream, target, protocol and
    status class, with its duration observed and its bytes added, over HTTP/1.1 and HTTP/2 alike."""
    proto = "http2" if protocol == "h2c" else "http1"
    labels = dict(listener="main", route="app", upstream="app", target=upstream.address, protocol=proto,
                  status_class="2xx")
    before = scrape(jester)
    for _ in range(5):
        assert curl(jester.url + "/echo", protocol=protocol)[0] == 200

    def counted():
        text = scrape(jester)
        return (sample(text, "jester_http_requests_total", **labels)
                - sample(before, "jester_http_requests_total", **labels) == 5) and text
    after = wait_for(counted, timeout=5, what="the requests counted")
    assert sample(after, "jester_http_requests_total", **dict(labels, status_class="5xx")) == 0
    durations = sample(after, "jester_http_request_duration_seconds_count", listener="main", route="app") - sample(
        before, "jester_http_request_duration_seconds_count", listener="main", route="app")
    assert durations == 5
    sent = sample(after, "jester_downstream_sent_bytes_total", listener="main", protocol=proto) - sample(
        before, "jester_downstream_sent_bytes_total", listener="main", protocol=proto)
    assert sent > 0


# The families counted away from the request's end (issue 20): TLS handshakes, bytes a tcp listener relays, HTTP/2
# streams open, ejections, circuit-breaker states and filter verdicts. One instance (one worker, so a breaker's and
# an outlier detector's decisions are one process's) with a listener, a pool and a route for each.

FIXTURES = Path(__file__).resolve().parents[1] / "Fixtures" / "tls"


class EchoServer(LoopbackServer):
    """A TCP upstream that sends back every byte it receives, until the client half-closes."""

    def handle(self, connection):
        with connection:
            while chunk := connection.recv(65536):
                connection.sendall(chunk)


@pytest.fixture(scope="module")
def wired(upstream, tmp_path_factory):
    keys = tmp_path_factory.mktemp("metrics-keys")
    os.chmod(keys, 0o700)  # the master reads the key as root; workers never need to
    for name in ("alpha.pem", "alpha.key"):
        shutil.copyfile(FIXTURES / name, keys / name)
    failing = Upstream(status=503)
    echo = EchoServer()
    tls_port, tcp_port = free_port(), free_port()
    instance = Jester(f"""
[[listeners]]
name = "secure"
address = "127.0.0.1:{tls_port}"
[listeners.tls]
[[listeners.tls.certificates]]
cert = "{keys / 'alpha.pem'}"
key = "{keys / 'alpha.key'}"

[[listeners]]
name = "stream"
address = "127.0.0.1:{tcp_port}"
protocol = "tcp"
upstream = "echo"

[upstreams.echo]
targets = ["{echo.address}"]

[upstreams.app]
targets = ["{upstream.address}"]

[upstreams.flaky]
targets = ["{upstream.address}", "{failing.address}"]
max_fails = 2
fail_timeout = "1h"

[upstreams.broken]
targets = ["{failing.address}"]
max_fails = 0
circuit_breaker = {{ minimum_requests = 3, failure_percent = 50, open_for = "1h" }}

[filters.loopback]
kind = "ip_rules"
allow = ["127.0.0.0/8"]

[filters.office]
kind = "ip_rules"
allow = ["10.0.0.0/8"]

[filters.limit]
kind = "rate_limit"
rate = 2
per = "1h"
burst = 1
key = ["client_address"]

[[routes]]
name = "guarded"
path_prefix = "/guarded/"
filters = ["loopback", "limit"]
upstream = "app"

[[routes]]
name = "office"
path_prefix = "/office/"
filters = ["office"]
respond = {{ status = 200 }}

[[routes]]
name = "flaky"
path_prefix = "/flaky/"
upstream = "flaky"
retries = 0

[[routes]]
name = "broken"
path_prefix = "/broken/"
upstream = "broken"
retries = 0

[upstreams.retrying]
targets = ["{failing.address}", "{upstream.address}"]
max_fails = 0

[[routes]]
name = "retried"
path_prefix = "/retried/"
upstream = "retrying"
retries = 1
retry_on = ["503"]

[[routes]]
name = "app"
path_prefix = "/"
upstream = "app"
""")
    instance.tls_port, instance.tcp_port, instance.failing = tls_port, tcp_port, failing
    yield instance
    instance.stop()
    failing.stop()
    echo.close()


def counted(jester, before, name, expected, **labels):
    """Waits until the sample `name` with `labels` has grown by `expected` since the scrape `before`."""
    def grown():
        return sample(scrape(jester), name, **labels) - sample(before, name, **labels) == expected
    wait_for(grown, timeout=5, what=f"{name} {labels} to grow by {expected}")


def test_retries_and_upstream_response_durations_are_counted(wired, upstream):
    """A request the route's retry policy sends again is counted as a retry of its route and pool, and the answering
    target's response duration is observed once per request, over HTTP/1.1 and HTTP/2."""
    before = scrape(wired)
    for protocol in ("http1", "h2c", "http1", "h2c"):
        assert curl(wired.url + "/retried/x", protocol=protocol)[0] == 200
    counted(wired, before, "jester_upstream_response_duration_seconds_count", 4, upstream="retrying",
            target=upstream.address)
    after = scrape(wired)
    retries = sample(after, "jester_upstream_retries_total", route="retried", upstream="retrying") - sample(
        before, "jester_upstream_retries_total", route="retried", upstream="retrying")
    # Round robin sends at least one of the four to the failing target first; each of those is retried once.
    assert 1 <= retries <= 4
    assert sample(after, "jester_upstream_response_duration_seconds_count", upstream="retrying",
                  target=wired.failing.address) == 0
    # Each new connection's set-up is observed for its target (kept-alive ones are reused, not counted again).
    for target in (upstream.address, wired.failing.address):
        assert sample(after, "jester_upstream_connect_duration_seconds_count", upstream="retrying", target=target) >= 1


def test_tls_handshakes_and_failures_are_counted_per_listener(wired):
    before = scrape(wired)
    for _ in range(2):
        status, _, error = curl("--cacert", str(FIXTURES / "ca.pem"),
                                "--resolve", f"alpha.test:{wired.tls_port}:127.0.0.1",
                                f"https://alpha.test:{wired.tls_port}/")
        assert status == 200, error
    # Plain HTTP to the TLS port and a ClientHello the listener cannot agree to: two failed handshakes.
    assert b"400 Bad Request" in raw_request(wired.tls_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    result = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{wired.tls_port}", "-cipher", "NULL",
                             "-tls1_2"], input=b"", capture_output=True, timeout=15)
    assert result.returncode != 0
    counted(wired, before, "jester_tls_handshakes_total", 2, listener="secure")
    counted(wired, before, "jester_tls_handshake_failures_total", 2, listener="secure")
    assert sample(scrape(wired), "jester_tls_handshakes_total", listener="main") == 0


def test_bytes_a_tcp_listener_relays_are_counted(wired):
    before = scrape(wired)
    payload = os.urandom(100_000)
    with socket.create_connection(("127.0.0.1", wired.tcp_port), timeout=10) as client:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        echoed = b""
        while chunk := client.recv(65536):
            echoed += chunk
    assert echoed == payload
    counted(wired, before, "jester_downstream_received_bytes_total", len(payload), listener="stream", protocol="tcp")
    counted(wired, before, "jester_downstream_sent_bytes_total", len(payload), listener="stream", protocol="tcp")


def test_http2_streams_open_are_a_gauge(wired):
    def streams():
        return sample(scrape(wired), "jester_downstream_streams_active", listener="main", protocol="http2")
    assert streams() == 0
    with ThreadPoolExecutor(2) as clients:
        slow = [clients.submit(curl, wired.url + "/slow?delay=1.5", protocol="h2c") for _ in range(2)]
        wait_for(lambda: streams() == 2, timeout=5, what="two streams open")
        assert all(request.result()[0] == 200 for request in slow)
    wait_for(lambda: streams() == 0, timeout=5, what="no stream open")


def test_an_ejection_is_counted_for_its_target(wired, upstream):
    before = scrape(wired)
    codes = [curl(wired.url + "/flaky/echo")[0] for _ in range(8)]
    # Round-robin: the failing target's second 503 in a row ejects it; the rest go to the healthy one.
    assert codes.count(503) == 2, codes
    failing = wired.failing.address
    counted(wired, before, "jester_upstream_ejections_total", 1, upstream="flaky", target=failing)
    assert sample(scrape(wired), "jester_upstream_ejections_total", upstream="flaky", target=upstream.address) == 0


def test_circuit_breaker_states_are_a_gauge(wired):
    labels = dict(upstream="broken", target=wired.failing.address)
    text = scrape(wired)
    assert sample(text, "jester_upstream_circuit_state", state="closed", **labels) == 1
    assert sample(text, "jester_upstream_circuit_state", state="open", **labels) == 0
    codes = [curl(wired.url + "/broken/echo")[0] for _ in range(5)]
    assert codes == [503] * 5
    text = scrape(wired)
    assert sample(text, "jester_upstream_circuit_state", state="open", **labels) == 1
    assert sample(text, "jester_upstream_circuit_state", state="closed", **labels) == 0
    # A pool without a breaker is closed, and stays so.
    assert sample(text, "jester_upstream_circuit_state", state="closed", upstream="app") == 1


def test_filter_verdicts_are_counted_by_route_and_filter(wired):
    before = scrape(wired)
    codes = [curl(wired.url + "/guarded/echo")[0] for _ in range(4)]
    assert codes.count(200) >= 1 and codes.count(429) >= 1 and len(set(codes)) == 2, codes
    assert curl(wired.url + "/office/")[0] == 403
    counted(wired, before, "jester_filter_outcomes_total", 4, route="guarded", filter="loopback", outcome="proceed")
    counted(wired, before, "jester_filter_outcomes_total", codes.count(200), route="guarded", filter="limit",
            outcome="proceed")
    counted(wired, before, "jester_filter_outcomes_total", codes.count(429), route="guarded", filter="limit",
            outcome="respond")
    counted(wired, before, "jester_filter_outcomes_total", 1, route="office", filter="office", outcome="fail")
    # Each filter that decided is timed: the IP rule on every request, the limit on every one it saw.
    counted(wired, before, "jester_filter_duration_seconds_count", 4, route="guarded", filter="loopback")
    counted(wired, before, "jester_filter_duration_seconds_count", 4, route="guarded", filter="limit")
    assert sample(scrape(wired), "jester_filter_outcomes_total", route="guarded", filter="loopback",
                  outcome="fail") == 0


# The off switch: [metrics] enabled = false.

def maps_metrics_table(pid):
    """Whether process `pid` holds the shared metrics table (the memfd named jester-metrics)."""
    fds = Path(f"/proc/{pid}/fd")
    return any("jester-metrics" in os.readlink(fd) for fd in fds.iterdir() if fd.is_symlink())


def admin_metrics(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    return response.status, response.read().decode()


def test_the_table_is_there_when_metrics_are_on(jester):
    # (What the off test's absence check would see if it were wrong.)
    assert maps_metrics_table(jester.process.pid)
    assert all(maps_metrics_table(pid) for pid in jester.worker_pids())


def test_metrics_off_count_nothing_and_scrapes_say_why(make_jester, upstream):
    admin_port = free_port()
    routes = f"""
[admin]
address = "127.0.0.1:{admin_port}"

[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
name = "app"
path_prefix = "/"
upstream = "app"
"""
    jester = make_jester("[metrics]\nenabled = false\n" + routes)
    assert curl(jester.url + "/echo")[0] == 200
    status, body = admin_metrics(admin_port)
    assert status == 404 and "[metrics] enabled = false" in body, (status, body)
    result = jester.ctl("metrics")
    assert result.returncode == 3 and "[metrics] enabled = false" in result.stderr, result.stderr
    assert result.stdout == ""
    # No shared table in the master or any worker: nothing is counted anywhere.
    assert not maps_metrics_table(jester.process.pid)
    assert not any(maps_metrics_table(pid) for pid in jester.worker_pids())
    # A reload that turns them on makes the table; the new workers count.
    jester.write_config(routes)
    assert jester.ctl("reload", "--wait", check=True)
    assert maps_metrics_table(jester.process.pid)
    assert curl(jester.url + "/echo")[0] == 200
    status, body = admin_metrics(admin_port)
    assert status == 200
    labels = dict(listener="main", route="app", upstream="app", target=upstream.address, protocol="http1",
                  status_class="2xx")
    wait_for(lambda: sample(scrape(jester), "jester_http_requests_total", **labels) == 1,
             timeout=5, what="the request after the reload counted")
