"""Tested DSPy / MLflow versions: declared once, warned about once at enable()."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import dspy_tracekit as tk
from dspy_tracekit import _versions as versions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_pyproject_mlflow_range_matches_the_tested_minors():
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    spec = next(d for d in deps if d.startswith("mlflow"))
    lows = sorted(versions.TESTED["mlflow"])
    assert spec == f"mlflow>={lows[0][0]}.{lows[0][1]},<{lows[-1][0]}.{lows[-1][1] + 1}"
    text = PYPROJECT.read_text()
    assert "tested: dspy " + ", ".join(f"{a}.{b}.x" for a, b in versions.TESTED["dspy"]) in text


def test_installed_versions_are_tested():
    assert versions.untested() == {}


def test_untested_dspy_minor_warns_once_at_enable(store_uri, experiment_name, monkeypatch, caplog):
    monkeypatch.setitem(versions.TESTED, "dspy", ((3, 0),))
    monkeypatch.setattr(versions, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="dspy_tracekit"):
        tk.enable(plugins=[], tracking_uri=store_uri, experiment=experiment_name)
        tk.disable()
        tk.enable(plugins=[], tracking_uri=store_uri, experiment=experiment_name)
    hits = [r for r in caplog.records if "is not a tested version" in r.getMessage()]
    assert len(hits) == 1
    assert "dspy 3.4" in hits[0].getMessage() and "tested: 3.0.x" in hits[0].getMessage()
