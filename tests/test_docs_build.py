"""The documentation site builds with ``mkdocs build --strict``: no missing page, no broken link."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed")
def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    problems = [ln for ln in done.stderr.splitlines() if ln.startswith(("WARNING", "ERROR"))]
    assert done.returncode == 0, "\n".join(problems) or done.stderr[-3000:]
    for page in ("cli", "analytics", "deployment", "privacy", "tutorial-plugin", "configuration", "hooks"):
        assert (site / page / "index.html").is_file(), page


def _docs_hook():
    """The mkdocs build hook module (docs/_hooks is not a package on the path)."""
    sys.path.insert(0, str(ROOT / "docs" / "_hooks"))
    try:
        import tracekit_docs
    finally:
        sys.path.pop(0)
    return tracekit_docs


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed")
def test_tutorial_page_shows_the_tested_example_verbatim(tmp_path):
    tracekit_docs = _docs_hook()

    class Config:
        config_file_path = str(ROOT / "mkdocs.yml")

    page = (ROOT / "docs" / "tutorial-plugin.md").read_text()
    rendered = tracekit_docs.on_page_markdown(page, None, Config(), None)
    assert (ROOT / "docs/examples/tenant_tag/tracekit_tenant.py").read_text().rstrip("\n") in rendered
    assert (ROOT / "docs/examples/tenant_tag/pyproject.toml").read_text().rstrip("\n") in rendered
    assert "--8<--" not in rendered


def test_config_reference_lists_every_core_key():
    tracekit_docs = _docs_hook()
    from dspy_tracekit.config import CORE_SCHEMA

    table = tracekit_docs.config_reference()
    for key, (_typ, _default, env, _doc) in CORE_SCHEMA.items():
        assert f"| `{key}` |" in table and f"`{env}`" in table


def test_links_to_repository_files_outside_docs_become_paths_and_broken_links_stay():
    tracekit_docs = _docs_hook()

    class Config:
        config_file_path = str(ROOT / "mkdocs.yml")
        docs_dir = str(ROOT / "docs")

    class Page:
        class file:
            src_path = "plugins/cost.md"

    text = "See [the README](../../plugins/cost/README.md) and [gone](../../plugins/cost/NOPE.md), [CLI](../cli.md)."
    out = tracekit_docs.on_page_markdown(text, Page(), Config(), None)
    assert "the README (`plugins/cost/README.md` in the repository)" in out
    assert "[gone](../../plugins/cost/NOPE.md)" in out and "[CLI](../cli.md)" in out
