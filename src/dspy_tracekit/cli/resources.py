"""``dspy-tracekit stats --by load|resources``."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click


def _f(value, fmt="{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def stats_by(by, tracking_uri, experiment, since, filter_string, top, as_json) -> None:
    from rich.table import Table

    from dspy_tracekit import analytics
    from dspy_tracekit.analytics.resources import load_stats, resource_stats
    from dspy_tracekit.cli import _console, _ms, _num

    store = analytics.open_store(tracking_uri, experiment)
    views = analytics.trace_views(analytics.iter_traces(store, since, filter_string))
    result = load_stats(views) if by == "load" else resource_stats(views)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    out = _console()
    out.print(f"[bold]{store.experiment_name}[/bold] at {store.tracking_uri}"
              + (f" — filter: {filter_string}" if filter_string else ""))
    if not views:
        out.print("No traces match.")
        return
    if by == "load":
        out.print(f"{result.traces_with_load} of {result.traces} traces record how many were in flight.")
        table = Table(title="Latency by traces in flight when the request started", title_justify="left")
        for col in ("in flight", "traces", "P50", "P95", "errors"):
            table.add_column(col, justify="right")
        for b in result.by_in_flight:
            table.add_row(b.bucket, _num(b.traces), _ms(b.p50_ms), _ms(b.p95_ms), f"{b.error_rate:.1%}")
        out.print(table)
        out.print(f"Knee: latency climbs from {result.knee} in flight (P95 > 1.5× the lightest bucket's)."
                  if result.knee else "No knee: P95 stays within 1.5× of the lightest bucket's.")
        rate = Table(title="Latency by requests per second", title_justify="left")
        for col in ("requests/s", "traces", "P50", "P95", "errors"):
            rate.add_column(col, justify="right")
        for b in result.by_rate:
            rate.add_row(b.bucket, _num(b.traces), _ms(b.p50_ms), _ms(b.p95_ms), f"{b.error_rate:.1%}")
        out.print(rate)
        times = Table(title="Over time", title_justify="left")
        for col in ("window (UTC)", "requests/s", "P50", "P95", "errors"):
            times.add_column(col, justify="right")
        for w in result.over_time[-top * 3:]:
            when = datetime.fromtimestamp(w.start_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            times.add_row(when, f"{w.requests_per_s:,.2f}", _ms(w.p50_ms), _ms(w.p95_ms), f"{w.error_rate:.1%}")
        out.print(times)
        return
    out.print(f"{result.traces_with_cpu} of {result.traces} traces record CPU time; "
              f"{result.traces_with_memory} record peak memory. CPU-bound: CPU ≥ 25% of wall time.")
    table = Table(title="CPU by span name (self CPU share; CPU/wall of the whole span)", title_justify="left")
    for col in ("span", "type", "count", "wall", "CPU", "self CPU", "CPU share", "CPU/wall", "kind"):
        table.add_column(col, justify="left" if col in ("span", "type", "kind") else "right")
    for r in result.spans[:max(top, 1) * 3]:
        table.add_row(r.name, r.span_type, _num(r.count), _ms(r.wall_ms), _ms(r.cpu_ms), _ms(r.self_cpu_ms),
                      f"{r.cpu_share:.1%}", f"{r.cpu_per_wall:.0%}", r.kind)
    out.print(table)
    corr = Table(title="Correlation with trace latency (Spearman)", title_justify="left")
    for col in ("what", "traces", "rho", "p"):
        corr.add_column(col)
    for c in result.correlations:
        corr.add_row(c.what, str(c.n), _f(c.spearman_rho), _f(c.p_value, "{:.3g}"))
    out.print(corr)
