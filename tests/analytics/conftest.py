"""Fixtures for the analytics and CLI tests: real MLflow SQLite stores with known traces.

The synthetic store is written with MLflow's own client API (``start_trace`` / ``start_span`` with
explicit timestamps), so durations, ages, statuses and sampling probabilities are exactly known and a
test can hand-compute what ``stats`` must say. Building a store costs a few seconds (MLflow's schema
migrations), so each is built once per session and copied for tests that delete traces.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from dataclasses import dataclass, field

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

EXPERIMENT = "tk_analytics"
MODEL = "openai/gpt-4o-mini"
MS = 1_000_000


@dataclass
class SyntheticStore:
    uri: str
    path: str
    experiment: str
    experiment_id: str
    #: one dict per trace: id, age_s, role, message, failed, p, lm_ms
    traces: list[dict] = field(default_factory=list)

    def copy_to(self, directory) -> SyntheticStore:
        path = os.path.join(str(directory), "copy.db")
        shutil.copyfile(self.path, path)
        return SyntheticStore(f"sqlite:///{path}", path, self.experiment, self.experiment_id, self.traces)


def trace_plan(n: int = 30) -> list[dict]:
    """The traces to write: ages (6 are 40 days old), roles, long messages that fail, probabilities."""
    plan = []
    for i in range(n):
        role = "admin" if i % 3 == 0 else "viewer"
        long_message = i % 4 == 1
        plan.append({
            "age_s": 40 * 86400 + i * 60 if i < 6 else 3600 - i * 60,
            "role": role,
            "message": ("please " * 30 + f"#{i}") if long_message else f"help {i}",
            "failed": role == "viewer" and long_message,
            "p": 0.5 if i % 2 else (1.0 if i % 4 == 0 else None),
            "lm_ms": 10 + (7 * i) % 50,
        })
    return plan


def write_synthetic_traces(uri: str, experiment: str, plan: list[dict]) -> tuple[str, list[dict]]:
    import mlflow
    from mlflow import MlflowClient

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        client = MlflowClient(uri)
        exp_id = client.create_experiment(experiment)
        now_ns = time.time_ns()
        written = []
        for spec in plan:
            t0 = now_ns - int(spec["age_s"] * 1e9)
            tags = {"user_role": spec["role"], "session_id": f"s-{len(written) % 5}"}
            if spec["p"] is not None:
                tags["tracekit.sampling.probability"] = str(spec["p"])
            ctx = {f"tracekit.context.{k}": v for k, v in tags.items() if not k.startswith("tracekit.")}
            root = client.start_trace("IntentDetector", span_type="CHAIN", inputs={"message": spec["message"]},
                                      attributes=ctx, tags=tags, experiment_id=exp_id, start_time_ns=t0)
            tid = root.trace_id
            cls = client.start_span("classify", tid, root.span_id, span_type="LLM", attributes=ctx,
                                    start_time_ns=t0 + 1 * MS)
            fmt = client.start_span("ChatAdapter.format", tid, cls.span_id, span_type="PARSER", attributes=ctx,
                                    start_time_ns=t0 + 2 * MS)
            client.end_span(tid, fmt.span_id, end_time_ns=t0 + 3 * MS)
            lm_end = t0 + 3 * MS + spec["lm_ms"] * MS
            lm = client.start_span("LM", tid, cls.span_id, span_type="CHAT_MODEL", start_time_ns=t0 + 3 * MS,
                                   attributes={**ctx, "mlflow.llm.model": MODEL})
            client.end_span(tid, lm.span_id, end_time_ns=lm_end, attributes={
                "mlflow.chat.tokenUsage": {"input_tokens": 100, "output_tokens": 20, "total_tokens": 120},
                "mlflow.llm.cost": {"input_cost": 0.001, "output_cost": 0.0005, "total_cost": 0.0015},
            })
            status = "ERROR" if spec["failed"] else "OK"
            if not spec["failed"]:
                parse = client.start_span("ChatAdapter.parse", tid, cls.span_id, span_type="PARSER",
                                          attributes=ctx, start_time_ns=lm_end)
                client.end_span(tid, parse.span_id, end_time_ns=lm_end + 1 * MS)
            client.end_span(tid, cls.span_id, status=status, end_time_ns=lm_end + 2 * MS)
            client.end_trace(tid, outputs={"intent": "x"}, status=status, end_time_ns=lm_end + 3 * MS)
            written.append({**spec, "trace_id": tid, "start_ns": t0})
        mlflow.flush_trace_async_logging()
        return exp_id, written
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory) -> SyntheticStore:
    """30 traces: 6 forty days old, the rest in the last hour; failures on long 'viewer' messages."""
    directory = tmp_path_factory.mktemp("synthetic")
    path = os.path.join(str(directory), "mlflow.db")
    uri = f"sqlite:///{path}"
    exp_id, written = write_synthetic_traces(uri, EXPERIMENT, trace_plan())
    return SyntheticStore(uri, path, EXPERIMENT, exp_id, written)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> SyntheticStore:
    """A store with an experiment and no traces."""
    from mlflow import MlflowClient

    path = os.path.join(str(tmp_path_factory.mktemp("empty")), "mlflow.db")
    uri = f"sqlite:///{path}"
    exp_id = MlflowClient(uri).create_experiment("empty")
    return SyntheticStore(uri, path, "empty", exp_id, [])


@pytest.fixture
def store_copy(synthetic_store, tmp_path) -> SyntheticStore:
    """A private copy of the synthetic store, for tests that delete traces."""
    return synthetic_store.copy_to(tmp_path)


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory):
    """Six demo requests with core tracing only, then ten with the sample plugin keeping each with p = 0.5."""
    import os

    from dspy_tracekit.cli.demo.app import run_demo

    path = tmp_path_factory.mktemp("demo") / "mlflow.db"
    uri = f"sqlite:///{path}"
    run_demo(n=6, tracking_uri=uri, experiment="demo", plugins=[], seed=0, out=io.StringIO())
    old = os.environ.get("DSPY_TRACEKIT_SAMPLE_RATIO")
    os.environ["DSPY_TRACEKIT_SAMPLE_RATIO"] = "0.5"
    from dspy_tracekit import records

    if hasattr(records, "_rand"):  # trace ids decide the sampling: seeded ids make the kept set reproducible
        records._rand.seed(20261126)
    try:
        run_demo(n=10, tracking_uri=uri, experiment="demo_sampled", plugins=["sample"], seed=1, out=io.StringIO())
    finally:
        if old is None:
            del os.environ["DSPY_TRACEKIT_SAMPLE_RATIO"]
        else:
            os.environ["DSPY_TRACEKIT_SAMPLE_RATIO"] = old
    return uri
