# SPDX-License-Identifier: Apache-2.0
"""HTTP/3 session resumption and 0-RTT (issue 23, `http3_early_data`), with aioquic as the client.

One Jester, two workers, two HTTP/3 listeners: "main" with http3_early_data = true, "plain" without (the default).
A client connects once, keeps the session ticket, and connects again sending a GET and a POST in 0-RTT data:
- with early data: the GET goes upstream at once with Early-Data: 1 (RFC 8470), the POST only after the handshake
  (so without the field); both are logged with tls_early_data; the client's first flight, replayed from eight new
  source ports once the connection is gone (landing on both workers but for 1 in 128 runs), gets nothing upstream
  a second time, because every worker records early ClientHellos in the instance-wide shared table;
- without: the session resumes, 0-RTT is refused, and both requests are served after the handshake."""

import json
import subprocess
import uuid

import pytest

from conftest import Jester, free_port, wait_for
from test_http3 import AIOQUIC_PYTHON, HERE, TLS, TLS_LISTENER


@pytest.fixture(scope="module")
def jester(upstream):
    plain_port = free_port()
    instance = Jester(f"""
http3 = true
http3_early_data = true
{TLS_LISTENER}
[[listeners]]
name = "plain"
address = "127.0.0.1:{plain_port}"
http3 = true
{TLS_LISTENER}

[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
path_prefix = "/"
upstream = "app"
""", workers=2)
    instance.plain_port = plain_port
    yield instance
    instance.stop()


def early_client(port, replays=0, hold=0.0):
    if not AIOQUIC_PYTHON.exists():
        pytest.fail(f"{AIOQUIC_PYTHON} is missing: run Packaging/setup.sh --test (it installs aioquic)")
    tag = uuid.uuid4().hex[:12]
    result = subprocess.run(
        [str(AIOQUIC_PYTHON), str(HERE / "h3_early_data_client.py"), str(port), str(TLS / "ca.pem"), tag,
         str(replays), str(hold)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return tag, json.loads(result.stdout)


def echoed(result):
    return json.loads(result["body"])


def early_data_field(result):
    return [value for name, value in echoed(result)["headers"] if name.lower() == "early-data"]


def upstream_paths(upstream, tag):
    return [request["path"] for request in upstream.requests() if tag in request["path"]]


def test_safe_requests_go_early_unsafe_ones_wait_and_replays_reach_no_upstream(jester, upstream):
    tag, run = early_client(jester.port, replays=8, hold=1.0)
    assert run["resumed"] is True and run["early_data_accepted"] is True, run
    get, post = run["results"]
    # The client held its Finished back for a second: the GET was answered before the handshake could complete,
    # the POST only after.
    assert get["at"] < run["released"] <= post["at"], run
    assert get["status"] == 200 and echoed(get)["method"] == "GET"
    assert early_data_field(get) == ["1"], echoed(get)["headers"]
    assert post["status"] == 200 and echoed(post)["method"] == "POST" and echoed(post)["body_length"] == 2000
    # The POST waited for the handshake: by then the client had proven it is live, so nothing marks it early.
    assert early_data_field(post) == []
    wait_for(lambda: len([line for line in jester.access_log() if tag in line["target"]]) == 3, what="3 lines")
    lines = {line["target"]: line for line in jester.access_log() if tag in line["target"]}
    assert lines[f"/get-{tag}/echo"].get("tls_early_data") is True
    assert lines[f"/post-{tag}/echo"].get("tls_early_data") is True
    assert "tls_early_data" not in lines[f"/first-{tag}/echo"]
    # The copies of the first flight reached Jester (it answered their handshakes) but nothing of them went on.
    assert sum(run["replays"]) > 0, run
    assert sorted(upstream_paths(upstream, tag)) == sorted(
        [f"/first-{tag}/echo", f"/get-{tag}/echo", f"/post-{tag}/echo"])
    quic = [worker["quic"] for worker in jester.status()["workers"]]
    assert sum(q.get("early_data", 0) for q in quic) >= 1 and sum(q.get("resumed", 0) for q in quic) >= 1


def test_without_http3_early_data_sessions_resume_but_0rtt_is_refused(jester, upstream):
    tag, run = early_client(jester.plain_port)
    assert run["resumed"] is True and run["early_data_accepted"] is False, run
    get, post = run["results"]
    assert get["status"] == 200 and post["status"] == 200
    assert early_data_field(get) == [] and early_data_field(post) == []
    wait_for(lambda: len([line for line in jester.access_log() if tag in line["target"]]) == 3, what="3 lines")
    assert not any("tls_early_data" in line for line in jester.access_log() if tag in line["target"])
    assert sorted(upstream_paths(upstream, tag)) == sorted(
        [f"/first-{tag}/echo", f"/get-{tag}/echo", f"/post-{tag}/echo"])
