# SPDX-License-Identifier: Apache-2.0
"""The web dashboard (jester-admin(7)) in a real browser: headless Chromium, driven by selenium
(dashboard_browser.py), loads it from a real jester with two upstream targets, takes a token, sees counts, rates
and percentiles move under load and the requests appear in the recent-access table, and drains and enables a
target with its buttons (a read token may watch but not act). Without a browser: the page's security fields,
the refusal of cross-site actions, and the reload-history and recent-access endpoints it reads.

Set JESTER_DASHBOARD_SCREENSHOT=FILE to keep a PNG of the page under load (Docs/dashboard.png is one)."""

import http.client
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import HERE, Jester, Upstream, free_port, wait_for

WRITE = "write-token-dashboard-0123456789"
READ = "read-token-dashboard-0123456789"
# Packaging/setup.sh --test installs selenium in a venv of its own and Debian's chromium and chromium-driver.
BROWSER_VENV = Path(os.environ.get("JESTER_BROWSER_VENV", "/var/tmp/jester-browser-venv"))
CHROMIUM = os.environ.get("JESTER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("JESTER_CHROMEDRIVER", "/usr/bin/chromedriver")
MISSING = [what for what, path in (("chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER),
                                   ("selenium's venv", BROWSER_VENV / "bin" / "python3")) if not Path(path).exists()]


def api(port, method, path, token=WRITE, headers=None):
    """(status, headers with lowercase names, body bytes) on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    fields = dict(headers or {})
    if token:
        fields["Authorization"] = f"Bearer {token}"
    connection.request(method, path, headers=fields)
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, raw


def api_json(port, method, path, token=WRITE, headers=None):
    status, _, raw = api(port, method, path, token, headers)
    return status, json.loads(raw)


def admin_state(port, pool, target):
    _, listing = api_json(port, "GET", "/api/v1/upstreams", token=READ)
    return {(p["name"], t["address"]): t["admin"] for p in listing["pools"] for t in p["targets"]}[(pool, target)]


@pytest.fixture(scope="module")
def upstreams():
    servers = [Upstream(), Upstream()]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def jester(upstreams, tmp_path_factory):
    tokens = tmp_path_factory.mktemp("dashboard") / "admin-tokens"
    tokens.write_text(f"write {WRITE}\nread {READ}\n")
    os.chmod(tokens, 0o600)
    port = free_port()
    a, b = upstreams
    instance = Jester(f"""
[admin]
address = "127.0.0.1:{port}"
tokens_file = "{tokens}"

[upstreams.app]
targets = ["{a.address}", "{b.address}"]

[[routes]]
name = "app"
path_prefix = "/"
upstream = "app"
""")
    instance.admin_port = port
    yield instance
    instance.stop()


class Browser:
    """The driver process: one JSON command in, one JSON answer out."""

    def __init__(self):
        self.process = subprocess.Popen(
            [str(BROWSER_VENV / "bin" / "python3"), str(HERE / "dashboard_browser.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready", "the browser did not start"

    def __call__(self, op, **arguments):
        self.process.stdin.write(json.dumps(dict(op=op, **arguments)) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        assert answer["ok"], answer["error"]
        return answer["value"]

    def wait(self, predicate, what, timeout=10):
        """The first snapshot `predicate` accepts."""
        found = []

        def check():
            snapshot = self("snapshot")
            if predicate(snapshot):
                found.append(snapshot)
                return True
            return False
        wait_for(check, timeout=timeout, interval=0.2, what=what)
        return found[0]

    def close(self):
        try:
            self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.process.stdin.close()
            self.process.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()


@pytest.fixture(scope="module")
def browser(jester):
    if MISSING:
        message = f"{', '.join(MISSING)} not installed (Packaging/setup.sh --test installs them)"
        # Tests/run.sh has just run the installer: there, a missing browser is a failure, not a skip.
        if os.environ.get("JESTER_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    instance = Browser()
    instance("open", url=f"http://127.0.0.1:{jester.admin_port}/")
    yield instance
    instance.close()


def row(rows, **data):
    matches = [r for r in rows if all(r["data"].get(k) == v for k, v in data.items())]
    return matches[0] if matches else None


def number(text):
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return None


# MARK: Without a browser


def test_the_files_load_without_a_token_with_the_security_fields(jester):
    for path, content_type in (("/", "text/html"), ("/dashboard/", "text/html"),
                               ("/dashboard/dashboard.js", "text/javascript"),
                               ("/dashboard/dashboard.css", "text/css")):
        status, headers, body = api(jester.admin_port, "GET", path, token=None)
        assert status == 200 and headers["content-type"].startswith(content_type), path
        assert headers["content-security-policy"].startswith("default-src 'self'")
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer" and headers["x-frame-options"] == "DENY"
        assert body
    assert api(jester.admin_port, "GET", "/dashboard/nothing.js", token=None)[0] == 404
    # The data the page shows needs a token.
    for path in ("/api/v1/reloads", "/api/v1/access/recent", "/metrics"):
        assert api(jester.admin_port, "GET", path, token=None)[0] == 401, path


def test_a_cross_site_action_is_refused_even_with_a_write_token(jester, upstreams):
    target = upstreams[1].address
    path = f"/api/v1/upstreams/app/targets/{target}/drain"
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"}, {"Origin": "null"}):
        status, error = api_json(jester.admin_port, "POST", path, headers=headers)
        assert status == 403 and "may not act" in error["message"], headers
        assert admin_state(jester.admin_port, "app", target) == "enabled"
    # Reading is not refused: a cross-site read gets nothing a browser would hand the other site (no CORS).
    assert api(jester.admin_port, "GET", "/api/v1/status", token=READ, headers={"Sec-Fetch-Site": "cross-site"}
               )[0] == 200
    # The dashboard's own requests: same origin.
    same = {"Origin": f"http://127.0.0.1:{jester.admin_port}", "Sec-Fetch-Site": "same-origin"}
    assert api(jester.admin_port, "POST", path, headers=same)[0] == 200
    assert admin_state(jester.admin_port, "app", target) == "drain"
    assert api(jester.admin_port, "POST", path.replace("/drain", "/enable"), headers=same)[0] == 200


def test_recent_access_records_come_through_the_tap_while_polled(jester):
    status, first = api_json(jester.admin_port, "GET", "/api/v1/access/recent", token=READ)
    assert status == 200 and isinstance(first["records"], list) and first["dropped"] >= 0

    def tapped():
        # The first poll opens the tap; requests after it are recorded.
        connection = http.client.HTTPConnection("127.0.0.1", jester.port, timeout=10)
        connection.request("GET", "/recent-access-probe")
        connection.getresponse().read()
        connection.close()
        _, recent = api_json(jester.admin_port, "GET", "/api/v1/access/recent", token=READ)
        return recent["tapping"] and any(r["target"] == "/recent-access-probe" for r in recent["records"])
    wait_for(tapped, timeout=10, interval=0.2, what="a tapped access record")
    _, recent = api_json(jester.admin_port, "GET", "/api/v1/access/recent", token=READ)
    record = next(r for r in recent["records"] if r["target"] == "/recent-access-probe")
    assert record["status"] == 200 and record["route"] == "app" and record["method"] == "GET"


def test_reloads_are_kept_newest_first_with_their_outcome(jester):
    assert api_json(jester.admin_port, "POST", "/api/v1/reload")[0] == 200
    good = jester.config_path.read_text()
    jester.config_path.write_text(good + "\nlisteners = 3\n")
    try:
        assert api_json(jester.admin_port, "POST", "/api/v1/reload")[0] == 422
    finally:
        jester.config_path.write_text(good)
    status, history = api_json(jester.admin_port, "GET", "/api/v1/reloads", token=READ)
    assert status == 200
    failed, succeeded = history["reloads"][:2]
    assert not failed["success"] and any("jester.toml" in e for e in failed["errors"])
    assert succeeded["success"] and succeeded["errors"] == [] and failed["generation"] == succeeded["generation"]
    assert failed["at"] >= succeeded["at"] and failed["kind"] == "reload"


# MARK: In the browser


def send_load(port, count, pause):
    """`count` requests on one keep-alive connection, `pause` seconds apart."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for n in range(count):
        connection.request("GET", f"/dashboard-load/{n}")
        assert connection.getresponse().read()
        time.sleep(pause)
    connection.close()


def test_without_a_token_the_page_asks_for_one(browser):
    snapshot = browser.wait(lambda s: s["message"], "the token prompt")
    assert "token" in snapshot["message"].lower()
    assert snapshot["pid"] == "–"


def test_the_dashboard_shows_the_instance_and_moves_under_load(browser, jester, upstreams):
    browser("token", value=WRITE)
    status = json.loads(api(jester.admin_port, "GET", "/api/v1/status", token=READ)[2])
    snapshot = browser.wait(lambda s: s["pid"] == str(status["pid"]), "the instance shown")
    assert snapshot["version"] == status["version"] and not snapshot["message"]
    assert [w["cells"][0] for w in snapshot["workers"]] == [str(w["pid"]) for w in status["workers"]]
    assert snapshot["reloads"] and snapshot["reloads"][0]["cells"][2] in ("ok", "failed")
    before = number(row(snapshot["routes"], route="app")["fields"]["requests"])

    load = threading.Thread(target=send_load, args=(jester.port, 300, 0.012))
    load.start()
    try:
        # While the load runs: a rate above zero and percentiles estimated from the buckets' increase.
        moving = browser.wait(lambda s: (number(row(s["routes"], route="app")["fields"]["rate"]) or 0) > 5,
                              "the route's rate to move", timeout=15)
        route = row(moving["routes"], route="app")["fields"]
        assert number(route["p50"]) is not None and number(route["p99"]) >= number(route["p50"])
        rates = [number(row(moving["targets"], pool="app", target=u.address)["fields"]["rate"]) or 0
                 for u in upstreams]
        assert sum(rates) > 5, rates
        if os.environ.get("JESTER_DASHBOARD_SCREENSHOT"):
            browser("screenshot", path=os.environ["JESTER_DASHBOARD_SCREENSHOT"])
    finally:
        load.join(timeout=30)
    after = browser.wait(
        lambda s: number(row(s["routes"], route="app")["fields"]["requests"]) >= before + 300,
        "every request counted")
    assert any(cell.startswith("/dashboard-load/") for r in after["access"] for cell in r["cells"])
    # The page kept to its policy: no script error, no refused inline code. (The 401s are the prompt's, before
    # the token; the dashboard has no icon, so the browser's own favicon.ico request is a 404.)
    errors = [e for e in browser("console") if "401" not in e and "/favicon.ico " not in e]
    assert not errors, errors


def test_the_percentile_estimate_is_prometheus_histogram_quantile(browser):
    quantile = "window.jesterDashboard.quantile"
    # 10 observations in (0.005, 0.01]: linear within the bucket.
    assert browser("script", code=f"{quantile}(0.5, [[0.005, 0], [0.01, 10], [Infinity, 10]])") == \
        pytest.approx(0.0075)
    # The rank in +Inf: the highest finite bound; in the first bucket: from zero.
    assert browser("script", code=f"{quantile}(0.99, [[0.1, 1], [1, 50], [Infinity, 100]])") == 1
    assert browser("script", code=f"{quantile}(0.5, [[0.1, 4], [Infinity, 4]])") == pytest.approx(0.05)
    assert browser("script", code=f"{quantile}(0.5, [[0.1, 0], [Infinity, 0]])") is None
    samples = browser("script", code='window.jesterDashboard.parseExposition('
                                     '"# HELP x\\nx_total{a=\\"q\\\\\\"}\\",b=\\"\\"} 3\\ny 1.5\\n")')
    assert samples == [{"name": "x_total", "labels": {"a": 'q"}', "b": ""}, "value": 3},
                       {"name": "y", "labels": {}, "value": 1.5}]


def test_drain_and_enable_with_the_buttons(browser, jester, upstreams):
    target = upstreams[0].address
    browser("token", value=WRITE)
    browser.wait(lambda s: row(s["targets"], pool="app", target=target), "the target row")
    browser("click", pool="app", target=target, action="drain")
    wait_for(lambda: admin_state(jester.admin_port, "app", target) == "drain", what="the target draining")
    snapshot = browser.wait(lambda s: row(s["targets"], pool="app", target=target)["fields"]["admin"] == "drain",
                            "the page showing the drain")
    assert "drain" in snapshot["message"]
    # New requests go to the other target only.
    drained, other = len(upstreams[0].requests()), len(upstreams[1].requests())
    send_load(jester.port, 10, 0)
    assert len(upstreams[0].requests()) == drained and len(upstreams[1].requests()) == other + 10
    browser("click", pool="app", target=target, action="enable")
    wait_for(lambda: admin_state(jester.admin_port, "app", target) == "enabled", what="the target enabled")


def test_a_read_token_watches_but_cannot_act(browser, jester, upstreams):
    target = upstreams[1].address
    browser("token", value=READ)
    browser.wait(lambda s: row(s["targets"], pool="app", target=target) and not s["message"], "the page with a "
                 "read token")
    browser("click", pool="app", target=target, action="drain")
    snapshot = browser.wait(lambda s: "write" in s["message"], "the refusal shown")
    assert "drain" in snapshot["message"]
    assert admin_state(jester.admin_port, "app", target) == "enabled"
