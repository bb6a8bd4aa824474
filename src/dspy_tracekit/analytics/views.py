"""Flattened views of a stored trace: spans, tags, tokens, cost, sampling weight."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dspy_tracekit.analytics._keys import (
    _INTERNAL_TAG_PREFIXES,
    _MODEL_SPAN_TYPES,
    _MODULE_SPAN_TYPES,
    CONTEXT_ATTR_PREFIX,
    COST_ATTR,
    MODEL_ATTR,
    MODULE_PATH_ATTR,
    TOKEN_USAGE_ATTR,
)
from dspy_tracekit.keys import sampling_probability as _sampling_probability

logger = logging.getLogger("dspy_tracekit.analytics")


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
    return _sampling_probability(tags)


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


def subtree(span: SpanView) -> list[SpanView]:
    """``span`` and every span below it (depth first)."""
    out, todo = [], [span]
    while todo:
        s = todo.pop()
        out.append(s)
        todo.extend(s.children)
    return out
