"""The self-contained HTML report of ``dspy-tracekit report``.

One file, opened from disk or attached to a ticket: inline CSS and inline SVG charts, no JavaScript,
no fonts or images to fetch. A Content-Security-Policy of ``default-src 'none'`` makes the browser
refuse any request the page might still try to make, so "no network when opened" is enforced, not hoped.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape

from dspy_tracekit.analytics import Stats, TraceView, weighted_percentile
from dspy_tracekit.analytics.report.svg import bar_chart, histogram, line_chart

__all__ = ["latency_bins", "render_report", "time_buckets"]

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:13px;margin:4px 0;font-family:monospace}
table{border-collapse:collapse;font-size:12px;margin:8px 0} td,th{padding:3px 8px;border-bottom:1px solid #eee}
th{text-align:left;background:#f6f6f6} td.n{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:16px} .card{border:1px solid #eee;padding:6px}
.muted{color:#777;font-size:12px} code{font-size:12px}
"""


def latency_bins(
    durations: Sequence[float], weights: Sequence[float], bins: int = 16
) -> tuple[list[float], list[float]]:
    """Histogram edges and weighted counts; log-spaced when durations span more than 20×."""
    low, high = min(durations), max(durations)
    if high <= low:
        return [low, low + 1.0], [float(sum(weights))]
    if low > 0 and high / low > 20:
        a, b = math.log10(low), math.log10(high)
        edges = [10 ** (a + (b - a) * i / bins) for i in range(bins + 1)]
    else:
        edges = [high * i / bins for i in range(bins + 1)]
    counts = [0.0] * bins
    for d, w in zip(durations, weights):
        i = 0 if d <= edges[0] else next((k for k in range(bins) if d <= edges[k + 1]), bins - 1)
        counts[i] += w
    return edges, counts


def time_buckets(views: Sequence[TraceView], max_buckets: int = 30) -> list[tuple[int, list[TraceView]]]:
    """Traces grouped into at most ``max_buckets`` equal time buckets: (bucket start ms, traces)."""
    if not views:
        return []
    start = min(v.start_ms for v in views)
    end = max(v.start_ms for v in views)
    n = max(1, min(max_buckets, len(views)))
    width = max(1, math.ceil((end - start + 1) / n))
    groups: dict[int, list[TraceView]] = defaultdict(list)
    for v in views:
        groups[min(n - 1, (v.start_ms - start) // width)].append(v)
    return [(start + i * width, groups.get(i, [])) for i in range(n)]


def _when(ms: int, span_ms: int) -> str:
    fmt = "%Y-%m-%d %H:%M" if span_ms > 2 * 86400_000 else ("%H:%M" if span_ms > 600_000 else "%H:%M:%S")
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime(fmt)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=n' if i in numeric else ''}>{escape(str(c))}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report(
    views: Sequence[TraceView],
    result: Stats,
    title: str = "dspy-tracekit report",
    max_histograms: int = 12,
    generated: datetime | None = None,
) -> str:
    """The whole report as one HTML string."""
    generated = generated or datetime.now(timezone.utc)
    parts = [f"<h1>{escape(title)}</h1>"]
    weighted = (
        " Counts, percentiles and costs are re-weighted by 1/sampling probability." if result.weighted else ""
    )
    parts.append(
        f'<p class="muted">Experiment <code>{escape(result.experiment)}</code> at <code>{escape(result.tracking_uri)}'
        f"</code>{' — filter <code>' + escape(result.filter) + '</code>' if result.filter else ''}. "
        f"Generated {generated.strftime('%Y-%m-%d %H:%M UTC')}.{weighted}</p>"
    )
    if not views:
        parts.append("<p>No traces match.</p>")
        return _page(title, parts)
    parts.append(
        _table(
            ["traces", "stored", "errors", "P50 ms", "P95 ms", "P99 ms", "cost (USD)"],
            [
                [
                    f"{result.traces:,.0f}",
                    result.traces_stored,
                    f"{result.error_rate:.1%}",
                    _ms(result.p50_ms),
                    _ms(result.p95_ms),
                    _ms(result.p99_ms),
                    f"{result.cost_usd:.6f}",
                ]
            ],
            numeric={0, 1, 2, 3, 4, 5, 6},
        )
    )

    parts.append("<h2>Latency by span name</h2><div class=grid>")
    durations: dict[str, list[float]] = defaultdict(list)
    weights: dict[str, list[float]] = defaultdict(list)
    for v in views:
        for s in v.spans:
            durations[s.name].append(s.duration_ms)
            weights[s.name].append(v.weight)
    for row in result.spans[:max_histograms]:
        edges, counts = latency_bins(durations[row.name], weights[row.name])
        chart = histogram(edges, counts, label=f"latency histogram of {row.name}")
        parts.append(
            f'<div class="card"><h3>{escape(row.name)}</h3>{chart}'
            f'<div class="muted">P50 {_ms(row.p50_ms)} · P95 {_ms(row.p95_ms)} · P99 {_ms(row.p99_ms)} ms'
            f"</div></div>"
        )
    parts.append("</div>")

    buckets = time_buckets(views)
    span_ms = max(v.start_ms for v in views) - min(v.start_ms for v in views)
    p95_points, error_points = [], []
    for start, group in buckets:
        label = _when(start, span_ms)
        if not group:
            p95_points.append((label, None))
            error_points.append((label, None))
            continue
        w = [v.weight for v in group]
        p95_points.append((label, weighted_percentile([v.duration_ms for v in group], w, 95)))
        error_points.append((label, 100.0 * sum(v.weight for v in group if v.failed) / sum(w)))
    parts.append("<h2>P95 trace latency over time (ms)</h2>")
    parts.append(line_chart(p95_points, label="P95 latency over time", y_unit=" ms"))
    parts.append("<h2>Error rate over time</h2>")
    parts.append(line_chart(error_points, label="error rate over time", y_unit="%", y_max=100.0))

    parts.append("<h2>Cost by model</h2>")
    parts.append(
        bar_chart(list(result.cost_by_model.items()), label="cost by model")
        if result.cost_by_model
        else "<p class=muted>No cost recorded.</p>"
    )
    parts.append("<h2>Cost by module</h2>")
    parts.append(
        bar_chart(list(result.cost_by_module.items()), label="cost by module")
        if result.cost_by_module
        else "<p class=muted>No cost recorded.</p>"
    )

    parts.append("<h2>Spans by name</h2>")
    parts.append(
        _table(
            ["span", "type", "count", "errors", "P50 ms", "P95 ms", "P99 ms", "tokens", "cost (USD)"],
            [
                [
                    r.name,
                    r.span_type,
                    f"{r.count:,.0f}",
                    f"{r.error_rate:.1%}",
                    _ms(r.p50_ms),
                    _ms(r.p95_ms),
                    _ms(r.p99_ms),
                    f"{r.total_tokens:,.0f}",
                    f"{r.cost_usd:.6f}",
                ]
                for r in result.spans
            ],
            numeric={2, 3, 4, 5, 6, 7, 8},
        )
    )
    parts.append("<h2>Slowest spans</h2>")
    parts.append(
        _table(
            ["ms", "span", "status", "trace"],
            [[_ms(s.duration_ms), s.name, s.status, s.trace_id] for s in result.slowest],
            numeric={0},
        )
    )
    parts.append("<h2>Most common execution paths</h2>")
    parts.append(
        _table(
            ["traces", "share", "path"],
            [[f"{p.count:,.0f}", f"{p.share:.1%}", p.path] for p in result.paths],
            numeric={0, 1},
        )
    )
    parts.append("<h2>What failed traces have in common</h2>")
    parts.append(
        _table(
            ["lift", "error rate", "errors", "traces", "feature"],
            [
                [f"{c.lift:.2f}", f"{c.error_rate:.1%}", f"{c.errors:,.0f}", f"{c.traces:,.0f}", c.feature]
                for c in result.error_correlation
            ],
            numeric={0, 1, 2, 3},
        )
        if result.error_correlation
        else "<p class=muted>No feature stands out among failed traces.</p>"
    )
    from dspy_tracekit.analytics.report.analytics2 import (
        sections,  # analytics v2 (#15): versions, resources, load, optimizer runs
    )

    parts.extend(sections(views))
    return _page(title, parts)


def _page(title: str, parts: list[str]) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )
