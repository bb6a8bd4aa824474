"""Each plugin distribution declares the range of dspy-tracekit versions it is tested with (fast check of
the pyproject files; tests/test_install.py checks the built wheels)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_PROJECTS = sorted(ROOT.glob("plugins/*/pyproject.toml")) + [ROOT / "docs/examples/tenant_tag/pyproject.toml"]


@pytest.mark.parametrize("project", PLUGIN_PROJECTS, ids=[str(p.parent.relative_to(ROOT)) for p in PLUGIN_PROJECTS])
def test_plugin_declares_a_bounded_range_of_the_core_that_holds_its_version(project):
    core = Version(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])
    deps = [Requirement(d) for d in tomllib.loads(project.read_text())["project"]["dependencies"]]
    (req,) = [d for d in deps if d.name == "dspy-tracekit"]
    assert {">=", "<"} <= {s.operator for s in req.specifier}, str(req)
    assert core in req.specifier, (str(req), str(core))
