"""dspy-tracekit plugin ``monitor``: live metrics, SLOs and alerts.

Enable it with ``plugins = ["monitor"]`` and a ``[tool.dspy-tracekit.monitor]`` table (see the README).
It has no request-path hook — the program's calls never wait for it. The hooks:

- ``tracekit_traces_exported`` (delivery path): OpenTelemetry GenAI metrics and SLO windows from every
  stored trace and span, weighted by ``1/p`` for sampled traces;
- ``tracekit_alert``: the log and webhook sinks (for the monitor's alerts and any other plugin's);
- ``tracekit_configure`` / ``tracekit_flush`` / ``tracekit_shutdown`` / ``tracekit_counters``: life
  cycle and counters (``dspy_tracekit.flush()`` brings /metrics up to date).

A thread of its own evaluates the SLOs every ``evaluate_every_s`` (one alert when a breach starts,
one when it resolves), turns ``dspy_tracekit.counters()`` into Prometheus counters and, with ``port``
set, serves ``/metrics`` (prometheus_client, multiprocess mode under ``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

import os
from typing import Any

from dspy_tracekit.hookspecs import hookimpl

from ._config import MonitorConfig, SloSpec, parse_config, parse_window
from ._plugin import Monitor
from ._slo import RELATIVE_ACCURACY

__all__ = ["RELATIVE_ACCURACY", "Monitor", "MonitorConfig", "SloSpec", "current", "metrics_url",
           "parse_config", "parse_window"]

_monitor: Monitor | None = None


def current() -> Monitor | None:
    """The monitor of the current ``enable()``, or None."""
    return _monitor


def metrics_url() -> str | None:
    """``http://host:port/metrics`` when this process serves /metrics, else None."""
    mon = _monitor
    return None if mon is None else mon.url()


@hookimpl
def tracekit_configure(config: dict[str, Any], settings: Any) -> None:
    """Validate the ``monitor`` table (a bad key fails ``enable()`` naming it), start the monitor."""
    global _monitor
    cfg = parse_config(config)
    if getattr(settings, "dry_run", False):  # doctor checks the table: no server, no threads
        return
    old, _monitor = _monitor, None
    if old is not None:
        old.shutdown(0.0)
    mon = Monitor(cfg)
    mon.start()
    _monitor = mon


@hookimpl
def tracekit_traces_exported(traces: list) -> None:
    mon = _monitor
    if mon is not None:
        mon.record(traces)


@hookimpl
def tracekit_alert(alert: dict[str, Any]) -> None:
    mon = _monitor
    if mon is not None:
        mon.on_alert(alert)


@hookimpl
def tracekit_counters() -> dict[str, int | float] | None:
    mon = _monitor
    return None if mon is None else mon.counters()


@hookimpl
def tracekit_flush(timeout: float) -> bool | None:
    """``dspy_tracekit.flush()`` also brings /metrics up to date with everything delivered so far."""
    mon = _monitor
    if mon is not None:
        mon.flush_metrics()
    return None


@hookimpl
def tracekit_shutdown(timeout: float) -> None:
    global _monitor
    mon, _monitor = _monitor, None
    if mon is not None:
        mon.shutdown(timeout)


def _after_fork_in_child() -> None:
    mon = _monitor
    if mon is not None:
        mon.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
