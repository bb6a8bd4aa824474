"""Writing translated spans to an MLflow tracking store, many traces per call.

Kept apart from the translation so that the write path can be tuned (batch size, store settings)
without touching what is written.
"""

from __future__ import annotations

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
