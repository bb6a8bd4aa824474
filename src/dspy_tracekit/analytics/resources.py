"""Resource usage and load vs latency, read back from stored traces (``stats --by resources|load``).

* CPU: every span tracekit records carries ``tracekit.cpu_ms`` (thread CPU time; see
  docs/analytics.md for what is recorded when a span ends on another thread). A span's *self* CPU is
  its CPU minus its children's (at least 0); a trace's CPU is the sum of its spans' self CPU, so work
  on ``dspy.Parallel`` worker threads counts too.
* Load: each trace carries ``tracekit.load.in_flight``, the traces in flight in its process when it
  started. Latency by in-flight bucket (1, 2, 3-4, 5-8, …) and by requests per second over time show
  where latency starts to climb.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dspy_tracekit.analytics import TraceView, _num, weighted_percentile
from dspy_tracekit.records import CPU_ATTR, IN_FLIGHT_TAG, PEAK_MEMORY_TAG

__all__ = [
    "CPU_BOUND_SHARE",
    "LoadStats",
    "ResourceStats",
    "in_flight_bucket",
    "load_stats",
    "resource_stats",
    "span_cpu_ms",
    "trace_cpu_ms",
]

#: a span whose CPU time is at least this share of its wall time is "CPU-bound", else "waiting"
#: (a spinning span on a busy 2-core machine gets ~40% of a core: not 100%).
CPU_BOUND_SHARE = 0.25
#: the knee: the first bucket whose P95 exceeds the lightest bucket's P95 by this factor.
KNEE_FACTOR = 1.5


def span_cpu_ms(span) -> float | None:
    value = span.attributes.get(CPU_ATTR) if span.attributes else None
    return _num(value)


def _self_cpu(span) -> float | None:
    cpu = span_cpu_ms(span)
    if cpu is None:
        return None
    kids = sum(span_cpu_ms(c) or 0.0 for c in span.children)
    return max(0.0, cpu - kids)


def trace_cpu_ms(view: TraceView) -> float | None:
    """Sum of the spans' self CPU (ms), or ``None`` when no span recorded CPU time."""
    values = [_self_cpu(s) for s in view.spans]
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def trace_peak_memory(view: TraceView) -> float | None:
    return _num(view.tags.get(PEAK_MEMORY_TAG))


def trace_in_flight(view: TraceView) -> int | None:
    n = _num(view.tags.get(IN_FLIGHT_TAG))
    return int(n) if n is not None and n >= 1 else None


@dataclass
class SpanResources:
    name: str
    span_type: str
    count: float
    wall_ms: float
    cpu_ms: float
    self_cpu_ms: float
    cpu_share: float
    cpu_per_wall: float
    kind: str  # "CPU-bound" or "waiting"


@dataclass
class Correlation:
    what: str
    n: int
    spearman_rho: float | None
    p_value: float | None


@dataclass
class ResourceStats:
    """``stats --by resources``: CPU share per span name, CPU-bound vs waiting, correlations."""

    traces: int
    traces_with_cpu: int
    traces_with_memory: int
    cpu_ms: float
    spans: list[SpanResources] = field(default_factory=list)
    correlations: list[Correlation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, float | None]:
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None, None
    from scipy.stats import spearmanr

    res = spearmanr(x, y)
    rho, p = float(res.statistic), float(res.pvalue)
    return (None if math.isnan(rho) else rho), (None if math.isnan(p) else p)


def resource_stats(views: Sequence[TraceView]) -> ResourceStats:
    by_name: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    total_self = 0.0
    cpu_x, cpu_y, mem_x, mem_y = [], [], [], []
    with_cpu = with_mem = 0
    for view in views:
        for span in view.spans:
            cpu = span_cpu_ms(span)
            if cpu is None:
                continue
            own = _self_cpu(span) or 0.0
            row = by_name[(span.name, span.span_type)]
            row[0] += view.weight
            row[1] += span.duration_ms * view.weight
            row[2] += cpu * view.weight
            row[3] += own * view.weight
            total_self += own * view.weight
        cpu = trace_cpu_ms(view)
        if cpu is not None:
            with_cpu += 1
            cpu_x.append(cpu)
            cpu_y.append(view.duration_ms)
        mem = trace_peak_memory(view)
        if mem is not None:
            with_mem += 1
            mem_x.append(mem)
            mem_y.append(view.duration_ms)
    spans = []
    for (name, span_type), (count, wall, cpu, own) in by_name.items():
        ratio = cpu / wall if wall > 0 else 0.0
        spans.append(SpanResources(name, span_type, count, wall, cpu, own,
                                   own / total_self if total_self > 0 else 0.0, ratio,
                                   "CPU-bound" if ratio >= CPU_BOUND_SHARE else "waiting"))
    spans.sort(key=lambda r: (-r.self_cpu_ms, r.name))
    correlations = []
    for what, x, y in (("trace CPU ms vs latency", cpu_x, cpu_y), ("peak memory vs latency", mem_x, mem_y)):
        rho, p = _spearman(x, y)
        correlations.append(Correlation(what, len(x), rho, p))
    return ResourceStats(traces=len(views), traces_with_cpu=with_cpu, traces_with_memory=with_mem,
                         cpu_ms=total_self, spans=spans, correlations=correlations)


# --------------------------------------------------------------------------------------------------
# Load
# --------------------------------------------------------------------------------------------------


def in_flight_bucket(n: int) -> str:
    """1, 2, 3-4, 5-8, 9-16, … (powers of two)."""
    if n <= 2:
        return str(n)
    upper = 1 << (n - 1).bit_length()
    return f"{upper // 2 + 1}-{upper}"


def _bucket_order(label: str) -> int:
    return int(label.split("-")[0])


@dataclass
class LoadBucket:
    bucket: str
    traces: float
    stored: int
    p50_ms: float | None
    p95_ms: float | None
    error_rate: float


@dataclass
class RateWindow:
    start_ms: int
    seconds: float
    requests_per_s: float
    traces: float
    p50_ms: float | None
    p95_ms: float | None
    error_rate: float


@dataclass
class LoadStats:
    """``stats --by load``: latency and errors by traces in flight, and by requests/s over time."""

    traces: int
    traces_with_load: int
    by_in_flight: list[LoadBucket] = field(default_factory=list)
    over_time: list[RateWindow] = field(default_factory=list)
    by_rate: list[LoadBucket] = field(default_factory=list)
    #: the first in-flight bucket whose P95 is KNEE_FACTOR× the lightest bucket's, if any.
    knee: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bucket(label: str, group: Sequence[TraceView]) -> LoadBucket:
    w = [v.weight for v in group]
    total = sum(w)
    d = [v.duration_ms for v in group]
    return LoadBucket(label, total, len(group), weighted_percentile(d, w, 50), weighted_percentile(d, w, 95),
                      sum(v.weight for v in group if v.failed) / total if total else 0.0)


def _rate_bucket(rps: float) -> str:
    if rps < 1:
        return "<1"
    upper = 1 << int(math.floor(math.log2(rps)) + 1)
    return f"{upper // 2}-{upper}"


def load_stats(views: Sequence[TraceView], max_windows: int = 30, min_window_s: float = 1.0) -> LoadStats:
    groups: dict[str, list[TraceView]] = defaultdict(list)
    loaded = 0
    for view in views:
        n = trace_in_flight(view)
        if n is None:
            continue
        loaded += 1
        groups[in_flight_bucket(n)].append(view)
    by_in_flight = [_bucket(k, groups[k]) for k in sorted(groups, key=_bucket_order)]
    knee = None
    if by_in_flight and by_in_flight[0].p95_ms:
        base = by_in_flight[0].p95_ms
        knee = next((b.bucket for b in by_in_flight[1:] if b.p95_ms and b.p95_ms > KNEE_FACTOR * base), None)
    over_time: list[RateWindow] = []
    rate_groups: dict[str, list[TraceView]] = defaultdict(list)
    if views:
        start = min(v.start_ms for v in views)
        end = max(v.start_ms for v in views)
        width_ms = max(int(min_window_s * 1000), math.ceil((end - start + 1) / max_windows))
        windows: dict[int, list[TraceView]] = defaultdict(list)
        for v in views:
            windows[(v.start_ms - start) // width_ms].append(v)
        for i in sorted(windows):
            group = windows[i]
            b = _bucket("", group)
            rps = b.traces / (width_ms / 1000)
            over_time.append(RateWindow(start + i * width_ms, width_ms / 1000, rps, b.traces, b.p50_ms, b.p95_ms,
                                        b.error_rate))
            rate_groups[_rate_bucket(rps)].extend(group)
    by_rate = [_bucket(k, rate_groups[k]) for k in sorted(rate_groups, key=lambda s: -1 if s == "<1" else int(s.split("-")[0]))]
    return LoadStats(traces=len(views), traces_with_load=loaded, by_in_flight=by_in_flight, over_time=over_time,
                     by_rate=by_rate, knee=knee)
