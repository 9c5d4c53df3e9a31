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
