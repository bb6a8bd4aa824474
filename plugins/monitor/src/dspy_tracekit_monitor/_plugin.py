"""The monitor of one ``enable()``: metrics on the delivery path, a thread that judges SLOs,
refreshes pipeline counters and sends alerts, and the optional ``/metrics`` server."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

from dspy_tracekit.delivery import format_exception  # no ast on this thread

from ._alerts import WebhookSink, log_alert
from ._config import MonitorConfig
from ._metrics import Metrics, multiprocess_dir, weight_of
from ._slo import SloEngine

__all__ = ["Monitor"]

logger = logging.getLogger("dspy_tracekit.monitor")
SERVER_RETRY_S = 10.0
#: recorded increments reach the Prometheus values at least this often (also on tick, flush, shutdown)
MAX_STALENESS_S = 1.0


class Monitor:
    def __init__(self, cfg: MonitorConfig, clock=time.time):
        self.cfg = cfg
        self.clock = clock
        self.metrics = Metrics(cfg.duration_buckets_s, tuple(s.name for s in cfg.slos))
        self.engine = SloEngine(cfg.slos, cfg.hysteresis, clock)
        m = self.metrics
        self._stored = m.deferred(m.traces_stored)
        self._flushed = time.monotonic()
        for st in self.engine.states:  # labelled children, looked up once
            n = st.spec.name
            st.children = tuple(m.deferred(c) for c in (
                m.slo_events.labels(n), m.slo_errors.labels(n), m.slo_slow.labels(n, "breach"),
                m.slo_slow.labels(n, "resolve"), m.slo_cost.labels(n)))
            st.resolve_threshold_s = None if st.p95_threshold_s is None else st.p95_threshold_s * (1 - cfg.hysteresis)
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.webhook = None
        if cfg.webhook_url:
            self.webhook = WebhookSink(cfg.webhook_url, cfg.webhook_timeout_s, cfg.webhook_retries,
                                       cfg.webhook_queue_size,
                                       on_outcome=lambda o: self.metrics.webhook.labels(o).inc())
        self.server = None
        self.server_thread = None
        self.server_port: int | None = None
        self._server_warned = False
        self._next_bind = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_lock = threading.Lock()

    # ---------------------------------------------------------------- life cycle
    def start(self) -> None:
        if self.cfg.port is not None:
            self._bind()
        self._thread = threading.Thread(target=self._loop, name="dspy-tracekit-monitor", daemon=True)
        self._thread.start()

    def _bind(self) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = self.metrics.registry
        if multiprocess_dir():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        try:
            self.server, self.server_thread = start_http_server(self.cfg.port, addr=self.cfg.host,
                                                                registry=registry)
        except OSError as exc:  # port in use, bad host: reported and counted, never raised
            self.counts["server_errors"] += 1
            self._next_bind = time.monotonic() + SERVER_RETRY_S
            if not self._server_warned:
                self._server_warned = True
                logger.warning("dspy-tracekit monitor: cannot serve /metrics on %s:%s (%s); retrying every "
                               "%.0fs, failures counted as monitor.server_errors%s", self.cfg.host, self.cfg.port,
                               exc, SERVER_RETRY_S,
                               " (multiprocess mode: another process may serve it)" if multiprocess_dir() else "")
            return
        self.server_port = self.server.server_address[1]
        logger.info("dspy-tracekit monitor: /metrics on http://%s:%s/metrics", self.cfg.host, self.server_port)

    def after_fork_in_child(self) -> None:
        """A forked child (gunicorn with preload): fresh locks and threads; the parent's server socket,
        pending increments and webhook queue stay the parent's."""
        self.engine.lock = threading.Lock()
        self._tick_lock = threading.Lock()
        self.metrics.pending.clear()
        if self.server is not None:
            try:
                self.server.socket.close()
            except OSError:
                pass
            self.server = self.server_thread = None
            self.server_port = None
            self._next_bind = 0.0
        if self.cfg.webhook_url:
            self.webhook = WebhookSink(self.cfg.webhook_url, self.cfg.webhook_timeout_s, self.cfg.webhook_retries,
                                       self.cfg.webhook_queue_size,
                                       on_outcome=lambda o: self.metrics.webhook.labels(o).inc())
        self.counts = Counter()
        self._stop = threading.Event()
        if self._thread is not None:
            self._thread = threading.Thread(target=self._loop, name="dspy-tracekit-monitor", daemon=True)
            self._thread.start()

    def url(self) -> str | None:
        if self.server_port is None:
            return None
        host = self.cfg.host if ":" not in self.cfg.host else f"[{self.cfg.host}]"
        return f"http://{host}:{self.server_port}/metrics"

    def shutdown(self, timeout: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(0.1, min(timeout, 5.0)))
        try:
            self.flush_metrics()
            self.refresh_counters()
        except Exception:  # noqa: BLE001, S110 - shutting down: the last refresh is best effort
            pass
        if self.webhook is not None:
            self.webhook.close(min(timeout, self.cfg.webhook_timeout_s))
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # ---------------------------------------------------------------- delivery path
    def record(self, traces: list) -> None:
        """Metrics and SLO windows from a stored batch (delivery path)."""
        metrics = self.metrics
        record_span = metrics.record_span
        stored = self._stored
        states = self.engine.states
        roots = self.engine.root_states
        cache = self.engine.candidate_cache
        want_cost = self.engine.want_cost
        now = self.clock()
        with self.engine.lock:
            for trace in traces:
                weight = weight_of(trace)
                root = trace.root
                if root is not None:
                    metrics.trace_child(root.name, "error" if root.error is not None else "ok").inc(weight)
                stored.inc(1.0)
                costs = _subtree_costs(trace) if want_cost else None
                for span in trace.spans:
                    if span.end_ns is None:
                        continue
                    record_span(span, weight)
                    if states:
                        key = (span.name, span.module_path, span.kind)
                        candidates = cache.get(key)
                        if candidates is None:
                            candidates = self.engine.candidates(key)
                        for st in candidates:
                            if st.matcher.matches_tags(span, trace):
                                self._add_slo(st, span, weight, now, costs)
                        if span.parent_id is None or span is root:
                            for st in roots:
                                self._add_slo(st, span, weight, now, costs)
        if time.monotonic() - self._flushed >= MAX_STALENESS_S:
            self.flush_metrics()

    def flush_metrics(self) -> None:
        """Add what ``record`` collected to the Prometheus values (what ``/metrics`` shows)."""
        self._flushed = time.monotonic()
        with self.engine.lock:
            items = self.metrics.take_pending()
        self.metrics.apply(items)

    def _add_slo(self, st, span, weight: float, now: float, costs) -> None:
        events, errors, slow, slow_resolve, cost_total = st.children
        duration = (span.end_ns - span.start_ns) / 1e9
        failed = span.error is not None
        cost = costs.get(span.span_id, 0.0) if costs else 0.0
        st.add(now, duration, weight, failed, cost)
        events.inc(weight)
        if failed:
            errors.inc(weight)
        if st.resolve_threshold_s is not None and duration > st.resolve_threshold_s:
            slow_resolve.inc(weight)
            if duration > st.p95_threshold_s:
                slow.inc(weight)
        if cost:
            cost_total.inc(cost * weight)

    # ---------------------------------------------------------------- the monitor's thread
    def _loop(self) -> None:
        while not self._stop.wait(self.cfg.evaluate_every_s):
            try:
                self.tick()
            except Exception as exc:
                self.counts["tick_errors"] += 1
                if self.counts["tick_errors"] == 1:
                    logger.warning("dspy-tracekit monitor: evaluation failed: %s: %s\n%s", type(exc).__name__, exc,
                                   format_exception(exc).rstrip())

    def tick(self) -> list[dict[str, Any]]:
        """One evaluation: pipeline counters, SLOs, alerts (what the thread does every second)."""
        with self._tick_lock:
            return self._tick()

    def _tick(self) -> list[dict[str, Any]]:
        self.flush_metrics()
        self.refresh_counters()
        if self.cfg.port is not None and self.server is None and time.monotonic() >= self._next_bind:
            self._bind()
        alerts = self.engine.evaluate()
        m = self.metrics
        for st in self.engine.states:
            m.slo_breached.labels(st.spec.name).set(1 if st.breached else 0)
            p95 = st.last_observed.get("p95_ms")
            if p95 is not None:
                m.slo_p95.labels(st.spec.name).set(p95 / 1000.0)
            if st.last_alert_at is not None:
                m.slo_last_alert.labels(st.spec.name).set(st.last_alert_at)
        for alert in alerts:
            m.alerts.labels(alert["slo"], alert["state"]).inc()
            self.counts[f"alerts.{alert['state']}"] += 1
            from dspy_tracekit import delivery

            if not delivery.alert(alert):  # not enabled any more (disable() in progress): our sinks only
                self.on_alert(alert)
        return alerts

    def refresh_counters(self) -> None:
        import dspy_tracekit

        self.metrics.refresh_counters(dspy_tracekit.counters())

    # ---------------------------------------------------------------- sinks (tracekit_alert)
    def on_alert(self, alert: dict[str, Any]) -> None:
        if self.cfg.log_alerts:
            log_alert(alert)
        if self.webhook is not None:
            self.webhook.send(alert)

    def counters(self) -> dict[str, int | float]:
        out: dict[str, int | float] = {"server_errors": 0, "alerts.firing": 0, "alerts.resolved": 0}
        out.update(self.counts)
        out["server_port"] = self.server_port or 0
        if self.webhook is not None:
            out.update(self.webhook.counters())
        for st in self.engine.states:
            out[f"slo.{st.spec.name}.breached"] = 1 if st.breached else 0
        return out


def _subtree_costs(trace) -> dict[int, float] | None:
    """span id → cost of the span and everything under it (LM calls carry the cost)."""
    totals: dict[int, float] = {}
    any_cost = False
    for span in reversed(trace.spans):  # children start after their parents
        c = span.cost
        own = (c.get("total_cost") or 0.0) if c else 0.0
        if own:
            any_cost = True
        total = totals.get(span.span_id, 0.0) + own
        totals[span.span_id] = total
        if span.parent_id is not None and total:
            totals[span.parent_id] = totals.get(span.parent_id, 0.0) + total
    return totals if any_cost else None
