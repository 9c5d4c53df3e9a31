# SPDX-License-Identifier: Apache-2.0
"""Operational log lines (standard error): typed JSON fields, one documented component per role, listeners that
cannot be bound named with file:line at start and on reload, failed TLS handshakes summed up instead of one
warning each, and health checks that say why a target changed and when a pool fails open."""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import JESTER, ROOT, Jester, Upstream, curl, free_port, wait_for

FIXTURES = ROOT / "Tests" / "Fixtures" / "tls"
ROUTE = '\n[[routes]]\nname = "hello"\nrespond = { status = 200, body = "serving\\n" }\n'


def operational_lines(jester):
    """Every line on standard error that is not an access-log line, parsed: each must be one JSON object."""
    lines = []
    for line in jester.logs().splitlines():
        if not line.strip() or '"type":"access"' in line:
            continue
        lines.append(json.loads(line))  # a line that is not JSON fails here, naming itself
    return lines


def lines_with(jester, message, component=None):
    return [line for line in operational_lines(jester)
            if line.get("message", "").startswith(message) and (component is None or line["component"] == component)]


def documented_components():
    manual = (ROOT / "Man" / "jester.8").read_text()
    return set(re.findall(r"^\.B (jester\.[a-z]+)$", manual, re.MULTILINE))


def source_components():
    source = (ROOT / "Sources" / "JesterLogging" / "LogComponent.swift").read_text()
    return set(re.findall(r'case \w+ = "(jester\.[a-z]+)"', source))


class HeldPort:
    """A port another program listens on (without SO_REUSEPORT, so Jester's bind fails with EADDRINUSE)."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(1)
        self.port = self.socket.getsockname()[1]

    def close(self):
        self.socket.close()


@pytest.fixture(scope="module")
def held_port():
    port = HeldPort()
    yield port
    port.close()


@pytest.fixture(scope="module")
def serving():
    """One instance for the checks that only read its lines (and one failed reload, which changes nothing)."""
    jester = Jester(ROUTE, workers=2)
    yield jester
    jester.stop()


def test_every_component_is_documented_and_every_documented_one_exists():
    assert source_components() and source_components() == documented_components()


def test_standard_error_is_json_lines_with_numbers_as_numbers(serving):
    lines = operational_lines(serving)
    started = [line for line in lines if line["message"] == "master started"]
    assert len(started) == 1, lines
    assert started[0]["pid"] == serving.process.pid and started[0]["workers"] == 2
    assert started[0]["component"] == "jester.master"
    ready = wait_for(lambda: len([l for l in operational_lines(serving) if l["message"] == "worker ready"]) >= 4
                     and [l for l in operational_lines(serving) if l["message"] == "worker ready"],
                     what="both workers' ready lines")
    pids = set(serving.worker_pids())
    for line in ready:
        assert isinstance(line["pid"], int) and isinstance(line["generation"], int) and isinstance(line["slot"], int)
        assert line["pid"] in pids
    # The worker's own line lists its listeners as an array.
    assert any(line.get("listeners") == ["main"] and line["component"] == "jester.worker" for line in ready)
    # Every line names a documented component, and only those.
    assert {line["component"] for line in operational_lines(serving)} <= documented_components()


def test_a_failed_reload_logs_its_errors_as_an_array(serving):
    good = serving.config_path.read_text()
    try:
        serving.config_path.write_text(good + '\n[[routes]]\nname = "broken"\nrespond = { status = "ok" }\n'
                                       + '\n[http]\nkeepalive_timeout = "soon"\n')
        result = serving.ctl("reload")
        assert result.returncode != 0
    finally:
        serving.config_path.write_text(good)
    failed = wait_for(lambda: lines_with(serving, "reload failed", "jester.master"), what="the reload-failed line")
    errors = failed[-1]["errors"]
    assert isinstance(errors, list) and len(errors) >= 2, errors
    assert all(isinstance(error, str) and error.startswith(f"{serving.config_path}:") for error in errors), errors
    assert curl(serving.url + "/")[1] == b"serving\n"


def write_config(directory, port, blocked_port):
    config = Path(directory) / "jester.toml"
    config.write_text(f"""[server]
workers = 1
pid_file = "{directory}/jester.pid"
control_socket = "{directory}/control.sock"

[[listeners]]
name = "main"
address = "127.0.0.1:{port}"

# A port another program holds.
[[listeners]]
name = "blocked"
address = "127.0.0.1:{blocked_port}"
{ROUTE}""")
    return config


def test_a_listener_that_cannot_be_bound_stops_the_start_with_its_name_and_place(held_port, tmp_path):
    os.chmod(tmp_path, 0o755)
    config = write_config(tmp_path, free_port(), held_port.port)
    result = subprocess.run([JESTER, "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stdout + result.stderr
    expected = (f"{config}:11:1: error: listener 'blocked' cannot listen on 127.0.0.1:{held_port.port}: "
                "address already in use")
    # The plain line, for whoever started Jester by hand, before the JSON line with the same facts (earlier JSON
    # lines may come first: they are written from a queue).
    lines = result.stderr.splitlines()
    plain = [index for index, line in enumerate(lines) if line.startswith(f"jester: cannot start: {expected}")]
    assert len(plain) == 1, result.stderr
    critical = [(index, json.loads(line)) for index, line in enumerate(lines) if line.startswith("{")]
    critical = [(index, line) for index, line in critical if line["message"] == "cannot start"]
    assert len(critical) == 1 and critical[0][0] > plain[0], result.stderr
    critical = [line for _, line in critical]
    assert critical[0]["listener"] == "blocked" and critical[0]["location"] == f"{config}:11"
    assert critical[0]["error"].startswith(expected) and critical[0]["errno"] == 98


def test_a_listener_that_cannot_be_bound_fails_the_reload_and_the_old_generation_serves(held_port, serving):
    good = serving.config_path.read_text()
    lines = good.count("\n")
    try:
        serving.config_path.write_text(
            good + f'\n[[listeners]]\nname = "blocked"\naddress = "127.0.0.1:{held_port.port}"\n')
        result = serving.ctl("reload")
    finally:
        serving.config_path.write_text(good)
    assert result.returncode != 0
    expected = (f"{serving.config_path}:{lines + 2}:1: error: listener 'blocked' cannot listen on "
                f"127.0.0.1:{held_port.port}: address already in use")
    assert expected in result.stdout + result.stderr
    failed = wait_for(lambda: [line for line in lines_with(serving, "reload failed")
                               if any(expected in error for error in line["errors"])], what="the reload's error line")
    assert failed
    assert curl(serving.url + "/")[1] == b"serving\n"


@pytest.fixture(scope="module")
def tls_jester():
    directory = Path(tempfile.mkdtemp(prefix="jester-tls-logs-"))
    keys = directory / "keys"
    keys.mkdir(mode=0o700)
    for name, fixture in {"site.pem": "alpha.pem", "site.key": "alpha.key"}.items():
        shutil.copyfile(FIXTURES / fixture, keys / name)
        os.chmod(keys / name, 0o600)
    body = f"""
[listeners.tls]

[[listeners.tls.certificates]]
cert = "{keys / 'site.pem'}"
key = "{keys / 'site.key'}"

[log]
level = "debug"
{ROUTE}"""
    jester = Jester(body, workers=1)
    yield jester
    jester.stop()
    shutil.rmtree(directory, ignore_errors=True)


def test_fifty_bad_handshakes_make_one_warning_and_fifty_debug_lines(tls_jester):
    for _ in range(50):
        with socket.create_connection(("127.0.0.1", tls_jester.port), timeout=5) as client:
            # A TLS record header announcing a ClientHello, then garbage: the handshake fails in OpenSSL.
            client.sendall(b"\x16\x03\x01\x00\x10" + b"\x00" * 16)
            try:
                client.recv(1024)
            except OSError:
                pass
    debug = wait_for(lambda: len(lines_with(tls_jester, "TLS handshake failed", "jester.tls")) >= 51
                     and lines_with(tls_jester, "TLS handshake failed", "jester.tls"), what="50 debug lines")
    each = [line for line in debug if line["level"] == "debug"]
    assert len(each) == 50 and all(line["reason"] and line["client"].startswith("127.0.0.1") for line in each)
    time.sleep(0.5)  # (anything else the flood might still log)
    lines = operational_lines(tls_jester)
    assert not [line for line in lines if line["level"] == "warning" and line["component"] != "jester.tls"
                and "handshake" in line["message"]]
    warnings = [line for line in lines if line["level"] == "warning" and line["component"] == "jester.tls"]
    assert len(warnings) == 1, warnings
    summary = warnings[0]
    assert summary["component"] == "jester.tls" and summary["failures"] == 1
    assert isinstance(summary["reasons"], dict) and sum(summary["reasons"].values()) == 1
    # The clients that do speak TLS are served all along.
    code, body, error = curl("--cacert", str(FIXTURES / "ca.pem"), "--resolve",
                             f"alpha.test:{tls_jester.port}:127.0.0.1", f"https://alpha.test:{tls_jester.port}/")
    assert code == 200, error


def upstream_rows(jester):
    result = jester.ctl("upstreams", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def fails_open(row):
    return row.get("fail_open", row.get("failOpen"))


def test_health_changes_say_why_and_a_pool_failing_open_is_logged_once_each_way():
    broken = Upstream(status=503)
    refused_port = free_port()
    jester = Jester(f"""
[upstreams.app]
targets = ["{broken.address}", "127.0.0.1:{refused_port}"]
health_check = {{ path = "/healthz", interval = "200ms", timeout = "1s", rise = 1, fall = 2 }}

[[routes]]
path_prefix = "/"
upstream = "app"
""")
    revived = None
    try:
        changes = wait_for(lambda: len(lines_with(jester, "upstream target health changed", "jester.health")) >= 2
                           and lines_with(jester, "upstream target health changed"), what="both targets judged")
        by_target = {line["target"]: line for line in changes}
        assert by_target[broken.address]["reason"] == "status 503"
        assert by_target[f"127.0.0.1:{refused_port}"]["reason"] == "connection refused"
        for line in changes:
            assert line["health"] == "unhealthy" and line["previous"] == "unknown" and line["level"] == "warning"
            assert line["fails"] == 1 and line["passes"] == 0
        entered = wait_for(lambda: lines_with(jester, "every target of the upstream fails", "jester.health"),
                           what="the fail-open line")
        assert entered[0]["upstream"] == "app" and entered[0]["targets"] == 2 and entered[0]["fail_open"] is True
        rows = upstream_rows(jester)
        assert rows and all(fails_open(row) is True for row in rows), rows
        table = jester.ctl("upstreams").stdout
        assert table.count("unhealthy (fail open)") == 2, table
        # Requests still go somewhere (the balancer ignores checks that fail everywhere).
        assert curl(jester.url + "/echo")[0] in (502, 503)
        # One target comes back: the pool leaves the state, said once.
        revived = Upstream(port=refused_port)
        wait_for(lambda: lines_with(jester, "upstream no longer fails open", "jester.health"), what="the leaving line")
        time.sleep(1.0)  # several more check rounds: neither line repeats
        assert len(lines_with(jester, "every target of the upstream fails")) == 1
        assert len(lines_with(jester, "upstream no longer fails open")) == 1
        back = [line for line in lines_with(jester, "upstream target health changed")
                if line["target"] == f"127.0.0.1:{refused_port}" and line["health"] == "healthy"]
        assert back and back[0]["reason"] == "status 200" and back[0]["passes"] == 1 and back[0]["rise"] == 1
        assert all(fails_open(row) is False for row in upstream_rows(jester))
    finally:
        jester.stop()
        broken.stop()
        if revived:
            revived.stop()
