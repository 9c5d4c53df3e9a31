# SPDX-License-Identifier: Apache-2.0
"""The manual pages: lint-clean for mandoc and renderable by man (what the Debian package ships); the Grafana
dashboard held to the metrics they document."""

import json
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

PAGES = sorted((ROOT / "Man").glob("*.[0-9]"))


@pytest.mark.skipif(not shutil.which("mandoc"), reason="mandoc is not installed (Packaging/setup.sh --test installs it)")
@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_manual_page_is_lint_clean_and_renders(page):
    lint = subprocess.run(["mandoc", "-T", "lint", str(page)], capture_output=True, text=True)
    assert lint.returncode == 0 and not lint.stdout and not lint.stderr, lint.stdout + lint.stderr
    rendered = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True,
                              env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"})
    assert rendered.returncode == 0 and "NAME" in rendered.stdout, rendered.stderr


def test_every_source_file_names_its_licence():
    """Apache-2.0 (LICENSE): each source file says so in an SPDX line near its top, and the package's
    copyright file agrees."""
    tracked = subprocess.run(["git", "ls-files", "Sources", "Tests", "Packaging", "bench", ".ci"], cwd=ROOT,
                             capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    sources = [ROOT / name for name in tracked.stdout.split()
               if name.endswith((".swift", ".c", ".h", ".py", ".sh")) and not name.startswith("Tests/Fixtures")]
    missing = [str(path.relative_to(ROOT)) for path in sources
               if "SPDX-License-Identifier: Apache-2.0" not in path.read_text(errors="replace")[:400]]
    assert not missing, missing
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert "License: Apache-2.0" in (ROOT / "Packaging/debian/copyright").read_text()


# MARK: The Grafana dashboard (Packaging/grafana/jester-dashboard.json) against the metrics catalog

GRAFANA = ROOT / "Packaging" / "grafana" / "jester-dashboard.json"


def exposed_series_names():
    """Every sample name Jester exposes, from jester-metrics(7) (which a unit test holds to MetricCatalog): a
    counter as documented (with _total), a gauge as is, a histogram as its _bucket, _sum and _count."""
    lines = (ROOT / "Man" / "jester-metrics.7").read_text().splitlines()
    names = set()
    for name_line, type_line in zip(lines, lines[1:]):
        name = re.fullmatch(r"\.B (jester_[a-z0-9_]+)", name_line)
        kind = re.match(r"(counter|gauge|histogram)\b", type_line)
        if name and kind:
            suffixes = ("_bucket", "_sum", "_count") if kind.group(1) == "histogram" else ("",)
            names |= {name.group(1) + suffix for suffix in suffixes}
    return names


def grafana_expressions():
    dashboard = json.loads(GRAFANA.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    expressions += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    expressions += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return expressions


def test_the_grafana_dashboard_uses_only_series_jester_exposes():
    exposed = exposed_series_names()
    # The parse found the catalog, and tells a family from its samples (a counter without _total is no series).
    assert {"jester_http_requests_total", "jester_http_request_duration_seconds_bucket",
            "jester_master_generation"} <= exposed and "jester_http_requests" not in exposed
    used = {name for expression in grafana_expressions() for name in re.findall(r"\bjester_[a-z0-9_]+", expression)}
    assert used - exposed == set(), "not in jester-metrics(7): " + ", ".join(sorted(used - exposed))
    # What an operator looks for first is on it.
    assert {"jester_http_requests_total", "jester_http_request_duration_seconds_bucket",
            "jester_upstream_target_healthy", "jester_master_reloads_total", "jester_master_worker_restarts_total",
            "jester_downstream_connections_active"} <= used


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed (Packaging/setup.sh --test)")
def test_the_grafana_dashboards_queries_are_promql(tmp_path):
    """Each query parses: promtool checks them as recording rules, Grafana's variables replaced by values."""
    values = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$instance": ".*", "$route": ".*"}
    rules = []
    for n, expression in enumerate(grafana_expressions()):
        if expression.startswith("label_values("):
            continue  # Grafana's own function, not PromQL
        for variable, value in values.items():
            expression = expression.replace(variable, value)
        assert "$" not in expression, expression
        rules.append(f"      - record: jester:grafana_{n}\n        expr: {json.dumps(expression)}\n")
    assert len(rules) > 15
    path = tmp_path / "grafana-rules.yml"
    path.write_text("groups:\n  - name: grafana\n    rules:\n" + "".join(rules))
    check = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
