"""The ``dspy-tracekit`` command line."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dspy-tracekit")
def main() -> None:
    """Trace DSPy programs into MLflow, and read the traces back."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # a command run: no price-map download


@main.command()
@click.option("--n", "n", default=24, show_default=True, help="How many messages to classify.")
@click.option("--model", default=None, help="A LiteLLM model name (e.g. openai/gpt-4o-mini); needs its API key. "
              "Default: an offline deterministic LM.")
@click.option("--tracking-uri", default=None, metavar="URI",
              help="MLflow tracking URI (default: as dspy_tracekit.enable() resolves it; the read commands look there too).")
@click.option("--experiment", "-e", default=None, metavar="NAME",
              help="Experiment name (default: as dspy_tracekit.enable() resolves it; the read commands look there too).")
@click.option("--plugins", default=None, help="Comma-separated plugins to enable (default: from config).")
@click.option("--seed", default=0, show_default=True, help="Seed for the message mix.")
@click.option("--latency-ms", default=25.0, show_default=True,
              help="Simulated latency of the offline LM per call (0 for none).")
def demo(n, model, tracking_uri, experiment, plugins, seed, latency_ms):
    """Run the intent-detection demo and print the last trace as a tree."""
    from dspy_tracekit.cli.demo.app import run_demo

    plugin_list = None if plugins is None else [p.strip() for p in plugins.split(",") if p.strip()]
    raise SystemExit(run_demo(n=n, model=model, tracking_uri=tracking_uri, experiment=experiment,
                              plugins=plugin_list, seed=seed, latency_ms=latency_ms))


# --------------------------------------------------------------------------------------------------
# Reading traces back: stats, tree, export, prune, report, ui, doctor
# --------------------------------------------------------------------------------------------------


def _quiet_mlflow() -> None:
    # MLflow's INFO lines (schema migrations, "creating experiment") would bury the answer on stderr.
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _friendly(fn: Callable) -> Callable:
    """Bad input and unreachable stores end the command with one line on stderr, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from dspy_tracekit.analytics import AnalyticsError

        _quiet_mlflow()
        try:
            return fn(*args, **kwargs)
        except AnalyticsError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            from dspy_tracekit.config import ConfigError, env_flag

            try:
                debug = env_flag("DSPY_TRACEKIT_DEBUG")
            except ConfigError as bad:
                click.echo(f"error: {bad}", err=True)
                debug = False
            if debug:
                raise
            text = " ".join(str(exc).split())[:300]
            click.echo(
                f"error: {type(exc).__name__}: {text} (set DSPY_TRACEKIT_DEBUG=1 for details)", err=True
            )
            sys.exit(1)

    return wrapper


def _store_options(fn: Callable) -> Callable:
    fn = click.option(
        "--tracking-uri",
        default=None,
        metavar="URI",
        help="MLflow tracking URI (default: as dspy_tracekit.enable() resolves it: tracekit config, "
        "DSPY_TRACEKIT_TRACKING_URI, MLFLOW_TRACKING_URI, sqlite:///mlflow.db).",
    )(fn)
    fn = click.option(
        "--experiment",
        "-e",
        default=None,
        metavar="NAME",
        help="Experiment name or id (default: tracekit config, DSPY_TRACEKIT_EXPERIMENT, dspy_tracekit).",
    )(fn)
    return fn


def _query_options(fn: Callable) -> Callable:
    fn = click.option(
        "--filter",
        "filter_string",
        default=None,
        metavar="EXPR",
        help="""MLflow trace filter, e.g. "tag.user_role = 'admin'" or "trace.status = 'ERROR'".""",
    )(fn)
    fn = click.option(
        "--since",
        default=None,
        metavar="AGE|DATE",
        help="Only traces started in the last AGE (30m, 1h, 7d, 2w) or since DATE (2026-11-01).",
    )(fn)
    return _store_options(fn)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f} ms" if value < 10_000 else f"{value / 1000:,.2f} s"


def _bare_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _table(title: str):
    """A compact table: one space between columns, a rule under the header — fits 80 columns."""
    from rich import box
    from rich.table import Table

    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)


#: the least room the columns beside a span name can fold into (type, counts, latencies, tokens, cost)
_OTHER_COLUMNS_MIN = 36


def _print_names_whole(out: Any, table: Any, name_width: int) -> None:
    """Print a table whose first column holds span names without ever cutting one: when the longest name
    and the other columns cannot share the width (a pipe is 80 columns), the table is laid out as wide as
    it needs — longer lines, which a terminal wraps, rather than a cut name."""
    if name_width + _OTHER_COLUMNS_MIN <= out.width:  # the other columns can fold enough: names fit whole
        out.print(table)
        return
    from rich.console import Console

    natural = Console(width=10_000).measure(table).maximum
    wide = Console(file=out.file, width=natural, highlight=False, soft_wrap=False,
                   force_terminal=out.is_terminal, color_system=out.color_system, no_color=out.no_color)
    wide.print(table)


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value - round(value)) < 1e-9 else f"{value:,.1f}"


def _usd(value: float | None) -> str:
    return "-" if not value else f"${value:,.6f}"


def _plural(n: float, word: str) -> str:
    """``1 trace``, ``2 traces``, ``1,204 traces``."""
    return f"{_num(n)} {word}{'' if n == 1 else 's'}"


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def _progress(label: str, total: int | None) -> Iterator[Callable[[], None]]:
    """A transient progress bar on stderr while a long read runs — only when stderr is a terminal,
    so pipes, files and CI logs stay clean. Yields the function to call once per trace read."""
    if not _stderr_is_terminal():
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=_console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task(label, total=total)
        yield functools.partial(progress.advance, task)


def _ticking(items: Iterable[Any], tick: Callable[[], None]) -> Iterator[Any]:
    for item in items:
        tick()
        yield item


def _read_total(store: Any, since: str | None, filter_string: str | None, limit: int | None = None) -> int | None:
    """How many traces a read will go through — counted only when a progress bar will show it."""
    if not _stderr_is_terminal():
        return None
    from dspy_tracekit import analytics

    total = analytics.count_traces(store, since, filter_string)
    return total if limit is None else min(total, limit)


@main.command()
@_query_options
@click.option(
    "--top", default=10, show_default=True, help="Rows in the slowest / paths / correlation tables."
)
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
@click.option("--by", type=click.Choice(["load", "resources"]), default=None,
              help="load: latency and errors by traces in flight and by requests/s; resources: CPU per span name.")
@_friendly
def stats(tracking_uri, experiment, since, filter_string, top, as_json, by):
    """Per span name: count, error rate, P50/P95/P99 latency, tokens and cost; the slowest spans,
    the most common execution paths, and what failed traces have in common (lift).

    Traces kept by the sample plugin with probability p count 1/p times.
    """
    if by is not None:  # analytics v2 (#15)
        from dspy_tracekit.cli.resources import stats_by

        return stats_by(by, tracking_uri, experiment, since, filter_string, top, as_json)

    from dspy_tracekit import analytics

    store = analytics.open_store(tracking_uri, experiment)
    with _progress("reading traces", _read_total(store, since, filter_string)) as tick:
        result = analytics.stats(
            _ticking(analytics.iter_traces(store, since, filter_string), tick),
            tracking_uri=store.tracking_uri,
            experiment=store.experiment_name,
            filter=analytics.build_filter(since, filter_string),
            top=top,
        )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    from rich.markup import escape

    out = _console()
    weighted = " (re-weighted by 1/sampling probability)" if result.weighted else ""
    out.print(
        f"[bold]{escape(result.experiment)}[/bold] at {escape(result.tracking_uri)}"
        + (f" — filter: {escape(result.filter)}" if result.filter else "")
    )
    if not result.traces_stored:
        out.print("No traces match.")
        return
    out.print(
        f"{_plural(result.traces, 'trace')}{weighted} from {_num(result.traces_stored)} stored; "
        f"errors {result.error_rate:.1%}; P50 {_ms(result.p50_ms)}, P95 {_ms(result.p95_ms)}, "
        f"P99 {_ms(result.p99_ms)}; cost {_usd(result.cost_usd)}",
        markup=False,
    )
    # Span names are what the reader compares (ChatAdapter.format vs .parse): that column is never cut;
    # on a narrow terminal or a pipe (80 columns) the numbers wrap inside their cells instead.
    name_width = max((len(r.name) for r in result.spans), default=4)
    table = _table("Spans by name (latency in ms)")
    table.add_column("span", no_wrap=True, min_width=name_width, overflow="fold")
    table.add_column("type", overflow="fold")
    for col in ("count", "err", "P50", "P95", "P99", "tokens", "cost"):
        table.add_column(col, justify="right", overflow="fold")
    for row in result.spans:
        table.add_row(
            escape(row.name),
            escape(row.span_type),
            _num(row.count),
            f"{row.error_rate:.1%}",
            _bare_ms(row.p50_ms),
            _bare_ms(row.p95_ms),
            _bare_ms(row.p99_ms),
            _num(row.total_tokens) if row.total_tokens else "-",
            _usd(row.cost_usd),
        )
    _print_names_whole(out, table, name_width)
    slow = _table("Slowest spans")
    slow.add_column("duration", overflow="fold")
    slow_width = max((len(r.name) for r in result.slowest), default=4)
    slow.add_column("span", no_wrap=True, overflow="fold", min_width=slow_width)
    slow.add_column("status", overflow="fold")
    slow.add_column("trace", overflow="fold")  # ids fold onto a second line: copy-paste still works
    for row in result.slowest:
        slow.add_row(_ms(row.duration_ms), escape(row.name), row.status, row.trace_id)
    _print_names_whole(out, slow, slow_width)
    paths = _table("Most common execution paths")
    for col in ("traces", "share", "path"):
        paths.add_column(col, overflow="fold")
    for row in result.paths:
        paths.add_row(_num(row.count), f"{row.share:.1%}", escape(row.path))
    out.print(paths)
    if result.error_correlation:
        corr = _table("What failed traces have in common")
        for col in ("lift", "error rate", "errors", "traces", "feature"):
            corr.add_column(col, overflow="fold")
        for row in result.error_correlation:
            corr.add_row(
                f"{row.lift:.2f}×", f"{row.error_rate:.1%}", _num(row.errors), _num(row.traces), escape(row.feature)
            )
        out.print(corr)
    else:
        out.print("No failed traces." if not result.errors else "No feature stands out among failed traces.")
    if result.cost_by_model:
        cost = _table("Cost")
        for col in ("by", "name", "cost"):
            cost.add_column(col, overflow="fold")
        for name, usd in result.cost_by_model.items():
            cost.add_row("model", escape(name), _usd(usd))
        for name, usd in result.cost_by_module.items():
            cost.add_row("module", escape(name), _usd(usd))
        out.print(cost)


@main.command()
@click.argument("trace_id", required=False)
@click.option("--last", is_flag=True, help="Show the newest matching trace.")
@_query_options
@_friendly
def tree(trace_id, last, tracking_uri, experiment, since, filter_string):
    """Show one trace as a tree: duration, status, tokens and cost per span."""
    from rich.markup import escape
    from rich.tree import Tree

    from dspy_tracekit import analytics

    if bool(trace_id) == bool(last):
        raise click.UsageError("give a TRACE_ID or --last (not both)")
    store = analytics.open_store(tracking_uri, experiment)
    raw = (
        analytics.get_trace(store, trace_id)
        if trace_id
        else analytics.last_trace(store, since, filter_string)
    )
    view = analytics.trace_view(raw)

    def label(span) -> str:
        status = "[green]OK[/green]" if span.status != "ERROR" else "[red]ERROR[/red]"
        parts = [
            f"[bold]{escape(span.name)}[/bold] [dim]{span.span_type}[/dim]",
            _ms(span.duration_ms),
            status,
        ]
        if span.total_tokens or span.input_tokens or span.output_tokens:
            parts.append(f"tokens {_num(span.input_tokens or 0)}→{_num(span.output_tokens or 0)}")
        if span.cost_usd:
            parts.append(_usd(span.cost_usd))
        if span.model:
            parts.append(f"[dim]{escape(span.model)}[/dim]")
        if span.error:
            parts.append(f"[red]{escape(span.error[:120])}[/red]")
        return "  ".join(parts)

    header = f"trace {view.trace_id}  {view.status}  {_ms(view.duration_ms)}  cost {_usd(view.cost_usd)}" + (
        f"  p={view.probability:g}" if view.probability is not None else ""
    )
    root = Tree(escape(header))
    nodes = {}
    for span in view.spans:
        parent = nodes.get(span.parent_id, root)
        nodes[span.span_id] = parent.add(label(span))
    _console().print(root)


@main.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv"]),
    default=None,
    help="json: full traces (MLflow's Trace.to_dict); csv: one row per span. "
    "Default: from the extension of --out (.json, .csv; '-' is JSON); any other extension is refused.",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="File to write ('-' for stdout).",
)
@click.option("--limit", type=int, default=None, help="At most this many traces (newest first).")
@_query_options
@_friendly
def export(fmt, out_path, limit, tracking_uri, experiment, since, filter_string):
    """Export traces: JSON (full traces, re-readable by MLflow) or CSV (one row per span)."""
    from dspy_tracekit import analytics

    if fmt is None:
        fmt = _format_from_extension(out_path)
    store = analytics.open_store(tracking_uri, experiment)
    read = 0

    def counted() -> None:
        nonlocal read
        read += 1

    with _progress("exporting", _read_total(store, since, filter_string, limit)) as tick:
        traces = _ticking(analytics.iter_traces(store, since, filter_string, limit=limit), tick)
        writer = analytics.export_csv if fmt == "csv" else analytics.export_json
        if out_path == "-":
            n = writer(traces, sys.stdout, on_trace=counted)
        else:
            with open(out_path, "w", encoding="utf-8", newline="") as fh:
                n = writer(traces, fh, on_trace=counted)
    where = "stdout" if out_path == "-" else out_path
    if fmt == "csv":
        click.echo(f"wrote {_plural(n, 'span')} of {_plural(read, 'trace')} to {where}", err=True)
    else:
        click.echo(f"wrote {_plural(n, 'trace')} to {where}", err=True)


#: file extensions ``export`` recognises, and the format each one means
EXPORT_EXTENSIONS = {".json": "json", ".csv": "csv"}


def _format_from_extension(out_path: str) -> str:
    if out_path == "-":
        return "json"
    ext = os.path.splitext(out_path)[1].lower()
    if ext in EXPORT_EXTENSIONS:
        return EXPORT_EXTENSIONS[ext]
    raise click.UsageError(
        f"cannot tell the format of {out_path!r} from its extension ({ext or 'none'}): export writes "
        "JSON (.json) or CSV (.csv) — name the file so, or pass --format json|csv",
        ctx=click.get_current_context(silent=True),
    )


@main.command()
@click.option(
    "--older-than", required=True, metavar="AGE", help="Delete traces older than AGE (30d, 12h, 2w)."
)
@click.option("--keep-errors", is_flag=True, help="Keep failed traces however old.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before deleting.")
@_query_options
@_friendly
def prune(older_than, keep_errors, yes, tracking_uri, experiment, since, filter_string):
    """Delete old traces (MLflow's delete_traces): shows what will go and asks first."""
    from datetime import datetime, timezone

    from rich.table import Table

    from dspy_tracekit import analytics

    store = analytics.open_store(tracking_uri, experiment)
    plan = analytics.plan_prune(store, older_than, keep_errors=keep_errors, filter=filter_string, since=since)

    def when(ms: int | None) -> str:
        return (
            "-"
            if ms is None
            else datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        )

    out = _console()
    if not plan.trace_ids:
        out.print(
            f"Nothing to delete: no traces older than {older_than} in {store.experiment_name!r}"
            + (" (failed traces kept)" if keep_errors else "")
            + "."
        )
        return
    out.print(
        f"Will delete [bold]{_plural(len(plan.trace_ids), 'trace')}[/bold] from {store.experiment_name!r} at "
        f"{store.tracking_uri}: started {when(plan.oldest_ms)} – {when(plan.newest_ms)} UTC "
        f"(before {when(plan.cutoff_ms)}), "
        + (f"{plan.errors} of them failed" if len(plan.trace_ids) > 1 else ("failed" if plan.errors else "not failed"))
        + ("; failed traces are kept" if keep_errors else "")
        + "."
    )
    table = Table(title="First traces to go" if len(plan.trace_ids) > len(plan.sample) else None)
    for col in ("trace", "started (UTC)", "status"):
        table.add_column(col)
    for tid, ms, state in plan.sample:
        table.add_row(tid, when(ms), state)
    out.print(table)
    if not yes:
        question = "Delete this trace?" if len(plan.trace_ids) == 1 else f"Delete these {len(plan.trace_ids)} traces?"
        click.confirm(question, abort=True, err=True)
    deleted = analytics.prune(plan)
    out.print(f"Deleted {_plural(deleted, 'trace')}.")


@main.command()
@click.option(
    "--out",
    "out_path",
    default="report.html",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="HTML file to write.",
)
@click.option("--title", default=None, help="Report title (default: the experiment's name).")
@_query_options
@_friendly
def report(out_path, title, tracking_uri, experiment, since, filter_string):
    """Write one self-contained HTML report (inline SVG charts, no network when opened)."""
    from dspy_tracekit import analytics
    from dspy_tracekit.analytics.report import render_report

    store = analytics.open_store(tracking_uri, experiment)
    with _progress("reading traces", _read_total(store, since, filter_string)) as tick:
        views = analytics.trace_views(_ticking(analytics.iter_traces(store, since, filter_string), tick))
    result = analytics.stats(
        views,
        tracking_uri=store.tracking_uri,
        experiment=store.experiment_name,
        filter=analytics.build_filter(since, filter_string),
    )
    html = render_report(views, result, title=title or f"dspy-tracekit report: {store.experiment_name}")
    with open(out_path, "w", encoding="utf-8") as fh:
        fh.write(html)
    click.echo(f"wrote {out_path} ({_plural(len(views), 'trace')})", err=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface for mlflow ui to listen on.")
@click.option("--port", default=5000, show_default=True, help="Port (0 picks a free one).")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    help="mlflow ui worker processes (one is plenty for one person).",
)
@click.option("--startup-timeout", default=90.0, show_default=True, help="Seconds to wait for the server.")
@_store_options
@_friendly
def ui(host, port, workers, startup_timeout, tracking_uri, experiment):
    """Start `mlflow ui` on the store and print the URL of the experiment's traces.

    For an http(s) tracking URI (a running tracking server) it only prints that server's URL.
    """
    from dspy_tracekit import analytics
    from dspy_tracekit.cli.ui import run_ui, traces_url

    store = analytics.open_store(tracking_uri, experiment)
    if store.tracking_uri.startswith(("http://", "https://")):
        click.echo(traces_url(store.tracking_uri, store.experiment_id))
        return
    sys.exit(
        run_ui(
            store,
            host=host,
            port=port,
            workers=workers,
            startup_timeout=startup_timeout,
            announce=lambda url: click.echo(url) or sys.stdout.flush(),
        )
    )


@main.command()
@_query_options
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@_friendly
def doctor(tracking_uri, experiment, since, filter_string, as_json):
    """Resolved config (with the file each value came from), plugins, store reachability, counters."""
    from dspy_tracekit.cli.doctor import diagnose, render

    findings = diagnose(tracking_uri=tracking_uri, experiment=experiment, since=since, filter=filter_string)
    if as_json:
        click.echo(json.dumps(findings, indent=2, default=str))
    else:
        render(findings, _console())
    if not findings["ok"]:
        sys.exit(1)


from dspy_tracekit.cli import compare as cli_compare  # noqa: E402 - analytics v2 (#15): compare, optimize
from dspy_tracekit.cli import optimize as cli_optimize  # noqa: E402
from dspy_tracekit.cli.erase import erase as _erase  # noqa: E402

main.add_command(_erase)
main.add_command(cli_compare.command())
main.add_command(cli_optimize.command())
from dspy_tracekit.cli.monitor import slo, watch  # noqa: E402 - commands in modules of their own

main.add_command(slo)
main.add_command(watch)
