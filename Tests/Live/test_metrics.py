# SPDX-License-Identifier: Apache-2.0
"""Live tests of the instance's metrics (issue 20, jester-metrics(7)) through `jesterctl metrics`: totals summed
over the master and every worker survive a reload and a killed worker (a counter never drops), the master's own
series follow reloads and restarts, and the exposition passes `promtool check metrics` in both formats."""

import os
import re
import signal
import subprocess

import pytest

from conftest import Jester, curl, wait_for


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
