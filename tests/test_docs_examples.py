"""Every Python block in README.md and docs/ runs as written: offline, in an empty folder (so the default
store is a temporary ``sqlite:///mlflow.db``), the blocks of one page in order in one namespace, as a
reader pasting them into one session would.

A block that cannot run offline carries a marker on the line before its fence, and is reported as a
skip with that reason (``pytest -rs`` lists them)::

    <!-- docs-test: skip needs OPENAI_API_KEY (a real provider) -->

After the blocks ran, functions they defined whose names start with ``test_`` are called too (with a
fresh ``tmp_path`` when they take one): the testing sections of the plugin pages are tests.
The TOML blocks that configure tracekit (``[tool.dspy-tracekit…]``) are checked the way ``doctor`` checks
a project's config: every key known, every plugin table valid.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from tk_testing import install_example_plugin

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = ROOT / "docs" / "examples" / "tenant_tag"
_FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
_SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s+(.+?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int
    language: str
    code: str
    skip: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path, language: str) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        if match.group(1) != language:
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = _SKIP.search(before)
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(page, line, language, match.group(2), skip.group(1) if skip else None))
    return found


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


PYTHON_PAGES = [p for p in pages() if blocks(p, "python")]
SKIPPED = [b for p in PYTHON_PAGES for b in blocks(p, "python") if b.skip]


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


# What a page assumes the reader already has: traces to read, the tutorial's plugin installed.
def _demo_traces(monkeypatch, tmp_path):
    from dspy_tracekit.cli.demo.app import run_demo

    assert run_demo(n=4, experiment="dspy_intent_classification", plugins=[], out=io.StringIO()) == 0


def _tenant_plugin(monkeypatch, tmp_path):
    return install_example_plugin(EXAMPLE_PLUGIN, tmp_path / "site-packages", monkeypatch)


SETUP = {
    "docs/analytics.md": [_demo_traces],
    "docs/tutorial-plugin.md": [_tenant_plugin],
    "docs/writing-plugins.md": [_tenant_plugin],
}


def _quickstart_stored_its_trace():
    from mlflow import MlflowClient

    client = MlflowClient("sqlite:///mlflow.db")
    exp = client.get_experiment_by_name("dspy_intent_classification")
    assert exp is not None, "the quickstart wrote no experiment"
    (trace,) = client.search_traces(locations=[exp.experiment_id])
    names = {s.name for s in trace.data.spans}
    assert "ChainOfThought.forward" in names and "LM.__call__" in names or len(names) >= 3, names
    assert trace.info.tags.get("user_role") == "admin"


#: what must hold after a page's blocks ran (beyond "nothing raised")
CHECKS = {"README.md": _quickstart_stored_its_trace, "docs/index.md": _quickstart_stored_its_trace}


@pytest.fixture
def offline(monkeypatch):
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=[_rel(p) for p in PYTHON_PAGES])
def test_python_blocks_of_the_page_run(page, tmp_path, monkeypatch, offline):
    import dspy

    import dspy_tracekit as tk

    with contextlib.ExitStack() as stack:
        for setup in SETUP.get(_rel(page), []):
            ctx = setup(monkeypatch, tmp_path)
            if ctx is not None:
                stack.enter_context(ctx)
        namespace: dict = {"__name__": f"docs_example_{page.stem}"}
        ran = 0
        for block in blocks(page, "python"):
            if block.skip:
                continue
            try:
                exec(compile(block.code, block.where, "exec"), namespace)  # noqa: S102 - the docs' own code
            except Exception as exc:
                raise AssertionError(f"the block at {block.where} fails: {type(exc).__name__}: {exc}") from exc
            ran += 1
        assert ran, f"{_rel(page)}: every Python block is skipped"
        tk.disable()
        dspy.configure(lm=None)
        for name, fn in list(namespace.items()):
            if name.startswith("test_") and inspect.isfunction(fn):
                kwargs = {}
                if "tmp_path" in inspect.signature(fn).parameters:
                    kwargs["tmp_path"] = Path(tempfile.mkdtemp(dir=tmp_path))
                try:
                    fn(**kwargs)
                finally:
                    tk.disable()
        check = CHECKS.get(_rel(page))
        if check:
            check()


@pytest.mark.parametrize("block", SKIPPED, ids=[b.where for b in SKIPPED])
def test_python_blocks_marked_for_a_real_provider_are_skipped_visibly(block):
    compile(block.code, block.where, "exec")  # still valid Python
    pytest.skip(f"{block.where}: {block.skip}")


def test_the_collector_finds_the_quickstart_and_honours_the_skip_marker(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("x\n\n```python\nprint(1)\n```\n\n<!-- docs-test: skip needs a key -->\n```python\nboom()\n```\n")
    found = blocks(page, "python")
    assert [(b.code, b.skip) for b in found] == [("print(1)\n", None), ("boom()\n", "needs a key")]
    assert any(b.page.name == "README.md" for p in PYTHON_PAGES for b in blocks(p, "python"))


# --------------------------------------------------------------------------------------------------
# TOML blocks that configure tracekit
# --------------------------------------------------------------------------------------------------

TOML_BLOCKS = [b for p in pages() for b in blocks(p, "toml") if "[tool.dspy-tracekit" in b.code]


@pytest.mark.parametrize("block", TOML_BLOCKS, ids=[b.where for b in TOML_BLOCKS])
def test_tracekit_config_blocks_are_valid(block, tmp_path, monkeypatch):
    if block.skip:
        pytest.skip(f"{block.where}: {block.skip}")
    if "DSPY_TRACEKIT_REDACT_HASH_SECRET" in block.page.read_text():  # the page tells the reader to set it
        monkeypatch.setenv("DSPY_TRACEKIT_REDACT_HASH_SECRET", "docs-test-secret")
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    from dspy_tracekit.cli.doctor import diagnose

    tomllib.loads(block.code)  # valid TOML as written
    (tmp_path / "pyproject.toml").write_text(block.code)
    monkeypatch.chdir(tmp_path)
    with install_example_plugin(EXAMPLE_PLUGIN, tmp_path / "site-packages", monkeypatch):
        findings = diagnose(tracking_uri=f"sqlite:///{tmp_path / 'none.db'}")
    problems = [p for p in findings["problems"] if not p.startswith("store:")]
    assert problems == [], f"{block.where}: {problems}"
