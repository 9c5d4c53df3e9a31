# SPDX-License-Identifier: Apache-2.0
"""HTTP/3 datagrams delivered to the worker that owns their connection (issue 23). Steered: the master's
SK_REUSEPORT program picks each datagram's socket by the slot and generation its connection ID names, so a
connection keeps its worker when the client's address changes (NAT rebinding), and across a reload or a binary
upgrade the draining generation keeps its connections while every new one reaches the new generation (nginx's
open issue #425: new connections landing on exiting workers and hanging). Unsteered (a master without CAP_BPF:
the kernel spreads datagrams by address): the worker that reads a datagram of another worker's connection
forwards it there over loopback, with the same outcome at the cost of one more hop. The workers' own counters
(`jesterctl status --json`) show where datagrams landed and what was forwarded. Clients are aioquic
(Tests/Live/h3_steering_client.py); two workers run as the unprivileged user."""

import json
import os
import subprocess
import time

import pytest

from conftest import Jester, wait_for
from test_http3 import AIOQUIC_PYTHON, HERE, TLS, TLS_LISTENER


def steering_client(*args, timeout=120):
    if not AIOQUIC_PYTHON.exists():
        pytest.fail(f"{AIOQUIC_PYTHON} is missing: run Packaging/setup.sh --test (it installs aioquic)")
    result = subprocess.run([str(AIOQUIC_PYTHON), str(HERE / "h3_steering_client.py"), *map(str, args)],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def config(upstream, answer):
    return f"""
http3 = true

{TLS_LISTENER}
[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
name = "which"
path_prefix = "/which"
respond = {{ status = 200, body = "{answer}" }}

[[routes]]
name = "app"
path_prefix = "/"
upstream = "app"
"""


def quic_counters(instance):
    """Each live worker's QUIC counters, by pid (reported once a second)."""
    return {w["pid"]: dict(w["quic"], generation=w["generation"]) for w in instance.status()["workers"]
            if w.get("quic")}


@pytest.fixture()
def without_bpf(tmp_path):
    """A jester whose master cannot load BPF: root without CAP_BPF, CAP_SYS_ADMIN and CAP_NET_ADMIN (as under a
    unit or container that does not grant them)."""
    from conftest import JESTER
    wrapper = tmp_path / "jester-without-bpf"
    wrapper.write_text(f'#!/bin/sh\nexec setpriv --bounding-set=-bpf,-sys_admin,-net_admin {JESTER} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture(params=["steered", "forwarded"])
def delivery(request, tmp_path):
    """How datagrams reach their owner: steered by the kernel, or forwarded by the workers (no BPF)."""
    binary = None if request.param == "steered" else request.getfixturevalue("without_bpf")
    return request.param, binary


def test_the_master_steers_http3_by_connection_id(upstream):
    """Loading the program is what every other test here relies on: the master says so in its log."""
    instance = Jester(config(upstream, "one"), workers=2)
    try:
        assert "HTTP/3 datagrams steered by connection ID" in instance.logs(), instance.logs()[-2000:]
    finally:
        instance.stop()


def test_a_connection_keeps_its_worker_when_the_client_address_changes(upstream, delivery):
    mode, binary = delivery
    instance = Jester(config(upstream, "one"), workers=2, binary=binary)
    try:
        result = steering_client("rebind", instance.port, TLS / "ca.pem", 12)["connections"]
        for connection in result:
            assert connection["ports"][0] != connection["ports"][1]
            assert connection["statuses"] == ["200", "200", "200"], result
        # Spread over both workers by the clients' first addresses. After the change, steered: every datagram
        # reached the worker its connection ID names, none the other one. Forwarded: about half of the
        # connections now hash to the other worker's socket, which passed their datagrams on.
        wait_for(lambda: sum(c["accepted"] for c in quic_counters(instance).values()) >= 12, timeout=5,
                 what="the workers' counters")
        counters = quic_counters(instance)
        assert len(counters) == 2 and all(c["accepted"] > 0 for c in counters.values()), counters
        assert sum(c["datagrams"] for c in counters.values()) > 12 * 6, counters
        if mode == "steered":
            assert all(c["other_worker"] == 0 and c["forwarded"] == 0 for c in counters.values()), counters
        else:
            # (Each worker reports once a second: the last forwarded datagrams may be in one report only yet.)
            def balanced():
                counters = quic_counters(instance)
                forwarded = sum(c["forwarded"] for c in counters.values())
                return forwarded > 0 and sum(c["forwarded_in"] for c in counters.values()) == forwarded
            wait_for(balanced, timeout=5, what="every forwarded datagram taken in by its owner")
            assert all(c["forwarding_refused"] == 0 for c in quic_counters(instance).values())
        # The same counts in the metrics (the workers write them to the shared table as they happen).
        from test_metrics import sample, scrape
        def agree():
            metrics, counters = scrape(instance), quic_counters(instance)
            return all(sample(metrics, "jester_quic_datagrams_total", listener="main", disposition=name) == sum(
                c[key] for c in counters.values()) for name, key in [("received", "datagrams"),
                ("forwarded", "forwarded"), ("other_worker", "other_worker")]) and sample(
                metrics, "jester_quic_connections_total", listener="main") == 12
        wait_for(agree, timeout=5, what="the metrics and the workers' counters to agree")
    finally:
        instance.stop()


@pytest.mark.parametrize("change", ["reload", "upgrade"])
def test_a_reload_or_upgrade_under_http3_load_loses_nothing_and_new_connections_reach_the_new_generation(
        upstream, change, delivery):
    """Four long-lived connections and ten new ones a second run through a reload or a binary upgrade (the new
    program adopts the UDP sockets, the steering maps and the QUIC secrets): nothing fails or hangs; the old
    generation finishes its connections (GOAWAY, then close; a request it did not process is sent again on a
    new connection, as clients do); every connection begun after the change is served by the new generation,
    whose answer differs; steered, no datagram reached a worker other than its connection's; the master closes
    what the old generation used."""
    from test_lifecycle import open_fds
    mode, binary = delivery
    instance = Jester(config(upstream, "one"), workers=2, binary=binary)
    master = instance.process.pid
    baseline_fds = open_fds(master)
    stop_file = instance.dir / "stop-load"
    try:
        wait_for(lambda: quic_counters(instance), timeout=5, what="the workers' first counters")
        worker_fds = {len(worker_descriptors(pid)) for pid in instance.worker_pids()}
        load = subprocess.Popen([str(AIOQUIC_PYTHON), str(HERE / "h3_steering_client.py"), "load",
                                 str(instance.port), str(TLS / "ca.pem"), str(stop_file), "/which"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Every worker's counters as the load runs, both generations (each reports once a second).
        seen = {}

        def sample(seconds):
            end = time.time() + seconds
            while time.time() < end:
                seen.update(quic_counters(instance))
                time.sleep(0.25)

        sample(2.0)
        generation = instance.status()["generation"]
        instance.write_config(config(upstream, "two"))
        instance.ctl(change, check=True)
        wait_for(lambda: instance.status()["generation"] == generation + 1, timeout=20, what="the change")
        changed_at = time.time()
        sample(3.0)
        stop_file.touch()
        out, err = load.communicate(timeout=60)
        assert load.returncode == 0, err[-3000:]
        seen.update(quic_counters(instance))
        requests = json.loads(out)["requests"]
        failures = [r for r in requests if r["error"]]
        assert not failures, failures[:10]
        served = [r for r in requests if not r.get("retried")]
        assert {r["body"] for r in served} == {"one", "two"}, {r["body"] for r in served}
        # Connections begun a moment after the commit (the maps are rewritten as it completes) all reach the
        # new generation; none lands on an exiting worker.
        late = [r for r in served if r["kind"] == "new" and r["start"] > changed_at + 0.2]
        assert len(late) >= 15 and all(r["body"] == "two" for r in late), [r["body"] for r in late]
        assert sum(1 for r in served if r["kind"] == "long" and r["body"] == "one") > 10
        generations = {c["generation"] for c in seen.values()}
        assert generations == {generation, generation + 1}, seen
        if mode == "steered":
            # Every datagram reached its connection's worker, in both generations.
            assert all(c["other_worker"] == 0 and c["forwarded"] == 0 for c in seen.values()), seen
        else:
            # The new generation reads the shared sockets and passes the draining one's datagrams on, as many as
            # reach it before those connections close (none, when the drain is quick: the outcome above is what
            # holds either way); none of what was forwarded was refused.
            assert all(c["forwarding_refused"] == 0 for c in seen.values()), seen
        wait_for(lambda: all(w["generation"] == generation + 1 for w in instance.status()["workers"]),
                 timeout=30, what="the old generation gone")
        exits = [json.loads(line) for line in instance.logs().splitlines()
                 if line.startswith("{") and '"worker exited' in line]
        assert exits and all("signal" not in e["status"] for e in exits), exits
        assert instance.status()["pid"] == master
        wait_for(lambda: open_fds(master) <= baseline_fds + 1, timeout=10, what=f"master fds back to {baseline_fds}")
        # The new workers hold what the first ones did: nothing of the old generation (its sockets, the maps,
        # other workers' channels) leaked into them.
        for pid in instance.worker_pids():
            descriptors = worker_descriptors(pid)
            assert not [d for d in descriptors if "bpf" in d], descriptors
            assert len(descriptors) in worker_fds, (descriptors, worker_fds)
    finally:
        stop_file.touch()
        instance.stop()


def worker_descriptors(pid):
    result = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            result.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return result


def test_without_bpf_the_master_says_so_and_http3_still_serves(upstream, without_bpf):
    from test_http3 import h3
    instance = Jester(config(upstream, "one"), workers=2, binary=without_bpf)
    try:
        warning = next(json.loads(line) for line in instance.logs().splitlines()
                       if "HTTP/3 without steering by connection ID" in line)
        assert "Operation not permitted" in warning["error"], warning
        results = h3(instance.port, [{"path": "/which", "raw": True}, {"path": "/echo?x"}])
        assert [r["status"] for r in results] == ["200", "200"]
        assert bytes.fromhex(results[0]["raw"]) == b"one"
    finally:
        instance.stop()
