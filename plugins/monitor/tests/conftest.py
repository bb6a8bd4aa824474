"""Fixtures of the monitor plugin's tests (helpers live in monitor_testkit.py)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy
import pytest
from monitor_testkit import AlertReceiver, Intent, dummy_lm

import dspy_tracekit as tk


@pytest.fixture
def program():
    with dspy.context(lm=dummy_lm()):
        yield Intent()


@pytest.fixture(scope="session")
def store_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('monitor-store')}/mlflow.db"


@pytest.fixture
def experiment(request):
    return f"monitor/{request.node.name}"


@pytest.fixture
def enable(store_uri, experiment):
    """``enable(monitor={...}, plugins=("monitor",))``: tracing on with the monitor plugin."""

    def on(monitor: dict | None = None, plugins=("monitor",), **tables):
        config = {"monitor": monitor or {}, **tables}
        tk.enable(plugins=list(plugins), tracking_uri=store_uri, experiment=experiment, config=config)

    yield on
    tk.disable()


@pytest.fixture
def receiver():
    made = []

    def make(**kw) -> AlertReceiver:
        r = AlertReceiver(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
