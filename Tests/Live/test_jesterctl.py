# SPDX-License-Identifier: Apache-2.0
"""Live tests of jesterctl and what it asks of the master (issue 19, Operating): the access-log file and its
reopen for logrotate, where jesterctl finds the socket, its exit statuses, status JSON, draining a target in
every pool, stop --wait, and a drain that cuts requests."""

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import JESTERCTL, Jester, Upstream, curl, wait_for


def ctl(*args, env=None, timeout=30):
    """jesterctl without conftest's --socket, for the ways of finding the socket."""
    return subprocess.run([JESTERCTL, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def access_lines(path):
    with open(path) as log:
        text = log.read()
    assert text == "" or text.endswith("\n"), "a torn last line"
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def shared():
    """One instance for the tests that leave it serving: two workers (dropped to the unprivileged user when the
    tests run as root), an access-log file only root may open, and two pools sharing a target."""
    first, second = Upstream(), Upstream()
    directory = f"/tmp/jester-ctl-{os.getpid()}"
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o700)  # workers cannot open paths here: they only ever get the master's descriptor
    body = f"""
[log]
access_log_file = "{directory}/access.log"

[upstreams.app]
targets = ["{first.address}", "{second.address}"]

[upstreams.api]
targets = ["{first.address}"]

[[routes]]
path_prefix = "/app/"
upstream = "app"

[[routes]]
path_prefix = "/"
respond = {{ status = 200, body = "ok\\n" }}
"""
    jester = Jester(body, workers=2)
    jester.access_path = f"{directory}/access.log"
    jester.upstreams = (first, second)
    yield jester
    jester.stop()
    first.stop()
    second.stop()
    subprocess.run(["rm", "-rf", directory])


def test_access_lines_go_to_the_file_and_survive_a_reopen_under_load(shared):
    """logrotate's way: move the file, reopen; every request has exactly one line, in one file or the other."""
    if os.geteuid() == 0:
        uid = int(subprocess.run(["stat", "-c", "%u", shared.access_path], capture_output=True, text=True).stdout)
        assert uid == 0 and oct(os.stat(shared.access_path).st_mode & 0o777) == "0o640"
        assert all(open(f"/proc/{pid}/status").read().find("Uid:\t0\t") < 0 for pid in shared.worker_pids())
    sent = []
    stop = threading.Event()

    def client(number):
        count = 0
        while not stop.is_set():
            path = f"/c{number}-{count}"
            assert curl(shared.url + path)[0] == 200
            sent.append(path)
            count += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    rotated = shared.access_path + ".1"
    os.rename(shared.access_path, rotated)
    result = shared.ctl("reopen-logs")
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    assert result.returncode == 0, result.stderr
    assert "access log reopened by 2 workers" in result.stdout
    # Lines reach the file from the workers' writer threads: wait until every request is there.
    wait_for(lambda: len(access_lines(shared.access_path)) + len(access_lines(rotated)) >= len(sent),
             what="every access line written")
    old, new = access_lines(rotated), access_lines(shared.access_path)
    assert old and new, "lines on both sides of the reopen"
    targets = [line["target"] for line in old + new if line["target"].startswith("/c")]
    assert sorted(targets) == sorted(sent)  # none lost, none twice
    assert '"type":"access"' not in shared.logs()  # nothing on standard output


def test_sigusr1_reopens_the_access_log_too(shared):
    rotated = shared.access_path + ".2"
    os.rename(shared.access_path, rotated)
    shared.process.send_signal(signal.SIGUSR1)
    wait_for(lambda: os.path.exists(shared.access_path), what="the file opened afresh")
    wait_for(lambda: curl(shared.url + "/after-usr1")[0] == 200 and any(
        line["target"] == "/after-usr1" for line in access_lines(shared.access_path)), what="a line in the new file")


def test_status_json_is_snake_case_with_listeners(shared):
    status = shared.status()
    assert "config_hash" in status and "started_at" in status and "configHash" not in status
    assert all("rss_bytes" in worker for worker in status["workers"])
    assert status["listeners"] == [
        {"name": "main", "address": f"127.0.0.1:{shared.port}", "protocol": "http", "tls": False}]
    text = shared.ctl("status", check=True).stdout
    assert "LISTENER" in text and f"127.0.0.1:{shared.port}" in text


def test_config_option_environment_and_version(shared):
    by_config = ctl("status", "--json", "-c", str(shared.config_path))
    assert by_config.returncode == 0, by_config.stderr
    assert json.loads(by_config.stdout)["pid"] == shared.process.pid
    by_environment = ctl("status", env={"JESTER_CONTROL_SOCKET": shared.socket})
    assert by_environment.returncode == 0
    empty = ctl("status", env={"JESTER_CONTROL_SOCKET": ""})
    assert empty.returncode == 64 and "JESTER_CONTROL_SOCKET is set but empty" in empty.stderr
    both = ctl("status", "-c", str(shared.config_path), "--socket", shared.socket)
    assert both.returncode == 64 and "not both" in both.stderr
    unreadable = ctl("status", "-c", "/nonexistent/jester.toml")
    assert unreadable.returncode == 64 and "/nonexistent/jester.toml" in unreadable.stderr
    version = ctl("--version")
    assert version.returncode == 0 and version.stdout.strip() == "0.1.0"


def test_config_option_follows_includes_and_variables(shared, tmp_path):
    """-c reads [server] control_socket where the master would: an included file, with ${VAR} resolved."""
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-server.toml").write_text(
        '[server]\ncontrol_socket = "${CTL_DIR}/' + os.path.basename(shared.socket) + '"\n')
    (tmp_path / "main.toml").write_text('include = ["conf.d/*.toml"]\n[[listeners]]\nname = "x"\n')
    found = ctl("status", "--json", "-c", str(tmp_path / "main.toml"),
                env={"CTL_DIR": os.path.dirname(shared.socket)})
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["pid"] == shared.process.pid
    unset = ctl("status", "-c", str(tmp_path / "main.toml"))
    assert unset.returncode == 64 and "environment variable 'CTL_DIR' is not set" in unset.stderr
    assert "10-server.toml:2" in unset.stderr


def test_help_and_completion_scripts():
    """--help for the program and each command (exit 0), and completion scripts that the shells accept and
    that complete commands and options (the Debian package installs them)."""
    root = ctl("--help")
    assert root.returncode == 0 and "SUBCOMMANDS:" in root.stdout and "reopen-logs" in root.stdout
    purge = ctl("help", "cache", "purge")
    assert purge.returncode == 0 and "--prefix <prefix>" in purge.stdout
    assert ctl("tap", "--help").stdout == ctl("help", "tap").stdout
    script = ctl("--generate-completion-script", "bash")
    assert script.returncode == 0
    path = f"/tmp/jesterctl-completion-{os.getpid()}.bash"
    with open(path, "w") as out:
        out.write(script.stdout)
    try:
        def complete(*words):
            line = " ".join(["jesterctl", *words])
            program = (f'source {path}; COMP_WORDS=({line}); COMP_CWORD={len(words)}; _jesterctl; '
                       'echo "${COMPREPLY[@]}"')
            result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=10)
            assert result.returncode == 0, result.stderr
            return result.stdout.split()

        assert complete("ca") == ["cache"]
        assert complete("cache", "p") == ["purge"]
        assert complete("cache", "purge", "--pr") == ["--prefix"]
        assert complete("stop", "--f") == ["--fast"]
        assert complete("upstream", "di") == ["disable"]
        assert complete("status", "--socket", "/nonexistent-dir/x") == []
    finally:
        os.unlink(path)
    # zsh and fish come from Packaging/setup.sh --test. zsh: the syntax; fish: the completions themselves.
    zsh = ctl("--generate-completion-script", "zsh")
    check = subprocess.run(["zsh", "-n"], input=zsh.stdout, capture_output=True, text=True)
    assert zsh.returncode == 0 and check.returncode == 0, check.stderr
    fish = ctl("--generate-completion-script", "fish")
    assert fish.returncode == 0

    fish_path = f"/tmp/jesterctl-completion-{os.getpid()}.fish"
    with open(fish_path, "w") as out:
        out.write(fish.stdout)

    def fish_complete(line):
        result = subprocess.run(["fish", "-c", f"source {fish_path}; complete -C '{line}'"],
                                capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, result.stderr
        return [entry.split("\t")[0] for entry in result.stdout.splitlines()]

    try:
        assert fish_complete("jesterctl ca") == ["cache"]
        assert fish_complete("jesterctl cache ") == ["purge", "status"]
        assert fish_complete("jesterctl cache purge --pr") == ["--prefix"]
        stop = fish_complete("jesterctl stop --")
        assert "--fast" in stop and "--prefix" not in stop
    finally:
        os.unlink(fish_path)
    unknown = ctl("--generate-completion-script", "tcsh")
    assert unknown.returncode == 64


def test_jesterctl_links_neither_foundation_nor_argument_parser():
    """Issue 17's footprint aim (under 10 MB): jesterctl links JesterControl alone. Foundation (Essentials or
    full) or swift-argument-parser coming back, through a dependency or an import, names itself in the binary:
    as a needed library in a dynamic build, in type metadata in a static one."""
    with open(JESTERCTL, "rb") as binary:
        contents = binary.read()
    for name in (b"libFoundation", b"FoundationEssentials", b"ArgumentParser", b"TOMLKit", b"JesterConfig"):
        assert name not in contents, name


def test_exit_statuses(shared):
    unknown_pool = shared.ctl("upstream", "drain", "nope", "127.0.0.1:1")
    assert unknown_pool.returncode == 3 and "no upstream 'nope'" in unknown_pool.stderr
    unknown_target = shared.ctl("upstream", "drain", "app", "127.0.0.1:1")
    assert unknown_target.returncode == 3 and "has no target" in unknown_target.stderr
    nowhere = shared.ctl("upstream", "drain", "127.0.0.1:1")
    assert nowhere.returncode == 3 and "no upstream has a target" in nowhere.stderr
    bad_action = shared.ctl("upstream", "pause", "app", "127.0.0.1:1")
    assert bad_action.returncode == 64
    assert shared.ctl("no-such-command").returncode == 64
    unreachable = ctl("status", "--socket", "/tmp/no-such-jester.sock")
    assert unreachable.returncode == 2 and "no Jester master is listening" in unreachable.stderr


def test_cache_commands_say_when_no_route_caches(shared):
    """`jesterctl cache`: a master without a cache answers every cache request with a clear refusal (exit 3);
    a purge needs exactly one of KEY and --prefix (64, before anything is sent)."""
    for args in (["cache", "status"], ["cache", "status", "--json"], ["cache", "purge", "https://example.com/a"],
                 ["cache", "purge", "--prefix", "https://example.com/"]):
        result = shared.ctl(*args)
        assert result.returncode == 3, (args, result.returncode, result.stderr)
        assert "the HTTP cache is not enabled" in result.stderr and result.stdout == ""
    for args in (["cache", "purge"], ["cache", "purge", "https://example.com/a", "--prefix", "https://example.com/"],
                 ["cache", "purge", "--prefix", ""], ["cache"], ["cache", "sweep"]):
        result = shared.ctl(*args)
        assert result.returncode == 64, (args, result.returncode, result.stderr)


def test_a_target_drains_in_every_pool_that_has_it(shared):
    first = shared.upstreams[0].address

    def admin():
        rows = json.loads(shared.ctl("upstreams", "--json", check=True).stdout)
        return {(row["state"]["upstream"], row["state"]["target"]): row["state"]["admin"] for row in rows}

    result = shared.ctl("upstream", "drain", first, check=True)
    assert "api, app" in result.stdout
    states = admin()
    assert states[("app", first)] == "drain" and states[("api", first)] == "drain"
    assert states[("app", shared.upstreams[1].address)] == "enabled"
    shared.ctl("upstream", "enable", first, check=True)
    assert set(admin().values()) == {"enabled"}
    # One pool only, as before.
    shared.ctl("upstream", "drain", "api", first, check=True)
    assert admin()[("api", first)] == "drain" and admin()[("app", first)] == "enabled"
    shared.ctl("upstream", "enable", "api", first, check=True)


def test_a_failed_reload_shows_in_status(shared):
    good = shared.config_path.read_text()
    shared.config_path.write_text(good + "\n[[routes]]\npath_prefix = 7\n")
    try:
        assert shared.ctl("reload").returncode == 1
    finally:
        shared.config_path.write_text(good)
    failed = shared.status()["last_failed_reload"]
    assert failed["kind"] == "reload" and time.time() - 60 < failed["at"] <= time.time() + 1
    assert any("path_prefix" in error for error in failed["errors"])
    assert "failed   last reload" in shared.ctl("status", check=True).stdout


def test_a_changed_access_log_path_takes_effect_on_reload(make_jester, tmp_path):
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    body = """
[log]
access_log_file = "PATH"

[[routes]]
path_prefix = "/"
respond = { status = 200, body = "ok\\n" }
"""
    jester = make_jester(body.replace("PATH", str(first)))
    assert curl(jester.url + "/one")[0] == 200
    jester.write_config(body.replace("PATH", str(second)))
    jester.ctl("reload", "--wait", check=True)
    assert curl(jester.url + "/two")[0] == 200
    wait_for(lambda: [line["target"] for line in access_lines(second)] == ["/two"], what="the new file used")
    assert [line["target"] for line in access_lines(first)] == ["/one"]
    # A path the master cannot open fails the reload and names the path; the running generation keeps its file.
    jester.write_config(body.replace("PATH", "/nonexistent/dir/access.log"))
    failed = jester.ctl("reload")
    assert failed.returncode == 1 and "/nonexistent/dir/access.log" in failed.stderr
    assert curl(jester.url + "/three")[0] == 200
    wait_for(lambda: "/three" in [line["target"] for line in access_lines(second)], what="still the second file")


def test_reopen_without_an_access_log_file_says_so(make_jester):
    jester = make_jester('[[routes]]\npath_prefix = "/"\nrespond = { status = 200, body = "ok\\n" }\n')
    result = jester.ctl("reopen-logs", check=True)
    assert "no access_log_file is configured" in result.stdout


def test_drain_that_cuts_requests_says_how_many_and_fails(make_jester, upstream):
    jester = make_jester(f"""
[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
path_prefix = "/"
upstream = "app"
""")
    slow = threading.Thread(target=lambda: curl(jester.url + "/slow?delay=8", timeout=10))
    slow.start()
    time.sleep(0.5)
    result = jester.ctl("drain", "--timeout", "1", timeout=30)
    slow.join()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 request in flight cut" in result.stderr and "all workers drained" not in result.stdout
    jester.process.wait(timeout=10)


def test_drain_that_finishes_everything_exits_zero(make_jester):
    jester = make_jester('[[routes]]\npath_prefix = "/"\nrespond = { status = 200, body = "ok\\n" }\n')
    result = jester.ctl("drain", "--timeout", "3", timeout=30)
    assert result.returncode == 0 and "all workers drained; master stopped" in result.stdout


def test_stop_wait_returns_once_the_master_exited(make_jester):
    jester = make_jester('[[routes]]\npath_prefix = "/"\nrespond = { status = 200, body = "ok\\n" }\n')
    result = jester.ctl("stop", "--wait", timeout=30)
    assert result.returncode == 0, result.stderr
    assert "stopping gracefully" in result.stdout and "master stopped" in result.stdout
    # It has exited (or is in its last instant: the socket closes as the process ends).
    assert jester.process.wait(timeout=2) == 0


def test_respawned_workers_and_an_upgraded_master_keep_writing_to_the_file(make_jester, tmp_path):
    """The descriptor reaches every worker however it starts: a respawn after a crash, and the new binary's
    generation after a binary upgrade (whose master opens the file itself); a reopen after the upgrade reaches
    every worker of the new binary."""
    import shutil
    from conftest import JESTER
    binary = tmp_path / "jester"
    shutil.copy2(JESTER, binary)
    path = tmp_path / "access.log"
    jester = make_jester(f"""
[log]
access_log_file = "{path}"

[[routes]]
path_prefix = "/"
respond = {{ status = 200, body = "ok\\n" }}
""", workers=2, binary=str(binary))

    def logged(target):
        assert curl(jester.url + target)[0] == 200
        wait_for(lambda: target in [line["target"] for line in access_lines(path)], what=f"{target} logged")

    victim = jester.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in jester.worker_pids() and jester.all_ready(), what="the worker respawned")
    for number in range(6):  # over both workers, the respawned one included
        logged(f"/respawned-{number}")
    staging = binary.with_name("jester.dpkg-new")
    shutil.copy2(JESTER, staging)
    os.replace(staging, binary)
    jester.ctl("upgrade", "--wait", check=True, timeout=120)
    for number in range(6):
        logged(f"/upgraded-{number}")
    os.rename(path, str(path) + ".1")
    reopened = jester.ctl("reopen-logs")
    assert reopened.returncode == 0 and "by 2 workers" in reopened.stdout, reopened.stdout + reopened.stderr
    logged("/after-reopen")
    assert "/after-reopen" not in [line["target"] for line in access_lines(str(path) + ".1")]
