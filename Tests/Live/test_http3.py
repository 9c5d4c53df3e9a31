# SPDX-License-Identifier: Apache-2.0
"""HTTP/3 through the request pipeline (issue 23): a TLS listener with http3 = true serves QUIC on the same
port over UDP, each HTTP/3 stream one more adapter of the request exchange, so routing, filters, local answers,
proxying with flow control both ways, the access log and the metrics are those of HTTP/1.1 and HTTP/2. The
client is aioquic (an implementation independent of ngtcp2 and nghttp3), the upstream a real HTTP/1.1 server,
two workers run as the unprivileged user; HTTPS responses over TCP advertise the UDP side with Alt-Svc."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, Jester, wait_for
from test_metrics import sample, scrape

HERE = Path(__file__).resolve().parent
AIOQUIC_PYTHON = Path(os.environ.get("JESTER_AIOQUIC_VENV", "/var/tmp/jester-aioquic-venv")) / "bin" / "python3"
TLS = ROOT / "Tests" / "Fixtures" / "tls"
# The main listener's TLS (its http3 keys go before it): the fixture certificate, for "localhost".
TLS_LISTENER = f"""
[listeners.tls]
[[listeners.tls.certificates]]
cert = "{TLS / 'alpha.pem'}"
key = "{TLS / 'alpha.key'}"
"""


def h3(port, requests, timeout=60, certificate=None, check=True):
    """Runs the requests on one new aioquic connection to 127.0.0.1:port (with `certificate`, a (chain, key) pair
    of paths, as the client's); returns their results in order, or with check=False the finished process."""
    if not AIOQUIC_PYTHON.exists():
        pytest.fail(f"{AIOQUIC_PYTHON} is missing: run Packaging/setup.sh --test (it installs aioquic)")
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(requests, file)
        file.flush()
        result = subprocess.run(
            [str(AIOQUIC_PYTHON), str(HERE / "h3_client.py"), str(port), str(TLS / "ca.pem"), file.name]
            + ([f"{certificate[0]}:{certificate[1]}"] if certificate else []),
            capture_output=True, text=True, timeout=timeout)
    if not check:
        return result
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["results"]


def field(result, name):
    return next((value for key, value in result["headers"] if key == name), None)


@pytest.fixture(scope="module")
def modules():
    """The SDK's header-injection policy, built here (Tests/Live/test_policies.py builds and drives the rest)."""
    from test_policies import SDK, build
    directory = Path(tempfile.mkdtemp(prefix="jester-h3-policies-"))
    directory.chmod(0o755)
    for example in ("header_inject", "body_router"):
        build(SDK / "examples" / f"{example}.c", directory / f"{example}.wasm")
        (directory / f"{example}.wasm").chmod(0o644)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def grpc_server():
    from test_grpc import GRPCServer
    server = GRPCServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def jester(upstream, modules, grpc_server):
    instance = Jester(f"""
http3 = true
http3_retry = "always"
policies = [{{ policy = "inject", stage = "pre_route" }}]

{TLS_LISTENER}
[filters.no_loopback]
kind = "ip_rules"
deny = ["127.0.0.0/8"]

[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
name = "app"
path_prefix = "/"
upstream = "app"

[[routes]]
name = "local"
path_prefix = "/local"
respond = {{ status = 200, body = "answered by jester\\n" }}

[[routes]]
name = "guarded"
path_prefix = "/guarded"
filters = ["no_loopback"]
upstream = "app"

[[routes]]
name = "policed"
path_prefix = "/policed"
upstream = "app"
policies = [{{ policy = "inject", stage = "post_response" }}]

[[routes]]
name = "grpc"
path_prefix = "/jester.Test/"
upstream = "grpc"

[upstreams.grpc]
targets = ["127.0.0.1:{grpc_server.port}"]
protocol = "h2"

[[routes]]
name = "orders"
path_prefix = "/orders/"
upstream = "app"
policy_reroute = true
policies = [{{ policy = "orders", stage = "pre_upstream" }}]

[[routes]]
name = "orders-bulk"
path_prefix = "/orders/"
policy_tags = ["never-tagged"]
respond = {{ status = 200, body = "bulk order\\n" }}

[policies.orders]
module = "{modules / 'body_router.wasm'}"
config = {{ member = "type", values = "bulk", route_prefix = "orders-" }}
read_body = true
body_limit = "4KiB"

[policies.inject]
module = "{modules / 'header_inject.wasm'}"
config = {{ request_header = "x-injected", request_value = "over-h3", response_header = "x-served-by" }}
""", workers=2)
    yield instance
    instance.stop()


def test_requests_go_through_the_pipeline_to_an_http1_upstream(jester, upstream):
    results = h3(jester.port, [
        {"path": "/echo?h3", "raw": True, "headers": [["x-client", "aioquic"]]},
        {"path": "/local", "raw": True},
        {"path": "/guarded/echo?h3-refused"},
        {"method": "POST", "path": "/upload?h3", "body_size": 2_000_000, "raw": True},
        {"path": "/download?size=3000000"},
    ])
    echo, local, guarded, upload, download = results
    # http3_retry = "always": the client proved its address with a Retry before its connection was accepted.
    assert echo["status"] == "200" and echo["retries"] == 1
    answer = json.loads(bytes.fromhex(echo["raw"]))
    fields = {name.lower(): value for name, value in answer["headers"]}
    assert answer["method"] == "GET" and answer["path"] == "/echo?h3"
    assert fields["x-client"] == "aioquic" and fields["x-forwarded-proto"] == "https"
    assert fields["host"] == "localhost"
    # A local answer, and a filter's refusal: nothing of it reaches the upstream.
    assert (local["status"], bytes.fromhex(local["raw"])) == ("200", b"answered by jester\n")
    assert guarded["status"] == "403"
    assert not [r for r in upstream.requests() if "h3-refused" in r["path"]]
    # 2 MB up and 3 MB down: beyond every flow-control window, so both directions' backpressure works.
    assert upload["status"] == "200" and json.loads(bytes.fromhex(upload["raw"]))["length"] == 2_000_000
    assert download["status"] == "200" and download["length"] == 3_000_000
    # Every HTTP/3 response advertises the UDP side too.
    assert field(echo, "alt-svc") == f'h3=":{jester.port}"; ma=86400'


def test_wasm_policies_run_over_http3(jester):
    """The same policy stages as over HTTP/1.1 and HTTP/2 (test_policies.py): a request field set before routing
    (the listener's pre_route), a response field after (the route's post_response)."""
    echo, = h3(jester.port, [{"path": "/policed/echo", "raw": True}])
    assert echo["status"] == "200" and field(echo, "x-served-by") == "jester-policy"
    fields = {name.lower(): value for name, value in json.loads(bytes.fromhex(echo["raw"]))["headers"]}
    assert fields["x-injected"] == "over-h3"


def test_a_pre_upstream_policy_reroutes_an_http3_request_by_its_body(jester):
    """The re-resolve pass over HTTP/3: the SDK's body router reads the JSON body at pre_upstream and sends a bulk
    order to route orders-bulk (reached no other way), which answers itself; other orders go on upstream."""
    bulk, retail = h3(jester.port, [
        {"method": "POST", "path": "/orders/echo", "body_hex": b'{"id": 1, "type": "bulk"}'.hex(), "raw": True},
        {"method": "POST", "path": "/orders/echo", "body_hex": b'{"id": 2, "type": "retail"}'.hex(), "raw": True},
    ])
    assert (bulk["status"], bytes.fromhex(bulk["raw"])) == ("200", b"bulk order\n")
    assert retail["status"] == "200" and json.loads(bytes.fromhex(retail["raw"]))["path"] == "/orders/echo"


def test_grpc_over_http3_to_an_http2_pool(jester):
    """A gRPC call from an HTTP/3 client reaches a grpcio server through an h2 pool: the message framing both
    ways and the status in the trailers (the stream adapter keeps trailers end to end, as for HTTP/2 clients)."""
    message = b"hello"
    frame = b"\x00" + len(message).to_bytes(4, "big") + message
    grpc_headers = [["content-type", "application/grpc"], ["te", "trailers"]]
    unary, failing = h3(jester.port, [
        {"method": "POST", "path": "/jester.Test/Unary", "headers": grpc_headers, "body_hex": frame.hex(),
         "raw": True},
        {"method": "POST", "path": "/jester.Test/Fail", "headers": grpc_headers, "body_hex": frame.hex()},
    ])
    assert unary["status"] == "200", unary
    answer = bytes.fromhex(unary["raw"])
    assert answer[0] == 0 and answer[5:5 + int.from_bytes(answer[1:5], "big")] == b"echo:hello"
    trailers = dict(unary["trailers"] or [])
    assert trailers.get("grpc-status") == "0" and trailers.get("x-trailer") == "unary", unary
    failed = dict(failing["trailers"] or failing["headers"])
    assert failed.get("grpc-status") == "7" and failed.get("grpc-message") == "no entry", failing


def test_https_over_tcp_advertises_http3(jester):
    for flag in ("--http1.1", "--http2"):
        result = subprocess.run(
            ["curl", "-sS", "--max-time", "10", flag, "--cacert", str(TLS / "ca.pem"), "-D", "-", "-o", "/dev/null",
             "--resolve", f"localhost:{jester.port}:127.0.0.1", f"https://localhost:{jester.port}/local"],
            capture_output=True, text=True, timeout=20)
        assert result.returncode == 0, result.stderr
        assert f'alt-svc: h3=":{jester.port}"; ma=86400' in result.stdout.lower(), result.stdout


def test_http3_requests_are_logged_and_counted_as_http3(jester):
    h3(jester.port, [{"path": "/local?counted"}])
    line = wait_for(lambda: next((r for r in jester.access_log() if r["target"] == "/local?counted"), None),
                    timeout=5, what="the HTTP/3 request's access-log line")
    assert line["protocol"] == "HTTP/3" and line["tls_version"] == "TLSv1.3" and line["route"] == "local"
    assert line["tls_server_name"] == "localhost"
    # The suite by its IANA name, as TCP listeners log theirs (aioquic offers the three TLS 1.3 AEAD suites).
    assert line["tls_cipher"] in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
    wait_for(lambda: sample(scrape(jester), "jester_http_requests_total", listener="main", route="local",
                            protocol="http3", status_class="2xx") >= 1, timeout=5, what="the http3 request counted")


def test_many_concurrent_streams_on_one_connection(jester):
    results = h3(jester.port, [{"path": f"/echo?stream-{n}"} for n in range(40)])
    assert [r["status"] for r in results] == ["200"] * 40


def test_hostile_requests_are_reset_and_the_connection_serves_on(jester, upstream):
    """Malformed HTTP/3 requests end their own stream with the right error, never reach the upstream, and the
    connection (and the worker) serve on: a request without :path and one whose body contradicts its
    content-length (H3_MESSAGE_ERROR), a header section over http.max_request_head_size (H3_EXCESSIVE_LOAD, the
    limit the worker announced in SETTINGS), a header name with uppercase letters (H3_MESSAGE_ERROR)."""
    results = h3(jester.port, [
        {"path": "/echo?no-path", "omit": [":path"]},
        {"method": "POST", "path": "/echo?short-body", "headers": [["content-length", "10"]], "body_size": 3},
        {"path": "/echo?huge-head", "headers": [["x-filler", "a" * 20_000]]},
        {"path": "/echo?bad-name", "headers": [["X-Upper", "1"]]},
        {"path": "/echo?after", "after": 3},
    ])
    no_path, short_body, huge_head, bad_name, after = results
    assert no_path["reset"] == 0x10E and no_path["status"] is None, no_path
    assert short_body["reset"] == 0x10E, short_body
    assert huge_head["reset"] == 0x107 or huge_head["status"] == "431", huge_head
    assert bad_name["reset"] == 0x10E, bad_name
    assert after["status"] == "200" and after["reset"] is None
    assert not [r for r in upstream.requests() if any(mark in r["path"] for mark in (
        "no-path", "short-body", "huge-head", "bad-name"))]
    # The worker serves on: a new connection too.
    assert h3(jester.port, [{"path": "/local"}])[0]["status"] == "200"


def test_ngtcp2s_own_client_is_served_too(jester, tmp_path):
    """Debian's ngtcp2 example client (gtlsclient: C, on the same libraries as the server, so not enough alone,
    but the fastest HTTP/3 client here and the one bench/h3.py drives): 20 streams on one connection, through a
    Retry, each answered whole."""
    before = sample(scrape(jester), "jester_http_requests_total", route="local", protocol="http3", status_class="2xx")
    result = subprocess.run(
        ["gtlsclient", "-q", "-n", "20", "--exit-on-all-streams-close", f"--download={tmp_path}", "127.0.0.1",
         str(jester.port), f"https://localhost:{jester.port}/local"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "local").read_bytes() == b"answered by jester\n"
    wait_for(lambda: sample(scrape(jester), "jester_http_requests_total", route="local", protocol="http3",
                            status_class="2xx") == before + 20, timeout=5, what="the 20 requests counted")


@pytest.mark.parametrize("mode", ["required", "optional"])
def test_client_certificates_over_http3(upstream, mode):
    """client_certificates over QUIC as over TCP (test_tls.py): a client certificate of the client CA is verified
    in the handshake and its subject forwarded in client_subject_header (a client's own copy removed) and logged;
    one for servers only (extendedKeyUsage serverAuth) fails the handshake; without one, "required" fails the
    handshake and "optional" lets the client in anonymously."""
    instance = Jester(f"""
http3 = true

[listeners.tls]
client_certificates = "{mode}"
client_ca = "{TLS / 'ca.pem'}"
client_subject_header = "X-Client-Subject"
[[listeners.tls.certificates]]
cert = "{TLS / 'alpha.pem'}"
key = "{TLS / 'alpha.key'}"

[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
name = "app"
path_prefix = "/"
upstream = "app"
""")
    try:
        alice = (TLS / "client.pem", TLS / "client.key")
        echo = h3(instance.port, [{"path": "/echo?alice", "headers": [["x-client-subject", "CN=mallory"]],
                                   "raw": True}], certificate=alice)[0]
        assert echo["status"] == "200"
        headers = [(name.lower(), value) for name, value in json.loads(bytes.fromhex(echo["raw"]))["headers"]]
        assert ("x-client-subject", "O=Jester Tests,CN=alice") in headers, headers
        assert ("x-client-subject", "CN=mallory") not in headers
        line = wait_for(lambda: next((r for r in instance.access_log() if r["target"] == "/echo?alice"), None),
                        timeout=5, what="the access-log line")
        assert line["protocol"] == "HTTP/3" and line["tls_client_subject"] == "O=Jester Tests,CN=alice"
        # A certificate of the right CA, but for servers only: refused in the handshake.
        # (TLS 1.3: the client's handshake is done before the server checked its certificate, so aioquic sees a
        # connection the server closes, or none at all.)
        def refused(result):
            return result.returncode != 0 or json.loads(result.stdout)["results"][0]["closed"]
        assert refused(h3(instance.port, [{"path": "/echo?server-cert"}], timeout=30, check=False,
                          certificate=(TLS / "alpha.pem", TLS / "alpha.key")))
        anonymous = h3(instance.port, [{"path": "/echo?anonymous", "raw": True}], timeout=30, check=False)
        if mode == "required":
            assert refused(anonymous)
        else:
            assert anonymous.returncode == 0, anonymous.stderr
            result = json.loads(anonymous.stdout)["results"][0]
            fields = [name.lower() for name, _ in json.loads(bytes.fromhex(result["raw"]))["headers"]]
            assert result["status"] == "200" and "x-client-subject" not in fields
        assert not [r for r in upstream.requests() if "server-cert" in r["path"]]
        # Refused handshakes are counted and logged as on TCP listeners; alice's (and, optional, the anonymous
        # one's) completed.
        from test_metrics import sample, scrape
        # (A refused connection is counted when its closing period ends: three PTOs after the close.)
        expected = (2, 1) if mode == "required" else (1, 2)
        wait_for(lambda: (sample(scrape(instance), "jester_tls_handshake_failures_total", listener="main"),
                          sample(scrape(instance), "jester_tls_handshakes_total", listener="main")) == expected,
                 timeout=10, what=f"{expected} failed and completed handshakes counted")
        wait_for(lambda: "TLS handshake failed" in instance.logs(), what="the refusal logged")
    finally:
        instance.stop()


def test_http3_needs_a_tls_listener(tmp_path):
    config = tmp_path / "jester.toml"
    config.write_text('[[listeners]]\nname = "plain"\naddress = "127.0.0.1:8443"\nhttp3 = true\n\n'
                      '[[routes]]\nname = "r"\nrespond = { status = 200 }\n')
    result = subprocess.run([str(Path(os.environ.get("JESTER_BIN_DIR", ROOT / ".build" / "release")) / "jester"),
                             "config", "validate", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "http3 = true needs a TLS listener" in result.stdout + result.stderr
    assert f"{config}:4:" in result.stdout + result.stderr


def test_a_reload_drains_http3_even_mid_handshake_and_the_new_generation_serves(upstream):
    """Many handshakes left half done (as Initials from spoofed addresses would) make new clients prove their
    address with a Retry first; a draining worker closes connections still in their handshake (no control
    stream yet, so no GOAWAY: sending one crashed nghttp3) and exits cleanly; new connections reach the new
    generation."""
    instance = Jester(f"""
http3 = true

{TLS_LISTENER}
[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
name = "app"
path_prefix = "/"
upstream = "app"
""")
    try:
        before = h3(instance.port, [{"path": "/echo?before"}])[0]
        assert before["status"] == "200" and before["retries"] == 0
        half = subprocess.run([str(AIOQUIC_PYTHON), str(HERE / "h3_half_handshake.py"), str(instance.port), "70"],
                              capture_output=True, text=True, timeout=60)
        assert half.returncode == 0, half.stderr
        validated = h3(instance.port, [{"path": "/echo?validated"}])[0]
        assert validated["status"] == "200" and validated["retries"] == 1
        generation = instance.status()["generation"]
        instance.ctl("reload", check=True)
        wait_for(lambda: instance.all_ready(generation + 1) and all(
            w["generation"] == generation + 1 for w in instance.status()["workers"]), timeout=20,
            what="the old generation drained and gone")
        exits = [json.loads(line) for line in instance.logs().splitlines()
                 if line.startswith("{") and '"worker exited' in line]
        assert exits and all("signal" not in e["status"] for e in exits), exits
        assert h3(instance.port, [{"path": "/echo?after"}])[0]["status"] == "200"
    finally:
        instance.stop()
