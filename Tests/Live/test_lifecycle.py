# SPDX-License-Identifier: Apache-2.0
"""Live tests of the process model: supervision, privileges, jesterctl and reload."""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import SteadyLoad, curl, wait_for

ROUTES = """
[[routes]]
path_prefix = "/"
respond = { status = 200, body = "VERSION\\n" }
"""


def uid_of(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Uid:"):
                return [int(value) for value in line.split()[1:]]


def test_status_lists_master_and_workers(make_jester):
    jester = make_jester(ROUTES.replace("VERSION", "one"), workers=2)
    status = jester.status()
    assert status["pid"] == jester.process.pid and status["generation"] == 1 and status["state"] == "running"
    assert sorted(w["slot"] for w in status["workers"]) == [0, 1]
    assert all(w["rss_bytes"] > 0 for w in status["workers"])
    text = jester.ctl("status", check=True).stdout
    assert "PID" in text and "SLOT" in text and jester.config_path.name in text


def test_workers_drop_privileges_when_master_is_root(make_jester):
    jester = make_jester(ROUTES.replace("VERSION", "one"), workers=2)
    if os.geteuid() != 0:
        return  # started by an ordinary user: everything runs as that user (checked by the next assertion)
    expected = int(subprocess.run(["id", "-u", "jester"], capture_output=True, text=True).stdout.strip() or
                   subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True).stdout.strip())
    assert uid_of(jester.process.pid)[0] == 0
    for pid in jester.worker_pids():
        assert set(uid_of(pid)) == {expected}
        with open(f"/proc/{pid}/status") as status:
            assert "NoNewPrivs:\t1" in status.read()
    assert curl(jester.url + "/")[0] == 200


def test_killed_worker_is_respawned_and_others_keep_serving(make_jester):
    jester = make_jester(ROUTES.replace("VERSION", "one"), workers=2)
    victim, survivor = jester.worker_pids()
    stop = threading.Event()
    failures = []

    def load():
        while not stop.is_set():
            code = curl(jester.url + "/", timeout=5)[0]
            if code != 200:
                failures.append(code)

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(0.3)
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    pids = wait_for(lambda: (lambda p: p if len(p) == 2 and victim not in p and jester.all_ready() else None)(
        jester.worker_pids()), interval=0.01, what="respawn")
    print(f"worker respawned and ready {1000 * (time.monotonic() - killed_at):.0f} ms after SIGKILL")
    time.sleep(0.5)
    stop.set()
    thread.join()
    assert survivor in pids
    assert "killed by signal 9 (SIGKILL)" in jester.logs()
    restarts = {w["pid"]: w["restarts"] for w in jester.status()["workers"]}
    assert restarts[survivor] == 0 and sum(restarts.values()) == 1, restarts
    # The killed worker's socket stayed with the master, so no connection was refused meanwhile. Only requests
    # the worker had in flight could fail: this client has at most one in flight.
    print(f"failed requests: {len(failures)} (at most 1 was in flight on the killed worker)")
    assert len(failures) <= 1, failures


def test_reload_replaces_workers_and_bad_config_keeps_serving(make_jester):
    jester = make_jester(ROUTES.replace("VERSION", "one"))
    old_pids = jester.worker_pids()
    jester.write_config(ROUTES.replace("VERSION", "two"))
    result = jester.ctl("reload", check=True)
    assert "generation 2" in result.stdout
    assert curl(jester.url + "/")[1] == b"two\n"
    wait_for(lambda: not set(old_pids) & set(jester.worker_pids()), what="old generation drained")

    jester.write_config(ROUTES.replace("VERSION", "three") + '\n[http]\nmax_body_sise = "1MiB"\n')
    result = jester.ctl("reload")
    assert result.returncode == 1
    assert f"{jester.config_path}:" in result.stderr and "did you mean 'max_body_size'" in result.stderr
    line = [l for l in result.stderr.splitlines() if "max_body_sise" in l][0]
    path, line_number, column = line.split(": error")[0].rsplit(":", 2)
    assert int(line_number) > 1 and int(column) >= 1
    assert curl(jester.url + "/")[1] == b"two\n"
    assert jester.status()["generation"] == 2

    # A file that crashes the TOML library itself (found by the fuzzer) fails the reload, not the master.
    jester.write_config(ROUTES.replace("VERSION", "three") + '\n[[routes]]\nhosts = ["a",  }\n')
    result = jester.ctl("reload")
    assert result.returncode == 1 and "the TOML parser crashed" in result.stderr, result.stderr
    assert jester.process.poll() is None
    assert curl(jester.url + "/")[1] == b"two\n"

    # SIGHUP reloads too.
    jester.write_config(ROUTES.replace("VERSION", "four"))
    jester.process.send_signal(signal.SIGHUP)
    wait_for(lambda: curl(jester.url + "/")[1] == b"four\n", what="SIGHUP reload")


def test_reload_while_serving_loses_nothing(make_jester):
    jester = make_jester(ROUTES.replace("VERSION", "one"), workers=2)
    stop = threading.Event()
    results = []

    def load():
        while not stop.is_set():
            results.append(curl(jester.url + "/", timeout=5)[0])

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    for version in ("two", "three"):
        jester.write_config(ROUTES.replace("VERSION", version))
        jester.ctl("reload", check=True)
    stop.set()
    for thread in threads:
        thread.join()
    assert results and all(code == 200 for code in results), [c for c in results if c != 200]


def test_refused_control_client(make_jester):
    jester = make_jester(ROUTES.replace("VERSION", "one"))
    # Mode 0660: an unrelated user cannot even connect.
    result = jester.ctl("status", user="nobody")
    assert result.returncode == 2 and "permission denied" in result.stderr
    # Even with the socket opened up, the master checks SO_PEERCRED and refuses.
    os.chmod(jester.socket, 0o666)
    result = jester.ctl("status", user="nobody")
    assert result.returncode != 0 and "permission denied" in result.stderr
    wait_for(lambda: "control connection refused" in jester.logs(), what="refusal logged")


def test_control_group_members_may_use_jesterctl(make_jester):
    """server.control_group: the socket file belongs to that group (created so, not chowned: the packaged unit
    gives the master no CAP_CHOWN) and the master admits its members."""
    import grp
    subprocess.run(["groupadd", "-f", "--system", "jester-ctl-test"], check=True)
    group = grp.getgrnam("jester-ctl-test").gr_gid
    jester = make_jester(ROUTES.replace("VERSION", "one"), server_settings='control_group = "jester-ctl-test"')
    info = os.stat(jester.socket)
    assert info.st_gid == group and info.st_mode & 0o777 == 0o660
    assert jester.ctl("status", user="nobody", groups=[group]).returncode == 0
    assert jester.ctl("status", user="nobody").returncode == 2
    # The master's own group is back to what it was after binding.
    with open(f"/proc/{jester.process.pid}/status") as status:
        gids = [line for line in status if line.startswith("Gid:")][0].split()[1:]
    assert gids == [str(os.getegid())] * 4


def test_jesterctl_without_master():
    from conftest import JESTERCTL
    result = subprocess.run([JESTERCTL, "status", "--socket", "/tmp/no-such-jester.sock"], capture_output=True,
                            text=True)
    assert result.returncode == 2 and "no Jester master is listening" in result.stderr


def test_drain_finishes_in_flight_requests(make_jester, upstream):
    jester = make_jester(f"""
[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
path_prefix = "/"
upstream = "app"
""")
    slow = {}

    def request():
        slow["result"] = curl(jester.url + "/slow?delay=1.5")

    thread = threading.Thread(target=request)
    thread.start()
    time.sleep(0.5)
    result = jester.ctl("drain", "--timeout", "10", check=True, timeout=30)
    thread.join()
    assert slow["result"][0] == 200
    assert "draining" in result.stdout
    jester.process.wait(timeout=10)
    assert jester.process.returncode == 0
    assert not os.path.exists(jester.socket)


def test_stop_and_sigterm(make_jester):
    jester = make_jester(ROUTES.replace("VERSION", "one"))
    result = jester.ctl("stop", check=True)
    assert "stopping" in result.stdout
    assert jester.process.wait(timeout=10) == 0
    other = make_jester(ROUTES.replace("VERSION", "one"))
    other.process.send_signal(signal.SIGTERM)
    assert other.process.wait(timeout=10) == 0
    assert not os.path.exists(other.dir / "jester.pid")


def test_many_start_stop_cycles_all_exit_zero(tmp_path):
    """Stops race with workers exiting (two SIGCHLDs for one reap), with signals arriving while the master shuts
    its loop down, and with traffic: every stop must end in exit 0, never a crash (once SIGILL, 1 stop in 30)."""
    from conftest import JESTER, free_port
    port = free_port()
    config = tmp_path / "jester.toml"
    config.write_text(f"""
[server]
workers = 2
pid_file = "{tmp_path}/jester.pid"
control_socket = "{tmp_path}/control.sock"
drain_timeout = "2s"

[[listeners]]
name = "main"
address = "127.0.0.1:{port}"
""" + ROUTES.replace("VERSION", "cycle"))
    failures = []
    for cycle in range(36):
        loaded = cycle % 3 == 2
        log = open(tmp_path / "jester.log", "w")
        process = subprocess.Popen([JESTER, "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: curl(f"http://127.0.0.1:{port}/", timeout=2)[0] == 200, timeout=10, interval=0.02,
                     what="jester to answer")
            load = None
            if loaded:
                load = subprocess.Popen(["wrk", "-t1", "-c16", "-d1s", f"http://127.0.0.1:{port}/"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.3)
            # A second signal during the stop, as an impatient operator or systemd's final SIGTERM sends it.
            process.send_signal(signal.SIGTERM)
            if cycle % 4 == 1:
                time.sleep(0.01)
                process.send_signal(signal.SIGTERM if cycle % 8 == 1 else signal.SIGINT)
            code = process.wait(timeout=15)
            if load:
                load.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
        if code != 0:
            failures.append((cycle, code, (tmp_path / "jester.log").read_text()[-1500:]))
    assert not failures, failures[:3]


def test_files_that_crash_the_toml_library_are_errors():
    """Inputs on which toml++ (inside TOMLKit) aborts: jester must answer with an error, not crash."""
    from pathlib import Path
    from conftest import JESTER, ROOT
    files = sorted((ROOT / "Tests" / "Fuzz" / "regressions" / "config-upstream").iterdir())
    assert files
    for path in files:
        result = subprocess.run([JESTER, "config", "validate", str(path)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 1, result
        assert "the TOML parser crashed on this file" in result.stderr


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_twenty_reloads_under_load_lose_nothing(make_jester, upstream):
    """The promise of the lifecycle: steady traffic over keep-alive and new connections while the config (and
    with it the routes) changes 20 times. Zero failed requests, each new route answers, and after every drain
    the master is back to its baseline of workers and file descriptors. (RELOADS=1000 for the long run.)"""
    reloads = int(os.environ.get("JESTER_RELOADS", "20"))
    base = f"""
[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
path_prefix = "/app/"
upstream = "app"
"""

    def config(version):
        return base + f"""
[[routes]]
path_prefix = "/v{version}"
respond = {{ status = 200, body = "{version}\\n" }}

[[routes]]
path_prefix = "/"
respond = {{ status = 200, body = "serving\\n" }}
"""

    jester = make_jester(config(0), workers=2)
    baseline_fds = open_fds(jester.process.pid)
    with SteadyLoad(jester.port, proxied_path="/app/echo") as load:
        for version in range(1, reloads + 1):
            jester.write_config(config(version))
            jester.ctl("reload", check=True)
            code, body, _ = curl(jester.url + f"/v{version}")
            assert (code, body) == (200, f"{version}\n".encode())
            if version % 5 == 0 or version == reloads:
                wait_for(lambda: len(jester.status()["workers"]) == 2, timeout=15, what="old generations drained")
    load.assert_nothing_failed()
    wait_for(lambda: len(jester.status()["workers"]) == 2, timeout=15, what="old generations drained")
    wait_for(lambda: open_fds(jester.process.pid) <= baseline_fds + 1, timeout=10,
             what=f"master fds back to baseline {baseline_fds}")
    print(f"{reloads} reloads under load: {load.counts} requests, 0 failed")


class NotifyListener:
    """Plays systemd's side of sd_notify: a datagram socket at NOTIFY_SOCKET that records every message."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.path)
        self.socket.settimeout(0.2)
        self.messages = []
        self.store = []  # (name, fd) of descriptors handed over with FDSTORE=1
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.receive, daemon=True)
        self.thread.start()

    def receive(self):
        while not self.stopped.is_set():
            try:
                data, fds, _, _ = socket.recv_fds(self.socket, 4096, 16)
            except socket.timeout:
                continue
            for fd in fds:
                os.set_inheritable(fd, False)  # recvmsg without MSG_CMSG_CLOEXEC: keep them out of our children
            data = data.decode()
            self.messages.append((time.monotonic(), data))
            # FDSTORE=1: keep the descriptors by name, as systemd's descriptor store does.
            fields = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            if fields.get("FDSTORE") == "1":
                self.store.extend((fields.get("FDNAME", "stored"), fd) for fd in fds)
            else:
                for fd in fds:
                    os.close(fd)
            if fields.get("FDSTOREREMOVE") == "1":
                for name, fd in [entry for entry in self.store if entry[0] == fields.get("FDNAME")]:
                    os.close(fd)
                    self.store.remove((name, fd))

    def seen(self, prefix):
        return [m for _, m in self.messages if m.startswith(prefix)]

    def close(self):
        self.stopped.set()
        self.thread.join()
        self.socket.close()
        for _, fd in self.store:
            os.close(fd)


def test_systemd_notify_protocol(make_jester, tmp_path):
    listener = NotifyListener(str(tmp_path))
    try:
        jester = make_jester(ROUTES.replace("VERSION", "one"), workers=2,
                             extra_env={"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "400000"})
        wait_for(lambda: listener.seen("READY=1"), what="READY=1")
        # READY=1 only once the first generation serves.
        assert curl(jester.url + "/")[1] == b"one\n"
        wait_for(lambda: any("generation 1, 2 workers" in m for m in listener.seen("STATUS=")), what="STATUS=")
        time.sleep(1.0)
        assert len(listener.seen("WATCHDOG=1")) >= 3  # every 200 ms with WatchdogSec=400ms

        ready_before = len(listener.seen("READY=1"))
        jester.write_config(ROUTES.replace("VERSION", "two"))
        jester.ctl("reload", check=True)
        wait_for(lambda: len(listener.seen("READY=1")) > ready_before, what="READY=1 after the reload")
        reloading = listener.seen("RELOADING=1")
        assert reloading and "\nMONOTONIC_USEC=" in reloading[-1]
        assert int(reloading[-1].split("MONOTONIC_USEC=")[1]) > 0
        order = [m.split("\n")[0] for _, m in listener.messages if m.startswith(("RELOADING", "READY"))]
        assert order[-2:] == ["RELOADING=1", "READY=1"]
        wait_for(lambda: any("generation 2" in m for m in listener.seen("STATUS=")), what="STATUS= after reload")

        jester.stop()
        wait_for(lambda: listener.seen("STOPPING=1"), what="STOPPING=1")
    finally:
        listener.close()


def restart_from_store(listener, jester, tmp_path):
    """Starts a new master as systemd restarts the service: the stored descriptors at fds 3, 4, ... with their
    names in LISTEN_FDNAMES, on the killed instance's configuration with a control socket of its own (logging to
    restarted.log). Returns the process, its configuration file and its control socket."""
    from conftest import JESTER
    high = [os.dup(fd) for _, fd in listener.store]
    names = ":".join(name for name, _ in listener.store)
    control = str(tmp_path / "control.sock")
    config_path = tmp_path / "restarted.toml"
    config_path.write_text(jester.config_path.read_text().replace(jester.socket, control))

    def place_descriptors():
        for index, fd in enumerate(high):
            os.dup2(fd, 3 + index)

    log = open(tmp_path / "restarted.log", "w")
    replacement = subprocess.Popen(
        ["/bin/sh", "-c", f'LISTEN_PID=$$ LISTEN_FDS={len(high)} LISTEN_FDNAMES={names} exec "$0" "$@"',
         JESTER, "--config", str(config_path)],
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=place_descriptors, close_fds=False,
        env=dict(os.environ, NOTIFY_SOCKET=listener.path))
    for fd in high:
        os.close(fd)
    return replacement, config_path, control


def test_descriptor_store_keeps_listeners_and_queued_connections_across_a_master_crash(make_jester, tmp_path):
    """With systemd's descriptor store (played by the test), the master stores its listening sockets; after the
    master and its workers are killed, a client connecting meanwhile waits in the stored socket's queue, and a
    new master started with the stored descriptors (as systemd restarts the service: LISTEN_FDS with their
    names) serves it. Sockets a reload stops using are removed from the store."""
    from conftest import JESTERCTL
    listener = NotifyListener(str(tmp_path))
    replacement = None
    client = None
    try:
        jester = make_jester(ROUTES.replace("VERSION", "one"), workers=2, extra_env={"NOTIFY_SOCKET": listener.path})
        wait_for(lambda: len(listener.store) == 2, what="two listening sockets stored")
        assert sorted(name for name, _ in listener.store) == ["jester-store-1", "jester-store-2"]
        workers = jester.worker_pids()
        jester.process.kill()
        jester.process.wait()
        wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in workers), what="workers gone")
        # No process of Jester runs now; the kernel still completes the handshake on the stored socket.
        client = socket.create_connection(("127.0.0.1", jester.port), timeout=10)
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

        # Restart as systemd does: the stored descriptors at fds 3, 4, ... with LISTEN_FDNAMES.
        replacement, config_path, control = restart_from_store(listener, jester, tmp_path)
        config = config_path.read_text()
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"one\n"), answer
        logs = (tmp_path / "restarted.log").read_text()
        assert "recovered listening sockets from systemd's descriptor store" in logs, logs
        assert len(listener.store) == 2  # the recovered sockets are stored already: nothing new

        # A reload that moves the listener: the new sockets are stored, the old ones removed from the store.
        from conftest import free_port
        new_port = free_port()
        config_path.write_text(config.replace(f"127.0.0.1:{jester.port}", f"127.0.0.1:{new_port}")
                               .replace("one", "two"))
        result = subprocess.run([JESTERCTL, "reload", "--socket", control], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert curl(f"http://127.0.0.1:{new_port}/")[1] == b"two\n"
        wait_for(lambda: sorted(name for name, _ in listener.store) == ["jester-store-3", "jester-store-4"],
                 what="store holding only the new sockets")
        assert len(listener.seen("FDSTOREREMOVE=1")) == 2

        def old_port_closed():
            try:
                socket.create_connection(("127.0.0.1", jester.port), timeout=2).close()
                return False
            except ConnectionRefusedError:
                return True
        # Once the old generation has exited, no copy of the old sockets is left anywhere.
        wait_for(old_port_closed, what="old port closed")
    finally:
        if client:
            client.close()
        if replacement:
            replacement.send_signal(signal.SIGINT)
            replacement.wait(timeout=15)
        listener.close()


def test_socket_activation_by_name_and_by_address(tmp_path):
    """systemd-socket-activate binds the sockets and passes them as LISTEN_FDS; jester adopts them (by
    LISTEN_FDNAMES, else by address), shares them between its workers and keeps them across a reload."""
    from conftest import JESTER, JESTERCTL, free_port
    named_port, plain_port = free_port(), free_port()
    control = str(tmp_path / "control.sock")
    config = tmp_path / "jester.toml"

    def write(version):
        config.write_text(f"""
[server]
workers = 2
pid_file = "{tmp_path}/jester.pid"
control_socket = "{control}"

[[listeners]]
name = "public"
address = "127.0.0.1:1"    # not bound: the socket named "public" comes from systemd

[[listeners]]
name = "second"
address = "127.0.0.1:{plain_port}"   # matched to the unnamed systemd socket by address

[[routes]]
path_prefix = "/"
respond = {{ status = 200, body = "{version}\\n" }}
""")

    write("one")
    log = open(tmp_path / "jester.log", "w")
    process = subprocess.Popen(
        ["systemd-socket-activate", "-l", f"127.0.0.1:{named_port}", "--fdname=public:jester.socket",
         "-l", f"127.0.0.1:{plain_port}", JESTER, "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: curl(f"http://127.0.0.1:{named_port}/")[0] == 200, what="the named socket serving")
        assert curl(f"http://127.0.0.1:{plain_port}/")[1] == b"one\n"
        logs = (tmp_path / "jester.log").read_text()
        assert "using a socket from systemd" in logs and '"listener":"public"' in logs
        write("two")
        result = subprocess.run([JESTERCTL, "reload", "--socket", control], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert curl(f"http://127.0.0.1:{named_port}/")[1] == b"two\n"
        assert curl(f"http://127.0.0.1:{plain_port}/")[1] == b"two\n"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        log.close()


def socket_inodes(pid):
    """The socket inodes among a process's descriptors."""
    inodes = set()
    for entry in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{entry}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def test_descriptor_store_keeps_http3_udp_sockets_across_a_master_crash(make_jester, tmp_path):
    """HTTP/3's UDP socket is stored beside the TCP one; a master restarted with the stored descriptors reuses
    that very socket (the same inode in its worker) and serves HTTP/3 on it."""
    from test_http3 import TLS_LISTENER, h3
    listener = NotifyListener(str(tmp_path))
    replacement = None
    try:
        jester = make_jester("http3 = true\n" + TLS_LISTENER + ROUTES.replace("VERSION", "one"), workers=1,
                             extra_env={"NOTIFY_SOCKET": listener.path})
        wait_for(lambda: len(listener.store) == 2, what="the TCP and the UDP socket stored")
        stored_inodes = {os.fstat(fd).st_ino for _, fd in listener.store}
        workers = jester.worker_pids()
        assert stored_inodes <= socket_inodes(workers[0])
        jester.process.kill()
        jester.process.wait()
        wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in workers), what="workers gone")

        replacement, _, _ = restart_from_store(listener, jester, tmp_path)
        wait_for(lambda: '"udp_sockets":1' in (tmp_path / "restarted.log").read_text(), what="recovered sockets")
        [result] = h3(jester.port, [{"method": "GET", "path": "/"}])
        assert str(result["status"]) == "200"
        new_workers = [int(pid) for pid in subprocess.run(
            ["pgrep", "-P", str(replacement.pid)], capture_output=True, text=True).stdout.split()]
        assert new_workers and stored_inodes <= socket_inodes(new_workers[0])
        assert len(listener.store) == 2  # nothing new to store: the recovered sockets are in use
    finally:
        if replacement:
            replacement.send_signal(signal.SIGINT)
            replacement.wait(timeout=15)
        listener.close()


@pytest.mark.parametrize("reuse_port", [False, True], ids=["shared", "ReusePort"])
def test_http3_on_a_udp_socket_from_systemd(tmp_path, reuse_port):
    """ListenDatagram=: the UDP socket goes to the HTTP/3 listener of that name. Without ReusePort=yes (played by
    systemd-socket-activate --datagram, which sets no SO_REUSEPORT) both workers read it unsteered and forward
    what reaches the wrong one; with it (a socket bound here with SO_REUSEPORT, passed as systemd passes it) it is
    the first slot's socket, the master adds its own to the group and steers them. Every connection is served,
    across a reload too (the activated socket then leaves the steering program's choice, and stays open)."""
    from conftest import JESTER, JESTERCTL, free_port
    from test_http3 import TLS_LISTENER, h3
    port = free_port()
    control = str(tmp_path / "control.sock")
    config = tmp_path / "jester.toml"

    def write(version):
        config.write_text(f"""
[server]
workers = 2
pid_file = "{tmp_path}/jester.pid"
control_socket = "{control}"

[[listeners]]
name = "public"
address = "127.0.0.1:{port}"
http3 = true
{TLS_LISTENER}
{ROUTES.replace("VERSION", version)}
""")

    def log_text():
        return (tmp_path / "jester.log").read_text()

    write("one")
    log = open(tmp_path / "jester.log", "w")
    activated_inode = None
    if reuse_port:
        activated = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        activated.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        activated.bind(("127.0.0.1", port))
        descriptor = activated.fileno()
        activated_inode = os.fstat(descriptor).st_ino
        process = subprocess.Popen(
            ["/bin/sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=public exec "$0" "$@"',
             JESTER, "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.dup2(descriptor, 3), close_fds=False)
        activated.close()
    else:
        process = subprocess.Popen(
            ["systemd-socket-activate", "--datagram", "-l", f"127.0.0.1:{port}", "--fdname=public",
             JESTER, "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
        # systemd-socket-activate starts the service at the first datagram, as systemd does.
        wait_for(lambda: "Listening on" in log_text(), what="the socket bound")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as poke:
            poke.sendto(b"\0", ("127.0.0.1", port))
    try:
        wait_for(lambda: log_text().count("worker ready") >= 4, what="workers")
        results = [h3(port, [{"method": "GET", "path": "/", "raw": True}])[0] for _ in range(4)]
        assert all(bytes.fromhex(result["raw"]) == b"one\n" for result in results), results
        logs = log_text()
        assert "using a socket from systemd" in logs and '"listener":"public"' in logs
        assert ("without ReusePort=yes" in logs) != reuse_port
        # (Both ways the master is the process started here: systemd-socket-activate and sh exec it.)
        workers = [int(pid) for pid in subprocess.run(
            ["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()]
        if reuse_port:
            # The activated socket is the first slot's: a worker reads it.
            assert any(activated_inode in socket_inodes(pid) for pid in workers), workers
            if os.geteuid() == 0:
                assert "HTTP/3 datagrams steered by connection ID" in logs
        else:
            # Both workers read the one socket: what reached the other was forwarded to its owner (counted in the
            # workers' next reports).
            def forwarded():
                status = json.loads(subprocess.run([JESTERCTL, "status", "--json", "--socket", control],
                                                   capture_output=True, text=True).stdout)
                return sum(w.get("quic", {}).get("forwarded", 0) for w in status["workers"])
            wait_for(lambda: forwarded() > 0, what="forwarded datagrams counted")
        write("two")
        result = subprocess.run([JESTERCTL, "reload", "--socket", control], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        results = [h3(port, [{"method": "GET", "path": "/", "raw": True}])[0] for _ in range(4)]
        assert all(bytes.fromhex(result["raw"]) == b"two\n" for result in results), results
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        log.close()

def start_slow_download(port, size=64 * 1024 * 1024):
    """A client that starts a large download and reads it slowly: a long-lived connection on the current
    generation."""
    client = socket.create_connection(("127.0.0.1", port), timeout=30)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    client.sendall(f"GET /app/download?size={size} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert client.recv(4096).startswith(b"HTTP/1.1 200")
    return client


def read_to_end(client):
    total = 0
    while True:
        chunk = client.recv(1 << 20)
        if not chunk:
            return total
        total += len(chunk)


def proxy_routes(upstream, version):
    return f"""
[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
path_prefix = "/app/"
upstream = "app"
max_body_size = "1GiB"

[[routes]]
path_prefix = "/"
respond = {{ status = 200, body = "{version}\\n" }}
"""


def test_reload_wait_shows_phases_and_a_long_download_survives(make_jester, upstream):
    jester = make_jester(proxy_routes(upstream, "one"), workers=1)
    download = start_slow_download(jester.port)
    jester.write_config(proxy_routes(upstream, "two"))
    from conftest import JESTERCTL
    command = [JESTERCTL, "reload", "--wait", "--json", "--socket", jester.socket]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    lines = []
    # The new generation serves while the old one drains; the drain lasts as long as the download. (The first
    # draining lines may predate the old worker's next stats report, so wait for one that counts the download.)
    while True:
        line = process.stdout.readline()
        assert line, lines
        lines.append(json.loads(line))
        if lines[-1].get("phase") == "draining" and lines[-1]["connections"] >= 1:
            break
    assert [l["phase"] for l in lines[:3]] == ["validated", "spawning", "ready"]
    assert lines[-1]["generation"] == 1
    assert curl(jester.url + "/")[1] == b"two\n"
    status = jester.status()
    old = [w for w in status["workers"] if w["generation"] == 1]
    assert old and old[0]["drain_deadline"] > time.time() and old[0]["config_hash"]
    text = jester.ctl("status", check=True).stdout
    assert "DRAIN DEADLINE" in text and "draining" in text
    # The download completes on the old worker (nothing cut short), then the wait ends with the result.
    assert read_to_end(download) > 60 * 1024 * 1024
    download.close()
    rest = [json.loads(l) for l in process.stdout.read().splitlines() if l.strip()]
    assert process.wait(timeout=30) == 0
    assert rest[-1]["success"] is True and rest[-1]["generation"] == 2


def test_draining_generations_are_capped(make_jester, upstream):
    jester = make_jester(proxy_routes(upstream, "one"), workers=1)
    # max_draining_generations = 1: one old generation may drain; a reload that would make it two closes the
    # older one at once.
    jester.config_path.write_text(
        jester.config_path.read_text().replace("[server]\n", "[server]\nmax_draining_generations = 1\n"))
    jester.ctl("reload", check=True)  # generation 2, with the cap in force
    first = start_slow_download(jester.port)  # held by generation 2
    jester.ctl("reload", check=True)  # generation 3; generation 2 drains (1 draining: at the cap)
    second = start_slow_download(jester.port)  # held by generation 3
    jester.ctl("reload", check=True)  # generation 4; 2 and 3 would drain: 2 is closed at once
    wait_for(lambda: {w["generation"] for w in jester.status()["workers"]} == {3, 4}, what="generation 2 closed")
    assert "too many draining generations" in jester.logs()
    first.settimeout(10)
    assert read_to_end(first) < 64 * 1024 * 1024  # cut short
    first.close()
    second.close()


def test_a_connection_outliving_drain_timeout_is_closed_then(make_jester, upstream):
    jester = make_jester(proxy_routes(upstream, "one"), workers=1)  # drain_timeout = "5s" (conftest)
    download = start_slow_download(jester.port, size=512 * 1024 * 1024)  # never read: outlives the drain
    old_pid = jester.worker_pids()[0]
    jester.write_config(proxy_routes(upstream, "two"))
    started = time.monotonic()
    jester.ctl("reload", check=True)
    time.sleep(2)
    assert old_pid in jester.worker_pids()  # still draining: the download is kept for now
    wait_for(lambda: old_pid not in jester.worker_pids(), timeout=15, what="the old worker to exit")
    assert 4 < time.monotonic() - started < 12
    download.settimeout(10)
    assert read_to_end(download) < 512 * 1024 * 1024  # closed at drain_timeout, not completed
    download.close()


@pytest.fixture
def migrate_requests():
    """net.ipv4.tcp_migrate_req on for the test: when fewer workers mean a slot's SO_REUSEPORT socket closes, the
    kernel moves the connections queued on it to a remaining socket instead of resetting them (Linux >= 5.14).
    Jester warns at start-up when it is off; without it, shrinking the worker count can reset queued connections."""
    path = "/proc/sys/net/ipv4/tcp_migrate_req"
    try:
        with open(path) as f:
            previous = f.read().strip()
        with open(path, "w") as f:
            f.write("1")
    except OSError:
        pytest.skip("net.ipv4.tcp_migrate_req cannot be turned on here")
    yield
    with open(path, "w") as f:
        f.write(previous)


def test_start_up_says_when_tcp_migrate_req_is_off(make_jester):
    path = "/proc/sys/net/ipv4/tcp_migrate_req"
    try:
        with open(path) as f:
            previous = f.read().strip()
        with open(path, "w") as f:
            f.write("0")
    except OSError:
        pytest.skip("net.ipv4.tcp_migrate_req cannot be changed here")
    try:
        off = make_jester(ROUTES.replace("VERSION", "one"))
        with open(path, "w") as f:
            f.write("1")
        on = make_jester(ROUTES.replace("VERSION", "one"))
    finally:
        with open(path, "w") as f:
            f.write(previous)
    assert "net.ipv4.tcp_migrate_req is off" in off.logs()
    assert "tcp_migrate_req" not in on.logs()


def test_worker_count_change_under_load_loses_nothing(make_jester, upstream, migrate_requests):
    import http.client
    jester = make_jester(proxy_routes(upstream, "one"), workers=2)
    stop = threading.Event()
    failures, served = [], [0]

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", jester.port, timeout=5)
        while not stop.is_set():
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(response.status)
                served[0] += 1
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
            except Exception as error:
                failures.append(repr(error))
                connection.close()

    threads = [threading.Thread(target=client) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for workers in (1, 3, 2):
            text = jester.config_path.read_text()
            text = text.replace(f"workers = {jester.workers}", f"workers = {workers}")
            jester.config_path.write_text(text)
            jester.workers = workers
            jester.ctl("reload", check=True)
            wait_for(lambda: sorted(w["slot"] for w in jester.status()["workers"]) == list(range(workers)),
                     timeout=15, what=f"{workers} workers")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures[:5]
    assert served[0] > 100


def test_a_new_generation_that_is_not_ready_in_time_is_rolled_back(make_jester, upstream):
    jester = make_jester(proxy_routes(upstream, "one"), workers=1)
    old = jester.worker_pids()
    text = jester.config_path.read_text().replace("[server]\n", '[server]\nworker_start_timeout = "0s"\n')
    jester.config_path.write_text(text.replace('body = "one\\n"', 'body = "two\\n"'))
    result = jester.ctl("reload")
    assert result.returncode == 1 and "did not report ready" in result.stderr, result.stderr
    assert jester.worker_pids() == old and jester.status()["generation"] == 1
    assert curl(jester.url + "/")[1] == b"one\n"


def test_a_listener_that_cannot_be_bound_fails_the_reload(make_jester, upstream):
    jester = make_jester(proxy_routes(upstream, "one"), workers=1)
    blocker = socket.socket()  # no SO_REUSEPORT: nobody else may bind this port
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    try:
        port = blocker.getsockname()[1]
        jester.config_path.write_text(jester.config_path.read_text() + f"""
[[listeners]]
name = "extra"
address = "127.0.0.1:{port}"
""")
        result = jester.ctl("reload")
        assert result.returncode == 1 and str(port) in result.stderr, result.stderr
        assert jester.status()["generation"] == 1
        assert curl(jester.url + "/")[1] == b"one\n"
    finally:
        blocker.close()


def test_failed_reloads_and_upgrades_under_load_lose_nothing(make_jester, upstream, tmp_path):
    """Every way a reload or an upgrade can fail, while traffic flows: an invalid file, a file that crashes the
    TOML library, a generation that is not ready in time, a listener that cannot be bound, a new binary that
    does not run. Each fails with exit status 1, the running generation keeps serving, and no request fails."""
    binary = installed_copy(tmp_path)
    jester = make_jester(proxy_routes(upstream, "serving"), workers=2, binary=str(binary))
    good = jester.config_path.read_text()
    workers = sorted(jester.worker_pids())
    blocker = socket.socket()  # no SO_REUSEPORT: nobody else may bind this port
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    broken = {
        "invalid": good + '\n[http]\nmax_body_sise = "1MiB"\n',
        "parser crash": good + '\n[[routes]]\nhosts = ["a",  }\n',
        "not ready": good.replace("[server]\n", '[server]\nworker_start_timeout = "0s"\n'),
        "unbindable": good + f'\n[[listeners]]\nname = "extra"\naddress = "127.0.0.1:{blocker.getsockname()[1]}"\n',
    }
    try:
        with SteadyLoad(jester.port, proxied_path="/app/echo") as load:
            time.sleep(0.3)
            for what, text in broken.items():
                jester.config_path.write_text(text)
                result = jester.ctl("reload")
                assert result.returncode == 1, (what, result.stdout, result.stderr)
                time.sleep(0.2)
            jester.config_path.write_text(good)
            replace_binary(binary, "#!/bin/sh\nexit 127\n")
            assert jester.ctl("upgrade").returncode == 1
            time.sleep(0.3)
    finally:
        blocker.close()
    load.assert_nothing_failed()
    assert jester.status()["generation"] == 1 and sorted(jester.worker_pids()) == workers
    print(f"{len(broken)} failed reloads and 1 failed upgrade under load: {load.counts} requests, 0 failed")


# Binary upgrade (jesterctl upgrade, SIGUSR2): the master execs the binary now at its path in place.

def installed_copy(directory):
    """A private copy of the jester binary, so a test can replace it on disk as a package upgrade does."""
    import shutil
    from conftest import JESTER
    path = directory / "jester"
    shutil.copy2(JESTER, path)
    return path


def replace_binary(path, source=None):
    """Installs a new file at `path` the way dpkg does: write beside it, then rename over it (the running
    master's file becomes "(deleted)")."""
    import shutil
    from conftest import JESTER
    staging = path.with_name(path.name + ".dpkg-new")
    if source is None:
        shutil.copy2(JESTER, staging)
    else:
        staging.write_text(source)
        staging.chmod(0o755)
    os.replace(staging, path)


def test_binary_upgrade_under_load_loses_nothing(make_jester, upstream, tmp_path):
    """Three upgrades (two by jesterctl, one by SIGUSR2) under keep-alive, new-connection and proxied traffic,
    with a long download started before the first one: zero failed requests, the same master PID, the new
    binary running, the download completing across all three, and the master's fds back to baseline."""
    binary = installed_copy(tmp_path)
    jester = make_jester(proxy_routes(upstream, "serving"), workers=2, binary=str(binary))
    master = jester.process.pid
    baseline_fds = open_fds(master)
    download = start_slow_download(jester.port)
    with SteadyLoad(jester.port, proxied_path="/app/echo") as load:
        time.sleep(0.3)
        for round in range(3):
            replace_binary(binary)
            assert os.readlink(f"/proc/{master}/exe").endswith("(deleted)")
            assert jester.status()["binary_replaced"] is True
            before = jester.status()["generation"]
            if round == 1:
                jester.process.send_signal(signal.SIGUSR2)
                wait_for(lambda: jester.all_ready(before + 1) and jester.status()["generation"] == before + 1,
                         what="SIGUSR2 upgrade")
            elif round == 2:
                # --wait --json: JSON lines as they happen, the result once the adopted generation has drained.
                result = jester.ctl("upgrade", "--wait", "--json", check=True)
                lines = [json.loads(line) for line in result.stdout.splitlines()]
                assert [line.get("phase") for line in lines[:4]] == ["probing", "exec", "spawning", "ready"], lines
                assert lines[-1]["success"] is True and lines[-1]["generation"] == before + 1
                assert not [w for w in jester.status()["workers"] if w["generation"] == before]
            else:
                result = jester.ctl("upgrade", check=True)
                assert ["probing", "exec", "spawning"] == [
                    line.split(":")[0] for line in result.stdout.splitlines()][:3], result.stdout
                assert f"upgraded: generation {before + 1}" in result.stdout
            status = jester.status()
            assert status["pid"] == master and status["generation"] == before + 1
            assert not status.get("binary_replaced") and not os.readlink(f"/proc/{master}/exe").endswith("(deleted)")
            time.sleep(0.3)
        # The download began on generation 1, which three programs in turn adopted (within its 5 s drain
        # timeout): it completes untouched.
        assert read_to_end(download) > 60 * 1024 * 1024
        download.close()
    load.assert_nothing_failed()
    wait_for(lambda: len(jester.status()["workers"]) == 2, timeout=15, what="old generations drained")
    wait_for(lambda: open_fds(master) <= baseline_fds + 1, timeout=10, what=f"master fds back to {baseline_fds}")
    assert jester.process.poll() is None
    print(f"3 binary upgrades under load: {load.counts} requests, 0 failed")


def test_upgrade_to_a_binary_that_does_not_run_keeps_serving(make_jester, tmp_path):
    binary = installed_copy(tmp_path)
    jester = make_jester(ROUTES.replace("VERSION", "one"), workers=2, binary=str(binary))
    workers = sorted(jester.worker_pids())
    replace_binary(binary, "#!/bin/sh\necho 'cannot start' >&2\nexit 127\n")
    result = jester.ctl("upgrade")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the new binary does not run" in result.stderr and "cannot start" in result.stderr
    assert sorted(jester.worker_pids()) == workers and jester.status()["generation"] == 1
    assert curl(jester.url + "/")[1] == b"one\n"
    # A new binary that rejects the configuration is refused the same way, before anything changes.
    replace_binary(binary, "#!/bin/sh\nexit 1\n")
    result = jester.ctl("upgrade")
    assert result.returncode == 1 and "rejects" in result.stderr, result.stderr
    assert sorted(jester.worker_pids()) == workers


def test_upgrade_whose_new_workers_fail_keeps_the_old_ones(make_jester, upstream, tmp_path):
    """The new binary starts and passes the probe, but its workers crash at start: the new program keeps the
    adopted (old binary's) workers serving, and jesterctl upgrade reports the failure."""
    crash = tmp_path / "crash_workers.c"
    crash.write_text(
        '#include <stdlib.h>\n#include <string.h>\n'
        '__attribute__((constructor)) static void crash(int argc, char **argv) {\n'
        '    if (argc > 1 && strcmp(argv[1], "--worker") == 0) abort();\n}\n')
    library = tmp_path / "crash_workers.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(crash)], check=True)
    binary = installed_copy(tmp_path)
    real = tmp_path / "jester-real"
    os.link(binary, real)
    jester = make_jester(proxy_routes(upstream, "one"), workers=2, binary=str(binary))
    workers = sorted(jester.worker_pids())
    # The "new version": a wrapper that runs the same program with workers that abort.
    replace_binary(binary, f'#!/bin/sh\nexec /usr/bin/env LD_PRELOAD={library} {real} "$@"\n')
    result = jester.ctl("upgrade")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "before it was ready" in result.stderr, result.stderr
    status = jester.status()
    assert status["pid"] == jester.process.pid and status["generation"] == 1
    # A worker of the failed generation may still be on its way out when the reply comes (a respawn that had
    # not crashed yet when the master gave the generation up): it is stopped and reaped, and only the old stay.
    wait_for(lambda: sorted(w["pid"] for w in jester.status()["workers"]) == workers,
             what="only the adopted workers left")
    assert all(w["state"] == "ready" for w in jester.status()["workers"])
    for _ in range(20):
        assert curl(jester.url + "/")[1] == b"one\n"
    assert curl(jester.url + "/app/echo")[0] == 200


@pytest.mark.skipif(not os.environ.get("JESTER_PREVIOUS_BIN_DIR"),
                    reason="JESTER_PREVIOUS_BIN_DIR names no build of an earlier release (the pure tier's "
                           "ControlFrameCodecTests hold the wire format instead)")
def test_an_upgrade_from_the_previous_release_keeps_talking_to_its_workers(make_jester, upstream, tmp_path):
    """An old master upgrades to this binary: the new master adopts the old release's workers and must speak
    their protocol (frames without correlation ids) until they have drained; and the way back (a downgrade)
    works the same. Run with JESTER_PREVIOUS_BIN_DIR=<an earlier release's .build/release>."""
    import shutil
    from conftest import JESTER
    previous = os.path.join(os.environ["JESTER_PREVIOUS_BIN_DIR"], "jester")
    binary = tmp_path / "jester"
    shutil.copy2(previous, binary)
    jester = make_jester(proxy_routes(upstream, "serving"), workers=2, binary=str(binary))
    old_workers = sorted(jester.worker_pids())
    with SteadyLoad(jester.port, proxied_path="/app/echo") as load:
        time.sleep(0.3)
        for source in (JESTER, previous):
            staging = binary.with_name("jester.dpkg-new")
            shutil.copy2(source, staging)
            os.replace(staging, binary)
            before = jester.status()["generation"]
            result = jester.ctl("upgrade", "--wait", "--json", check=True)
            lines = [json.loads(line) for line in result.stdout.splitlines()]
            assert lines[-1]["success"] is True and lines[-1]["generation"] == before + 1, lines
            # The adopted generation drained under the other release's master, and left as it was told to.
            assert not set(old_workers) & set(jester.worker_pids())
            old_workers = sorted(jester.worker_pids())
            time.sleep(0.3)
    load.assert_nothing_failed()
