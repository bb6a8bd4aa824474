"""``dspy-tracekit erase``: delete every trace of one user (or one session of a user).

The store holds pseudonyms, not identifiers (the redact plugin's ``pseudonyms``): the command computes
the pseudonym with the same key file, shows what it will delete, deletes through MLflow's client
API and prints a receipt. The work is done by :func:`dspy_tracekit_redact.plan_erasure` / ``erase``.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone

import click


def _when(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _defaults(tracking_uri: str | None, key_file: str | None) -> tuple[str, str | None]:
    """The tracking URI and the pseudonym key file ``enable()`` would use (tracekit config, env)."""
    from dspy_tracekit.config import resolve
    from dspy_tracekit.errors import ConfigError
    from dspy_tracekit.manager import TracekitManager

    try:
        cfg = resolve(tracking_uri=tracking_uri, installed=tuple(TracekitManager.installed_plugins()))
    except ConfigError as exc:
        raise click.ClickException(f"bad tracekit config: {exc} (or pass --tracking-uri and --key-file)") from exc
    return cfg.core["tracking_uri"], key_file or cfg.tables.get("redact", {}).get("pseudonym_key_file")


@click.command()
@click.option("--user-id", required=True, metavar="VALUE", help="The user's identifier, as the program passed it "
              "to tk.context(user_id=...).")
@click.option("--session-id", default=None, metavar="VALUE", help="Only this session of the user.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before deleting.")
@click.option("--tracking-uri", default=None, metavar="URI",
              help="MLflow tracking URI (default: as dspy_tracekit.enable() resolves it).")
@click.option("--experiment-id", "experiment_ids", multiple=True, metavar="ID",
              help="Only this experiment (repeatable; default: every experiment in the store).")
@click.option("--key-file", default=None, metavar="PATH", help="The pseudonym key the traces were written with "
              "(default: the redact plugin's pseudonym_key_file, else its default path).")
@click.option("--json", "as_json", is_flag=True, help="Print the receipt as JSON.")
def erase(user_id, session_id, yes, tracking_uri, experiment_ids, key_file, as_json):
    """Delete every trace of a user (MLflow's delete_traces): shows what will go, asks, prints a receipt."""
    from dspy_tracekit.analytics import _sqlite_path

    try:
        from dspy_tracekit_redact import erase as do_erase
        from dspy_tracekit_redact import plan_erasure
    except ImportError as exc:
        raise click.ClickException("erase needs the redact plugin (pip install 'dspy-tracekit[redact]'): "
                                   f"{exc}") from exc
    for name in ("mlflow", "alembic", "sqlalchemy"):
        import logging

        logging.getLogger(name).setLevel(logging.WARNING)
    uri, key_file = _defaults(tracking_uri, key_file)
    path = _sqlite_path(uri)
    if path and path != ":memory:" and not os.path.exists(path):
        raise click.ClickException(f"cannot reach MLflow store {uri}: no such file {path}")
    try:
        plan = plan_erasure(user_id, session_id, tracking_uri=uri, key_file=key_file,
                            experiment_ids=list(experiment_ids) or None)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:  # an unreachable store is one line for the user
        raise click.ClickException(f"cannot search traces in {uri}: {type(exc).__name__}: {exc}") from exc
    who = f"user {plan.user_pseudonym}" + (f", session {plan.session_pseudonym}" if session_id else "")
    out = sys.stderr if as_json else sys.stdout
    if not plan.count:
        click.echo(f"Nothing to delete: no traces of {who} in {uri}.", file=out)
        if as_json:
            click.echo(json.dumps({"deleted": 0, "user_pseudonym": plan.user_pseudonym,
                                   "session_pseudonym": plan.session_pseudonym, "trace_ids": []}))
        return
    where = ", ".join(f"{plan.experiment_names.get(e, e)!r} ({len(t)})" for e, t in plan.traces.items())
    click.echo(f"Will delete {plan.count} traces of {who} from {uri}: started {_when(plan.oldest_ms)} – "
               f"{_when(plan.newest_ms)} UTC, in {where}.", file=out)
    if not yes:
        click.confirm(f"Delete these {plan.count} traces?", abort=True, err=True)
    try:
        receipt = do_erase(plan)
    except Exception as exc:  # one line for the user; earlier batches stay deleted
        raise click.ClickException(f"deleting traces failed: {type(exc).__name__}: {exc}") from exc
    if as_json:
        click.echo(json.dumps(receipt.to_dict(), indent=2))
        return
    click.echo(f"Receipt: deleted {receipt.deleted} traces of {who} at {receipt.erased_at} from {uri} "
               f"(started {_when(receipt.oldest_ms)} – {_when(receipt.newest_ms)} UTC).")
    for tid in receipt.trace_ids:
        click.echo(f"  {tid}")
