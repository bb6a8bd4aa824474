"""``dspy-tracekit doctor``: what tracekit would do here, and whether it can.

Resolves the config exactly as ``enable()`` does (file → ``DSPY_TRACEKIT_*`` → arguments) and shows
where each value came from; loads and configures the enabled plugins without instrumenting DSPy, so
a bad plugin table shows up here with the same message ``enable()`` would raise; checks the store;
reports every plugin's counters (the live ones when tracing is on in this process).
"""

from __future__ import annotations

import os
import time
from typing import Any

from dspy_tracekit.analytics import AnalyticsError, _one_line, _sqlite_path

__all__ = ["diagnose", "render"]


def _installed_plugins() -> list[dict[str, str]]:
    from dspy_tracekit.manager import TracekitManager

    rows = []
    for name, ep in sorted(TracekitManager.installed_plugins().items()):
        dist = getattr(ep, "dist", None)
        rows.append(
            {
                "name": name,
                "module": ep.value,
                "distribution": getattr(dist, "name", "") or "",
                "version": getattr(dist, "version", "") or "",
            }
        )
    return rows


def _config(tracking_uri: str | None, experiment: str | None, installed: tuple[str, ...]) -> dict[str, Any]:
    from dspy_tracekit.config import CORE_SCHEMA, resolve

    cfg = resolve(tracking_uri=tracking_uri, experiment=experiment, installed=installed)
    # the CLI passes its flags the way enable() takes arguments: name them as the user typed them
    flags = {"enable(tracking_uri=...)": "--tracking-uri", "enable(experiment=...)": "--experiment"}
    core = [
        {
            "key": key,
            "value": cfg.core.get(key),
            "env": schema[2],
            "source": flags.get(cfg.sources.get(key, "default"), cfg.sources.get(key, "default")),
        }
        for key, schema in CORE_SCHEMA.items()
    ]
    tables = {
        name: {"source": cfg.sources.get(name, "default"), "values": table}
        for name, table in sorted(cfg.tables.items())
    }
    return {"files": list(cfg.files), "core": core, "plugins": tables, "resolved": cfg}


def _dry_configure(cfg: Any) -> dict[str, int | float]:
    """Load and configure the enabled plugins as enable() would (no instrumentation); their counters."""
    from dspy_tracekit.manager import TracekitManager
    from dspy_tracekit.records import Settings

    mgr = TracekitManager()
    try:
        mgr.load(cfg.core["plugins"], cfg.core["blocked"])
        settings = Settings(
            tracking_uri=cfg.core["tracking_uri"],
            experiment=cfg.core["experiment"],
            plugins=tuple(mgr.plugin_names()),
            config_files=cfg.files,
            sources=dict(cfg.sources),
            dry_run=True,  # doctor reads; it must not create the store or a spool directory
        )
        mgr.configure(cfg.tables, settings, cfg.sources)
        return mgr.counters_snapshot()
    finally:
        mgr.shutdown(0.0)


def _store(uri: str, experiment: str, since: str | None = None, filter: str | None = None) -> dict[str, Any]:
    """Can the store be read, does the experiment exist, how many traces match — creating nothing."""
    from dspy_tracekit.analytics import count_traces, experiment_names, open_store

    found: dict[str, Any] = {
        "tracking_uri": uri,
        "experiment": experiment,
        "reachable": False,
        "store_found": False,
        "experiment_found": False,
        "traces": None,
        "error": None,
        "missing": None,
    }
    started = time.perf_counter()
    path = _sqlite_path(uri)
    if path and path != ":memory:":
        found["file"] = path
        if not os.path.exists(path):
            found["missing"] = (
                f"no store yet: {path} does not exist (dspy_tracekit.enable() creates it when tracing starts)"
            )
            return found
    try:
        store = open_store(uri, experiment)
    except AnalyticsError as exc:
        if "not found in" not in str(exc):
            found["error"] = str(exc)
            return found
        found.update(reachable=True, store_found=True)  # the store answered; the experiment is missing
        from mlflow import MlflowClient

        names = experiment_names(MlflowClient(tracking_uri=uri))
        found["experiments"] = names
        found["missing"] = (
            f"experiment {experiment!r} does not exist in {uri} yet (dspy_tracekit.enable() creates it); "
            + (f"experiments there: {', '.join(repr(n) for n in names)}" if names else "the store has none")
        )
        return found
    found.update(reachable=True, store_found=True, experiment_found=True, experiment_id=store.experiment_id)
    try:
        found["traces"] = count_traces(store, since, filter)
    except AnalyticsError as exc:
        found["error"] = str(exc)
    found["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return found


def _same_store(a: str, b: str) -> bool:
    """Two tracking URIs name the same store (relative SQLite paths resolved against the working dir)."""
    def norm(uri: str) -> str:
        if uri.startswith("sqlite:///"):
            return "sqlite:" + os.path.abspath(uri[len("sqlite:///"):])
        return uri.rstrip("/")

    return norm(a) == norm(b)


def _destination(cfg: Any) -> dict[str, Any]:
    """Where traces go, why, and what MLflow itself was told (they can differ)."""
    from dspy_tracekit.mlflow._compat import mlflow_experiment, mlflow_tracking_uri

    uri, experiment = cfg.core["tracking_uri"], cfg.core["experiment"]
    mlflow_uri, user_set = mlflow_tracking_uri()
    hint = mlflow_experiment()
    out: dict[str, Any] = {
        "tracking_uri": uri, "tracking_uri_from": cfg.sources.get("tracking_uri", "default"),
        "experiment": experiment, "experiment_from": cfg.sources.get("experiment", "default"),
        "mlflow_traces": cfg.core["mlflow_traces"],
        "mlflow_tracking_uri": mlflow_uri if user_set else None,
        "mlflow_experiment": None if hint is None else f"{hint[0]} {hint[1]}",
        "notes": [],
    }
    if user_set and not _same_store(mlflow_uri, uri):
        which = "every MLflow trace" if out["mlflow_traces"] == "all" else "every trace with a DSPy span"
        out["notes"].append(f"MLflow's own tracking URI is {mlflow_uri}, but tracekit's config sends traces to "
                            f"{uri}: {which} of this process is stored there, not where MLflow points")
    if hint is not None and hint[0] == "name" and hint[1] != experiment:
        out["notes"].append(f"MLflow's experiment is {hint[1]!r} (MLFLOW_EXPERIMENT_NAME), tracekit's is "
                            f"{experiment!r}")
    return out


def diagnose(
    tracking_uri: str | None = None,
    experiment: str | None = None,
    since: str | None = None,
    filter: str | None = None,
) -> dict[str, Any]:
    """Everything ``doctor`` reports, as a JSON-able dict; ``ok`` is False when something needs fixing.

    ``since`` / ``filter`` narrow the trace count (the store check reads trace metadata only).
    """
    from dspy_tracekit import _state
    from dspy_tracekit.errors import ConfigError

    installed = _installed_plugins()
    findings: dict[str, Any] = {"ok": True, "problems": [], "missing": [], "installed_plugins": installed}
    try:
        config = _config(tracking_uri, experiment, tuple(p["name"] for p in installed))
    except ConfigError as exc:
        findings.update(ok=False, config={"error": _one_line(exc)})
        findings["problems"].append(f"config: {_one_line(exc)}")
        return findings
    cfg = config.pop("resolved")
    findings["config"] = config
    findings["destination"] = _destination(cfg)
    findings["enabled_plugins"] = [
        "mlflow",
        *[p for p in cfg.core["plugins"] if p not in cfg.core["blocked"]],
    ]
    manager = _state.manager
    if manager is not None:
        findings["counters"] = manager.counters_snapshot()
        findings["counters_source"] = "live (tracing is enabled in this process)"
    else:
        try:
            findings["counters"] = _dry_configure(cfg)
            findings["counters_source"] = "fresh (plugins loaded and configured here; tracing not enabled)"
        except Exception as exc:  # noqa: BLE001 - a plugin that fails to load or configure is the finding
            findings["counters"] = {}
            findings["ok"] = False
            findings["problems"].append(f"plugins: {_one_line(exc)}")
    store = _store(cfg.core["tracking_uri"], cfg.core["experiment"], since, filter)
    findings["store"] = store
    if store["error"]:
        findings["ok"] = False
        findings["problems"].append(f"store: {store['error']}")
    if store["missing"]:  # nothing traced here yet: not a fault, but the read commands have nothing to read
        findings["missing"].append(store["missing"])
    return findings


def render(findings: dict[str, Any], console: Any) -> None:
    """Print ``diagnose()``'s findings as tables. Every value is printed as text, never as Rich markup
    (a config error naming ``[tool.dspy-tracekit]`` must reach the reader whole)."""
    from rich.markup import escape
    from rich.table import Table

    def cell(value: Any) -> str:
        return escape(str(value))

    config = findings.get("config", {})
    if "core" in config:
        files = ", ".join(config["files"]) or "none (defaults and environment only)"
        console.print(f"[bold]Config[/bold] files: {cell(files)}")
        table = Table(show_header=True)
        for col in ("key", "value", "from", "environment variable"):
            table.add_column(col, overflow="fold")
        for row in config["core"]:
            table.add_row(cell(row["key"]), cell(repr(row["value"])), cell(row["source"]), cell(row["env"]))
        for name, table_info in config["plugins"].items():
            for key, value in table_info["values"].items():
                table.add_row(
                    cell(f"{name}.{key}"),
                    cell(repr(value)),
                    cell(table_info["source"]),
                    cell(f"DSPY_TRACEKIT_{name.upper()}_{key.upper()}"),
                )
        console.print(table)
    plugins = Table(title="Plugins", title_justify="left")
    for col in ("name", "enabled", "distribution", "version", "module"):
        plugins.add_column(col, overflow="fold")
    enabled = set(findings.get("enabled_plugins", []))
    for p in findings["installed_plugins"]:
        plugins.add_row(
            cell(p["name"]),
            "yes" if p["name"] in enabled else "no",
            cell(p["distribution"]),
            cell(p["version"]),
            cell(p["module"]),
        )
    console.print(plugins)
    dest = findings.get("destination")
    # the free-text lines hold paths and URIs: soft wrap, so the terminal folds them and a copied path stays whole
    if dest:
        console.print(f"[bold]Traces go to[/bold] {cell(dest['tracking_uri'])} (from {cell(dest['tracking_uri_from'])}), "
                      f"experiment {cell(repr(dest['experiment']))} (from {cell(dest['experiment_from'])}); "
                      f"MLflow-made traces: {cell(dest['mlflow_traces'])}", soft_wrap=True)
        for note in dest["notes"]:
            console.print(f"[yellow]note[/yellow] {cell(note)}", soft_wrap=True)
    store = findings.get("store")
    if store:
        if store.get("missing") and not store.get("store_found"):
            state = "[yellow]not created yet[/yellow]"
        else:
            state = "[green]reachable[/green]" if store["reachable"] else "[red]unreachable[/red]"
        line = f"[bold]Store[/bold] {cell(store['tracking_uri'])}: {state}"
        if store.get("experiment_found"):
            line += f"; experiment {cell(repr(store['experiment']))} has {cell(store['traces'])} traces"
            if store.get("latency_ms") is not None:
                line += f" ({store['latency_ms']} ms)"
        console.print(line, soft_wrap=True)
    counters = findings.get("counters")
    if counters is not None:
        console.print(f"[bold]Counters[/bold] — {cell(findings.get('counters_source', ''))}")
        table = Table()
        table.add_column("counter")
        table.add_column("value", justify="right")
        for key, value in sorted(counters.items()):
            table.add_row(cell(key), f"{value:g}" if isinstance(value, float) else cell(value))
        if not counters:
            table.add_row("(none reported)", "")
        console.print(table)
    for missing in findings.get("missing", []):
        console.print(f"[yellow]missing:[/yellow] {cell(missing)}", soft_wrap=True)
    for problem in findings["problems"]:
        console.print(f"[red]problem:[/red] {cell(problem)}", soft_wrap=True)
    if not findings["ok"]:
        console.print("[red]doctor found problems[/red]")
    elif findings.get("missing"):
        console.print("[green]ok[/green] — nothing traced here yet (see missing above)")
    else:
        console.print("[green]ok[/green]")
