# SPDX-License-Identifier: Apache-2.0
"""Tracing through the request path (issue 20): W3C trace context accepted, created when absent and forwarded
upstream with each attempt's span as parent; spans exported from the workers to a real OTLP/HTTP receiver
(opentelemetry-proto parses them), the server span the parent of the routing span, of one span per filter that
ran and of one per upstream attempt; the trace id in the access log. Over HTTP/1.1 and HTTP/2 alike."""

import json
import time
import urllib.request

import pytest

from conftest import PROTOCOLS, Jester, Upstream, curl, wait_for
from test_otlp import Receiver
from jwt_tokens import FIXTURES

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
SERVER, CLIENT, INTERNAL = 2, 3, 1  # OTLP Span.SpanKind
HTPASSWD = FIXTURES / "htpasswd"  # dave's password ("dave-secret") is bcrypt, checked on the thread pool


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
    # The server span, its routing span and its one attempt's.
    spans = wait_for(lambda: len(spans_of(receiver, trace_id)) == 3 and spans_of(receiver, trace_id), timeout=5,
                     what="the new trace's spans")
    server = next(s for s in spans if s["kind"] == SERVER)
    assert server["parent_span_id"] in ("", None)
    assert sorted((s["kind"], s["name"]) for s in spans) == [(INTERNAL, "routing"), (SERVER, "GET"), (CLIENT, "GET")]


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


# The phases' spans (jester-pipeline(7), TRACING): a route with two filters, the first proceeding (the client's
# address), the second (basic_auth) proceeding with a password and answering 401 without one, to a pool whose first
# target always answers 503 and which the route retries on the other.

@pytest.fixture(scope="module")
def guarded(upstream):
    receiver = Receiver()
    busy = Upstream(status=503)
    instance = Jester(f"""
[tracing]
endpoint = "{receiver.endpoint}"
sample_ratio = 1
schedule_delay = "100ms"

[filters.local]
kind = "ip_rules"
allow = ["127.0.0.0/8", "::1"]

[filters.staff]
kind = "basic_auth"
realm = "staff"
htpasswd = "{HTPASSWD}"

[upstreams.flaky]
targets = ["{busy.address}", "{upstream.address}"]
max_fails = 0

[[routes]]
name = "guarded"
path_prefix = "/guarded/"
upstream = "flaky"
filters = ["local", "staff"]
retries = 1
retry_on = ["503"]
""")
    yield instance, receiver
    instance.stop()
    busy.stop()
    receiver.stop()


def exported_tree(receiver, trace_id, phases):
    """The spans of `trace_id` once its server span and `phases` other spans at least have arrived (a request's
    spans are queued together, so they arrive in one export)."""
    def whole():
        spans = spans_of(receiver, trace_id)
        return any(s["kind"] == SERVER for s in spans) and len(spans) >= 1 + phases and spans
    spans = wait_for(whole, timeout=5, what=f"the spans of {trace_id}")
    (server,) = [s for s in spans if s["kind"] == SERVER]
    children = sorted((s for s in spans if s is not server), key=lambda s: s["start"])
    # One tree: every span a child of the server span, inside it, the phases one after the other.
    assert all(child["parent_span_id"] == server["span_id"] for child in children), spans
    assert all(server["start"] <= child["start"] <= child["end"] <= server["end"] for child in children)
    assert all(a["end"] <= b["start"] for a, b in zip(children, children[1:])), children
    return server, children


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_routing_each_filter_and_each_attempt_are_children_of_the_server_span(guarded, protocol):
    jester, receiver = guarded
    attempts_seen = []
    for i in range(4):
        status, body, _ = curl("-u", "dave:dave-secret", jester.url + f"/guarded/{protocol}/{i}/echo",
                               protocol=protocol)
        assert status == 200, body
        _, trace_id, last_attempt, _ = echoed_headers(body)["traceparent"].split("-")
        server, children = exported_tree(receiver, trace_id, 4)
        assert [c["name"] for c in children[:3]] == ["routing", "filter local", "filter staff"], children
        assert [c["kind"] for c in children[:3]] == [INTERNAL] * 3
        routing, local, staff = children[:3]
        assert routing["attributes"]["jester.route.outcome"] == "matched"
        assert routing["attributes"]["http.route"] == "guarded" == server["attributes"]["http.route"]
        assert routing["attributes"]["jester.route.action"] == "proxy"
        assert (local["attributes"]["jester.filter.kind"], local["attributes"]["jester.filter.outcome"]) == (
            "ip_rules", "proceed")
        assert (staff["attributes"]["jester.filter.kind"], staff["attributes"]["jester.filter.outcome"]) == (
            "basic_auth", "proceed")
        assert "http.response.status_code" not in staff["attributes"]
        attempts = children[3:]
        assert [a["kind"] for a in attempts] == [CLIENT] * len(attempts) and 1 <= len(attempts) <= 2
        # The upstream that answered was sent the last attempt's span as parent.
        assert attempts[-1]["span_id"] == last_attempt
        assert attempts[-1]["attributes"]["http.response.status_code"] == 200
        if len(attempts) == 2:
            assert attempts[0]["attributes"]["http.response.status_code"] == 503
            assert attempts[1]["attributes"]["http.request.resend_count"] == 1
        attempts_seen.append(len(attempts))
    # Round robin sends at least one of the four to the failing target first.
    assert 2 in attempts_seen, attempts_seen


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_filter_that_refuses_ends_the_tree_with_its_answer(guarded, protocol):
    jester, receiver = guarded
    trace_id = f"{len(protocol):02x}" + "5" * 30
    status, _, _ = curl("-H", f"traceparent: 00-{trace_id}-{CALLER_SPAN}-01",
                        jester.url + f"/guarded/{protocol}/refused", protocol=protocol)
    assert status == 401
    server, children = exported_tree(receiver, trace_id, 3)
    assert [c["name"] for c in children] == ["routing", "filter local", "filter staff"], children
    staff = children[2]["attributes"]
    assert (staff["jester.filter.outcome"], staff["http.response.status_code"]) == ("respond", 401)
    assert children[1]["attributes"]["jester.filter.outcome"] == "proceed"
    assert server["attributes"]["http.response.status_code"] == 401 and server["parent_span_id"] == CALLER_SPAN


def test_a_request_no_route_takes_has_a_routing_span_that_says_so(guarded):
    jester, receiver = guarded
    trace_id = "6" * 32
    status, _, _ = curl("-H", f"traceparent: 00-{trace_id}-{CALLER_SPAN}-01", jester.url + "/nowhere")
    assert status == 404
    server, children = exported_tree(receiver, trace_id, 1)
    assert [c["name"] for c in children] == ["routing"]
    assert children[0]["attributes"]["jester.route.outcome"] == "not_found"
    assert children[0]["attributes"]["http.response.status_code"] == 404
    assert "http.route" not in server["attributes"]
