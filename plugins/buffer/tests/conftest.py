"""Fixtures of the buffer plugin's tests (helpers live in buffer_testkit.py)."""

from __future__ import annotations

import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest

import dspy_tracekit as tk


@pytest.fixture(scope="session")
def _template_db(tmp_path_factory):
    """An empty, migrated MLflow SQLite store, created once (migrations take seconds)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("buffer-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path, _template_db):
    """A fresh SQLite tracking URI (a copy of the migrated template) and an experiment name."""
    shutil.copy(_template_db, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}", "buffer-tests"


@pytest.fixture
def spool_dir(tmp_path):
    return str(tmp_path / "spool")


@pytest.fixture(autouse=True)
def _disabled_after():
    yield
    tk.disable(timeout=5.0)
