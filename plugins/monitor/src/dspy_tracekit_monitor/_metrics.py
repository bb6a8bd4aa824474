"""Prometheus metrics from finished traces, with OpenTelemetry GenAI names where they exist.

``gen_ai.client.operation.duration`` → ``gen_ai_client_operation_duration_seconds`` (histogram) and
``gen_ai.client.token.usage`` → ``gen_ai_client_token_usage`` (histogram, ``gen_ai_token_type`` =
input / output / cached / reasoning), the rest under ``tracekit_``. Every value counts ``1/p`` times,
``p`` being the trace's sampling probability (trace tag ``tracekit.sampling.probability``).

Multiprocess: when ``PROMETHEUS_MULTIPROC_DIR`` is set before prometheus_client is imported, every
value lives in that directory (prometheus_client's multiprocess mode) and ``/metrics`` serves the sum
over all processes writing there.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from dspy_tracekit.keys import SAMPLING_PROBABILITY_TAG as PROBABILITY_TAG

from ._compat import counter_value, histogram_values

__all__ = ["PROBABILITY_TAG", "TOKEN_BUCKETS", "Metrics", "multiprocess_dir", "weight_of"]


#: OpenTelemetry's advice for gen_ai.client.token.usage
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
_TOKEN_TYPES = (("input_tokens", "input"), ("output_tokens", "output"), ("cached_tokens", "cached"),
                ("reasoning_tokens", "reasoning"))
#: span kind → gen_ai.operation.name (OpenTelemetry values where one exists, else the kind)
_OPERATION = {"lm": "chat", "tool": "execute_tool", "embedder": "embeddings", "predict": "invoke_agent"}
_DURATION_LABELS = ("span_name", "kind", "module", "gen_ai_operation_name", "gen_ai_request_model",
                    "gen_ai_provider_name", "status", "error_type")
_weights: dict[Any, float] = {}


class Deferred:
    """A Prometheus value whose increments collect in ``pending`` until :meth:`Metrics.flush` adds
    them up — one ``inc`` per value and flush instead of one per span (a multiprocess value's ``inc``
    takes a lock and writes a memory-mapped file)."""

    __slots__ = ("pending", "value")

    def __init__(self, value: Any, pending: dict):
        self.value = value
        self.pending = pending

    def inc(self, amount: float) -> None:
        pending = self.pending
        pending[self] = pending.get(self, 0.0) + amount


class DeferredHistogram:
    __slots__ = ("bounds", "buckets", "sum")

    def __init__(self, child: Any, pending: dict):
        total, buckets, self.bounds = histogram_values(child)
        self.sum = Deferred(total, pending)
        self.buckets = [Deferred(b, pending) for b in buckets]

    def observe(self, value: float, weight: float) -> None:
        self.sum.inc(value * weight)
        self.buckets[bisect_left(self.bounds, value)].inc(weight)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


def weight_of(trace: Any) -> float:
    """``1/p`` for a trace kept with probability ``p``; 1 when not sampled (or ``p`` unreadable)."""
    raw = trace.tags.get(PROBABILITY_TAG)
    if raw is None:
        return 1.0
    w = _weights.get(raw)
    if w is None:
        try:
            p = float(raw)
            w = 1.0 / p if 0.0 < p <= 1.0 else 1.0
        except (TypeError, ValueError):
            w = 1.0
        if len(_weights) < 1000:
            _weights[raw] = w
    return w


def error_type(err: Any) -> str:
    if isinstance(err, dict):
        return str(err.get("type") or "error")
    if isinstance(err, BaseException):
        return type(err).__name__
    return "error"


class Metrics:
    """The metric families of one ``enable()``, and cached labelled children (the label lookup of
    prometheus_client costs about as much as the observation); counters are cached as their values
    (:func:`._compat.counter_value`)."""

    def __init__(self, duration_buckets: tuple[float, ...], slo_names: tuple[str, ...] = ()):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Duration of DSPy operations (every span: module, predictor, LM, adapter, tool, ...), "
            "weighted by 1/sampling probability", _DURATION_LABELS, buckets=duration_buckets, registry=r)
        self.tokens = Histogram(
            "gen_ai_client_token_usage", "Tokens per LM call by gen_ai_token_type, weighted by 1/p",
            ("span_name", "gen_ai_request_model", "gen_ai_provider_name", "gen_ai_token_type"),
            buckets=TOKEN_BUCKETS, registry=r)
        self.cost = Counter("tracekit_cost_usd", "Cost of LM calls in USD (from the cost plugin), weighted",
                            ("span_name", "gen_ai_request_model"), registry=r)
        self.errors = Counter("tracekit_span_errors", "Spans that ended with an error, weighted",
                              ("span_name", "kind", "error_type"), registry=r)
        self.traces = Counter("tracekit_traces", "Stored traces by root span and status, weighted by 1/p "
                              "(an estimate of the traces the program made)", ("root_span", "status"), registry=r)
        self.traces_stored = Counter("tracekit_traces_stored", "Stored traces as counted by the monitor "
                                     "(not weighted)", registry=r)
        self.pipeline_exported = Counter("tracekit_traces_exported", "core.traces_exported", registry=r)
        self.pipeline_dropped = Counter("tracekit_traces_dropped", "core.traces_dropped.<reason>", ("reason",),
                                        registry=r)
        self.sampling = Counter("tracekit_sampling_decisions", "Counters of the sample plugin (sample.<decision>)",
                                ("decision",), registry=r)
        self.queue_depth = Gauge("tracekit_buffer_queue_depth", "Traces waiting in the buffer plugin's queue",
                                 registry=r, multiprocess_mode="livesum")
        self.spill_depth = Gauge("tracekit_buffer_spill_queue_depth", "Traces waiting to be spooled to disk",
                                 registry=r, multiprocess_mode="livesum")
        self.slo_events = Counter("tracekit_slo_events", "Spans an SLO's selectors matched, weighted", ("slo",),
                                  registry=r)
        self.slo_errors = Counter("tracekit_slo_errors", "Matched spans that failed, weighted", ("slo",), registry=r)
        self.slo_slow = Counter("tracekit_slo_slow", "Matched spans slower than the SLO's p95_ms "
                                "(threshold=breach) or than (1 - hysteresis) * p95_ms (threshold=resolve), weighted",
                                ("slo", "threshold"), registry=r)
        self.slo_cost = Counter("tracekit_slo_cost_usd", "Cost of matched spans (their LM calls), weighted",
                                ("slo",), registry=r)
        self.slo_breached = Gauge("tracekit_slo_breached", "1 while the in-process SLO evaluation is in breach",
                                  ("slo",), registry=r, multiprocess_mode="livemax")
        self.slo_last_alert = Gauge("tracekit_slo_last_alert_timestamp_seconds",
                                    "Unix time of the SLO's last alert (firing or resolved)", ("slo",), registry=r,
                                    multiprocess_mode="livemax")
        self.slo_p95 = Gauge("tracekit_slo_p95_seconds", "P95 of the SLO's spans in its window (DDSketch)",
                             ("slo",), registry=r, multiprocess_mode="livemax")
        self.alerts = Counter("tracekit_monitor_alerts", "Alerts raised by in-process SLO evaluation",
                              ("slo", "state"), registry=r)
        self.webhook = Counter("tracekit_monitor_webhook_deliveries", "Webhook deliveries by outcome",
                               ("outcome",), registry=r)
        for name in slo_names:
            for fam in (self.slo_events, self.slo_errors, self.slo_cost):
                fam.labels(name)
            self.slo_slow.labels(name, "breach")
            self.slo_slow.labels(name, "resolve")
            self.slo_breached.labels(name).set(0)
        #: Deferred → amount not yet added to its Prometheus value (guarded by the caller's lock)
        self.pending: dict[Deferred, float] = {}
        self._dur: dict[tuple, Any] = {}
        self._tok: dict[tuple, Any] = {}
        self._err: dict[tuple, Any] = {}
        self._cost: dict[tuple, Any] = {}
        self._trace: dict[tuple, Any] = {}
        self._last: dict[str, float] = {}

    def deferred(self, counter_child: Any) -> Deferred:
        return Deferred(counter_value(counter_child), self.pending)

    def take_pending(self) -> list[tuple[Deferred, float]]:
        """The increments collected so far, emptied (call under the lock that guards recording)."""
        items = list(self.pending.items())
        self.pending.clear()
        return items

    @staticmethod
    def apply(items: list[tuple[Deferred, float]]) -> None:
        """Add collected increments to their Prometheus values (outside the recording lock)."""
        for deferred, amount in items:
            deferred.value.inc(amount)

    # -- cached children ------------------------------------------------------------------------
    def duration_child(self, span: Any, etype: str) -> Any:
        key = (span.name, span.kind, span.module_path, span.model, span.provider, etype)
        child = self._dur.get(key)
        if child is None:
            child = self._dur[key] = DeferredHistogram(self.duration.labels(
                span.name, span.kind or "", span.module_path or "", _OPERATION.get(span.kind, span.kind or ""),
                span.model or "", span.provider or "", "error" if etype else "ok", etype), self.pending)
        return child

    def token_child(self, span: Any, token_type: str) -> Any:
        key = (span.name, span.model, span.provider, token_type)
        child = self._tok.get(key)
        if child is None:
            child = self._tok[key] = DeferredHistogram(
                self.tokens.labels(span.name, span.model or "", span.provider or "", token_type), self.pending)
        return child

    def error_child(self, span: Any, etype: str) -> Any:
        key = (span.name, span.kind, etype)
        child = self._err.get(key)
        if child is None:
            child = self._err[key] = self.deferred(self.errors.labels(span.name, span.kind or "", etype))
        return child

    def cost_child(self, span: Any) -> Any:
        key = (span.name, span.model)
        child = self._cost.get(key)
        if child is None:
            child = self._cost[key] = self.deferred(self.cost.labels(span.name, span.model or ""))
        return child

    def trace_child(self, root_name: str, status: str) -> Any:
        key = (root_name, status)
        child = self._trace.get(key)
        if child is None:
            child = self._trace[key] = self.deferred(self.traces.labels(root_name, status))
        return child

    def record_span(self, span: Any, weight: float) -> None:
        err = span.error
        etype = error_type(err) if err is not None else ""
        self.duration_child(span, etype).observe((span.end_ns - span.start_ns) / 1e9, weight)
        if err is not None:
            self.error_child(span, etype).inc(weight)
        usage = span.usage
        if usage:
            for key, token_type in _TOKEN_TYPES:
                n = usage.get(key)
                if n or (n == 0 and token_type in ("input", "output")):
                    self.token_child(span, token_type).observe(n, weight)
        cost = span.cost
        if cost:
            total = cost.get("total_cost")
            if total:
                self.cost_child(span).inc(total * weight)

    # -- counters of the pipeline (dspy_tracekit.counters()) -------------------------------------
    def refresh_counters(self, counters: dict[str, Any]) -> None:
        """Turn the core's and plugins' running counters into Prometheus counters (by difference)."""
        for name, value in counters.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if name == "buffer.queue_depth":
                self.queue_depth.set(value)
                continue
            if name == "buffer.spill_queue_depth":
                self.spill_depth.set(value)
                continue
            if name == "core.traces_exported":
                target = self.pipeline_exported
            elif name.startswith("core.traces_dropped."):
                target = self.pipeline_dropped.labels(name[len("core.traces_dropped."):])
            elif name.startswith("sample.") and (".kept." in name or ".dropped." in name):
                target = self.sampling.labels(name[len("sample."):])
            else:
                continue
            delta = value - self._last.get(name, 0)
            if delta > 0:
                target.inc(delta)
                self._last[name] = value
