"""Translation (delivery path): tracekit's records → MLflow span entities, attribute values, trace info.

Computed the way MLflow computes them (the SQL fast path in :mod:`dspy_tracekit.mlflow.rows` writes the
same rows from the same values; ``plugins/buffer/tests/test_buffer_store_fast_path.py`` proves it).
"""

from __future__ import annotations

import json
from typing import Any

from dspy_tracekit.keys import (
    COST_ATTR,
    INPUTS_ATTR,
    KIND_ATTR,
    MODEL_ATTR,
    MODULE_PATH_ATTR,
    OUTPUTS_ATTR,
    PROVIDER_ATTR,
    REQUEST_ID_ATTR,
    SPAN_TYPE_ATTR,
    TOKEN_USAGE_ATTR,
)
from dspy_tracekit.records import SpanKind, SpanRecord, TraceRecord

_SESSION_TAGS = ("session_id", "session")
_USER_TAGS = ("user_id", "user")


#: ``json.dumps(value, default=str, ensure_ascii=False)`` without building an encoder per call.
_encode = json.JSONEncoder(default=str, ensure_ascii=False).encode
_encode_str = json.encoder.encode_basestring  # what that encoder does with a str, in C


def _dumps(value: Any) -> str:
    """An attribute value as MLflow stores it: ``json.dumps(value, ensure_ascii=False)``, same text."""
    if value.__class__ is str:
        return _encode_str(value)
    return _encode(value)


_INFO_ATTRIBUTES = ("mlflow.client_request_id", "mlflow.request_preview", "mlflow.response_preview",
                    "mlflow.state")


def _has_trace_info(trace: TraceRecord) -> bool:
    """Does the trace carry what only MLflow's trace info holds (metadata, client request id, previews)?"""
    return bool(trace.metadata) or any(k in trace.attributes for k in _INFO_ATTRIBUTES)


def trace_info(trace: TraceRecord, experiment_id: str):
    """The MLflow ``TraceInfo`` of a trace that carries metadata; written after its spans."""
    from mlflow.entities.trace_info import TraceInfo
    from mlflow.entities.trace_location import TraceLocation
    from mlflow.entities.trace_state import TraceState

    attrs = trace.attributes
    state = attrs.get("mlflow.state") or trace.status
    end = trace.end_ns
    return TraceInfo(
        trace_id=trace.mlflow_trace_id,
        trace_location=TraceLocation.from_experiment_id(experiment_id),
        request_time=trace.start_ns // 1_000_000,
        execution_duration=None if end is None else (end - trace.start_ns) // 1_000_000,
        state=TraceState(state),
        client_request_id=attrs.get("mlflow.client_request_id"),
        request_preview=attrs.get("mlflow.request_preview"),
        response_preview=attrs.get("mlflow.response_preview"),
        trace_metadata={str(k): str(v) for k, v in trace.metadata.items()},
        tags={},
    )



def span_attribute_values(trace: TraceRecord, s: SpanRecord) -> dict[str, Any]:
    """MLflow span attributes of a materialized span, as plain values (not yet JSON-encoded)."""
    a: dict[str, Any] = {
        REQUEST_ID_ATTR: trace.mlflow_trace_id,
        SPAN_TYPE_ATTR: s.span_type or "UNKNOWN",
        KIND_ATTR: s.kind,
    }
    if s.inputs is not None:
        a[INPUTS_ATTR] = s.inputs
    if s.outputs is not None:
        a[OUTPUTS_ATTR] = s.outputs
    if s.module_path:
        a[MODULE_PATH_ATTR] = s.module_path
    for k, v in (s.tags or {}).items():
        a[f"tracekit.context.{k}"] = v
    if s.kind == SpanKind.LM:
        if s.model:
            a[MODEL_ATTR] = s.model
            a["model"] = s.model
        if s.provider:
            a[PROVIDER_ATTR] = s.provider
        for k, v in (s.params or {}).items():
            if v is not None and k not in a:
                a[k] = v
        if s.usage:
            u = s.usage
            usage = {"input_tokens": u.get("input_tokens", 0), "output_tokens": u.get("output_tokens", 0),
                     "total_tokens": u.get("total_tokens", 0)}
            if u.get("cached_tokens"):
                usage["cache_read_input_tokens"] = u["cached_tokens"]
            if u.get("cache_write_tokens"):
                usage["cache_creation_input_tokens"] = u["cache_write_tokens"]
            a[TOKEN_USAGE_ATTR] = usage
            if u.get("reasoning_tokens"):
                a["tracekit.usage.reasoning_tokens"] = u["reasoning_tokens"]
        if s.cache_hit is not None:
            a["tracekit.lm.cache_hit"] = s.cache_hit
        if s.first_token_ns is not None:
            a["tracekit.lm.time_to_first_token_ms"] = (s.first_token_ns - s.start_ns) / 1e6
    if s.cost:
        a[COST_ATTR] = s.cost
    if s.attributes:
        for k, v in s.attributes.items():
            a[k] = v
    if s.parent_id is None:
        for k, v in trace.tags.items():
            a[f"mlflow.traceTag.{k}"] = str(v)
        session = trace.metadata.get("mlflow.trace.session") or next(
            (trace.tags[k] for k in _SESSION_TAGS if trace.tags.get(k)), None)
        if session:
            a["session.id"] = str(session)
        user = trace.metadata.get("mlflow.trace.user") or next(
            (trace.tags[k] for k in _USER_TAGS if trace.tags.get(k)), None)
        if user:
            a["user.id"] = str(user)
    return a


def span_attributes(trace: TraceRecord, s: SpanRecord) -> dict[str, str]:
    """MLflow span attributes (JSON-encoded values, as MLflow stores them) of a materialized span."""
    return {k: _dumps(v) for k, v in span_attribute_values(trace, s).items()}


def _events_and_status(s: SpanRecord):
    from opentelemetry.sdk.trace import Event
    from opentelemetry.trace import Status, StatusCode

    events = [Event(e["name"], _event_attributes(e.get("attributes")), timestamp=e.get("timestamp_ns"))
              for e in s.events or ()]
    err = s.error
    if err is None:
        return events, Status(StatusCode.OK)
    if not isinstance(err, dict):
        err = {"type": type(err).__name__, "message": str(err)}
    events.append(Event("exception", {
        "exception.type": err.get("type", "Exception"),
        "exception.message": err.get("message", ""),
        "exception.stacktrace": err.get("traceback", ""),
    }, timestamp=s.end_ns or s.start_ns))
    return events, Status(StatusCode.ERROR, f"{err.get('type')}: {err.get('message')}")


def _event_attributes(attrs) -> dict:
    """OpenTelemetry event attributes hold primitives (or lists of them): anything else as JSON."""
    out = {}
    for k, v in (attrs or {}).items():
        out[str(k)] = v if isinstance(v, (str, bool, int, float)) else _dumps(v)
    return out


def to_mlflow_spans(trace: TraceRecord) -> list:
    """MLflow ``Span`` entities of a materialized trace, ready for ``log_spans``."""
    from mlflow.entities.span import Span
    from mlflow.tracing.utils import build_otel_context
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan

    resource = Resource.get_empty()
    tid = trace.trace_id
    out = []
    known = {s.span_id for s in trace.spans}
    for s in trace.spans:
        events, status = _events_and_status(s)
        parent_id = s.parent_id if s.parent_id in known else None
        if parent_id is None and s is not trace.root and trace.root is not None:
            parent_id = trace.root.span_id  # orphan (its parent was not recorded): hang it on the root
        otel = ReadableSpan(
            name=s.name,
            context=build_otel_context(tid, s.span_id),
            parent=build_otel_context(tid, parent_id) if parent_id is not None else None,
            start_time=s.start_ns,
            end_time=s.end_ns if s.end_ns is not None else s.start_ns,
            attributes=span_attributes(trace, s),
            status=status,
            events=events,
            resource=resource,
        )
        out.append(Span(otel))
    return out
