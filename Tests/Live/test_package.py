# SPDX-License-Identifier: Apache-2.0
"""The Debian package, end to end on this machine: build (with lintian), install, run the way jester.service
does, upgrade to a rebuilt package under load, remove, purge.

Runs only as root with dpkg, and only where Jester is not installed already (it installs into the system);
JESTER_PACKAGE_TEST=0 skips it. Building the package compiles Jester with the static Swift runtime, which takes
a few minutes the first time (.build/deb-scratch keeps it for the next run)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, SteadyLoad, curl, wait_for
from test_lifecycle import NotifyListener

ADDRESS = ("127.0.0.1", 8080)  # where the shipped /etc/jester/jester.toml listens


def skip_reason():
    if os.environ.get("JESTER_PACKAGE_TEST") == "0":
        return "JESTER_PACKAGE_TEST=0"
    if os.geteuid() != 0:
        return "needs root: it installs the package into this system"
    if not shutil.which("dpkg"):
        return "needs dpkg"
    installed = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "jester"], capture_output=True, text=True)
    if "installed" in installed.stdout and "not-installed" not in installed.stdout:
        return "a jester package is installed already; this test would replace and purge it"
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(ADDRESS)
        except OSError:
            return f"{ADDRESS[0]}:{ADDRESS[1]} (the shipped configuration's listener) is in use"
    return None


pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))


def run(*command, check=True, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if check:
        assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result


def build(version, output):
    arguments = [str(ROOT / "Packaging" / "build-deb.sh"), "--output", str(output)]
    if version:
        arguments += ["--version", version]
    result = run(*arguments, timeout=1800)
    print(result.stdout[-600:])
    assert "== lintian" in result.stdout  # build-deb.sh fails on any lintian error or warning
    return next(Path(output).glob("jester_*.deb"))


def test_package_builds_installs_upgrades_without_loss_and_purges(tmp_path):
    first = build(None, tmp_path / "v1")
    second = build("0.1.0+test1", tmp_path / "v2")
    depends = run("dpkg-deb", "-f", str(first), "Depends").stdout
    assert "libssl3" in depends and "libnghttp2-14" in depends and "swift" not in depends.lower(), depends
    # The content codings' libraries (JesterCompression), found by dpkg-shlibdeps like the others.
    assert "zlib1g" in depends and "libbrotli1" in depends and "libzstd1" in depends, depends
    # systemd's protocols are spoken without libsystemd (JesterSystem's Systemd).
    assert "libsystemd" not in depends, depends

    master = None
    listener = None
    try:
        result = run("dpkg", "-i", str(first))
        # Files, conffiles, the user.
        for path in ["/usr/sbin/jester", "/usr/bin/jesterctl", "/etc/jester/jester.toml", "/etc/jester/conf.d",
                     "/lib/systemd/system/jester.service", "/lib/systemd/system/jester.socket",
                     "/lib/systemd/system/jester-control-plane.service",
                     "/usr/share/man/man8/jester.8.gz", "/usr/share/man/man5/jester.toml.5.gz",
                     "/usr/share/bash-completion/completions/jesterctl", "/usr/share/doc/jester/README.Debian",
                     "/usr/share/jester/sdk/c/jester_policy.h", "/usr/share/jester/sdk/wit/jester-policy.wit",
                     "/usr/share/jester/sdk/examples/tenant_router.c"]:
            assert os.path.exists(path), path
        # The packaged SDK is where `jester policy new` finds it.
        scaffold = run("/usr/sbin/jester", "policy", "new", "demo", "--directory", str(tmp_path / "demo"),
                       check=False)
        assert scaffold.returncode == 0 and (tmp_path / "demo" / "sdk" / "jester_policy.h").exists(), scaffold.stderr
        conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "jester").stdout
        assert "/etc/jester/jester.toml" in conffiles
        user = run("getent", "passwd", "jester").stdout.strip().split(":")
        assert user[5] == "/nonexistent" and user[6] == "/usr/sbin/nologin", user
        run("getent", "group", "jester")
        assert not os.path.exists("/nonexistent")
        for page in ["jester.8", "jesterctl.8", "jester.toml.5", "jester-http.7", "jester-pipeline.7",
                     "jester-metrics.7", "jester-admin.7", "jester-policy.7"]:
            section = page.rsplit(".", 1)[1]
            lint = run("mandoc", "-T", "lint", f"/usr/share/man/man{section}/{page}.gz", check=False)
            assert lint.returncode == 0 and not lint.stdout and not lint.stderr, (page, lint.stdout, lint.stderr)
            assert run("man", "-l", f"/usr/share/man/man{section}/{page}.gz").stdout
        # The unit, as systemd would read it, and its exposure.
        run("systemd-analyze", "verify", "/lib/systemd/system/jester.service")
        security = run("systemd-analyze", "security", "--offline=yes", "/lib/systemd/system/jester.service")
        score = float(security.stdout.strip().splitlines()[-1].split("level for jester.service:")[1].split()[0])
        print(f"systemd-analyze security: exposure {score} (aim: 2.0; jester.service says what keeps it above)")
        assert score <= 2.2
        # The control plane's unit: valid, shipped disabled, and confined to its state directory and the network.
        run("systemd-analyze", "verify", "/lib/systemd/system/jester-control-plane.service")
        security = run("systemd-analyze", "security", "--offline=yes", "/lib/systemd/system/jester-control-plane.service")
        score = float(security.stdout.strip().splitlines()[-1].split("level for jester-control-plane.service:")[1].split()[0])
        print(f"systemd-analyze security, control plane: exposure {score}")
        assert score <= 2.0
        assert not os.path.exists("/etc/systemd/system/multi-user.target.wants/jester-control-plane.service")
        assert os.path.exists("/etc/systemd/system/multi-user.target.wants/jester.service")
        assert "configuration is valid" in run("/usr/sbin/jester", "config", "validate", "/etc/jester/jester.toml").stdout

        # Start it the way jester.service does (ExecStartPre, ExecStart, RuntimeDirectory=), with systemd's parts
        # played by systemd-socket-activate (jester.socket) and a NOTIFY_SOCKET listener.
        os.makedirs("/run/jester", mode=0o755, exist_ok=True)
        listener = NotifyListener(str(tmp_path))
        log = open(tmp_path / "jester.log", "w")
        master = subprocess.Popen(
            ["systemd-socket-activate", "-l", f"{ADDRESS[0]}:{ADDRESS[1]}", "--fdname=public",
             f"--setenv=NOTIFY_SOCKET={listener.path}",  # it passes on only TERM, PATH, USER and HOME
             "/usr/sbin/jester", "--config", "/etc/jester/jester.toml"],
            stdout=log, stderr=subprocess.STDOUT)
        # systemd-socket-activate starts jester on the first connection, which then waits in the queue.
        code, body, _ = curl(f"http://{ADDRESS[0]}:{ADDRESS[1]}/")
        assert (code, body) == (200, b"Hello from Jester!\n")
        wait_for(lambda: listener.seen("READY=1"), timeout=30, what="READY=1")
        assert json.loads(run("jesterctl", "status", "--json").stdout)["pid"] == master.pid

        # A local edit to a conffile survives the upgrade; the upgrade itself (postinst: jesterctl upgrade)
        # switches the running master to the new binary under load, losing nothing.
        with open("/etc/jester/jester.toml", "a") as config:
            config.write("\n# edited by the administrator\n")
        with SteadyLoad(ADDRESS[1], expect=b"Hello from Jester!\n", keepalive_clients=1) as load:
            time.sleep(0.5)
            upgrade = run("dpkg", "-i", str(second))
            time.sleep(0.5)
        load.assert_nothing_failed()
        print(upgrade.stdout[-400:])
        assert "upgraded: generation 2" in upgrade.stdout, upgrade.stdout + upgrade.stderr
        assert run("dpkg-query", "-W", "-f=${Version}", "jester").stdout == "0.1.0+test1"
        assert "# edited by the administrator" in Path("/etc/jester/jester.toml").read_text()
        assert master.poll() is None
        assert not os.readlink(f"/proc/{master.pid}/exe").endswith("(deleted)")
        status = json.loads(run("jesterctl", "status", "--json").stdout)
        assert status["pid"] == master.pid and status["generation"] == 2
        print(f"package upgrade under load: {load.counts} requests, 0 failed")

        run("jesterctl", "stop")
        master.wait(timeout=30)
        master = None

        # Remove keeps the configuration; purge removes it. The user stays, as Debian does for system users.
        run("dpkg", "-r", "jester")
        assert not os.path.exists("/usr/sbin/jester") and os.path.exists("/etc/jester/jester.toml")
        run("dpkg", "-P", "jester")
        assert not os.path.exists("/etc/jester") and not os.path.exists("/lib/systemd/system/jester.service")
        assert "jester" not in run("dpkg-query", "-W", "-f=${Package} ${Status}\n", check=False).stdout.split()
        run("getent", "passwd", "jester")
    finally:
        if master is not None and master.poll() is None:
            master.send_signal(signal.SIGINT)
            master.wait(timeout=15)
        if listener is not None:
            listener.close()
        subprocess.run(["dpkg", "-P", "jester"], capture_output=True)
