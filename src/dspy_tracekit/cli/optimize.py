"""``dspy-tracekit optimize [RUN_TRACE_ID|--last]``: one optimizer run, trial by trial."""

from __future__ import annotations

import json

import click


def _score(value) -> str:
    return "-" if value is None else f"{value:,.4g}"


def command() -> click.Command:
    """The ``optimize`` command, built on the CLI's shared options (imported here: ``python -m
    dspy_tracekit.cli`` runs cli.py as ``__main__``, which a module-level import would load twice)."""
    from dspy_tracekit.cli import _console, _friendly, _ms, _num, _query_options, _usd

    @click.command()
    @click.argument("trace_id", required=False)
    @click.option("--last", is_flag=True, help="Show the newest optimizer run.")
    @click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
    @_query_options
    @_friendly
    def optimize(trace_id, last, as_json, tracking_uri, experiment, since, filter_string):
        """One optimizer run (one compile trace): each trial's score, tokens, cost and cumulative cost,
        the candidate's program version, the best candidate and what the run cost in total."""
        from rich.markup import escape
        from rich.table import Table

        from dspy_tracekit import analytics
        from dspy_tracekit.analytics.optimize import last_run, optimizer_run, run_by_id

        if bool(trace_id) == bool(last):
            raise click.UsageError("give a RUN_TRACE_ID or --last (not both)")
        store = analytics.open_store(tracking_uri, experiment)
        view = run_by_id(store, trace_id) if trace_id else last_run(store, since, filter_string)
        run = optimizer_run(view)
        if as_json:
            click.echo(json.dumps(run.to_dict(), indent=2))
            return
        out = _console()
        out.print(f"[bold]{escape(run.optimizer)}[/bold] run {run.trace_id}  {run.status}  {_ms(run.duration_ms)}  "
                  f"{run.lm_calls} LM calls  tokens {_num(run.total_tokens)}  cost {_usd(run.total_cost_usd) or '-'}")
        out.print(f"student version {run.student_version or '-'} → result version {run.result_version or '-'}")
        if not run.trials:
            out.print("No candidate evaluations in this run (this optimizer does not score candidates).")
            return
        table = Table(title="Trials (score vs cumulative cost)", title_justify="left")
        for col in ("#", "score", "mean", "examples", "version", "tokens", "cost", "cum. tokens", "cum. cost",
                    "at", "took"):
            table.add_column(col, justify="left" if col == "version" else "right")
        for t in run.trials:
            best = run.best is not None and t.index == run.best.index
            table.add_row(("★ " if best else "") + str(t.index), _score(t.score), _score(t.mean_score),
                          "-" if t.examples is None else str(t.examples), t.program_version or "-",
                          _num(t.tokens), _usd(t.cost_usd), _num(t.cumulative_tokens), _usd(t.cumulative_cost_usd),
                          _ms(t.start_ms), _ms(t.duration_ms))
        out.print(table)
        if run.best is not None:
            out.print(f"Best: trial {run.best.index}, score {_score(run.best.score)}, version "
                      f"{run.best.program_version or '-'}, reached after {_usd(run.best.cumulative_cost_usd)} "
                      f"({_num(run.best.cumulative_tokens)} tokens) of {_usd(run.total_cost_usd)} in total.")

    return optimize
