"""Fixtures of the buffer plugin's tests (helpers live in buffer_testkit.py)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest  # noqa: E402

import dspy_tracekit as tk  # noqa: E402


@pytest.fixture
def store(tmp_path):
    """A fresh SQLite tracking URI and experiment name."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}", "buffer-tests"


@pytest.fixture
def spool_dir(tmp_path):
    return str(tmp_path / "spool")


@pytest.fixture(autouse=True)
def _disabled_after():
    yield
    tk.disable(timeout=5.0)
