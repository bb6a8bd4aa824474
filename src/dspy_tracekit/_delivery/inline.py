"""Inline delivery (no plugin took the trace) with a bounded budget on the calling thread.

* SQLite (and ``file:``) stores: exported on the calling thread, one writer at a time per process.
  SQLite takes one writer anyway; 16 threads writing at once held MLflow's pooled connections while
  waiting for the database lock, and the 16th call waited 30 s for a connection and lost its trace
  (``QueuePool limit ... timed out``).
* Every other store (a tracking server, PostgreSQL, MySQL, …): exported on a helper thread that the
  calling thread waits for at most :data:`BUDGET_S`. MLflow's HTTP client retries a refused connection
  for minutes (246 s seen) — that happens on the helper, never on the user's call. A store found down
  (a refused TCP connection, an export that failed with a transient error, or :data:`MAX_LATE` exports
  still running past the budget) is skipped without any I/O, each skipped trace counted as
  ``traces_dropped.store_unavailable``, until a probe (a TCP connect, after a growing back-off) finds it
  answering again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from urllib.parse import urlsplit

from ..delivery import is_transient

logger = logging.getLogger("dspy_tracekit")

#: the longest a user's call waits for an inline export to a store other than SQLite (seconds)
BUDGET_S = 2.0
#: a down store is probed again after this back-off (doubling up to :data:`MAX_BACKOFF_S`)
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
PROBE_TIMEOUT_S = 1.0
#: exports still running past the budget: a slow store keeps its traces, a hung one cannot pile up threads
MAX_LATE = 4
_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "postgres": 5432, "mysql": 3306,
                  "mssql": 1433}


def is_local(uri: str | None) -> bool:
    """SQLite files and MLflow's file store: no network between the process and the store."""
    if not uri:
        return True
    scheme, colon, _ = uri.partition(":")
    if not colon or len(scheme) == 1:  # a path (C:\… on Windows), or "databricks" / "databricks-uc"
        return not scheme.lower().startswith("databricks")
    scheme = scheme.lower()
    return scheme == "file" or scheme.startswith("sqlite")


def probe(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Open (and close) a TCP connection to the store's host; raises ``OSError`` when nothing answers."""
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+", 1)[0].lower()
    host = parts.hostname
    if not host:
        return  # databricks, uc, …: nothing to probe; the export itself finds out
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    if port is None:
        return
    with socket.create_connection((host, port), timeout=timeout):
        pass


class InlineDelivery:
    """Per-manager state of inline delivery: the SQLite writer lock and the down store's circuit."""

    def __init__(self, mgr):
        self.mgr = mgr
        self._sqlite_lock = threading.Lock()
        self._lock = threading.Lock()
        self._init_circuit()

    def _init_circuit(self) -> None:
        self._down_until = 0.0  # monotonic time of the next probe; 0.0 = up (or not known to be down)
        self._down = False
        self._known_up = False  # until one export succeeded, the first call probes before exporting
        self._backoff = FIRST_BACKOFF_S
        self._over_budget = 0  # exports still running past the budget on helper threads
        self._running = 0
        self._idle = threading.Condition(self._lock)

    def after_fork_in_child(self) -> None:
        """Helper threads and locks held by the parent's threads do not exist in a forked child."""
        self._sqlite_lock = threading.Lock()
        self._lock = threading.Lock()
        self._init_circuit()

    # ---------------------------------------------------------------- calling thread
    def deliver(self, trace, uri: str | None) -> None:
        mgr = self.mgr
        if is_local(uri):
            ready = mgr.prepare([trace])
            if ready:
                with self._sqlite_lock:
                    self._export(ready)
            return
        with self._lock:
            if self._over_budget >= MAX_LATE or (self._down and time.monotonic() < self._down_until):
                mgr.counters.add("traces_dropped.store_unavailable")
                return
            probe_first = self._down or not self._known_up
            if self._down:  # one probe at a time; the others skip until it answers
                self._down_until = time.monotonic() + self._backoff
            self._running += 1
        try:
            ready = mgr.prepare([trace])
        except Exception:  # noqa: BLE001 - prepare counts its own drops; never raises
            ready = []
        if not ready:
            self._finished(over_budget=False)
            return
        done = threading.Event()
        state = {"late": False}
        helper = threading.Thread(target=self._remote, args=(ready, uri, probe_first, done, state),
                                  name="dspy-tracekit-inline", daemon=True)
        helper.start()
        if not done.wait(BUDGET_S):
            with self._lock:
                if not done.is_set():
                    state["late"] = True
                    self._over_budget += 1
                    mgr.counters.add("inline_over_budget")

    # ---------------------------------------------------------------- helper thread
    def _remote(self, ready: list, uri: str, probe_first: bool, done: threading.Event, state: dict) -> None:
        try:
            if probe_first:
                try:
                    probe(uri)
                except OSError as exc:
                    self.mgr.counters.add("traces_dropped.store_unavailable", len(ready))
                    self._store_down(uri, exc)
                    return
            if self._export(ready, uri):
                self._store_up(uri)
        finally:
            with self._lock:
                late = state["late"]
                done.set()
            self._finished(over_budget=late)

    def _export(self, ready: list, uri: str | None = None) -> bool:
        """Export; a failure is counted (``traces_dropped.export_error``) and logged once, never raised."""
        mgr = self.mgr
        try:
            mgr.export(ready)
            return True
        except Exception as exc:  # noqa: BLE001 - tracing never raises into the user's program
            mgr.counters.add("traces_dropped.export_error", len(ready))
            mgr.hook_failed("core", "export", exc.__cause__ or exc)
            if uri is not None and is_transient(exc):
                self._store_down(uri, exc)
            return False

    def _finished(self, over_budget: bool) -> None:
        with self._lock:
            self._running -= 1
            if over_budget:
                self._over_budget -= 1
            self._idle.notify_all()

    def _store_down(self, uri: str, exc: BaseException) -> None:
        with self._lock:
            first = not self._down
            if not first:
                self._backoff = min(MAX_BACKOFF_S, self._backoff * 2)
            self._down = True
            self._down_until = time.monotonic() + self._backoff
        if first:
            from ..mlflow.store import _redacted

            logger.warning("dspy-tracekit: the trace store %s is unreachable (%s: %s); without the buffer plugin "
                           "traces are dropped and counted (traces_dropped.store_unavailable) until it answers",
                           _redacted(uri), type(exc).__name__, str(exc)[:300])

    def _store_up(self, uri: str) -> None:
        with self._lock:
            was_down = self._down
            self._down = False
            self._known_up = True
            self._down_until = 0.0
            self._backoff = FIRST_BACKOFF_S
        if was_down:
            from ..mlflow.store import _redacted

            logger.warning("dspy-tracekit: the trace store %s answers again", _redacted(uri))

    # ---------------------------------------------------------------- flush
    def wait(self, timeout: float) -> bool:
        """Wait until no inline export is running on a helper thread; False on timeout."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            while self._running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True


_ALL: list = []  # weak enough: one per manager, managers live for one enable()


def register(inline: InlineDelivery) -> InlineDelivery:
    _ALL[:] = [inline]
    return inline


def _after_fork_in_child() -> None:
    for inline in _ALL:
        inline.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
