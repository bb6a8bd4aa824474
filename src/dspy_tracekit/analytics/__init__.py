"""Trace analytics: read tracekit's MLflow traces back and turn them into answers.

Everything here reads the store through MLflow's public client API (``MlflowClient.search_traces``,
``get_trace``, ``delete_traces``), so it works on any MLflow store — the embedded SQLite file, or a
tracking server backed by PostgreSQL. The ``dspy-tracekit`` command line is a thin layer over the
functions below; they return plain dataclasses with ``to_dict()`` so scripts get the same numbers.

Sampling: when the sample plugin kept a trace with probability ``p`` it writes the trace tag
``tracekit.sampling.probability``; every count, token sum, cost and percentile here weighs that
trace by ``1/p``, so the figures estimate the full traffic rather than the sampled subset.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import IO, Any

logger = logging.getLogger("dspy_tracekit.analytics")

__all__ = [
    "AnalyticsError",
    "PrunePlan",
    "SpanView",
    "Stats",
    "Store",
    "TraceView",
    "build_filter",
    "count_traces",
    "export_csv",
    "export_json",
    "get_trace",
    "iter_traces",
    "last_trace",
    "load_traces",
    "open_store",
    "parse_age",
    "parse_since",
    "plan_prune",
    "prune",
    "span_rows",
    "stats",
    "trace_views",
    "weighted_percentile",
]

#: trace tag the sample plugin writes: the probability with which the trace was kept.
SAMPLING_TAG = "tracekit.sampling.probability"
#: span attribute prefix under which the core copies the context tags onto every span.
CONTEXT_ATTR_PREFIX = "tracekit.context."
TOKEN_USAGE_ATTR = "mlflow.chat.tokenUsage"
COST_ATTR = "mlflow.llm.cost"
MODEL_ATTR = "mlflow.llm.model"
#: span attribute the core writes: dotted path of the enclosing DSPy modules.
MODULE_PATH_ATTR = "tracekit.module_path"
#: trace tags that are bookkeeping, not context: left out of error correlation and CSV context columns.
_INTERNAL_TAG_PREFIXES = ("mlflow.", "tracekit.")
#: span types that are calls to a model, not DSPy modules: a model's cost is charged to the enclosing module.
_MODEL_SPAN_TYPES = {"CHAT_MODEL", "LLM_CALL", "EMBEDDING"}
_MODULE_SPAN_TYPES = {"CHAIN", "AGENT", "LLM", "TOOL", "RETRIEVER", "EVALUATOR"}
_PAGE_SIZE = 200


class AnalyticsError(Exception):
    """Bad input or an unreachable store: the message is one line, meant for the user as is."""


# --------------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Time filters
# --------------------------------------------------------------------------------------------------

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(value: str) -> timedelta:
    """``"30m"``, ``"1h"``, ``"7d"``, ``"2w"`` → a :class:`timedelta`.

    :raises AnalyticsError: anything else.
    """
    match = _AGE.match(value or "")
    if not match:
        raise AnalyticsError(f"bad duration {value!r}: use a number and a unit, like 30m, 1h, 7d or 2w")
    amount, unit = float(match.group(1)), match.group(2).lower()
    return timedelta(seconds=amount * _UNIT_SECONDS[unit])


def parse_since(value: str, now: datetime | None = None) -> int:
    """``"1h"`` / ``"7d"`` (ago) or a date ``"2026-11-01"`` / ISO time (UTC unless it says) → epoch ms.

    :raises AnalyticsError: the value is neither an age nor a date.
    """
    now = now or datetime.now(timezone.utc)
    if _AGE.match(value or ""):
        return int((now - parse_age(value)).timestamp() * 1000)
    try:
        when = datetime.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        raise AnalyticsError(
            f"bad --since {value!r}: use an age like 1h or 7d, or a date like 2026-11-01"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def build_filter(since: str | None = None, filter: str | None = None, *extra: str) -> str | None:
    """AND together ``--since``, the user's MLflow filter string and any extra clauses."""
    clauses = []
    if since:
        clauses.append(f"trace.timestamp_ms >= {parse_since(since)}")
    if filter and filter.strip():
        clauses.append(filter.strip())
    clauses.extend(extra)
    return " AND ".join(clauses) or None


# --------------------------------------------------------------------------------------------------
# Reading traces
# --------------------------------------------------------------------------------------------------


def _search_page(store: Store, filter_string, include_spans, max_results, order_by, token):
    try:
        return store.client.search_traces(
            locations=[store.experiment_id],
            filter_string=filter_string,
            max_results=max_results,
            order_by=order_by,
            page_token=token,
            include_spans=include_spans,
        )
    except Exception as exc:  # a bad filter or a lost connection: one line for the user
        error_code = getattr(exc, "error_code", "")
        if filter_string and error_code == "INVALID_PARAMETER_VALUE":
            raise AnalyticsError(f"bad filter {filter_string!r}: {_one_line(exc)}") from exc
        raise AnalyticsError(f"cannot read traces from {store.tracking_uri}: {_one_line(exc)}") from exc


def iter_traces(
    store: Store,
    since: str | None = None,
    filter: str | None = None,
    *,
    include_spans: bool = True,
    limit: int | None = None,
    order_by: Sequence[str] = ("timestamp_ms DESC",),
    extra: Sequence[str] = (),
) -> Iterator[Any]:
    """Yield MLflow :class:`~mlflow.entities.Trace` objects page by page (newest first by default)."""
    filter_string = build_filter(since, filter, *extra)
    token, seen = None, 0
    while True:
        page_size = _PAGE_SIZE if limit is None else min(_PAGE_SIZE, limit - seen)
        if page_size <= 0:
            return
        page = _search_page(store, filter_string, include_spans, page_size, list(order_by), token)
        for trace in page:
            yield trace
            seen += 1
        token = page.token
        if not token or not len(page):
            return


def load_traces(
    tracking_uri: str | None = None,
    experiment: str | None = None,
    since: str | None = None,
    filter: str | None = None,
    *,
    limit: int | None = None,
    include_spans: bool = True,
) -> list[Any]:
    """All traces of the experiment that match (MLflow ``Trace`` objects, newest first)."""
    store = open_store(tracking_uri, experiment)
    return list(iter_traces(store, since, filter, include_spans=include_spans, limit=limit))


def count_traces(store: Store, since: str | None = None, filter: str | None = None) -> int:
    """How many traces match (reads trace metadata only, no spans)."""
    return sum(1 for _ in iter_traces(store, since, filter, include_spans=False))


def get_trace(store: Store, trace_id: str) -> Any:
    """One trace by id. :raises AnalyticsError: no such trace."""
    try:
        trace = store.client.get_trace(trace_id, display=False)
    except Exception as exc:  # MLflow raises RESOURCE_DOES_NOT_EXIST, or a transport error
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower():
            raise AnalyticsError(f"trace {trace_id!r} not found in {store.tracking_uri}") from exc
        raise AnalyticsError(f"cannot read trace {trace_id!r}: {_one_line(exc)}") from exc
    if trace is None:
        raise AnalyticsError(f"trace {trace_id!r} not found in {store.tracking_uri}")
    return trace


def last_trace(store: Store, since: str | None = None, filter: str | None = None) -> Any:
    """The newest matching trace. :raises AnalyticsError: there is none."""
    for trace in iter_traces(store, since, filter, limit=1):
        return trace
    raise AnalyticsError(f"no traces in experiment {store.experiment_name!r} match")


# --------------------------------------------------------------------------------------------------
# Flattened views of a trace
# --------------------------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _as_dict(value: Any) -> dict:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


@dataclass
class SpanView:
    """One span, flattened for analysis."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    span_type: str
    start_ns: int
    end_ns: int
    status: str
    error: str | None
    input_tokens: float | None
    output_tokens: float | None
    total_tokens: float | None
    cost_usd: float | None
    model: str | None
    context: dict[str, str]
    depth: int = 0
    module: str | None = None
    children: list[SpanView] = field(default_factory=list, repr=False)
    #: the span's MLflow attributes as stored (decoded values): CPU time, scores, versions, …
    attributes: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def duration_ms(self) -> float:
        return max(0, (self.end_ns or self.start_ns) - self.start_ns) / 1e6

    @property
    def failed(self) -> bool:
        return self.status == "ERROR"


@dataclass
class TraceView:
    """One trace, flattened: its spans in depth-first order, its sampling weight, tags and inputs."""

    trace_id: str
    start_ms: int
    duration_ms: float
    status: str
    tags: dict[str, str]
    weight: float
    probability: float | None
    inputs: Any
    spans: list[SpanView]

    @property
    def failed(self) -> bool:
        return self.status == "ERROR"

    @property
    def root(self) -> SpanView | None:
        return self.spans[0] if self.spans else None

    @property
    def context(self) -> dict[str, str]:
        return {k: v for k, v in self.tags.items() if not k.startswith(_INTERNAL_TAG_PREFIXES)}

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd or 0.0 for s in self.spans)


def _status(value: Any) -> str:
    code = getattr(value, "status_code", value)
    code = getattr(code, "value", code)
    text = str(code or "UNSET").upper()
    return text.rsplit(".", 1)[-1]


def _span_view(trace_id: str, span: Any) -> SpanView:
    attrs = span.attributes or {}
    usage = _as_dict(attrs.get(TOKEN_USAGE_ATTR))
    cost = attrs.get(COST_ATTR)
    cost_usd = _num(_as_dict(cost).get("total_cost")) if cost is not None else None
    if cost is not None and cost_usd is None:
        cost_usd = _num(cost)
    status = _status(span.status)
    error = None
    if status == "ERROR":
        error = getattr(span.status, "description", None) or None
        for event in span.events or []:
            if event.name == "exception":
                ea = event.attributes or {}
                error = (
                    f"{ea.get('exception.type', '')}: {ea.get('exception.message', '')}".strip(": ") or error
                )
                break
    context = {
        k[len(CONTEXT_ATTR_PREFIX) :]: str(v) for k, v in attrs.items() if k.startswith(CONTEXT_ATTR_PREFIX)
    }
    return SpanView(
        trace_id=trace_id,
        span_id=span.span_id,
        parent_id=span.parent_id,
        name=span.name,
        span_type=str(span.span_type or "UNKNOWN"),
        start_ns=int(span.start_time_ns or 0),
        end_ns=int(span.end_time_ns or span.start_time_ns or 0),
        status=status,
        error=error,
        input_tokens=_num(usage.get("input_tokens")),
        output_tokens=_num(usage.get("output_tokens")),
        total_tokens=_num(usage.get("total_tokens")),
        cost_usd=cost_usd,
        model=attrs.get(MODEL_ATTR) if isinstance(attrs.get(MODEL_ATTR), str) else None,
        context=context,
        module=attrs.get(MODULE_PATH_ATTR) if isinstance(attrs.get(MODULE_PATH_ATTR), str) else None,
        attributes=attrs,
    )


def sampling_probability(tags: dict[str, str]) -> float | None:
    """The probability the sample plugin kept this trace with, if it says (and it is in (0, 1])."""
    p = _num(tags.get(SAMPLING_TAG))
    return p if p is not None and 0.0 < p <= 1.0 else None


def trace_view(trace: Any) -> TraceView:
    """Flatten an MLflow ``Trace``: spans in depth-first, start-time order, with depth and module."""
    info = trace.info
    trace_id = info.trace_id
    spans = [_span_view(trace_id, s) for s in (trace.data.spans if trace.data else [])]
    by_id = {s.span_id: s for s in spans}
    roots = []
    for s in spans:
        parent = by_id.get(s.parent_id) if s.parent_id else None
        (parent.children if parent else roots).append(s)
    ordered: list[SpanView] = []

    def walk(span: SpanView, depth: int, module: str | None) -> None:
        span.depth = depth
        if span.module is None:  # no module path recorded (spans not written by tracekit): derive it
            span.module = (
                module if span.span_type in _MODEL_SPAN_TYPES or span.span_type == "PARSER" else span.name
            )
        ordered.append(span)
        own_module = span.name if span.span_type in _MODULE_SPAN_TYPES else module
        for child in sorted(span.children, key=lambda c: c.start_ns):
            walk(child, depth + 1, own_module)

    for root in sorted(roots, key=lambda r: r.start_ns):
        walk(root, 0, None)
    tags = dict(info.tags or {})
    p = sampling_probability(tags)
    state = getattr(info.state, "value", info.state)
    inputs = _root_inputs(trace, ordered[0].span_id) if ordered else None
    return TraceView(
        trace_id=trace_id,
        start_ms=int(info.request_time or 0),
        duration_ms=float(info.execution_duration or 0),
        status=str(state or "UNSET").upper().rsplit(".", 1)[-1],
        tags=tags,
        weight=1.0 / p if p else 1.0,
        probability=p,
        inputs=inputs,
        spans=ordered,
    )


def _root_inputs(trace: Any, span_id: str) -> Any:
    for span in trace.data.spans:
        if span.span_id == span_id:
            return span.inputs
    return None


def trace_views(traces: Iterable[Any]) -> list[TraceView]:
    """:func:`trace_view` over many traces (accepts views too, unchanged)."""
    return [t if isinstance(t, TraceView) else trace_view(t) for t in traces]


# --------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------

CSV_COLUMNS = [
    "trace_id",
    "span_id",
    "parent_id",
    "name",
    "span_type",
    "start_time",
    "start_ns",
    "duration_ms",
    "status",
    "error",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "model",
    "module",
    "sampling_probability",
]


def _fmt_num(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def span_rows(traces: Iterable[Any]) -> Iterator[dict[str, str]]:
    """One CSV row per span (all values strings); context tags as ``context.<key>`` columns."""
    for view in trace_views(traces):
        for s in view.spans:
            context = {**view.context, **s.context}
            row = {
                "trace_id": s.trace_id,
                "span_id": s.span_id,
                "parent_id": s.parent_id or "",
                "name": s.name,
                "span_type": s.span_type,
                "start_time": datetime.fromtimestamp(s.start_ns / 1e9, timezone.utc).isoformat(
                    timespec="microseconds"
                ),
                "start_ns": str(s.start_ns),
                "duration_ms": _fmt_num(s.duration_ms),
                "status": s.status,
                "error": s.error or "",
                "input_tokens": _fmt_num(s.input_tokens),
                "output_tokens": _fmt_num(s.output_tokens),
                "total_tokens": _fmt_num(s.total_tokens),
                "cost_usd": _fmt_num(s.cost_usd),
                "model": s.model or "",
                "module": s.module or "",
                "sampling_probability": _fmt_num(view.probability),
            }
            row.update({f"context.{k}": v for k, v in sorted(context.items())})
            yield row


def export_csv(traces: Iterable[Any], out: IO[str], on_trace: Callable[[], None] | None = None) -> int:
    """Write one row per span; returns the number of rows. Context columns are the union over traces."""
    rows = []
    for trace in traces:
        rows.extend(span_rows([trace]))
        if on_trace:
            on_trace()
    context_cols = sorted({k for row in rows for k in row if k.startswith("context.")})
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS + context_cols, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return len(rows)


def export_json(traces: Iterable[Any], out: IO[str], on_trace: Callable[[], None] | None = None) -> int:
    """Write a JSON array of full traces (``Trace.to_dict()``, re-readable with ``Trace.from_dict``)."""
    out.write("[")
    n = 0
    for trace in traces:
        out.write(",\n" if n else "\n")
        out.write(json.dumps(trace.to_dict(), default=str))
        n += 1
        if on_trace:
            on_trace()
    out.write("\n]\n" if n else "]\n")
    return n


# --------------------------------------------------------------------------------------------------
# Retention
# --------------------------------------------------------------------------------------------------


@dataclass
class PrunePlan:
    """The traces a prune would delete: exactly these ids, nothing found later."""

    store: Store
    cutoff_ms: int
    keep_errors: bool
    trace_ids: list[str]
    errors: int
    oldest_ms: int | None
    newest_ms: int | None
    sample: list[tuple[str, int, str]]


def plan_prune(
    store: Store,
    older_than: str,
    keep_errors: bool = False,
    filter: str | None = None,
    now: datetime | None = None,
    since: str | None = None,
) -> PrunePlan:
    """Find the traces older than ``older_than`` (``30d``…), skipping failed ones if ``keep_errors``."""
    now = now or datetime.now(timezone.utc)
    cutoff_ms = int((now - parse_age(older_than)).timestamp() * 1000)
    extra = [f"trace.timestamp_ms < {cutoff_ms}"]
    if keep_errors:
        extra.append("trace.status != 'ERROR'")
    ids, times, errors, sample = [], [], 0, []
    for trace in iter_traces(
        store, since, filter, include_spans=False, order_by=("timestamp_ms ASC",), extra=extra
    ):
        info = trace.info
        state = str(getattr(info.state, "value", info.state))
        ids.append(info.trace_id)
        times.append(int(info.request_time or 0))
        errors += state == "ERROR"
        if len(sample) < 10:
            sample.append((info.trace_id, int(info.request_time or 0), state))
    return PrunePlan(
        store=store,
        cutoff_ms=cutoff_ms,
        keep_errors=keep_errors,
        trace_ids=ids,
        errors=errors,
        oldest_ms=min(times) if times else None,
        newest_ms=max(times) if times else None,
        sample=sample,
    )


def prune(plan: PrunePlan, batch: int = 100, on_batch: Callable[[int], None] | None = None) -> int:
    """Delete exactly the traces of ``plan`` with MLflow's ``delete_traces``; returns how many went."""
    deleted = 0
    for i in range(0, len(plan.trace_ids), batch):
        chunk = plan.trace_ids[i : i + batch]
        try:
            deleted += plan.store.client.delete_traces(plan.store.experiment_id, trace_ids=chunk) or 0
        except Exception as exc:  # reported as one line; earlier batches stay deleted
            raise AnalyticsError(f"deleting traces failed after {deleted}: {_one_line(exc)}") from exc
        if on_batch:
            on_batch(len(chunk))
    return deleted
