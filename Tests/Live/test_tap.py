# SPDX-License-Identifier: Apache-2.0
"""Live tests of `jesterctl tap` (issue 20): a live, filtered stream of access records from every worker, over
HTTP/1.1 and HTTP/2 alike, with the access log on or off, that costs the workers nothing once nobody taps."""

import json
import subprocess
import threading
import time

import pytest

from conftest import JESTERCTL, PROTOCOLS, Jester, curl, wait_for


@pytest.fixture(scope="module")
def jester(upstream):
    instance = Jester(f"""
[log]
access_log = false

[upstreams.app]
targets = ["{upstream.address}"]

[upstreams.dead]
targets = ["127.0.0.1:1"]

[[routes]]
name = "app"
path_prefix = "/"
upstream = "app"

[[routes]]
name = "broken"
path_prefix = "/dead/"
upstream = "dead"
""", workers=2)
    yield instance
    instance.stop()


class Tap:
    """A running `jesterctl tap` whose output lines are collected as they come."""

    def __init__(self, jester, *args):
        self.process = subprocess.Popen([JESTERCTL, "tap", "--socket", jester.socket, *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self):
        for line in self.process.stdout:
            self.lines.append(json.loads(line))

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=5)


def tapping_workers(jester):
    """Waits until the master has told the workers about the tap (a request made before may be missed)."""
    time.sleep(0.3)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_tap_streams_the_records_its_filter_matches(jester, protocol):
    errors = Tap(jester, "--status", "5xx")
    everything = Tap(jester, "--route", "app")
    try:
        tapping_workers(jester)
        for index in range(6):
            curl("-H", f"X-Request-Id: tap-{protocol}-{index}", jester.url + f"/echo?{index}", protocol=protocol)
        curl("-H", f"X-Request-Id: tap-{protocol}-dead", jester.url + "/dead/x", protocol=protocol)
        wait_for(lambda: len(everything.lines) >= 6 and errors.lines, timeout=5, what="tapped records")
        # The access log is off: the tap still gets whole records, every field, from both workers' requests.
        assert {line["request_id"] for line in everything.lines} == {f"tap-{protocol}-{i}" for i in range(6)}
        assert all(line["status"] == 200 and line["route"] == "app" and line["type"] == "access"
                   for line in everything.lines)
        assert [line["request_id"] for line in errors.lines] == [f"tap-{protocol}-dead"]
        assert errors.lines[0]["status"] == 502 and errors.lines[0]["error"].startswith("connect 127.0.0.1:1")
    finally:
        errors.stop()
        everything.stop()
    assert "access" not in jester.logs()  # the access log stayed off


def test_count_ends_a_tap_and_a_closed_tap_stops_the_workers(jester):
    tap = subprocess.Popen([JESTERCTL, "tap", "--socket", jester.socket, "--count", "2"],
                           stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    for _ in range(3):
        curl(jester.url + "/echo")
    out, _ = tap.communicate(timeout=5)
    assert tap.returncode == 0 and len(out.splitlines()) == 2
    # No tap left: within a second the master tells both workers, which render nothing more for it.

    def worker_tap_counts():
        return [json.loads(line)["taps"] for line in jester.logs().splitlines()
                if '"message":"jesterctl tap filters"' in line]
    wait_for(lambda: worker_tap_counts()[-2:] == [0, 0], timeout=3, what="both workers told that no tap is open")


def test_a_bad_status_filter_is_a_usage_error(jester):
    result = jester.ctl("tap", "--status", "5x")
    assert result.returncode == 64 and "--status" in result.stderr
