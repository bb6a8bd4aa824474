"""Shared fixtures: a real MLflow SQLite store per test, tracing enabled/disabled around each test."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
import pytest  # noqa: E402

import dspy_tracekit as tk  # noqa: E402


@pytest.fixture(scope="session")
def shared_store_uri(tmp_path_factory):
    """One SQLite store for the session: creating MLflow's schema takes seconds, experiments are cheap."""
    return f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db"


@pytest.fixture
def store_uri(shared_store_uri):
    return shared_store_uri


@pytest.fixture
def experiment_name(request):
    return f"t-{request.node.name}"[:200]


@pytest.fixture
def fresh_store_uri(tmp_path):
    """A store of the test's own, for tests that read the raw database file."""
    return f"sqlite:///{tmp_path}/own.db"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Each test starts with tracing off, in its own working directory, without config files."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("DSPY_TRACEKIT_"):
            monkeypatch.delenv(key)
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # redact's pseudonym key: not the real home
    yield
    tk.disable()
    dspy.configure(lm=None, callbacks=[], adapter=None)
    from dspy_tracekit.mlflow._compat import forget_mlflow_destination

    forget_mlflow_destination()  # a test that told MLflow about a store must not steer the next one
    forget_relative_sqlite_stores()  # the next test's sqlite:///mlflow.db is a file in its own folder


from tk_testing import TraceReader, forget_relative_sqlite_stores  # noqa: E402


@pytest.fixture
def traced(store_uri, experiment_name):
    """Tracing on with the core alone, into the session's store under an experiment of the test's own;
    yields a reader of the stored traces."""
    tk.enable(plugins=[], tracking_uri=store_uri, experiment=experiment_name)
    return TraceReader(store_uri, experiment_name)


