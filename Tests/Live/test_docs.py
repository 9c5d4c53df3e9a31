# SPDX-License-Identifier: Apache-2.0
"""The manual pages: lint-clean for mandoc and renderable by man (what the Debian package ships)."""

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
