"""Statistics: weighted percentiles, per-span stats, slow spans, execution paths, error correlation."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from dspy_tracekit.analytics.filters import build_filter
from dspy_tracekit.analytics.reading import iter_traces
from dspy_tracekit.analytics.store import open_store
from dspy_tracekit.analytics.views import SpanView, TraceView, trace_views

logger = logging.getLogger("dspy_tracekit.analytics")


def weighted_percentile(values: Sequence[float], weights: Sequence[float] | None, q: float) -> float | None:
    """The ``q``-th percentile (0–100) by the inverted-CDF rule: the smallest value whose cumulative
    weight reaches ``q%`` of the total weight.

    With unit weights this is the nearest-rank percentile, ``sorted(values)[ceil(q/100 * n) - 1]``;
    a trace kept with probability ``p`` counts as ``1/p`` traces. ``None`` for no values.
    """
    if not values:
        return None
    weights = weights if weights is not None else [1.0] * len(values)
    pairs = sorted(zip(values, weights), key=lambda vw: vw[0])
    total = sum(w for _, w in pairs)
    if total <= 0:
        return None
    target = q / 100.0 * total
    cumulative = 0.0
    for value, weight in pairs:
        cumulative += weight
        if cumulative >= target - 1e-9 * total:
            return value
    return pairs[-1][0]


@dataclass
class SpanStats:
    name: str
    span_type: str
    count: float
    stored: int
    errors: float
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    input_tokens: float
    output_tokens: float
    total_tokens: float
    cost_usd: float


@dataclass
class SlowSpan:
    trace_id: str
    span_id: str
    name: str
    span_type: str
    duration_ms: float
    status: str


@dataclass
class PathStats:
    path: str
    count: float
    share: float


@dataclass
class Correlation:
    feature: str
    traces: float
    errors: float
    error_rate: float
    lift: float


@dataclass
class Stats:
    """What ``dspy-tracekit stats`` prints; ``to_dict()`` is its ``--json``."""

    experiment: str
    tracking_uri: str
    filter: str | None
    traces_stored: int
    traces: float
    errors: float
    error_rate: float
    weighted: bool
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    cost_usd: float
    spans: list[SpanStats]
    slowest: list[SlowSpan]
    paths: list[PathStats]
    error_correlation: list[Correlation]
    cost_by_model: dict[str, float]
    cost_by_module: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def execution_path(view: TraceView) -> str:
    """The trace's shape from the root as span names, children in start order:
    ``IntentDetector(classify(ChatAdapter.format, LM, ChatAdapter.parse))``."""

    def shape(span: SpanView) -> str:
        kids = sorted(span.children, key=lambda c: c.start_ns)
        return span.name + (f"({', '.join(shape(c) for c in kids)})" if kids else "")

    return ", ".join(shape(s) for s in view.spans if s.depth == 0)


def _length_bucket(n: int) -> str:
    for upper in (0, 31, 127, 511):
        if n <= upper:
            low = 0 if upper == 0 else {31: 1, 127: 32, 511: 128}[upper]
            return f"{low}-{upper}" if upper else "0"
    return "512+"


def trace_features(view: TraceView) -> set[str]:
    """Features that may co-occur with failure: context tags, span names present, input shapes."""
    features = {f"tag {k}={v}" for k, v in view.context.items() if len(v) <= 64}
    features.update(f"span {s.name}" for s in view.spans)
    inputs = view.inputs
    if isinstance(inputs, dict):
        for key, value in inputs.items():
            if isinstance(value, str):
                features.add(f"input {key} length {_length_bucket(len(value))} chars")
                if len(value) <= 40:
                    features.add(f"input {key}={value!r}")
            elif value is None or isinstance(value, (bool, int, float)):
                features.add(f"input {key}={value!r}")
            elif isinstance(value, (list, dict)):
                features.add(f"input {key} {'empty' if not value else 'non-empty'}")
    return features


def error_correlation(
    views: Sequence[TraceView], min_support: float | None = None, top: int = 10
) -> list[Correlation]:
    """Features of failed traces ranked by lift = P(error | feature) / P(error), all weighted by 1/p.

    Features seen in fewer than ``min_support`` (weighted) traces are left out — by default 2 traces or
    1% of the traffic, whichever is larger — and so are features no likelier to fail than the average (lift <= 1).
    """
    total = sum(v.weight for v in views)
    errors = sum(v.weight for v in views if v.failed)
    if not views or errors == 0:
        return []
    base_rate = errors / total
    support = min_support if min_support is not None else max(2.0, 0.01 * total)
    seen: dict[str, float] = defaultdict(float)
    failed: dict[str, float] = defaultdict(float)
    for view in views:
        for feature in trace_features(view):
            seen[feature] += view.weight
            if view.failed:
                failed[feature] += view.weight
    rows = []
    for feature, n in seen.items():
        e = failed.get(feature, 0.0)
        if e == 0 or n < support or math.isclose(n, total) or e / n <= base_rate:
            continue
        rate = e / n
        rows.append(Correlation(feature=feature, traces=n, errors=e, error_rate=rate, lift=rate / base_rate))
    rows.sort(key=lambda c: (-c.lift, -c.errors, c.feature))
    return rows[:top]


def stats(
    traces: Iterable[Any] | None = None,
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    since: str | None = None,
    filter: str | None = None,
    top: int = 10,
) -> Stats:
    """Per span name: weighted count, error rate, P50/P95/P99 latency (ms), tokens and cost; the
    slowest spans, the most common execution paths, error correlation, cost by model and module.

    Pass ``traces`` (MLflow ``Trace`` objects or :class:`TraceView`) or let it read the store.
    """
    store = None
    if traces is None:
        store = open_store(tracking_uri, experiment)
        traces = iter_traces(store, since, filter)
    views = trace_views(traces)
    by_name: dict[tuple[str, str], list[tuple[SpanView, float]]] = defaultdict(list)
    all_spans: list[SpanView] = []
    paths: dict[str, float] = defaultdict(float)
    cost_by_model: dict[str, float] = defaultdict(float)
    cost_by_module: dict[str, float] = defaultdict(float)
    for view in views:
        paths[execution_path(view)] += view.weight
        for span in view.spans:
            by_name[(span.name, span.span_type)].append((span, view.weight))
            all_spans.append(span)
            if span.cost_usd:
                cost_by_model[span.model or span.name] += span.cost_usd * view.weight
                cost_by_module[span.module or span.name] += span.cost_usd * view.weight
    rows = []
    for (name, span_type), items in by_name.items():
        weights = [w for _, w in items]
        durations = [s.duration_ms for s, _ in items]
        count = sum(weights)
        errors = float(sum(w for s, w in items if s.failed))
        rows.append(
            SpanStats(
                name=name,
                span_type=span_type,
                count=count,
                stored=len(items),
                errors=errors,
                error_rate=errors / count if count else 0.0,
                p50_ms=weighted_percentile(durations, weights, 50),
                p95_ms=weighted_percentile(durations, weights, 95),
                p99_ms=weighted_percentile(durations, weights, 99),
                input_tokens=sum((s.input_tokens or 0) * w for s, w in items),
                output_tokens=sum((s.output_tokens or 0) * w for s, w in items),
                total_tokens=sum((s.total_tokens or 0) * w for s, w in items),
                cost_usd=sum((s.cost_usd or 0) * w for s, w in items),
            )
        )
    rows.sort(key=lambda r: (-r.count, r.name))
    slowest = sorted(all_spans, key=lambda s: -s.duration_ms)[:top]
    total = sum(v.weight for v in views)
    errors = float(sum(v.weight for v in views if v.failed))
    trace_weights = [v.weight for v in views]
    trace_durations = [v.duration_ms for v in views]
    path_rows = sorted(paths.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return Stats(
        experiment=store.experiment_name if store else (experiment or ""),
        tracking_uri=store.tracking_uri if store else (tracking_uri or ""),
        filter=build_filter(since, filter) if store else filter,
        traces_stored=len(views),
        traces=total,
        errors=errors,
        error_rate=errors / total if total else 0.0,
        weighted=any(v.probability is not None and v.probability < 1.0 for v in views),
        p50_ms=weighted_percentile(trace_durations, trace_weights, 50),
        p95_ms=weighted_percentile(trace_durations, trace_weights, 95),
        p99_ms=weighted_percentile(trace_durations, trace_weights, 99),
        cost_usd=sum(v.cost_usd * v.weight for v in views),
        spans=rows,
        slowest=[
            SlowSpan(s.trace_id, s.span_id, s.name, s.span_type, s.duration_ms, s.status) for s in slowest
        ],
        paths=[PathStats(path=k, count=c, share=c / total if total else 0.0) for k, c in path_rows],
        error_correlation=error_correlation(views, top=top),
        cost_by_model=dict(sorted(cost_by_model.items(), key=lambda kv: -kv[1])),
        cost_by_module=dict(sorted(cost_by_module.items(), key=lambda kv: -kv[1])),
    )
