"""``dspy-tracekit compare A B``: two program versions, time ranges or filters side by side."""

from __future__ import annotations

import json

import click

_METRIC_LABELS = {
    "count": "count",
    "p50_ms": "P50 ms",
    "p95_ms": "P95 ms",
    "error_rate": "error rate",
    "tokens_per_request": "tokens/request",
    "cost_per_request": "cost/request",
    "score": "score",
}


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "error_rate":
        return f"{value:.1%}"
    if metric == "cost_per_request":
        return f"${value:,.6f}"
    if metric == "count":
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"


def _change(row) -> str:
    if row.change is None:
        return "-"
    if row.metric == "error_rate":
        text = f"{row.change * 100:+.1f} pt"
    else:
        text = ("-" if row.change < 0 else "+") + _fmt(row.metric, abs(row.change))
    if row.change_pct is not None:
        text += f" ({row.change_pct:+.0f}%)"
    return text


def _evidence(row) -> str:
    if row.ci_low is not None:
        return f"CI [{row.ci_low:,.2f}, {row.ci_high:,.2f}]"
    if row.p_value is not None:
        return f"p={row.p_value:.3g}"
    return "-" if row.test is None else "too few"


def command() -> click.Command:
    """The ``compare`` command, built on the CLI's shared options (imported here: ``python -m
    dspy_tracekit.cli`` runs cli.py as ``__main__``, which a module-level import would load twice)."""
    from dspy_tracekit.cli import _console, _friendly, _query_options

    @click.command()
    @click.argument("a")
    @click.argument("b")
    @click.option("--until", default=None, metavar="AGE|DATE", help="Only traces started before AGE ago or DATE.")
    @click.option("--alpha", default=0.05, show_default=True, help="Significance level of the tests.")
    @click.option("--top", default=12, show_default=True, help="Span names to show besides the overall row.")
    @click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
    @_query_options
    @_friendly
    def compare(a, b, until, alpha, top, as_json, tracking_uri, experiment, since, filter_string):
        """Compare side A with side B: per span name and overall, count, P50/P95 latency, error rate,
        tokens and cost per request and the metric score, each with its change and significance.

        A side is a program version (a fingerprint or prefix of one, or version:NAME as set with
        tk.context(program_version=...)), a time range SINCE..UNTIL (7d..1d, 2026-11-01..2026-11-08, 1h..),
        or filter:EXPR (an MLflow trace filter). --since, --until and --filter narrow both sides.
        """
        from rich.table import Table

        from dspy_tracekit import analytics
        from dspy_tracekit.analytics.compare import OVERALL
        from dspy_tracekit.analytics.compare import compare as run_compare

        store = analytics.open_store(tracking_uri, experiment)
        result = run_compare(store, a, b, since=since, until=until, filter=filter_string, alpha=alpha)
        if as_json:
            click.echo(json.dumps(result.to_dict(), indent=2))
            return
        out = _console()
        out.print(f"[bold]{result.experiment}[/bold] at {result.tracking_uri}")
        out.print(f"A = {result.a.text} ({result.a.traces} traces)   B = {result.b.text} ({result.b.traces} traces)")
        groups = []
        for row in result.rows:
            if row.group not in groups:
                groups.append(row.group)
        for group in groups[: top + 1]:
            table = Table(title=group if group != OVERALL else "Overall (per trace)", title_justify="left")
            for col in ("metric", "A", "B", "change", "evidence", "significant"):
                table.add_column(col, justify="left" if col in ("metric", "evidence") else "right")
            for row in result.rows:
                if row.group != group:
                    continue
                mark = "[bold red]yes[/bold red]" if row.significant else ("no" if row.test else "")
                table.add_row(_METRIC_LABELS.get(row.metric, row.metric), _fmt(row.metric, row.a),
                              _fmt(row.metric, row.b), _change(row), _evidence(row), mark)
            out.print(table)
        sig = [_METRIC_LABELS.get(r.metric, r.metric) for r in result.significant if r.group == OVERALL]
        out.print("Significant overall: " + (", ".join(sig) if sig else "nothing") + f" (alpha {result.alpha:g}).")

    return compare
