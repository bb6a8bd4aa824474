"""The store: open an MLflow tracking store for reading (any backend MLflow supports)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from dspy_tracekit.analytics._keys import AnalyticsError

logger = logging.getLogger("dspy_tracekit.analytics")


@dataclass
class Store:
    """A resolved MLflow store and experiment, with the client that reads it."""

    tracking_uri: str
    experiment_id: str
    experiment_name: str
    client: Any = field(repr=False)


def default_settings(tracking_uri: str | None = None, experiment: str | None = None) -> tuple[str, str]:
    """The tracking URI and experiment ``dspy_tracekit.enable()`` would use, unless given here.

    Reads tracekit's own config (``[tool.dspy-tracekit]``, ``dspy-tracekit.toml``, ``DSPY_TRACEKIT_*``),
    so the CLI looks where the program wrote. :raises AnalyticsError: the config is broken.
    """
    if tracking_uri and experiment:
        return tracking_uri, experiment
    from dspy_tracekit.config import resolve
    from dspy_tracekit.errors import ConfigError
    from dspy_tracekit.manager import TracekitManager

    try:
        cfg = resolve(
            tracking_uri=tracking_uri,
            experiment=experiment,
            installed=tuple(TracekitManager.installed_plugins()),
        )
    except ConfigError as exc:
        raise AnalyticsError(
            f"bad tracekit config: {_one_line(exc)} (or pass --tracking-uri and --experiment)"
        ) from exc
    return cfg.core["tracking_uri"], cfg.core["experiment"]


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    if not text:
        text = type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sqlite_path(uri: str) -> str | None:
    """The file behind a ``sqlite:///relative.db`` or ``sqlite:////abs/path.db`` URI."""
    if not uri.startswith("sqlite:"):
        return None
    path = uri[len("sqlite:") :].split("?", 1)[0]
    path = path[3:] if path.startswith("///") else path.lstrip("/")
    if not path or path == ":memory:":
        return ":memory:"
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)


def _bound_http_retries() -> None:
    # A CLI that waits minutes on a dead server before saying so is worse than one that says so at once.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


def open_store(tracking_uri: str | None = None, experiment: str | None = None) -> Store:
    """Connect to the store and resolve the experiment (by name, or by id when no name matches).

    :raises AnalyticsError: the store cannot be reached, or the experiment does not exist there.
    """
    from mlflow import MlflowClient

    uri, name = default_settings(tracking_uri, experiment)
    sqlite_path = _sqlite_path(uri)
    # Reading must never create an empty store where the user mistyped a path.
    if sqlite_path and sqlite_path != ":memory:" and not os.path.exists(sqlite_path):
        raise AnalyticsError(f"cannot reach MLflow store {uri}: no such file {sqlite_path}")
    _bound_http_retries()
    try:
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(name)
        if exp is None and name.isdigit():
            try:
                exp = client.get_experiment(name)
            except Exception:  # noqa: BLE001 - "not found" by id: reported below like a missing name
                exp = None
    except AnalyticsError:
        raise
    except Exception as exc:  # any failure to talk to the store is one line for the user
        raise AnalyticsError(f"cannot reach MLflow store {uri}: {_one_line(exc)}") from exc
    if exp is None:
        raise AnalyticsError(f"experiment {name!r} not found in {uri}; {_existing_experiments(client)}")
    return Store(tracking_uri=uri, experiment_id=exp.experiment_id, experiment_name=exp.name, client=client)


def experiment_names(client: Any) -> list[str]:
    """Names of the active experiments in the store (MLflow's ``Default`` last), or [] if unreadable."""
    try:
        names = [e.name for e in client.search_experiments(max_results=1000)]
    except Exception:  # noqa: BLE001 - the list is a hint in an error message, never the error itself
        return []
    return sorted(names, key=lambda n: (n == "Default", n))


def _existing_experiments(client: Any, limit: int = 20) -> str:
    names = experiment_names(client)
    if not names:
        return "that store has no experiments yet"
    shown = ", ".join(repr(n) for n in names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
    return f"experiments there: {shown} (pick one with --experiment/-e)"
