"""Generated regions of the docs are committed, so a page reads the same on a code host as on the site.

``<!-- tracekit:config-reference -->`` (the core keys, from ``CORE_SCHEMA``) and
``<!-- tracekit:include FILE -->`` (example files, verbatim) are filled in the Markdown files
themselves; this test fails when one is stale. Refresh them with ``uv run python docs/_hooks/tracekit_docs.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _docs_hook():
    sys.path.insert(0, str(ROOT / "docs" / "_hooks"))
    try:
        import tracekit_docs
    finally:
        sys.path.pop(0)
    return tracekit_docs


PAGES = [Path(p) for p in _docs_hook().pages()]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_generated_regions_are_committed_and_fresh(page):
    text = page.read_text(encoding="utf-8")
    assert _docs_hook().regenerate(text) == text, (
        f"{page.relative_to(ROOT)} has a stale generated region: run `uv run python docs/_hooks/tracekit_docs.py`"
    )


def test_configuration_page_lists_every_core_key_in_the_markdown_itself():
    from dspy_tracekit.config import CORE_SCHEMA

    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text.split("## Core keys", 1)[1].split("\n## ", 1)[0]
    for key, (_typ, _default, env, _doc) in CORE_SCHEMA.items():
        assert f"| `{key}` |" in section and f"`{env}`" in section


@pytest.mark.parametrize("page", ["tutorial-plugin.md", "writing-plugins.md"])
def test_plugin_pages_show_the_tested_example_files_verbatim(page):
    text = (ROOT / "docs" / page).read_text()
    for example in ("tracekit_tenant.py", "pyproject.toml"):
        source = (ROOT / "docs/examples/tenant_tag" / example).read_text().rstrip("\n")
        assert source in text, (page, example)
    assert "--8<--" not in text


def test_a_stale_region_is_detected(tmp_path):
    hook = _docs_hook()
    stale = "<!-- tracekit:config-reference -->\n| old |\n<!-- /tracekit:config-reference -->\n"
    assert hook.regenerate(stale) != stale
    fresh = hook.regenerate(stale)
    assert hook.regenerate(fresh) == fresh
