"""Writing translated spans to an MLflow tracking store, many traces per call.

Kept apart from the translation so that the write path can be tuned (batch size, store settings)
without touching what is written.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

_clients: dict[str, Any] = {}
_lock = threading.Lock()


def tracing_client(tracking_uri: str):
    with _lock:
        client = _clients.get(tracking_uri)
        if client is None:
            from mlflow.tracing.client import TracingClient

            client = _clients[tracking_uri] = TracingClient(tracking_uri)
        return client


def log_spans(tracking_uri: str, experiment_id: str, spans: list) -> None:
    """Write spans of one or many traces in one store call (one transaction on SQL stores)."""
    if spans:
        tracing_client(tracking_uri).log_spans(experiment_id, spans)


def reset() -> None:
    with _lock:
        _clients.clear()


def _after_fork_in_child() -> None:
    """Database connections must not cross ``fork()``: a child that wrote through its parent's pooled
    SQLite connection loses writes. Give the child fresh pools (SQLAlchemy's documented recipe)."""
    module = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    if module is None:
        return
    for engine in list(getattr(module.SqlAlchemyStore, "_engine_map", {}).values()):
        try:
            engine.dispose(close=False)
        except Exception:  # noqa: BLE001 - a store we cannot reset is left as it is
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
