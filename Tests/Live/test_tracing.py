# SPDX-License-Identifier: Apache-2.0
"""Tracing through the request path (issue 20): W3C trace context accepted, created when absent and forwarded
upstream with each attempt's span as parent; spans exported from the workers to a real OTLP/HTTP receiver
(opentelemetry-proto parses them); the trace id in the access log. Over HTTP/1.1 and HTTP/2 alike."""

import json
import time
import urllib.request

import pytest

from conftest import PROTOCOLS, Jester, curl, wait_for
from test_otlp import Receiver

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
SERVER, CLIENT = 2, 3  # OTLP Span.SpanKind


@pytest.fixture(scope="module")
def traced(upstream):
    receiver = Receiver()
    instance = Jester(f"""
[tracing]
endpoint = "{receiver.endpoint}"
sample_ratio = 1
schedule_delay = "100ms"

[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
name = "app"
path_prefix = "/"
upstream = "app"
""")
    yield instance, receiver
    instance.stop()
    receiver.stop()


def echoed_headers(body):
    return {k.lower(): v for k, v in json.loads(body)["headers"]}


def spans_of(receiver, trace_id):
    return [span for span in receiver.get("/spans") if span["trace_id"] == trace_id]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_callers_trace_is_continued_and_forwarded_with_the_attempts_span(traced, protocol):
    jester, receiver = traced
    parent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    status, body, _ = curl("-H", f"traceparent: {parent}", "-H", "tracestate: vendor=abc",
                           "-H", f"X-Request-Id: traced-{protocol}", jester.url + f"/echo?{protocol}", protocol=protocol)
    assert status == 200
    sent = echoed_headers(body)
    version, trace_id, span_id, flags = sent["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", CALLER_TRACE, "01") and span_id != CALLER_SPAN
    assert sent["tracestate"] == "vendor=abc"

    def server_span():
        return next((s for s in spans_of(receiver, CALLER_TRACE)
                     if s["kind"] == SERVER and s["attributes"].get("url.query") == protocol), None)
    server = wait_for(server_span, timeout=5, what="the server span exported")
    mine = wait_for(lambda: [s for s in spans_of(receiver, CALLER_TRACE) if s["kind"] == CLIENT and
                             s["parent_span_id"] == server["span_id"]], timeout=5, what="the attempt's span")
    assert server["parent_span_id"] == CALLER_SPAN and server["name"] == "GET"
    assert server["attributes"]["http.response.status_code"] == 200
    assert [a["span_id"] for a in mine] == [span_id], mine
    line = wait_for(lambda: next((e for e in jester.access_log() if e["request_id"] == f"traced-{protocol}"), None),
                    timeout=3, what="the access line")
    assert line["trace_id"] == CALLER_TRACE


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_request_without_a_trace_starts_one(traced, protocol):
    jester, receiver = traced
    status, body, _ = curl("-H", f"X-Request-Id: fresh-{protocol}", jester.url + f"/echo?fresh-{protocol}",
                           protocol=protocol)
    assert status == 200
    _, trace_id, span_id, flags = echoed_headers(body)["traceparent"].split("-")
    # Sampled (bit 0); a trace Jester starts also says its id is random (bit 1, Trace Context level 2).
    assert int(flags, 16) & 1 == 1 and trace_id != CALLER_TRACE
    spans = wait_for(lambda: len(spans_of(receiver, trace_id)) == 2 and spans_of(receiver, trace_id), timeout=5,
                     what="the new trace's spans")
    server = next(s for s in spans if s["kind"] == SERVER)
    assert server["parent_span_id"] in ("", None) and {s["kind"] for s in spans} == {SERVER, CLIENT}


def test_a_caller_that_samples_out_is_followed(traced):
    jester, receiver = traced
    status, body, _ = curl("-H", f"traceparent: 00-{'1' * 32}-{CALLER_SPAN}-00", jester.url + "/echo?unsampled")
    assert status == 200
    _, trace_id, _, flags = echoed_headers(body)["traceparent"].split("-")
    assert (trace_id, flags) == ("1" * 32, "00")  # passed on, not sampled
    time.sleep(0.5)
    assert spans_of(receiver, "1" * 32) == []


def test_an_invalid_traceparent_starts_a_new_trace(traced):
    jester, _ = traced
    status, body, _ = curl("-H", "traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                           jester.url + "/echo?invalid")
    _, trace_id, _, _ = echoed_headers(body)["traceparent"].split("-")
    assert status == 200 and trace_id != "0" * 32


def test_a_dead_collector_costs_requests_nothing(make_jester, upstream):
    from conftest import free_port
    jester = make_jester(f"""
[tracing]
endpoint = "http://127.0.0.1:{free_port()}/v1/traces"
sample_ratio = 1

[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
path_prefix = "/"
upstream = "app"
""")
    started = time.monotonic()
    for _ in range(20):
        assert curl(jester.url + "/echo")[0] == 200
    assert time.monotonic() - started < 5
