"""Report sections of analytics v2 (#15): program versions, resource usage, load vs latency, optimizer runs."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from dspy_tracekit.analytics import TraceView
from dspy_tracekit.analytics.report.svg import line_chart
from dspy_tracekit.records import VERSION_TAG

__all__ = ["sections"]


def _table(headers, rows, numeric=frozenset()):
    from dspy_tracekit.analytics.report import _table as table

    return table(headers, rows, numeric)


def _f(value, fmt="{:,.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def sections(views: Sequence[TraceView]) -> list[str]:
    """HTML parts to append to the report (empty sections are left out)."""
    parts: list[str] = []
    for build in (_versions, _resources, _load, _optimizer):
        try:
            parts.extend(build(views))
        except Exception as exc:  # noqa: BLE001 - one broken section must not cost the whole report
            parts.append(f"<p class=muted>{escape(build.__name__.strip('_'))} section failed: "
                         f"{escape(type(exc).__name__)}: {escape(str(exc)[:200])}</p>")
    return parts


def _versions(views):
    from dspy_tracekit.analytics.compare import OVERALL, compare_views

    latest: dict[str, int] = {}
    by_version: dict[str, list[TraceView]] = {}
    for v in views:
        version = v.tags.get(VERSION_TAG)
        if version and not v.tags.get("tracekit.optimizer"):
            by_version.setdefault(version, []).append(v)
            latest[version] = max(latest.get(version, 0), v.start_ms)
    if len(by_version) < 2:
        return []
    newest = sorted(latest, key=lambda k: latest[k])
    a, b = newest[-2], newest[-1]
    result = compare_views(by_version[a], by_version[b], max_groups=6)
    out = ["<h2>Program versions: the newest two compared</h2>",
           (f"<p class=muted>A = <code>{escape(a)}</code> ({len(by_version[a])} traces), B = <code>{escape(b)}</code> "
            f"({len(by_version[b])} traces). {len(by_version)} versions in the report. Significant at 5%: bootstrap "
            "CI for P50/P95, Mann-Whitney U for tokens, cost and score, Fisher exact for errors. "
            "<code>dspy-tracekit compare A B</code> for any two.</p>")]
    rows = []
    for r in result.rows:
        if r.metric == "count" and r.group != OVERALL:
            continue
        evidence = (f"CI [{r.ci_low:,.2f}, {r.ci_high:,.2f}]" if r.ci_low is not None
                    else (f"p={r.p_value:.3g}" if r.p_value is not None else ""))
        rows.append([r.group, r.metric, _f(r.a, "{:,.6g}"), _f(r.b, "{:,.6g}"),
                     _f(r.change_pct, "{:+.0f}%"), evidence, "yes" if r.significant else ""])
    out.append(_table(["group", "metric", "A", "B", "change", "evidence", "significant"], rows, {2, 3, 4}))
    return out


def _resources(views):
    from dspy_tracekit.analytics.resources import resource_stats

    result = resource_stats(views)
    if not result.traces_with_cpu:
        return []
    out = ["<h2>Resource usage</h2>",
           (f"<p class=muted>{result.traces_with_cpu} of {result.traces} traces record thread CPU time; "
            f"{result.traces_with_memory} record peak memory. CPU share = the span name's self CPU over all; "
            "CPU/wall of the whole span decides CPU-bound (≥ 25%) or waiting.</p>")]
    out.append(_table(["span", "type", "count", "wall ms", "CPU ms", "CPU share", "CPU/wall", "kind"],
                      [[r.name, r.span_type, f"{r.count:,.0f}", f"{r.wall_ms:,.1f}", f"{r.cpu_ms:,.1f}",
                        f"{r.cpu_share:.1%}", f"{r.cpu_per_wall:.0%}", r.kind] for r in result.spans[:15]],
                      {2, 3, 4, 5, 6}))
    out.append(_table(["correlation with latency (Spearman)", "traces", "rho", "p"],
                      [[c.what, c.n, _f(c.spearman_rho), _f(c.p_value, "{:.3g}")] for c in result.correlations],
                      {1, 2, 3}))
    return out


def _load(views):
    from dspy_tracekit.analytics.resources import load_stats

    result = load_stats(views)
    if not result.traces_with_load:
        return []
    out = ["<h2>Load vs latency</h2>",
           "<p class=muted>Traces in flight in the process when each request started; "
           + (f"latency climbs from <b>{escape(result.knee)}</b> in flight (P95 &gt; 1.5× the lightest bucket's)."
              if result.knee else "no knee: P95 stays within 1.5× of the lightest bucket's.") + "</p>"]
    out.append("<h3>P95 latency (ms) by traces in flight</h3>")
    out.append(line_chart([(b.bucket, b.p95_ms) for b in result.by_in_flight], label="P95 by traces in flight",
                          y_unit=" ms"))
    out.append(_table(["in flight", "traces", "P50 ms", "P95 ms", "errors"],
                      [[b.bucket, f"{b.traces:,.0f}", _f(b.p50_ms, "{:,.1f}"), _f(b.p95_ms, "{:,.1f}"),
                        f"{b.error_rate:.1%}"] for b in result.by_in_flight], {1, 2, 3, 4}))
    if len(result.over_time) > 1:
        out.append("<h3>Requests per second over time</h3>")
        out.append(line_chart([(f"+{(w.start_ms - result.over_time[0].start_ms) / 1000:.0f}s", w.requests_per_s)
                               for w in result.over_time], label="requests per second over time", y_unit="/s"))
    out.append(_table(["requests/s", "traces", "P50 ms", "P95 ms", "errors"],
                      [[b.bucket, f"{b.traces:,.0f}", _f(b.p50_ms, "{:,.1f}"), _f(b.p95_ms, "{:,.1f}"),
                        f"{b.error_rate:.1%}"] for b in result.by_rate], {1, 2, 3, 4}))
    return out


def _optimizer(views):
    from dspy_tracekit.analytics.optimize import is_optimizer_run, optimizer_run

    runs = [v for v in views if is_optimizer_run(v)]
    if not runs:
        return []
    run = optimizer_run(max(runs, key=lambda v: v.start_ms))
    out = [f"<h2>Optimizer run: {escape(run.optimizer)}</h2>",
           f"<p class=muted>Newest of {len(runs)} run(s): trace <code>{escape(run.trace_id)}</code>, "
           f"{len(run.trials)} trials, {run.lm_calls} LM calls, {run.total_tokens:,.0f} tokens, "
           f"total cost ${run.total_cost_usd:,.6f}. Result version <code>{escape(run.result_version or '-')}</code>."
           + (f" Best: trial {run.best.index}, score {run.best.score:g}, version "
              f"<code>{escape(run.best.program_version or '-')}</code>." if run.best else "") + "</p>"]
    if not run.trials:
        return out
    by_cost = any(t.cumulative_cost_usd for t in run.trials)
    points = [((f"${t.cumulative_cost_usd:,.4f}" if by_cost else f"{t.cumulative_tokens:,.0f} tok"), t.score)
              for t in run.trials]
    out.append("<h3>Score vs cumulative " + ("cost" if by_cost else "tokens (no cost recorded)") + " per trial</h3>")
    out.append(line_chart(points, label="score vs cumulative cost per trial"))
    out.append(_table(["#", "score", "mean", "examples", "version", "tokens", "cost", "cum. cost"],
                      [[t.index, _f(t.score, "{:g}"), _f(t.mean_score, "{:.4g}"), t.examples or "-",
                        t.program_version or "-", f"{t.tokens:,.0f}", f"{t.cost_usd:.6f}",
                        f"{t.cumulative_cost_usd:.6f}"] for t in run.trials], {0, 1, 2, 3, 5, 6, 7}))
    return out
