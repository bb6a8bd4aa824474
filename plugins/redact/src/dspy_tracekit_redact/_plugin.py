"""The tracekit hooks: redact every materialized trace on the delivery path, and MLflow's own spans.

No request-path hook is implemented: span start/end cost nothing with this plugin on.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from dspy_tracekit.hookspecs import hookimpl
from dspy_tracekit.keys import (
    COST_ATTR,
    FORMAT_ATTR,
    INPUTS_ATTR,
    MODEL_ATTR,
    OUTPUTS_ATTR,
    PROVIDER_ATTR,
    REQUEST_ID_ATTR,
    SPAN_TYPE_ATTR,
    TOKEN_USAGE_ATTR,
)

from ._pseudonym import Pseudonymizer
from ._redactor import DROP, Redactor

logger = logging.getLogger("dspy_tracekit.redact")

COUNTS_ATTRIBUTE = "redaction.counts"


class _State:
    def __init__(self):
        self.redactor: Redactor | None = None
        self.processor: Any = None
        self.lock = threading.Lock()
        self.counters: dict[str, int] = {}

    def add(self, counts: dict[str, int], traces: int = 0, spans: int = 0, mlflow_spans: int = 0) -> None:
        with self.lock:
            c = self.counters
            for k, n in ((("traces", traces), ("spans", spans), ("mlflow_spans", mlflow_spans))):
                if n:
                    c[k] = c.get(k, 0) + n
            for k, n in counts.items():
                key = f"entities.{k}"
                c[key] = c.get(key, 0) + n


_state = _State()


def _redactor() -> Redactor:
    r = _state.redactor
    if r is None:  # registered by hand without enable(): the defaults, never nothing
        r = _state.redactor = Redactor()
    return r


@hookimpl
def tracekit_configure(config: dict[str, Any], settings: Any) -> None:
    redactor = Redactor(config)
    if getattr(settings, "dry_run", False):  # doctor: check the key file, create nothing
        redactor.check_pseudonym_key()
    else:
        redactor.pseudonymizer()  # a missing or unreadable key file stops enable(), naming the file
    _uninstall_mlflow_processor()
    _state.redactor = redactor
    # With mlflow_traces = "all" (the core's default) every MLflow-made span reaches
    # tracekit_process_trace; only traces MLflow still exports itself need its span processor.
    if redactor.mlflow_spans and getattr(settings, "mlflow_traces", "all") == "dspy":
        _install_mlflow_processor()


@hookimpl
def tracekit_shutdown(timeout: float) -> None:
    _uninstall_mlflow_processor()


@hookimpl
def tracekit_counters() -> dict[str, int]:
    with _state.lock:
        return dict(_state.counters)


def _merge(into: dict[str, int], counts: dict[str, int]) -> None:
    for k, n in counts.items():
        into[k] = into.get(k, 0) + n


@hookimpl
def tracekit_process_trace(trace: Any) -> None:
    """Redact every span's inputs, outputs, params, attributes, error and tags, and the trace tags.

    Exceptions propagate on purpose: the core then drops the trace (fail closed).
    """
    r = _redactor()
    pz = r.pseudonymizer()
    cache: dict = {}  # prompts repeat across a trace's spans: redact each distinct string once
    total: dict[str, int] = {}
    trace_counts: dict[str, int] = {}
    if trace.tags:
        trace.tags = _redact_tags(r, trace.tags, trace_counts, cache, pz)
    if trace.attributes:
        trace.attributes = _redact_attributes(r, trace.attributes, trace_counts, cache, pz)
    metadata = getattr(trace, "metadata", None)  # MLflow trace metadata (TraceRecord.metadata, issue #10)
    if metadata:
        trace.metadata = _redact_tags(r, metadata, trace_counts, cache, pz)
    for span in trace.spans:
        counts: dict[str, int] = {}
        span.inputs = _field(r, span.inputs, counts, cache)
        span.outputs = _field(r, span.outputs, counts, cache)
        if span.params:
            span.params = r.redact(span.params, counts, cache) or {}
        if span.error is not None:
            span.error = _field(r, span.error, counts, cache)
        if span.tags:
            span.tags = _redact_tags(r, span.tags, counts, cache, pz)
        if getattr(span, "events", None):  # events of MLflow-made spans (span.add_event)
            span.events = r.redact(span.events, counts, cache) or []
        attrs = span.attributes
        attrs = _redact_attributes(r, attrs, counts, cache, pz, COUNTS_ATTRIBUTE) if attrs else {}
        if span is trace.root and trace_counts:
            _merge(counts, trace_counts)
        attrs[COUNTS_ATTRIBUTE] = counts
        span.attributes = attrs
        _merge(total, counts)
    if trace.root is None and trace_counts:
        _merge(total, trace_counts)
    _state.add(total, traces=1, spans=len(trace.spans))


def _field(r: Redactor, value: Any, counts: dict[str, int], cache: dict | None = None) -> Any:
    if value is None:
        return None
    out = r._value(value, counts, cache)
    return None if out is DROP else out


def _pseudonym(pz: Pseudonymizer | None, key: Any, value: Any, counts: dict[str, int]) -> str | None:
    """The pseudonym for a context identifier's value, or ``None`` if ``key`` is no identifier."""
    if pz is None or value is None or value == "":
        return None
    kind = pz.kind(key)
    if kind is None:
        return None
    counts["PSEUDONYM"] = counts.get("PSEUDONYM", 0) + 1
    return pz.pseudonym(kind, value)


_NOTHING = object()


def _redact_attributes(r: Redactor, attrs: dict[str, Any], counts: dict[str, int], cache: dict | None,
                       pz: Pseudonymizer | None, leave_out: object = _NOTHING) -> dict[str, Any]:
    """Identifier attributes get pseudonyms; the others are redacted by key and value (``leave_out``:
    a key not copied)."""
    out = {}
    keyed = r._keyed
    kind_of = pz.kind if pz is not None else None
    for k, v in attrs.items():
        if k == leave_out:
            continue
        if kind_of is not None and v is not None and v != "":
            kind = kind_of(k)
            if kind is not None:
                counts["PSEUDONYM"] = counts.get("PSEUDONYM", 0) + 1
                out[k] = pz.pseudonym(kind, v)
                continue
        red = keyed(k, v, counts, cache)
        if red is not DROP:
            out[k] = red
    return out


def _redact_tags(r: Redactor, tags: dict[str, str], counts: dict[str, int],
                 cache: dict | None = None, pz: Pseudonymizer | None = None) -> dict[str, str]:
    out = {}
    keyed = r._keyed
    kind_of = pz.kind if pz is not None else None
    for k, v in tags.items():
        if kind_of is not None and v is not None and v != "":
            kind = kind_of(k)
            if kind is not None:
                counts["PSEUDONYM"] = counts.get("PSEUDONYM", 0) + 1
                out[k] = pz.pseudonym(kind, v)
                continue
        red = keyed(k, v, counts, cache)
        if red is DROP:
            continue
        out[k] = red if type(red) is str or isinstance(red, str) else str(red)
    return out


# ----------------------------------------------------------------------------------------------
# MLflow's own spans (@mlflow.trace, mlflow.start_span) while tracekit is enabled
# ----------------------------------------------------------------------------------------------

#: span attributes MLflow writes for its own bookkeeping; nothing user-supplied in them.
_MLFLOW_STRUCTURAL = frozenset({
    REQUEST_ID_ATTR, SPAN_TYPE_ATTR, "mlflow.spanFunctionName", TOKEN_USAGE_ATTR,
    COST_ATTR, "mlflow.spanLogLevel", MODEL_ATTR, PROVIDER_ATTR, FORMAT_ATTR,
})
_FAILED = "<REDACTION_FAILED>"


def redact_live_span(span: Any) -> None:
    """Redact a MLflow ``LiveSpan`` in place before MLflow exports it (``mlflow_traces = "dspy"``: traces
    without a tracekit span). Identifier attributes get pseudonyms, and at the root the trace's tags and
    metadata are redacted, as ``tracekit_process_trace`` does on the delivery path.

    MLflow logs and ignores a span processor's exceptions, which would export the span raw; so this
    function fails closed itself: on any error it replaces inputs, outputs, attributes and
    exception events with a failure marker.
    """
    r = _redactor()
    counts: dict[str, int] = {}
    try:
        pz = r.pseudonymizer()
        cache: dict = {}  # the root's inputs are also the trace's request preview
        inputs = span.inputs
        if inputs is not None:
            span.set_inputs(_field(r, inputs, counts, cache))
        outputs = span.outputs
        if outputs is not None:
            span.set_outputs(_field(r, outputs, counts, cache))
        for key, value in list(span.attributes.items()):
            if key in _MLFLOW_STRUCTURAL or key in (INPUTS_ATTR, OUTPUTS_ATTR, COUNTS_ATTRIBUTE):
                continue
            red = _pseudonym(pz, key, value, counts)  # user.id, session_id, …: as on the delivery path
            if red is None:
                red = r._keyed(key, value, counts, cache)
                if red is DROP:
                    red = None
            if red != value:
                span.set_attribute(key, red)
        _redact_events_and_status(r, span, counts)
        if span.parent_id is None:  # the root ends last: the trace's tags and metadata are complete
            _redact_live_trace(r, pz, span, counts, cache)
        before = span.attributes.get(COUNTS_ATTRIBUTE)  # a tracekit span delivered live: already counted
        merged = dict(before) if isinstance(before, dict) else {}
        _merge(merged, counts)
        span.set_attribute(COUNTS_ATTRIBUTE, merged)
    except Exception as exc:  # noqa: BLE001 - MLflow would swallow it and export the span raw
        _fail_closed(span, exc)
        return
    _state.add(counts, mlflow_spans=1)


#: trace tags and metadata under ``mlflow.`` are MLflow's bookkeeping (names, sizes, sources, previews of
#: the root's already redacted inputs and outputs) and kept, except these identifiers; every other key,
#: the user's, is redacted
_MLFLOW_TRACE_IDENTIFIERS = ("mlflow.trace.user", "mlflow.trace.session")


def _user_keys(mapping: dict) -> list:
    return [k for k in mapping if not k.startswith("mlflow.") or k in _MLFLOW_TRACE_IDENTIFIERS]


def _live_trace_info(trace_id: str):
    """The in-memory trace of a MLflow span that is still being exported by MLflow (a context manager
    holding MLflow's registry lock). Private MLflow API, listed in the core's compat module."""
    from mlflow.tracing.trace_manager import InMemoryTraceManager

    return InMemoryTraceManager.get_instance().get_trace(trace_id)


def _redact_live_trace(r: Redactor, pz: Pseudonymizer | None, span: Any, counts: dict[str, int],
                       cache: dict) -> None:
    """Trace tags and metadata of a trace MLflow exports itself (``mlflow_traces = "dspy"``), redacted
    in place as ``tracekit_process_trace`` redacts them: identifiers become pseudonyms, other values
    are scanned. Raises if MLflow's registry cannot be reached (the span then fails closed)."""
    with _live_trace_info(span.trace_id) as trace:
        if trace is None:
            return
        info = trace.info
        for mapping in (info.tags, info.trace_metadata):
            user_keys = {k: mapping[k] for k in _user_keys(mapping)}
            if user_keys:
                red = _redact_tags(r, user_keys, counts, cache, pz)
                for k in user_keys:
                    if k in red:
                        mapping[k] = red[k]
                    else:  # a "drop" action
                        del mapping[k]


def _redact_events_and_status(r: Redactor, span: Any, counts: dict[str, int]) -> None:
    otel = span._span  # the OpenTelemetry SDK span, still recording: events/status are mutable
    events = getattr(otel, "_events", None)
    if events:
        from opentelemetry.sdk.trace import Event
        from opentelemetry.sdk.util import BoundedList

        new = []
        for ev in events:
            attrs = {k: (r.redact(v, counts) if isinstance(v, str) else v) for k, v in (ev.attributes or {}).items()}
            new.append(Event(ev.name, {k: v for k, v in attrs.items() if v is not None}, ev.timestamp))
        otel._events = BoundedList.from_seq(getattr(events, "maxlen", None), new)
    status = getattr(otel, "_status", None)
    if status is not None and status.description:
        from opentelemetry.trace import Status

        otel._status = Status(status.status_code, r.redact_text(status.description, counts))


def _fail_closed(span: Any, exc: Exception) -> None:
    with _state.lock:
        _state.counters["mlflow_span_failures"] = _state.counters.get("mlflow_span_failures", 0) + 1
    logger.warning("dspy-tracekit redact: redacting a MLflow span failed (%s: %s); its data was replaced "
                   "with %s", type(exc).__name__, exc, _FAILED)
    try:
        otel = span._span
        attrs = getattr(otel, "_attributes", None)
        keep = {k: v for k, v in dict(attrs or {}).items() if k in _MLFLOW_STRUCTURAL}
        if attrs is not None:
            attrs.clear()
            for k, v in keep.items():
                attrs[k] = v
        span.set_inputs(_FAILED)
        span.set_outputs(_FAILED)
        if getattr(otel, "_events", None):
            from opentelemetry.sdk.util import BoundedList

            otel._events = BoundedList(None)
        from opentelemetry.trace import Status

        if getattr(otel, "_status", None) is not None and otel._status.description:
            otel._status = Status(otel._status.status_code, _FAILED)
        if span.parent_id is None:
            with _live_trace_info(span.trace_id) as trace:
                if trace is not None:
                    for mapping in (trace.info.tags, trace.info.trace_metadata):
                        for k in _user_keys(mapping):
                            mapping[k] = _FAILED
    except Exception:
        logger.exception("dspy-tracekit redact: could not blank a MLflow span after a redaction failure")


def _install_mlflow_processor() -> None:
    import mlflow.tracing
    from mlflow.tracing import provider
    from mlflow.tracing.config import get_config

    current = list(get_config().span_processors)
    if redact_live_span not in current:
        mlflow.tracing.configure(span_processors=[*current, redact_live_span])
    _state.processor = redact_live_span
    # ``mlflow.set_tracking_uri()`` (and ``mlflow.tracing.reset()``) reset the tracing config to its
    # defaults, which would silently drop our processor and export MLflow spans raw: re-add it.
    original = getattr(provider, "reset_config", None)
    if original is not None and not getattr(original, "_tk_redact", False):
        def reset_config_keeping_redaction():
            original()
            if _state.processor is not None:
                mlflow.tracing.configure(span_processors=[*get_config().span_processors, _state.processor])

        reset_config_keeping_redaction._tk_redact = True  # type: ignore[attr-defined]
        reset_config_keeping_redaction.__wrapped__ = original  # type: ignore[attr-defined]
        provider.reset_config = reset_config_keeping_redaction


def _uninstall_mlflow_processor() -> None:
    if _state.processor is None:
        return
    import mlflow.tracing
    from mlflow.tracing import provider
    from mlflow.tracing.config import get_config

    current = list(get_config().span_processors)
    # keep processors the user configured meanwhile; remove only ours
    mlflow.tracing.configure(span_processors=[p for p in current if p is not _state.processor])
    _state.processor = None
    patched = getattr(provider, "reset_config", None)
    if getattr(patched, "_tk_redact", False):
        provider.reset_config = patched.__wrapped__
