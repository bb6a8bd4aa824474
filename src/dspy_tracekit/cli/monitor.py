"""``dspy-tracekit slo rules`` and ``dspy-tracekit watch``: the monitor plugin's commands.

They need the ``monitor`` plugin (``pip install "dspy-tracekit[monitor]"``) and import it only when run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["slo", "watch"]


def _monitor_module():
    try:
        import dspy_tracekit_monitor
    except ImportError:
        click.echo('error: this command needs the monitor plugin: pip install "dspy-tracekit[monitor]"', err=True)
        sys.exit(1)
    return dspy_tracekit_monitor


def _monitor_config(config_file: str | None):
    """The ``monitor`` table from ``config_file`` or as ``enable()`` resolves it, validated."""
    from dspy_tracekit.config import _read_toml, resolve
    from dspy_tracekit.errors import ConfigError

    mod = _monitor_module()
    try:
        if config_file:
            data = _read_toml(Path(config_file))
            table = data.get("tool", {}).get("dspy-tracekit", data).get("monitor", {})
            where = config_file
        else:
            from dspy_tracekit.manager import TracekitManager

            cfg = resolve(installed=tuple(TracekitManager.installed_plugins()))
            table = cfg.tables.get("monitor", {})
            where = cfg.sources.get("monitor", "config")
        return mod.parse_config(dict(table))
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except ValueError as exc:
        click.echo(f"error: [monitor] {exc} (from {where})", err=True)
        sys.exit(1)


@click.group()
def slo() -> None:
    """Service-level objectives of the monitor plugin ([[tool.dspy-tracekit.monitor.slo]])."""


@slo.command("rules")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, writable=True), default="-", show_default=True,
              help="Where to write the rules file ('-' for stdout).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A pyproject.toml or dspy-tracekit.toml (default: as dspy_tracekit.enable() finds it).")
def rules(out_path: str, config_file: str | None) -> None:
    """Write Prometheus recording and alerting rules equivalent to the in-process SLOs."""
    from dspy_tracekit_monitor._rules import rules_yaml

    cfg = _monitor_config(config_file)
    if not cfg.slos:
        click.echo("error: no SLOs configured ([[tool.dspy-tracekit.monitor.slo]])", err=True)
        sys.exit(1)
    text = rules_yaml(cfg.slos, cfg.hysteresis)
    if out_path == "-":
        click.echo(text, nl=False)
    else:
        Path(out_path).write_text(text)
        click.echo(f"wrote {len(cfg.slos)} SLO(s) to {out_path}", err=True)


@click.command()
@click.option("--url", default=None, metavar="URL",
              help="A running process's /metrics (e.g. http://127.0.0.1:9464/metrics). Default: the monitor's "
              "configured port if it answers, else the store.")
@click.option("--tracking-uri", default=None, metavar="URI", help="Read from this MLflow store (no /metrics).")
@click.option("--experiment", "-e", default=None, metavar="NAME", help="Experiment name (store mode).")
@click.option("--window", default="1m", show_default=True, help="Store mode: look back this far (30s, 5m, 1h).")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between refreshes.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Config file with the SLOs to show (default: as dspy_tracekit.enable() finds it).")
@click.option("--iterations", default=0, hidden=True, help="Stop after this many refreshes (0: until Ctrl-C).")
def watch(url, tracking_uri, experiment, window, interval, config_file, iterations) -> None:
    """Live view: requests/s, P50/P95/P99, error rate, cost/min per span name, and SLO state.

    Reads a running process's /metrics or, without one, the MLflow store. Ctrl-C exits.
    """
    from dspy_tracekit_monitor._watch import run_watch

    cfg = _monitor_config(config_file)
    raise SystemExit(run_watch(cfg, url=url, tracking_uri=tracking_uri, experiment=experiment, window=window,
                               interval=interval, iterations=iterations))
