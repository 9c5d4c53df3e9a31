# SPDX-License-Identifier: Apache-2.0
"""Wasm policies in the pipeline (issue 22, jester-policy(7)): modules built here with the SDK, attached to a
listener (pre_route) and to routes (pre_upstream, post_response), against a real upstream, over HTTP/1.1 and h2c.

One conformance module (policies/conformance.c) does at each stage what the request's x-do-route, x-do-upstream or
x-do-response field says, so every mutation, short-circuit and hostile behaviour of ABI v1 is driven by the
client; the SDK's four examples run as operators would use them. Workers run as the unprivileged user (the
master is root here)."""

import hashlib
import json
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import PROTOCOLS, Jester, Upstream, curl, free_port, wait_for

HERE = Path(__file__).resolve().parent
SDK = HERE.parent.parent / "SDK"
CLANG = "/opt/swift/usr/bin/clang" if Path("/opt/swift/usr/bin/clang").exists() else "clang"


def build(source, output):
    subprocess.run(
        [CLANG, "--target=wasm32", "-O2", "-ffreestanding", "-nostdlib", "-mbulk-memory", "-Wall", "-Werror",
         "-I", str(SDK / "c"), "-Wl,--no-entry", "-Wl,--strip-debug", "-o", str(output), str(source),
         str(SDK / "c" / "jester_policy.c")],
        check=True, timeout=120)


@pytest.fixture(scope="module")
def modules():
    directory = Path(tempfile.mkdtemp(prefix="jester-policies-"))
    directory.chmod(0o755)
    build(HERE / "policies" / "conformance.c", directory / "conformance.wasm")
    for example in ("header_inject", "json_redactor", "tenant_router", "failure_circuit", "body_router"):
        build(SDK / "examples" / f"{example}.c", directory / f"{example}.wasm")
    for module in directory.iterdir():
        module.chmod(0o644)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def upstreams():
    main, alternative, failing = Upstream(), Upstream(), Upstream(status=503)
    yield main, alternative, failing
    for server in (main, alternative, failing):
        server.stop()


CONFIG = """
policies = [{{ policy = "conf", stage = "pre_route" }}, {{ policy = "inject", stage = "pre_route" }}]

[[listeners]]
name = "edge"
address = "127.0.0.1:{edge}"
policies = [{{ policy = "circuit", stage = "pre_route" }}, {{ policy = "tenants", stage = "pre_route" }}]

[policies.conf]
module = "{modules}/conformance.wasm"
fuel = 2000000
memory = "1MiB"

[policies.reader]
module = "{modules}/conformance.wasm"
read_body = true
body_limit = "1KiB"
deny_status = 451

[policies.inject]
module = "{modules}/header_inject.wasm"
config = {{ request_header = "x-injected", request_value = "yes", response_header = "x-served-by" }}

[policies.redactor]
module = "{modules}/json_redactor.wasm"
config = {{ fields = "path,method" }}
read_body = true

[policies.tenants]
module = "{modules}/tenant_router.wasm"
config = '{{"header": "x-tenant", "route_prefix": "tenant-"}}'

[policies.circuit]
module = "{modules}/failure_circuit.wasm"
config = {{ window = 4, min_requests = 4, threshold_percent = 50, open_requests = 3 }}

[[routes]]
name = "app"
listeners = ["main"]
upstream = "app"
policies = [{{ policy = "conf", stage = "pre_upstream" }}, {{ policy = "conf", stage = "post_response" }}]

[[routes]]
name = "beta"
listeners = ["main"]
policy_tags = ["beta"]
respond = {{ status = 200, body = "beta route\\n" }}

[[routes]]
name = "other"
listeners = ["main"]
path_prefix = "/other"
respond = {{ status = 200, body = "other route\\n" }}

[[routes]]
name = "split"
listeners = ["main"]
path_prefix = "/split/"
split = [{{ upstream = "app", weight = 100 }}, {{ upstream = "alt", weight = 0 }}]
policies = [{{ policy = "conf", stage = "pre_upstream" }}]

[[routes]]
name = "inject"
listeners = ["main"]
path_prefix = "/inject/"
upstream = "app"
policies = [{{ policy = "inject", stage = "post_response" }}]

[[routes]]
name = "redact"
listeners = ["main"]
path_prefix = "/redact/"
upstream = "app"
policies = [{{ policy = "redactor", stage = "post_response" }}]

[[routes]]
name = "body"
listeners = ["main"]
path_prefix = "/body/"
upstream = "app"
policies = [{{ policy = "reader", stage = "pre_upstream" }}, {{ policy = "reader", stage = "post_response" }}]

[[routes]]
name = "retry"
listeners = ["main"]
path_prefix = "/retry/"
upstream = "flaky"
retry_on = ["503"]
policies = [{{ policy = "reader", stage = "post_response" }}]

[[routes]]
name = "sticky"
listeners = ["main"]
path_prefix = "/sticky/"
split = [{{ upstream = "sticky", weight = 100 }}, {{ upstream = "alt", weight = 0 }}]
retries = 0
policies = [{{ policy = "conf", stage = "pre_upstream" }}]

[[routes]]
name = "classify"
listeners = ["main"]
path_prefix = "/classify/"
upstream = "app"
policy_reroute = true
policies = [{{ policy = "reader", stage = "pre_upstream" }}]

[[routes]]
name = "classify-beta"
listeners = ["main"]
path_prefix = "/classify/"
policy_tags = ["beta"]
respond = {{ status = 200, body = "classified beta\\n" }}

[[routes]]
name = "bulk"
listeners = ["main"]
path_prefix = "/only-by-reroute/bulk"
upstream = "alt"
filters = ["queue"]
max_body_size = "1KiB"
policies = [{{ policy = "conf", stage = "pre_upstream" }}, {{ policy = "conf", stage = "post_response" }}]

[[routes]]
name = "rereader"
listeners = ["main"]
path_prefix = "/only-by-reroute/rereader"
upstream = "alt"
policy_reroute = true
policies = [{{ policy = "reader", stage = "pre_upstream" }}]

[[routes]]
name = "tiny"
listeners = ["main"]
path_prefix = "/only-by-reroute/tiny"
upstream = "alt"
max_body_size = 3

[[routes]]
name = "orders"
listeners = ["main"]
path_prefix = "/orders/"
upstream = "app"
policy_reroute = true
policies = [{{ policy = "orders", stage = "pre_upstream" }}]

[[routes]]
name = "orders-bulk"
listeners = ["main"]
path_prefix = "/orders/"
policy_tags = ["never-tagged"]
upstream = "alt"

[policies.orders]
module = "{modules}/body_router.wasm"
config = {{ member = "type", values = "bulk", route_prefix = "orders-" }}
read_body = true
body_limit = "4KiB"

[filters.queue]
kind = "rate_limit"
rate = 2
per = "1s"
delay = 5

[[routes]]
name = "tenant-a"
listeners = ["edge"]
path_prefix = "/only-by-hint/a"
respond = {{ status = 200, body = "tenant a\\n" }}

[[routes]]
name = "tenant-flaky"
listeners = ["edge"]
path_prefix = "/only-by-hint/flaky"
upstream = "failing"
retries = 0
policies = [{{ policy = "circuit", stage = "post_response" }}]

[[routes]]
name = "edge-default"
listeners = ["edge"]
respond = {{ status = 200, body = "no tenant route\\n" }}

[upstreams.app]
targets = ["{app}"]

[upstreams.alt]
targets = ["{alt}"]

[upstreams.failing]
targets = ["{failing}"]

[upstreams.flaky]
targets = ["{failing}", "{app}"]
balance = "round_robin"

[upstreams.sticky]
targets = ["{app}", "{failing}", "{alt}"]
sticky_cookie = "jsticky"
"""


@pytest.fixture(scope="module")
def policed(modules, upstreams):
    main, alternative, failing = upstreams
    edge = free_port()
    instance = Jester(CONFIG.format(
        modules=modules, edge=edge, app=main.address, alt=alternative.address, failing=failing.address))
    instance.edge_url = f"http://127.0.0.1:{edge}"
    yield instance
    instance.stop()


def fetch(url, protocol, headers=(), data=None, method=None):
    """One request: (status, fields with lowercase names, body)."""
    args = ["curl", "-sS", "--max-time", "20", "--http2-prior-knowledge" if protocol == "h2c" else "--http1.1",
            "-D", "-", "-o", "-"]
    if method:
        args += ["-X", method]
    if data is not None:
        args += ["--data-binary", data]
    for header in headers:
        args += ["-H", header]
    result = subprocess.run(args + [url], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr.decode()
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), value.strip())
    return int(lines[0].split()[1]), fields, body


def echoed(body):
    """The upstream's /echo answer: method, path and the fields it got (lowercase names)."""
    answer = json.loads(body)
    answer["fields"] = {name.lower(): value for name, value in answer["headers"]}
    return answer


def reached(upstream, marker):
    return [r for r in upstream.requests() if marker in r["path"]]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pre_route_rewrites_what_the_router_and_the_upstream_see(policed, protocol):
    status, _, body = fetch(policed.url + f"/echo?{protocol}", protocol, ["x-do-route: set-header hello"])
    assert status == 200
    answer = echoed(body)
    assert answer["fields"]["x-set"] == "hello"
    # The second pre-route policy (header_inject) ran after the first, on the rewritten request.
    assert answer["fields"]["x-injected"] == "yes"
    # A path rewrite is routed as if the client had asked for it.
    status, _, body = fetch(policed.url + "/echo", protocol, ["x-do-route: path /other/x"])
    assert (status, body) == (200, b"other route\n")
    status, _, body = fetch(policed.url + "/echo", protocol, ["x-do-route: method PUT"])
    assert status == 200 and echoed(body)["method"] == "PUT"
    status, _, body = fetch(policed.url + "/echo?a=1", protocol, ["x-do-route: query b=2"])
    assert status == 200 and echoed(body)["path"] == "/echo?b=2"
    status, _, body = fetch(policed.url + "/echo", protocol, ["x-do-route: remove-header user-agent"])
    assert status == 200 and "user-agent" not in echoed(body)["fields"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_routing_hints_resolve_or_fail_closed(policed, upstreams, protocol):
    _, alternative, _ = upstreams
    status, _, body = fetch(policed.url + "/echo", protocol, ["x-do-route: route other"])
    assert (status, body) == (200, b"other route\n")
    status, _, _ = fetch(policed.url + "/echo", protocol, ["x-do-route: route no-such-route"])
    assert status == 500
    # set-upstream picks a pool of the route's (weight 0 otherwise), at pre_upstream.
    status, _, body = fetch(policed.url + "/split/echo", protocol, ["x-do-upstream: upstream alt"])
    assert status == 200 and echoed(body)["server_port"] == alternative.port
    status, _, _ = fetch(policed.url + "/split/echo", protocol, ["x-do-upstream: upstream nowhere"])
    assert status == 500
    # A pre-route tag selects the routes that ask for it (policy_tags), above the same path's routes without;
    # at pre_upstream the route is chosen already: on a route without policy_reroute a tag or a route name fails
    # closed rather than being ignored.
    status, _, body = fetch(policed.url + "/echo", protocol, ["x-do-route: tag"])
    assert (status, body) == (200, b"beta route\n")
    status, _, _ = fetch(policed.url + "/echo", protocol, ["x-do-upstream: tag"])
    assert status == 500
    status, _, _ = fetch(policed.url + "/echo", protocol, ["x-do-upstream: route other"])
    assert status == 500


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_pre_upstream_policy_reroutes_once_on_what_the_body_says(policed, upstreams, protocol):
    main, alternative, _ = upstreams
    reroute = ["x-do-upstream: route-from-body"]
    # The body names the route (route "classify" has policy_reroute): the request then goes through that route
    # as if the router had chosen it: its filters, its policies (the post-response one sets x-set), its upstream,
    # and the whole body.
    status, fields, body = fetch(
        policed.url + f"/classify/echo?bulk-{protocol}", protocol, reroute + ["x-do-response: set-header rerouted"],
        data=b"bulk")
    assert status == 200 and fields.get("x-set") == "rerouted"
    answer = echoed(body)
    assert answer["server_port"] == alternative.port and answer["body_length"] == 4
    # add-route-tag at pre_upstream: the router looks again with the request's tags.
    status, _, body = fetch(policed.url + "/classify/echo", protocol, ["x-do-upstream: tag"], data=b"x")
    assert (status, body) == (200, b"classified beta\n")
    # Nothing asked: the route's own upstream.
    status, _, body = fetch(policed.url + "/classify/echo", protocol, data=b"bulk")
    assert status == 200 and echoed(body)["server_port"] == main.port
    # Once only (the next route's policy asking again fails closed), a route the listener lacks fails closed, and
    # the new route's body limit holds: nothing of these reaches an upstream.
    for route, expected in [("rereader", 500), ("nowhere", 500), ("tiny", 413)]:
        status, _, _ = fetch(
            policed.url + f"/classify/echo?refused-{route}-{protocol}", protocol, reroute, data=route.encode())
        assert status == expected, route
        assert not reached(alternative, f"refused-{route}-{protocol}") and not reached(main, f"refused-{route}-{protocol}")
    logged = wait_for(lambda: [r for r in policed.access_log() if f"bulk-{protocol}" in r["target"]], timeout=5,
                      what="the re-routed request's access-log line")
    assert [record["route"] for record in logged] == ["bulk"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_body_router_example(policed, upstreams, protocol):
    main, alternative, _ = upstreams
    # An order whose JSON body says "bulk" goes to route orders-bulk (reached no other way); others stay.
    status, _, body = fetch(policed.url + "/orders/echo", protocol, data=b'{"id": 1, "type": "bulk"}')
    assert status == 200 and echoed(body)["server_port"] == alternative.port
    for order in (b'{"id": 2, "type": "retail"}', b'{"id": 3}'):
        status, _, body = fetch(policed.url + "/orders/echo", protocol, data=order)
        assert status == 200 and echoed(body)["server_port"] == main.port


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_rerouted_request_waits_for_the_new_routes_filters(policed, upstreams, protocol):
    _, alternative, _ = upstreams
    # Route "bulk" queues requests over 2 a second (a rate_limit that delays): the second of two at once waits
    # its turn there, then goes on to that route's upstream.
    results = []

    def send(marker):
        started = time.monotonic()
        status, _, body = fetch(
            policed.url + f"/classify/echo?queued-{marker}-{protocol}", protocol, ["x-do-upstream: route-from-body"],
            data=b"bulk")
        results.append((time.monotonic() - started, status, echoed(body)["server_port"]))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(result[1:] for result in results) == [(200, alternative.port)] * 2
    assert max(result[0] for result in results) >= 0.3


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stage", ["route", "upstream", "response"])
def test_a_policy_answers_or_denies_at_every_stage(policed, upstreams, protocol, stage):
    main, _, _ = upstreams
    marker = f"short-{stage}-{protocol}"
    status, fields, body = fetch(policed.url + f"/echo/{marker}-respond", protocol, [f"x-do-{stage}: respond"])
    assert (status, body) == (299, b"answered by the policy\n")
    assert fields["x-answered-by"] == "policy"
    status, _, body = fetch(policed.url + f"/echo/{marker}-deny", protocol, [f"x-do-{stage}: deny"])
    assert status == 403 and body.startswith(b"403")
    # Before the upstream, nothing reached it; after, the upstream's answer was replaced.
    expected = 2 if stage == "response" else 0
    assert len(reached(main, marker)) == expected
    log = [r for r in policed.access_log() if marker in r.get("target", "")]
    assert any(f"answered at {'pre_' if stage != 'response' else 'post_'}{stage}" in r.get("error", "") for r in log)


HOSTILE = ["trap", "loop", "grow", "recurse", "crlf", "length", "badutf8"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stage", ["route", "upstream", "response"])
def test_hostile_policies_fail_closed_and_the_worker_serves_on(policed, upstreams, protocol, stage):
    main, _, _ = upstreams
    pids = policed.worker_pids()
    for behaviour in HOSTILE:
        marker = f"hostile-{stage}-{behaviour}-{protocol}"
        status, fields, body = fetch(policed.url + f"/echo/{marker}", protocol, [f"x-do-{stage}: {behaviour}"])
        assert status == 500, (behaviour, status, body)
        # A header with CR LF never reaches the wire, whichever way it went.
        assert "x-injected" not in fields and "x-evil" not in fields
        if stage != "response":
            assert reached(main, marker) == [], behaviour
    status, _, _ = fetch(policed.url + "/echo", protocol)
    assert status == 200
    assert policed.worker_pids() == pids


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_post_response_edits_fields_and_bodies(policed, protocol):
    status, fields, body = fetch(policed.url + "/echo", protocol, ["x-do-response: set-header late"])
    assert status == 200 and fields["x-set"] == "late" and echoed(body)["path"] == "/echo"
    status, fields, body = fetch(policed.url + "/echo", protocol, ["x-do-response: replace-body"])
    assert (status, body) == (200, b"replaced\n")
    assert fields["content-length"] == "9"
    status, fields, body = fetch(policed.url + "/inject/echo", protocol)
    assert status == 200 and fields["x-served-by"] == "jester-policy"
    # The metadata bag carries what pre-route found to post-response.
    status, fields, _ = fetch(
        policed.url + "/echo/bag", protocol, ["x-do-route: metadata", "x-do-response: read-metadata"])
    assert status == 200 and fields["x-metadata"] == "/echo/bag"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_body_reading_policies_get_whole_bodies_within_their_limit(policed, upstreams, protocol):
    main, _, _ = upstreams
    status, _, body = fetch(
        policed.url + "/body/echo", protocol, ["x-do-upstream: body-length"], data=b"0123456789" * 50)
    assert status == 200 and echoed(body)["fields"]["x-body-length"] == "500"
    assert echoed(body)["body_length"] == 500
    # Response bodies are held whole, changed, and sent with their new length.
    status, fields, body = fetch(policed.url + "/body/download?size=600&text=1", protocol, ["x-do-response: redact"])
    assert status == 200 and fields["x-redacted"] == "1"
    assert len(body) == 600 and b"0" not in body and b"#" in body
    # Over the policy's body_limit: a request body is refused with 413 before anything goes upstream...
    marker = f"over-limit-{protocol}"
    status, _, _ = fetch(policed.url + f"/body/echo/{marker}", protocol, data=b"x" * 2048)
    assert status == 413 and reached(main, marker) == []
    # ...and a response body fails closed with the policy's error status.
    status, _, _ = fetch(policed.url + "/body/download?size=4096", protocol)
    assert status == 500
    # A pre-upstream policy replaces the request body: the upstream gets its bytes, chunked, not the client's.
    status, _, body = fetch(policed.url + "/body/upload", protocol, ["x-do-upstream: replace-body"],
                            data=b"the client's own body")
    assert status == 200 and json.loads(body)["length"] == len(b"replaced\n")
    assert json.loads(body)["sha256"] == hashlib.sha256(b"replaced\n").hexdigest()
    # A request without a body has no end to send a replacement at: the call fails closed.
    status, _, _ = fetch(policed.url + "/body/echo", protocol, ["x-do-upstream: replace-body"])
    assert status == 500
    # A deny uses the policy's deny_status.
    status, _, _ = fetch(policed.url + "/body/echo", protocol, ["x-do-upstream: deny"], data=b"abc")
    assert status == 451


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_json_redactor_example(policed, protocol):
    status, fields, body = fetch(policed.url + "/redact/echo", protocol)
    assert status == 200
    answer = json.loads(body)
    assert answer["path"] == "[redacted]" and answer["method"] == "[redacted]"
    assert int(fields["content-length"]) == len(body)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tenant_router_example(policed, protocol):
    status, _, body = fetch(policed.edge_url + "/anything", protocol, ["x-tenant: a"])
    assert (status, body) == (200, b"tenant a\n")
    status, _, _ = fetch(policed.edge_url + "/anything", protocol)
    assert status == 400
    status, _, _ = fetch(policed.edge_url + "/anything", protocol, ["x-tenant: nobody-here"])
    assert status == 500


def test_failure_circuit_example(policed):
    # Four 503s in a window of four open the circuit: the policy answers the next three itself, then probes.
    statuses = []
    for _ in range(4):
        status, fields, _ = fetch(policed.edge_url + "/", "http1", ["x-tenant: flaky"])
        statuses.append((status, "retry-after" in fields))
    assert statuses == [(503, False)] * 4
    opened = [fetch(policed.edge_url + "/", "http1", ["x-tenant: flaky"]) for _ in range(3)]
    assert all(status == 503 and "retry-after" in fields for status, fields, _ in opened)
    status, fields, _ = fetch(policed.edge_url + "/", "http1", ["x-tenant: flaky"])
    assert status == 503 and "retry-after" not in fields  # the probe reached the upstream


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_policy_sets_the_upstream_timeout(policed, protocol):
    started = time.monotonic()
    status, _, _ = fetch(policed.url + "/slow?delay=2", protocol, ["x-do-upstream: timeout 300"])
    assert status == 504 and time.monotonic() - started < 1.8


def reload_result(jester):
    return jester.ctl("reload", timeout=60)


BAD_POLICIES = [
    ("missing", '[policies.bad]\nmodule = "{modules}/nowhere.wasm"', "does not exist"),
    ("not wasm", '[policies.bad]\nmodule = "{source}"', "policy 'bad'"),
    ("init refuses", '[policies.bad]\nmodule = "{modules}/json_redactor.wasm"', "init refused the configuration"),
    ("stage not exported", '[policies.bad]\nmodule = "{modules}/tenant_router.wasm"', "implements only pre_route"),
]


@pytest.mark.parametrize("case,definition,message", BAD_POLICIES, ids=[case for case, _, _ in BAD_POLICIES])
def test_a_bad_policy_is_a_config_error_and_the_old_config_serves(modules, upstreams, make_jester, case, definition,
                                                                   message):
    main, _, _ = upstreams
    good = f"""
[policies.good]
module = "{modules}/header_inject.wasm"

[[routes]]
upstream = "app"
policies = [{{ policy = "good", stage = "post_response" }}]

[upstreams.app]
targets = ["{main.address}"]
"""
    jester = make_jester(good)
    (jester.dir / "jester.toml.bak").write_text(jester.config_path.read_text())
    bad = good.replace('policy = "good"', 'policy = "bad"') + "\n" + definition.format(modules=modules, source=HERE / "policies" / "conformance.c") + "\n"
    jester.write_config(bad)
    validate = subprocess.run([jester_binary(), "config", "validate", str(jester.config_path)],
                              capture_output=True, text=True, timeout=60)
    assert validate.returncode != 0 and message in validate.stdout + validate.stderr, validate.stdout + validate.stderr
    # file:line:column of the entry at fault.
    assert f"{jester.config_path}:" in validate.stdout + validate.stderr
    result = reload_result(jester)
    assert result.returncode != 0 and message in result.stdout + result.stderr
    status, fields, _ = fetch(jester.url + "/echo", "http1")
    assert status == 200 and fields["x-served-by"] == "jester-policy"


def jester_binary():
    from conftest import JESTER
    return JESTER


def test_reload_swaps_a_module_under_load_without_failures(modules, upstreams, make_jester):
    main, _, _ = upstreams
    module = Path(tempfile.mkdtemp(prefix="jester-swap-")) / "policy.wasm"
    module.parent.chmod(0o755)
    shutil.copy(modules / "header_inject.wasm", module)
    module.chmod(0o644)
    jester = make_jester(f"""
[policies.swap]
module = "{module}"

[[routes]]
upstream = "app"
policies = [{{ policy = "swap", stage = "post_response" }}]

[upstreams.app]
targets = ["{main.address}"]
""", workers=2)
    failures, served = [], [0]
    stop = threading.Event()

    def load():
        while not stop.is_set():
            status, body, error = curl(jester.url + "/echo", timeout=10)
            if status != 200:
                failures.append((status, error))
            served[0] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    # The new build of the policy: the conformance module, which sets no x-served-by.
    shutil.copy(modules / "conformance.wasm", module)
    assert reload_result(jester).returncode == 0
    wait_for(lambda: "x-served-by" not in fetch(jester.url + "/echo", "http1")[1], what="the new module serving")
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    assert failures == [] and served[0] > 20


def test_calls_are_counted_by_policy_stage_and_decision(policed):
    from test_metrics import sample, scrape
    before = scrape(policed)
    fetch(policed.url + "/echo", "http1", ["x-do-upstream: deny"])
    fetch(policed.url + "/echo", "http1", ["x-do-route: trap"])
    fetch(policed.url + "/inject/echo", "h2c")

    def grew(text, expected, **labels):
        return sample(text, "jester_policy_calls_total", **labels) - sample(before, "jester_policy_calls_total",
                                                                            **labels) >= expected

    after = wait_for(lambda: (lambda text: text if grew(text, 1, policy="conf", stage="pre_upstream",
                                                        decision="deny") else None)(scrape(policed)),
                     what="the deny counted")
    assert grew(after, 1, policy="conf", stage="pre_route", decision="failure")
    assert grew(after, 1, policy="inject", stage="post_response", decision="proceed")
    assert sample(after, "jester_policy_call_duration_seconds_count", policy="conf", stage="pre_route") > 0
    # One instance per worker: its linear memory (at least one 64 KiB page) is on the gauge.
    assert sample(after, "jester_policy_memory_bytes", policy="inject") >= 65536
    # What a policy counts itself (counter-add) reaches the metrics through the worker's report; its log lines go
    # to the worker's log with the policy and the stage.
    for _ in range(3):
        assert fetch(policed.url + "/echo", "http1", ["x-do-route: count"])[0] == 200
    wait_for(lambda: sample(scrape(policed), "jester_policy_counter_total", policy="conf", counter="seen_twice") >= 6,
             what="the policy's counter exported")
    assert any('"message":"counted"' in line and '"policy":"conf"' in line and '"stage":"pre_route"' in line
               for line in policed.logs().splitlines())


def test_a_policy_that_keeps_failing_is_reported_failed_in_status(policed):
    # failure_threshold is 10: ten traps in a row mark it failed (it stays fail closed), a good call clears it.
    for _ in range(10):
        assert fetch(policed.url + "/echo", "http1", ["x-do-route: trap"])[0] == 500

    def conf():
        return next(p for p in policed.status()["policies"] if p["name"] == "conf")

    wait_for(lambda: conf()["failed_workers"] == 1, what="the policy reported failed")
    assert conf()["digest"] and conf()["module"].endswith("conformance.wasm")
    text = policed.ctl("status").stdout
    assert "failed in 1 worker(s)" in text
    assert fetch(policed.url + "/echo", "http1")[0] == 200
    wait_for(lambda: conf()["failed_workers"] == 0, what="the policy recovered")


def test_policy_new_scaffolds_a_policy_that_builds_tests_and_serves(upstreams, make_jester, tmp_path):
    main, _, _ = upstreams
    binary = jester_binary()
    created = subprocess.run([binary, "policy", "new", "keycheck", "--directory", str(tmp_path / "keycheck"),
                              "--sdk", str(SDK)], capture_output=True, text=True, timeout=30)
    assert created.returncode == 0, created.stderr
    project = tmp_path / "keycheck"
    assert {p.name for p in project.iterdir()} >= {"policy.c", "policy.json", "build.sh", "request.json", "test.sh"}
    assert json.loads((project / "policy.json").read_text())["config_schema"]["type"] == "object"
    subprocess.run([str(project / "build.sh")], check=True, timeout=120, env={"CLANG": CLANG, "PATH": "/usr/bin:/bin"})
    tested = subprocess.run([str(project / "test.sh")], capture_output=True, text=True, timeout=60,
                            env={"JESTER": binary, "PATH": "/usr/bin:/bin"})
    assert tested.returncode == 0 and "pre_route: respond 401" in tested.stdout, tested.stdout + tested.stderr
    # A second name in the same place is refused rather than overwritten.
    again = subprocess.run([binary, "policy", "new", "keycheck", "--directory", str(project), "--sdk", str(SDK)],
                           capture_output=True, text=True, timeout=30)
    assert again.returncode != 0 and "exists already" in again.stderr
    module = project / "keycheck.wasm"
    project.chmod(0o755)
    module.chmod(0o644)
    jester = make_jester(f"""
policies = [{{ policy = "keycheck", stage = "pre_route" }}]

[policies.keycheck]
module = "{module}"
config = {{ required_header = "x-api-key", response_header = "x-checked" }}

[[routes]]
upstream = "app"
policies = [{{ policy = "keycheck", stage = "post_response" }}]

[upstreams.app]
targets = ["{main.address}"]
""")
    assert fetch(jester.url + "/echo", "http1")[0] == 401
    status, fields, _ = fetch(jester.url + "/echo", "h2c", ["x-api-key: k"])
    assert status == 200 and fields["x-checked"] == "keycheck"


def test_policy_test_runs_a_module_offline(modules, tmp_path):
    request = tmp_path / "request.json"
    request.write_text(json.dumps({
        "method": "POST", "path": "/orders", "headers": [["x-do-route", "set-header offline"],
                                                         ["x-do-upstream", "body-length"]],
        "body": "12345", "response": {"status": 201, "headers": [], "body": "ok"}}))
    result = subprocess.run([jester_binary(), "policy", "test", str(modules / "conformance.wasm"), "--request",
                             str(request), "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["stage"] for line in lines] == ["pre_route", "pre_upstream", "post_response"]
    assert lines[0]["changes"] == ["set-header x-set: offline"]
    assert lines[1]["changes"] == ["set-header x-body-length: 5"]
    # A failing call is reported and makes the exit status 1, as Jester would refuse the request.
    request.write_text(json.dumps({"headers": [["x-do-route", "loop"]]}))
    result = subprocess.run([jester_binary(), "policy", "test", str(modules / "conformance.wasm"), "--request",
                             str(request)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "pre_route: FAILED (out_of_fuel)" in result.stdout


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_policy_call_is_a_span_of_a_recorded_trace(modules, upstreams, make_jester, protocol):
    from test_otlp import Receiver
    main, _, _ = upstreams
    receiver = Receiver()
    try:
        jester = make_jester(f"""
policies = [{{ policy = "conf", stage = "pre_route" }}]

[tracing]
endpoint = "{receiver.endpoint}"
sample_ratio = 1
schedule_delay = "100ms"

[policies.conf]
module = "{modules}/conformance.wasm"

[[routes]]
upstream = "app"
policies = [{{ policy = "conf", stage = "post_response" }}]

[upstreams.app]
targets = ["{main.address}"]
""")
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        status, _, _ = fetch(jester.url + "/echo", protocol, [
            f"traceparent: 00-{trace}-00f067aa0ba902b7-01", "x-do-route: set-header x", "x-do-response: deny"])
        assert status == 403

        def policy_spans():
            spans = [s for s in receiver.get("/spans") if s["trace_id"] == trace and s["name"] == "policy conf"]
            return spans if len(spans) == 2 else None
        spans = sorted(wait_for(policy_spans, timeout=5, what="the policy spans"),
                       key=lambda s: s["attributes"]["jester.policy.stage"])
        assert [s["attributes"]["jester.policy.stage"] for s in spans] == ["post_response", "pre_route"]
        assert [s["attributes"]["jester.policy.decision"] for s in spans] == ["deny", "proceed"]
        assert spans[0]["attributes"]["http.response.status_code"] == 403
    finally:
        receiver.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_status_retried_under_a_body_reading_policy_answers_once(policed, protocol):
    # The 503 is held for the reading policy, passed on, and the route retries it elsewhere: the client gets the
    # retry's answer alone, and its connection serves the next request.
    assert two_on_one_connection(policed.url + "/retry/echo?1", policed.url + "/retry/echo?2", protocol) == [200, 200]


def two_on_one_connection(first, second, protocol, headers=()):
    """The statuses of two requests sent one after the other on one connection (nghttp for h2c: curl 7.88 cannot
    reuse a prior-knowledge connection)."""
    fields = [argument for header in headers for argument in ("-H", header)]
    if protocol == "h2c":
        result = subprocess.run(["nghttp", "-nv", *fields, first, second], capture_output=True, text=True, timeout=30)
        return [int(line.rsplit(" ", 1)[1]) for line in result.stdout.splitlines() if ":status:" in line]
    result = subprocess.run(["curl", "--http1.1", "-sS", "--max-time", "10", *fields, "-o", "/dev/null", "-w",
                             "%{http_code}\n", first, "-o", "/dev/null", "-w", "%{http_code}\n", second],
                            capture_output=True, text=True, timeout=30)
    return [int(code) for code in result.stdout.split()]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stage", ["route", "response"])
def test_a_304_a_policy_answers_with_carries_no_body(policed, protocol, stage):
    status, fields, body = fetch(policed.url + "/echo", protocol, [f"x-do-{stage}: respond-304"])
    assert status == 304 and body == b"" and "content-length" not in fields
    # Nothing of the dropped body is read as the next response on the connection.
    statuses = two_on_one_connection(policed.url + "/echo?a", policed.url + "/other", protocol,
                                     [f"x-do-{stage}: respond-304"])
    # (nghttp sends both at once: the streams may finish in either order. The listener's pre-route policy answers
    # /other too; the route's post-response one does not run there.)
    assert sorted(statuses) == ([304, 304] if stage == "route" else [200, 304])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_method_cannot_become_or_stop_being_head(policed, protocol):
    # The client's framing follows its own method: a GET answered as a HEAD would leave it waiting for a body.
    started = time.monotonic()
    status, _, _ = fetch(policed.url + "/download?size=100", protocol, ["x-do-route: method HEAD"])
    assert status == 500 and time.monotonic() - started < 5
    status, _, body = fetch(policed.url + "/echo", protocol, ["x-do-route: method POST"])
    assert status == 200 and echoed(body)["method"] == "POST"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_upstream_hint_overrides_a_sticky_cookie_of_another_pool(policed, upstreams, protocol):
    _, alternative, _ = upstreams
    cookie = None
    for _ in range(12):
        status, fields, body = fetch(policed.url + "/sticky/echo", "http1")
        if status == 200 and json.loads(body)["server_port"] == alternative.port and "set-cookie" in fields:
            cookie = fields["set-cookie"].split(";")[0]
            break
    assert cookie, "no cookie naming the sticky pool's third target"
    pids = policed.worker_pids()
    status, _, body = fetch(policed.url + "/sticky/echo", protocol, [f"Cookie: {cookie}", "x-do-upstream: upstream alt"])
    assert status == 200 and json.loads(body)["server_port"] == alternative.port
    assert policed.worker_pids() == pids


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_post_response_answer_does_not_wait_for_the_upstreams_body(policed, protocol):
    # /stall sends half its body, then pauses: the deny goes out at once and the upstream connection is let go.
    started = time.monotonic()
    status, _, body = fetch(policed.url + "/stall?delay=4", protocol, ["x-do-response: deny"])
    assert status == 403 and body.startswith(b"403") and time.monotonic() - started < 2
    status, _, _ = fetch(policed.url + "/echo", protocol)
    assert status == 200


def test_the_shipped_policy_example_validates(modules, tmp_path):
    example = HERE.parent.parent / "Config" / "examples" / "policies.toml.example"
    config = tmp_path / "policies.toml"
    config.write_text(example.read_text().replace("/etc/jester/policies/", f"{modules}/"))
    result = subprocess.run([jester_binary(), "config", "validate", "-c", str(config)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
