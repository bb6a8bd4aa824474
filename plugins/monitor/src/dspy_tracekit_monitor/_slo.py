"""SLOs evaluated in-process over rolling windows, with hysteresis.

Each SLO keeps a ring of ten slices of ``window / 10`` seconds. A slice holds a DDSketch of the
matched spans' durations (relative accuracy 1%: a reported quantile ``q'`` of the true ``q`` satisfies
``|q' - q| <= 0.01 * q``) plus weighted counts of spans, errors and cost. Evaluation merges the slices
still inside the window (DDSketches are mergeable without loss of that guarantee) — so the window
covers between 90% and 100% of ``window``, advancing a tenth at a time.

Hysteresis: a breach starts when an objective is exceeded; it resolves only when every objective
is back at or below ``(1 - hysteresis) * threshold`` (or the window holds no spans). One alert when a
breach starts, one when it resolves — however the values move in between.
"""

from __future__ import annotations

import fnmatch
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ddsketch import DDSketch

from ._config import SloSpec

__all__ = ["RELATIVE_ACCURACY", "SLICES", "Matcher", "SloEngine", "SloState"]

RELATIVE_ACCURACY = 0.01
SLICES = 10
_GLOB = frozenset("*?[")


def _pattern(value: str | None) -> Callable[[str | None], bool] | None:
    if value is None:
        return None
    if not (_GLOB & set(value)):
        return lambda s: s == value
    return lambda s: s is not None and fnmatch.fnmatchcase(s, value)


class Matcher:
    """Does a span belong to an SLO? Name/module/kind decisions are cached per distinct triple."""

    __slots__ = ("_cache", "_kind", "_module", "_name", "_tags", "spec")

    def __init__(self, spec: SloSpec):
        self.spec = spec
        self._name = _pattern(spec.span)
        self._module = _pattern(spec.module)
        self._kind = spec.kind
        self._tags = spec.tag
        self._cache: dict[tuple, bool] = {}

    def __call__(self, span: Any, trace: Any) -> bool:
        if self.spec.roots_only:
            return span.parent_id is None or span is trace.root
        return self.matches_key((span.name, span.module_path, span.kind)) and self.matches_tags(span, trace)

    def matches_key(self, key: tuple) -> bool:
        """The name / module / kind selectors, for ``key = (name, module_path, kind)``."""
        hit = self._cache.get(key)
        if hit is None:
            name, module, kind = key
            hit = bool((self._name is None or self._name(name))
                       and (self._module is None or self._module(module))
                       and (self._kind is None or kind == self._kind))
            if len(self._cache) < 10_000:
                self._cache[key] = hit
        return hit

    def matches_tags(self, span: Any, trace: Any) -> bool:
        for k, v in self._tags:
            got = span.tags.get(k)
            if got is None:
                got = trace.tags.get(k)
            if got != v:
                return False
        return True


class _Slice:
    __slots__ = ("cost", "count", "errors", "index", "sketch")

    def __init__(self, index: int):
        self.index = index
        self.sketch = DDSketch(RELATIVE_ACCURACY)
        self.count = 0.0
        self.errors = 0.0
        self.cost = 0.0


class SloState:
    """The rolling window and the breach state of one SLO."""

    def __init__(self, spec: SloSpec):
        self.spec = spec
        self.matcher = Matcher(spec)
        self.width = spec.window_s / SLICES
        self.ring: list[_Slice | None] = [None] * SLICES
        self.breached = False
        self.breach_started: float | None = None
        self.last_alert_at: float | None = None
        self.last_alert_state: str | None = None
        self.last_observed: dict[str, Any] = {}
        self.p95_threshold_s = None if spec.p95_ms is None else spec.p95_ms / 1000.0
        self.resolve_threshold_s: float | None = None
        #: the monitor's labelled Prometheus children of this SLO
        self.children: tuple = ()

    def add(self, now: float, duration_s: float, weight: float, error: bool, cost: float) -> None:
        index = int(now // self.width)
        pos = index % SLICES
        sl = self.ring[pos]
        if sl is None or sl.index != index:
            sl = self.ring[pos] = _Slice(index)
        sl.sketch.add(duration_s * 1000.0, weight)
        sl.count += weight
        if error:
            sl.errors += weight
        if cost:
            sl.cost += cost * weight

    def summary(self, now: float) -> dict[str, Any]:
        current = int(now // self.width)
        merged = DDSketch(RELATIVE_ACCURACY)
        count = errors = cost = 0.0
        for sl in self.ring:
            if sl is None or sl.index <= current - SLICES:
                continue
            merged.merge(sl.sketch)
            count += sl.count
            errors += sl.errors
            cost += sl.cost
        p50 = p95 = p99 = None
        if count > 0:
            p50, p95, p99 = (merged.get_quantile_value(q) for q in (0.5, 0.95, 0.99))
        return {
            "events": count,
            "errors": errors,
            "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
            "error_rate": (errors / count) if count else None,
            "cost_usd_per_hour": cost * 3600.0 / self.spec.window_s,
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SloEngine:
    """Every configured SLO; ``add_traces`` on the delivery path, ``evaluate`` on the monitor's thread."""

    def __init__(self, specs: tuple[SloSpec, ...], hysteresis: float = 0.1, clock: Callable[[], float] = time.time):
        self.states = [SloState(s) for s in specs]
        self.hysteresis = hysteresis
        self.clock = clock
        self.lock = threading.Lock()
        self.want_cost = any(s.cost_usd_per_hour is not None for s in specs)
        #: SLOs without selectors judge root spans; the others are found per (name, module, kind)
        self.root_states = [st for st in self.states if st.spec.roots_only]
        self.candidate_cache: dict[tuple, list[SloState]] = {}
        self._host = socket.gethostname()

    def candidates(self, key: tuple) -> list[SloState]:
        """The selector-driven SLOs whose name / module / kind selectors match ``key`` (cached)."""
        found = [st for st in self.states if not st.spec.roots_only and st.matcher.matches_key(key)]
        if len(self.candidate_cache) < 10_000:
            self.candidate_cache[key] = found
        return found

    def evaluate(self, now: float | None = None) -> list[dict[str, Any]]:
        """Judge every SLO now; return the alerts (breach started / resolved) to send."""
        now = self.clock() if now is None else now
        alerts = []
        with self.lock:
            summaries = [(st, st.summary(now)) for st in self.states]
        for st, obs in summaries:
            st.last_observed = obs
            thresholds = st.spec.thresholds()
            over = [k for k, thr in thresholds.items() if obs[k] is not None and obs[k] > thr]
            if not st.breached:
                if over:
                    st.breached, st.breach_started = True, now
                    alerts.append(self._alert(st, "firing", now, obs, over))
            else:
                calm = all(obs[k] is None or obs[k] <= thr * (1.0 - self.hysteresis)
                           for k, thr in thresholds.items())
                if calm:
                    alerts.append(self._alert(st, "resolved", now, obs, over))
                    st.breached = False
        return alerts

    def _alert(self, st: SloState, state: str, now: float, obs: dict, over: list[str]) -> dict[str, Any]:
        st.last_alert_at, st.last_alert_state = now, state
        spec = st.spec
        return {
            "version": 1,
            "source": "dspy-tracekit.monitor",
            "kind": "slo",
            "slo": spec.name,
            "state": state,
            "at": _iso(now),
            "at_unix": now,
            "breach_started_at": _iso(st.breach_started) if st.breach_started is not None else None,
            "window": spec.window,
            "window_s": spec.window_s,
            "selector": spec.selector(),
            "thresholds": spec.thresholds(),
            "breaches": over,
            "observed": {k: obs[k] for k in ("events", "errors", "error_rate", "p50_ms", "p95_ms", "p99_ms",
                                             "cost_usd_per_hour")},
            "hysteresis": self.hysteresis,
            "host": self._host,
            "pid": os.getpid(),
        }
