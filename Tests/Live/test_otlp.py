# SPDX-License-Identifier: Apache-2.0
"""OTLP export, end to end: Jester's exporter (JesterTracingExport, driven by the jester-otlp-probe test
executable until the worker exports spans itself) sends request traces to a real OTLP/HTTP receiver that parses
them with opentelemetry-proto's classes; the tree (server span, routing, filter, each upstream attempt) arrives
with its parent links, and a receiver that hangs or is gone never makes enqueueing wait.

The receiver runs under the venv Packaging/setup.sh --test makes (opentelemetry-proto over python3-protobuf)."""

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from conftest import BIN, free_port, wait_for

HERE = Path(__file__).resolve().parent
VENV_PYTHON = Path(os.environ.get("JESTER_TEST_VENV", "/var/tmp/jester-test-venv")) / "bin" / "python3"
PROBE = str(BIN / "jester-otlp-probe")
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
SERVER, CLIENT, INTERNAL = 2, 3, 1  # OTLP Span.SpanKind
ERROR = 2  # OTLP Status.StatusCode


class Receiver:
    def __init__(self, *extra):
        if not VENV_PYTHON.exists():
            pytest.fail(f"{VENV_PYTHON} is missing: run Packaging/setup.sh --test (it installs opentelemetry-proto)")
        self.port = free_port()
        self.process = subprocess.Popen([str(VENV_PYTHON), str(HERE / "otlp_receiver.py"), str(self.port), *extra],
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"
        self.endpoint = f"http://127.0.0.1:{self.port}/v1/traces"

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return json.loads(response.read())

    def stop(self):
        self.process.kill()
        self.process.wait()


def probe(endpoint, mode, count, timeout=60):
    result = subprocess.run([PROBE, endpoint, mode, str(count)], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def exported():
    """Five traces exported to a receiver whose first answer is 503 (so the retry goes through a real one)."""
    receiver = Receiver("--fail-first", "1")
    try:
        report = probe(receiver.endpoint, "traces", 5)
        yield report, receiver.get("/spans"), receiver.get("/requests")["requests"]
    finally:
        receiver.stop()


def test_every_span_arrives_after_a_retry(exported):
    report, spans, requests = exported
    assert report["shutdown_complete"]
    assert report["statistics"]["exported"] == 25 and report["statistics"]["dropped"] == 0
    assert report["statistics"]["retries"] >= 1 and requests == report["statistics"]["requests"]
    assert len(spans) == 25 and len({span["span_id"] for span in spans}) == 25
    assert {span["resource"]["service.name"] for span in spans} == {"jester"}
    assert all(span["resource"]["service.instance.id"].startswith("probe-") for span in spans)
    assert {span["scope"]["name"] for span in spans} == {"jester"}


def test_each_trace_is_a_tree_under_its_server_span(exported):
    report, spans, _ = exported
    for trace in report["traces"]:
        members = [span for span in spans if span["trace_id"] == trace["trace_id"]]
        assert len(members) == trace["spans"] == 5
        (server,) = [span for span in members if span["kind"] == SERVER]
        assert server["span_id"] == trace["server_span"] and server["parent_span_id"] == trace["remote_parent"]
        children = [span for span in members if span is not server]
        assert all(child["parent_span_id"] == server["span_id"] for child in children)
        assert all(server["start"] <= child["start"] <= child["end"] <= server["end"] for child in children)
        assert sorted(child["name"] for child in children if child["kind"] == INTERNAL) == ["filter basic_auth",
                                                                                            "routing"]
        attempts = sorted((span for span in children if span["kind"] == CLIENT), key=lambda span: span["start"])
        # Each upstream request named its own attempt's span as parent, sampled.
        assert trace["upstream_traceparents"] == [f"00-{trace['trace_id']}-{span['span_id']}-03"
                                                  if trace["remote_parent"] is None else
                                                  f"00-{trace['trace_id']}-{span['span_id']}-01"
                                                  for span in attempts]
        first, second = attempts
        assert first["attributes"]["http.response.status_code"] == 503 and first["status"]["code"] == ERROR
        assert first["attributes"]["error.type"] == "503"
        assert second["attributes"]["http.request.resend_count"] == 1 and second["status"]["code"] == 0
        assert server["attributes"]["http.request.method"] == "GET"
        assert server["attributes"]["http.response.status_code"] == 200
        assert server["attributes"]["url.path"].startswith("/probe/")
        assert server["attributes"]["network.protocol.version"] == "1.1"


def test_a_callers_trace_is_continued_with_its_tracestate(exported):
    report, spans, _ = exported
    continued = report["traces"][0]
    assert continued["trace_id"] == CALLER_TRACE and continued["remote_parent"] == CALLER_SPAN
    server = next(span for span in spans if span["span_id"] == continued["server_span"])
    # Span.flags: sampled, and "the parent is remote" known (0x100) and true (0x200).
    assert server["flags"] == 0x301
    assert server["trace_state"] == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    roots = [trace for trace in report["traces"][1:]]
    assert all(trace["remote_parent"] is None and trace["trace_id"] != CALLER_TRACE for trace in roots)
    assert all(span["flags"] & 0x300 == 0 for span in spans if span["parent_span_id"] is None)


@pytest.mark.parametrize("collector", ["hanging", "gone"])
def test_a_dead_collector_never_blocks_enqueue(collector):
    if collector == "hanging":
        receiver = Receiver("--hang")
        endpoint = receiver.endpoint
    else:
        receiver = None
        endpoint = f"http://127.0.0.1:{free_port()}/v1/traces"
    try:
        report = probe(endpoint, "stalled", 3000)
        if receiver:
            # The exporter is inside an export the receiver never answers.
            wait_for(lambda: receiver.get("/requests")["requests"] >= 1, what="the stalled export")
    finally:
        if receiver:
            receiver.stop()
    statistics = report["statistics"]
    # 3000 spans at a 256-span queue while nothing is delivered: most are dropped, and counted.
    assert statistics["exported"] == 0 and statistics["dropped"] >= 2000
    # An enqueue is an append under a lock: never a wait for the exporter (generous bound for a loaded machine).
    assert report["slowest_enqueue_us"] < 20_000, report
    assert report["mean_enqueue_us"] < 200, report
    # Shutdown keeps its 500 ms deadline even with an export hanging.
    assert report["shutdown_us"] < 1_500_000, report
