"""``dspy-tracekit watch``: a live terminal view from a process's /metrics, or from the MLflow store."""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dspy_tracekit.keys import KIND_ATTR

from ._config import MonitorConfig, parse_window
from ._slo import SloState

__all__ = ["MetricsSource", "Snapshot", "StoreSource", "histogram_quantile", "run_watch"]

DURATION = "gen_ai_client_operation_duration_seconds"


@dataclass
class SpanRow:
    name: str
    count: float = 0.0
    rate: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    errors: float = 0.0
    cost_per_min: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.count if self.count else None


@dataclass
class SloRow:
    name: str
    breached: bool | None
    p95_ms: float | None = None
    error_rate: float | None = None
    cost_usd_per_hour: float | None = None
    last_alert: float | None = None
    objectives: str = ""


@dataclass
class Snapshot:
    source: str
    at: float
    spans: list[SpanRow] = field(default_factory=list)
    slos: list[SloRow] = field(default_factory=list)
    traces: float | None = None
    note: str = ""


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative ``(le, count)`` pairs, sorted by ``le``."""
    if not buckets:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


# ---------------------------------------------------------------------------------------------
# /metrics
# ---------------------------------------------------------------------------------------------


def _parse(text: str) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, float] = defaultdict(float)
    errors: dict[str, float] = defaultdict(float)
    cost: dict[str, float] = defaultdict(float)
    slo: dict[str, dict[str, float]] = defaultdict(dict)
    traces = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            name, labels, value = s.name, s.labels, s.value
            if name == DURATION + "_bucket":
                buckets[labels.get("span_name", "")][float(labels["le"])] += value
            elif name == DURATION + "_count":
                counts[labels.get("span_name", "")] += value
            elif name == "tracekit_span_errors_total":
                errors[labels.get("span_name", "")] += value
            elif name == "tracekit_cost_usd_total":
                cost[labels.get("span_name", "")] += value
            elif name == "tracekit_traces_total":
                traces += value
            elif name in ("tracekit_slo_breached", "tracekit_slo_last_alert_timestamp_seconds",
                          "tracekit_slo_p95_seconds") and "slo" in labels:
                slo[labels["slo"]][name] = value
            elif name in ("tracekit_slo_events_total", "tracekit_slo_errors_total", "tracekit_slo_cost_usd_total"):
                slo[labels.get("slo", "")][name] = value
    return {"buckets": {k: sorted(v.items()) for k, v in buckets.items()}, "counts": dict(counts),
            "errors": dict(errors), "cost": dict(cost), "slo": dict(slo), "traces": traces}


class MetricsSource:
    """Scrapes ``url`` each refresh; rates and quantiles over the scrapes of the last ``window``."""

    def __init__(self, url: str, window_s: float = 60.0, timeout: float = 2.0):
        self.url = url
        self.window_s = window_s
        self.timeout = timeout
        self.history: deque[tuple[float, dict]] = deque()

    def fetch(self) -> dict:
        with urllib.request.urlopen(self.url, timeout=self.timeout) as resp:
            return _parse(resp.read().decode("utf-8", "replace"))

    def snapshot(self, cfg: MonitorConfig) -> Snapshot:
        now = time.time()
        try:
            cur = self.fetch()
        except Exception as exc:  # noqa: BLE001 - shown on screen, the view goes on
            return Snapshot(f"{self.url}", now, note=f"cannot read {self.url}: {type(exc).__name__}: {exc}")
        self.history.append((now, cur))
        while len(self.history) > 2 and now - self.history[1][0] >= self.window_s:
            self.history.popleft()
        t0, old = self.history[0]
        dt = now - t0
        rows = []
        for name, count in sorted(cur["counts"].items()):
            b = cur["buckets"].get(name, [])
            row = SpanRow(name, count=count, errors=cur["errors"].get(name, 0.0))
            if dt > 0:
                d_count = count - old["counts"].get(name, 0.0)
                row.rate = d_count / dt
                row.cost_per_min = (cur["cost"].get(name, 0.0) - old["cost"].get(name, 0.0)) * 60.0 / dt
                old_b = dict(old["buckets"].get(name, []))
                delta = [(le, c - old_b.get(le, 0.0)) for le, c in b]
                if d_count > 0:
                    b = delta
                    row.count = d_count
                    row.errors = cur["errors"].get(name, 0.0) - old["errors"].get(name, 0.0)
            for q, attr in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
                v = histogram_quantile(q, b)
                setattr(row, attr, None if v is None else v * 1000.0)
            rows.append(row)
        slos = []
        for spec in cfg.slos:
            got = cur["slo"].get(spec.name, {})
            breached = got.get("tracekit_slo_breached")
            p95 = got.get("tracekit_slo_p95_seconds")
            ev, er = got.get("tracekit_slo_events_total"), got.get("tracekit_slo_errors_total")
            slos.append(SloRow(spec.name, None if breached is None else breached >= 1,
                               p95_ms=None if p95 is None else p95 * 1000.0,
                               error_rate=(er / ev) if ev else None,
                               last_alert=got.get("tracekit_slo_last_alert_timestamp_seconds") or None,
                               objectives=_objectives(spec)))
        for name, got in cur["slo"].items():  # SLOs the process has that the local config lacks
            if name and all(s.name != name for s in cfg.slos) and "tracekit_slo_breached" in got:
                p95 = got.get("tracekit_slo_p95_seconds")
                slos.append(SloRow(name, got["tracekit_slo_breached"] >= 1,
                                   p95_ms=None if p95 is None else p95 * 1000.0,
                                   last_alert=got.get("tracekit_slo_last_alert_timestamp_seconds") or None))
        note = f"rates over the last {dt:.0f}s" if dt > 0 else "totals since the process started"
        return Snapshot(self.url, now, rows, slos, cur["traces"], note)


def _objectives(spec) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in spec.thresholds().items())


# ---------------------------------------------------------------------------------------------
# the store
# ---------------------------------------------------------------------------------------------


class _StoredSpan:
    __slots__ = ("cost", "end_ns", "error", "kind", "module_path", "name", "parent_id", "start_ns", "tags")


class StoreSource:
    """Reads the traces of the last ``window`` from the MLflow store on every refresh."""

    def __init__(self, tracking_uri: str | None, experiment: str | None, window: str = "1m"):
        from dspy_tracekit import analytics

        self.window = window
        self.window_s = parse_window(window, "--window")
        self.store = analytics.open_store(tracking_uri, experiment)
        self.label = f"{self.store.tracking_uri} / {self.store.experiment_name}"

    def snapshot(self, cfg: MonitorConfig) -> Snapshot:
        from dspy_tracekit import analytics

        now = time.time()
        raw = list(analytics.iter_traces(self.store, self.window, None))
        views = [analytics.trace_view(t) for t in raw]
        result = analytics.stats(views)
        minutes = self.window_s / 60.0
        rows = [SpanRow(s.name, count=s.count, rate=s.count / self.window_s, p50_ms=s.p50_ms, p95_ms=s.p95_ms,
                        p99_ms=s.p99_ms, errors=s.errors, cost_per_min=s.cost_usd / minutes) for s in result.spans]
        slos = self._slos(cfg, raw, views, now)
        return Snapshot(self.label, now, rows, slos, result.traces,
                        f"traces of the last {self.window} in the store")

    def _slos(self, cfg: MonitorConfig, raw: list, views: list, now: float) -> list[SloRow]:
        if not cfg.slos:
            return []
        states = [SloState(spec) for spec in cfg.slos]
        for trace, view in zip(raw, views):
            kinds = {}
            for s in trace.data.spans:
                attrs = getattr(s, "attributes", None) or {}
                kinds[s.span_id] = attrs.get(KIND_ATTR)
            for sv in view.spans:
                span = _StoredSpan()
                span.name, span.module_path, span.kind = sv.name, sv.module, kinds.get(sv.span_id)
                span.tags, span.parent_id, span.error = sv.context, sv.parent_id, sv.error if sv.failed else None
                span.start_ns, span.end_ns, span.cost = sv.start_ns, sv.end_ns, sv.cost_usd
                for st in states:
                    if st.matcher(span, view):
                        cost = sum(c.cost_usd or 0.0 for c in _subtree(sv))
                        st.add(now, sv.duration_ms / 1000.0, view.weight, span.error is not None, cost)
        out = []
        for st in states:
            obs = st.summary(now)
            over = [k for k, thr in st.spec.thresholds().items() if obs[k] is not None and obs[k] > thr]
            out.append(SloRow(st.spec.name, bool(over), obs["p95_ms"], obs["error_rate"], obs["cost_usd_per_hour"],
                              None, _objectives(st.spec)))
        return out


def _subtree(span):
    stack = [span]
    while stack:
        s = stack.pop()
        yield s
        stack.extend(s.children)


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------


def _ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:,.1f} ms" if v < 10_000 else f"{v / 1000:,.2f} s")


def _clock(ts: float | None) -> str:
    return "-" if not ts else datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def render(snap: Snapshot):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Text.assemble(("dspy-tracekit watch", "bold"), f"  {snap.source}  {_clock(snap.at)}  ",
                         (snap.note, "dim"))
    if snap.traces is not None:
        head.append(f"  traces: {snap.traces:,.0f}")
    spans = Table(title="Spans", title_justify="left", expand=False)
    for col in ("span", "req/s", "P50", "P95", "P99", "errors", "cost/min"):
        spans.add_column(col, justify="left" if col == "span" else "right")
    for r in snap.spans:
        er = r.error_rate
        spans.add_row(r.name, "-" if r.rate is None else f"{r.rate:,.2f}", _ms(r.p50_ms), _ms(r.p95_ms),
                      _ms(r.p99_ms), "-" if er is None else f"{er:.1%}",
                      "-" if r.cost_per_min is None else f"${r.cost_per_min:,.6f}")
    parts: list[Any] = [head, spans]
    if snap.slos:
        slos = Table(title="SLOs", title_justify="left")
        for col in ("slo", "state", "P95", "error rate", "cost/h", "objectives", "last alert"):
            slos.add_column(col)
        for s in snap.slos:
            state = Text("-") if s.breached is None else (Text("BREACHED", "bold red") if s.breached
                                                          else Text("OK", "green"))
            slos.add_row(s.name, state, _ms(s.p95_ms), "-" if s.error_rate is None else f"{s.error_rate:.1%}",
                         "-" if s.cost_usd_per_hour is None else f"${s.cost_usd_per_hour:,.4f}", s.objectives,
                         _clock(s.last_alert))
        parts.append(slos)
    return Group(*parts)


def _default_url(cfg: MonitorConfig) -> str | None:
    if not cfg.port:
        return None
    url = f"http://{cfg.host}:{cfg.port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return url
    except Exception:  # noqa: BLE001 - nothing listening: read the store instead
        return None


def run_watch(cfg: MonitorConfig, url: str | None = None, tracking_uri: str | None = None,
              experiment: str | None = None, window: str = "1m", interval: float = 1.0,
              iterations: int = 0) -> int:
    from rich.console import Console
    from rich.live import Live

    if url is None and tracking_uri is None:
        url = _default_url(cfg)
    source: Any = MetricsSource(url, parse_window(window, "--window")) if url else \
        StoreSource(tracking_uri, experiment, window)
    console = Console()
    n = 0
    try:
        with Live(render(source.snapshot(cfg)), console=console, refresh_per_second=4, screen=False) as live:
            n = 1
            while not iterations or n < iterations:
                time.sleep(interval)
                live.update(render(source.snapshot(cfg)))
                n += 1
    except KeyboardInterrupt:
        console.print("[dim]stopped[/dim]")
    return 0
