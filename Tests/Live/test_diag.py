# SPDX-License-Identifier: Apache-2.0
"""jester diag through the binary: each format on every shipped configuration (the text tree, the documented JSON
shape, DOT that Graphviz renders), secrets redacted, and a bad file refused with validate's errors."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import JESTER, ROOT

CONFIG = ROOT / "Config"
FILES = sorted(CONFIG.glob("*.toml")) + sorted((CONFIG / "examples").glob("*.toml"))
IDS = [str(path.relative_to(CONFIG)) for path in FILES]


def jester(*args):
    return subprocess.run([JESTER, *args], capture_output=True, text=True, timeout=30)


def diag(path, fmt):
    result = jester("diag", "-c", str(path), "--format", fmt)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_text_is_the_dump_then_the_tree(path):
    text = diag(path, "text")
    dump = jester("config", "dump", "-c", str(path)).stdout
    assert dump in text  # no secret in the shipped files: the dump as config dump prints it
    graph = text.split("# Graph of ")[1]
    document = json.loads(diag(path, "json"))
    for listener in document["listeners"]:
        assert f"listener {listener['name']} {listener['address']} (" in graph
        for number, route in enumerate(listener["routes"], start=1):
            assert f"  {number}. route '{route['name']}' " in graph


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_json_has_the_documented_shape(path):
    document = json.loads(diag(path, "json"))
    assert set(document) == {"format_version", "files", "hash", "config", "warnings", "listeners", "filters",
                             "upstreams"}
    assert document["format_version"] == 1 and document["files"][0] == str(path)
    valid = jester("config", "validate", "-c", str(path)).stdout
    assert f"(hash {document['hash']})" in valid
    pools = {pool["name"] for pool in document["upstreams"]}
    filters = {item["name"] for item in document["filters"]}
    for listener in document["listeners"]:
        assert listener["protocol"] in ("http", "tcp")
        if listener["protocol"] == "tcp":
            assert listener["upstream"] in pools and listener["routes"] == []
        for route in listener["routes"]:
            assert {step["name"] for step in route["filters"]} <= filters
            action = route["action"]
            assert action["type"] in ("proxy", "split", "respond", "redirect")
            if action["type"] == "proxy":
                assert action["upstream"] in pools
            if action["type"] == "split":
                assert {share["upstream"] for share in action["shares"]} <= pools
                assert abs(sum(share["percent"] for share in action["shares"]) - 100) < 0.2


def test_gateway_example_in_match_order():
    document = json.loads(diag(CONFIG / "examples" / "gateway.toml", "json"))
    web = document["listeners"][0]
    order = [(route["name"], route["path"]) for route in web["routes"]]
    # The maintenance switch (priority 10) first; then longest prefixes; "/" last.
    assert order[0] == ("route-5", "/")
    assert order[-1] == ("route-4", "/")
    assert order.index(("gold-orders", "/shop/orders")) < order.index(("shop", "/shop"))
    api = next(route for route in web["routes"] if route["path"] == "/api/")
    assert [(step["name"], step["from"]) for step in api["filters"]] == [
        ("per_client", "listener"), ("api_token", "route"), ("per_user", "route"), ("api_total", "route")]
    assert api["action"] == {"type": "split", "key": "header:X-User", "shares": [
        {"upstream": "api", "weight": 95, "percent": 95}, {"upstream": "api-canary", "weight": 5, "percent": 5}]}
    redis = document["listeners"][1]
    assert redis["protocol"] == "tcp" and redis["upstream"] == "redis"
    api_pool = next(pool for pool in document["upstreams"] if pool["name"] == "api")
    assert api_pool["targets"][1] == {"address": "127.0.0.1:9302", "weight": 2, "backup": False,
                                      "max_requests": None}
    assert api_pool["targets"][2]["backup"] is True and api_pool["health_check"] == "http /healthz"


@pytest.mark.skipif(not shutil.which("dot"), reason="graphviz is not installed (Packaging/setup.sh --test installs it)")
@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_dot_renders_with_graphviz(path):
    source = diag(path, "dot")
    assert source.startswith("digraph jester {")
    rendered = subprocess.run(["dot", "-Tsvg"], input=source, capture_output=True, text=True, timeout=30)
    assert rendered.returncode == 0 and not rendered.stderr, rendered.stderr
    assert "<svg" in rendered.stdout
    document = json.loads(diag(path, "json"))
    for listener in document["listeners"]:
        assert f"listener {listener['name']}" in rendered.stdout


@pytest.fixture(scope="module")
def secret_config(tmp_path_factory):
    directory = tmp_path_factory.mktemp("diag")
    (directory / "hs.key").write_text("live-diag-hmac-secret-" + "x" * 40 + "\n")
    (directory / "users.htpasswd").write_text("alice:$2y$10$ru3z/x8UUm8gJ.ObWxDef.GMj2U95sLMlwBBh/xZKxbgUUaVPCbLS\n")
    path = directory / "jester.toml"
    path.write_text("""
[[listeners]]
name = "web"
address = "127.0.0.1:19711"

[upstreams.app]
targets = ["127.0.0.1:19712"]

[filters.token]
kind = "jwt"
algorithms = ["HS256"]
secret_file = "hs.key"

[filters.staff]
kind = "basic_auth"
realm = "staff"
htpasswd = "users.htpasswd"

[[routes]]
name = "api"
filters = ["token", "staff"]
request_headers = { set = { "Authorization" = "Bearer live-inline-token" } }
upstream = "app"

[[routes]]
name = "copy"
upstream = "app"
""")
    return path


@pytest.mark.parametrize("fmt", ["text", "json", "dot"])
def test_secrets_never_appear(secret_config, fmt):
    output = diag(secret_config, fmt)
    for secret in ["live-diag-hmac-secret", "ru3z/x8UUm8gJ", "live-inline-token"]:
        assert secret not in output
    if fmt != "dot":
        assert "(redacted)" in output
        assert str(secret_config.parent / "hs.key") in output  # the path is no secret


def test_a_route_that_never_matches_is_flagged_with_validates_warning(secret_config):
    warning = jester("config", "validate", "-c", str(secret_config)).stderr.strip()
    assert "route 'copy' can never match" in warning
    text = diag(secret_config, "text")
    assert "!! never matches: route 'api' takes every request it could" in text
    assert warning in text.split("# Warnings\n")[1]
    document = json.loads(diag(secret_config, "json"))
    assert document["warnings"] == [warning]
    assert [route["shadowed_by"] for route in document["listeners"][0]["routes"]] == [None, "api"]
    assert 'color=red' in diag(secret_config, "dot")


def test_a_bad_file_gets_validates_errors_and_exit_1(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[listeners]]\nname = "web"\naddress = "localhost:19713"\n\n[[routes]]\nupstream = "nowhere"\n')
    expected = jester("config", "validate", "-c", str(path))
    assert expected.returncode == 1
    for fmt in ["text", "json", "dot"]:
        result = jester("diag", "-c", str(path), "--format", fmt)
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr == expected.stderr and f"{path}:3:1: error:" in result.stderr
    missing = jester("diag", "-c", str(tmp_path / "absent.toml"))
    assert missing.returncode == 1 and str(tmp_path / "absent.toml") in missing.stderr
    wrong = jester("diag", "-c", str(path), "--format", "yaml")
    assert wrong.returncode != 0 and "yaml" in wrong.stderr
