"""Configuration: ``[tool.dspy-tracekit]`` in pyproject.toml or ``dspy-tracekit.toml``, env, arguments.

Precedence (later wins): file → ``DSPY_TRACEKIT_*`` environment variables → ``enable(...)`` arguments.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import ConfigError

ENV_PREFIX = "DSPY_TRACEKIT_"
DEFAULT_EXPERIMENT = "dspy_tracekit"

#: the core's keys: name → (type, default, environment variable, description)
CORE_SCHEMA: dict[str, tuple[type | tuple, Any, str, str]] = {
    "plugins": (list, [], "DSPY_TRACEKIT_PLUGINS",
                "Plugins to enable, by entry-point name (comma-separated in the environment variable)."),
    "blocked": (list, [], "DSPY_TRACEKIT_BLOCKED",
                "Plugins never to load, even if installed or named (the core `mlflow` cannot be blocked)."),
    "tracking_uri": (str, None, "DSPY_TRACEKIT_TRACKING_URI",
                     "MLflow tracking URI. Default: what MLflow was told (MLFLOW_TRACKING_URI or "
                     "mlflow.set_tracking_uri()), else sqlite:///mlflow.db in the working directory."),
    "experiment": (str, None, "DSPY_TRACEKIT_EXPERIMENT",
                   "MLflow experiment name the traces go to (created when missing). Default: what MLflow "
                   f"was told (MLFLOW_EXPERIMENT_NAME/_ID or mlflow.set_experiment()), else {DEFAULT_EXPERIMENT}."),
    "mlflow_traces": (str, "all", "DSPY_TRACEKIT_MLFLOW_TRACES",
                      "Which traces made with MLflow's own API go through tracekit: all (every MLflow trace "
                      "of the process: redaction, sampling, buffer and store apply to them too) or dspy "
                      "(only those that contain a DSPy or tk.span span; MLflow exports the others itself)."),
    "enabled": (bool, True, "DSPY_TRACEKIT_ENABLED",
                "false turns tracing off (so do DSPY_TRACEKIT_DISABLE=1 and MLFLOW_ENABLE_TRACING=false)."),
    "flush_timeout": ((int, float), 10.0, "DSPY_TRACEKIT_FLUSH_TIMEOUT",
                      "Seconds disable() and interpreter exit wait for pending traces."),
    "cpu_time": (bool, True, "DSPY_TRACEKIT_CPU_TIME",
                 "Record each span's thread CPU time next to its wall time (attribute tracekit.cpu_ms)."),
    "peak_memory": (bool, False, "DSPY_TRACEKIT_PEAK_MEMORY",
                    "Record each trace's peak memory with tracemalloc (tag tracekit.memory.peak_bytes); "
                    "slows every allocation of the process while on."),
}


@dataclass
class ResolvedConfig:
    core: dict[str, Any]
    tables: dict[str, dict[str, Any]]
    #: where each value came from: "plugins" → "/path/pyproject.toml", "sample.ratio" → "env DSPY_…"
    sources: dict[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()


def find_config_file(start: Path | None = None) -> tuple[Path, dict] | None:
    """The nearest ``dspy-tracekit.toml`` or ``pyproject.toml`` with a ``[tool.dspy-tracekit]`` table."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        own = folder / "dspy-tracekit.toml"
        if own.is_file():
            data = _read_toml(own)
            table = data.get("tool", {}).get("dspy-tracekit", data)
            return own, table
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            try:
                data = _read_toml(pyproject)
            except ConfigError:
                continue  # an unrelated broken pyproject further up is not ours to judge
            if "dspy-tracekit" in data.get("tool", {}):
                return pyproject, data["tool"]["dspy-tracekit"]
    return None


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _coerce(key: str, value: Any, where: str) -> Any:
    typ = CORE_SCHEMA[key][0]
    if typ is list and isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if typ is bool and isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            value = True
        elif low in ("0", "false", "no", "off"):
            value = False
    if typ is bool and not isinstance(value, bool) or not isinstance(value, typ) or \
            (typ is not bool and isinstance(value, bool)):
        want = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise ConfigError(f"'{key}' must be {want}, got {value!r} ({where})")
    if key == "mlflow_traces" and value not in ("all", "dspy"):
        raise ConfigError(f"'{key}' must be \"all\" or \"dspy\", got {value!r} ({where})")
    if typ is list:
        for item in value:
            if not isinstance(item, str):
                raise ConfigError(f"'{key}' must be a list of plugin names, got item {item!r} ({where})")
    return value


def resolve(plugins=None, tracking_uri=None, experiment=None, config=None, installed=()) -> ResolvedConfig:
    """Merge file, environment and arguments; validate the core keys and plugin table names."""
    core: dict[str, Any] = {k: (list(v[1]) if isinstance(v[1], list) else v[1]) for k, v in CORE_SCHEMA.items()}
    tables: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    files: list[str] = []

    found = find_config_file()
    if found is not None:
        path, table = found
        files.append(str(path))
        where = str(path)
        if not isinstance(table, dict):
            raise ConfigError(f"[tool.dspy-tracekit] must be a table ({where})")
        for key, value in table.items():
            if isinstance(value, dict):
                tables[key] = dict(value)
                sources[key] = where
            elif key in CORE_SCHEMA:
                core[key] = _coerce(key, value, where)
                sources[key] = where
            else:
                raise ConfigError(f"unknown key '{key}' in [tool.dspy-tracekit] ({where}); "
                                  f"known keys: {', '.join(CORE_SCHEMA)} and one table per plugin")

    env_plugin_names = set(installed) | set(tables) | set(core["plugins"])
    for env_key, raw in os.environ.items():
        if not env_key.startswith(ENV_PREFIX) or env_key == "DSPY_TRACEKIT_DISABLE" \
                or env_key == "DSPY_TRACEKIT_DEBUG_HOOKS":
            continue
        rest = env_key[len(ENV_PREFIX):].lower()
        where = f"environment variable {env_key}"
        if rest in CORE_SCHEMA:
            core[rest] = _coerce(rest, _parse_env_value(raw) if CORE_SCHEMA[rest][0] is not str else raw, where)
            sources[rest] = where
            continue
        # the longest known plugin name that prefixes the rest: plugin names may contain "_"
        plugin = max((name for name in env_plugin_names if rest.startswith(name.lower() + "_")), key=len, default="")
        key = rest[len(plugin) + 1:] if plugin else ""
        if plugin and key:
            tables.setdefault(plugin, {})[key] = _parse_env_value(raw)
            sources[plugin] = where
            continue
        raise ConfigError(f"unknown setting {env_key} ({where}): neither a core key "
                          f"({', '.join(CORE_SCHEMA)}) nor <PLUGIN>_<KEY> of a known plugin")

    for key, value, label in (("plugins", plugins, "enable(plugins=...)"),
                              ("tracking_uri", tracking_uri, "enable(tracking_uri=...)"),
                              ("experiment", experiment, "enable(experiment=...)")):
        if value is not None:
            core[key] = _coerce(key, list(value) if key == "plugins" and not isinstance(value, str) else value,
                                label)
            sources[key] = label
    if config is not None:
        if not isinstance(config, dict):
            raise ConfigError(f"enable(config=...) must map plugin names to tables, got {type(config).__name__}")
        for name, table in config.items():
            if not isinstance(table, dict):
                raise ConfigError(f"enable(config={{{name!r}: ...}}) must be a table (dict), got {table!r}")
            tables.setdefault(name, {}).update(table)
            sources[name] = "enable(config=...)"

    known = set(installed) | {"mlflow"}
    for name in tables:
        if name not in known:
            where = sources.get(name, "config")
            raise ConfigError(f"config table for unknown plugin '{name}' ({where}); installed plugins: "
                              f"{', '.join(sorted(installed)) or 'none'}")
    resolve_destination(core, sources)
    return ResolvedConfig(core=core, tables=tables, sources=sources, files=tuple(files))


#: ``sources`` values of a destination tracekit's own config did not set (it then follows MLflow's).
FROM_MLFLOW = "MLflow (MLFLOW_TRACKING_URI / mlflow.set_tracking_uri())"
FROM_MLFLOW_EXPERIMENT = "MLflow (MLFLOW_EXPERIMENT_NAME/_ID / mlflow.set_experiment())"
DEFAULT_SOURCE = "default"


def resolve_destination(core: dict[str, Any], sources: dict[str, str]) -> None:
    """Fill ``tracking_uri`` and ``experiment`` not set by tracekit's config: what the user told MLflow,
    else ``sqlite:///mlflow.db`` and :data:`DEFAULT_EXPERIMENT`."""
    from dspy_tracekit.mlflow import _compat as mlflow_compat

    if core.get("tracking_uri") is None:
        uri, user_set = mlflow_compat.mlflow_tracking_uri()
        core["tracking_uri"] = uri if user_set else "sqlite:///mlflow.db"
        sources["tracking_uri"] = FROM_MLFLOW if user_set else DEFAULT_SOURCE
    if core.get("experiment") is None:
        name = None
        hint = mlflow_compat.mlflow_experiment()
        same_store = sources.get("tracking_uri") in (FROM_MLFLOW, DEFAULT_SOURCE)
        if hint is not None and hint[0] == "name":
            name = hint[1]
        elif hint is not None and same_store:  # an id means something only in MLflow's own store
            name = experiment_name_of(core["tracking_uri"], hint[1])
        core["experiment"] = name or DEFAULT_EXPERIMENT
        sources["experiment"] = FROM_MLFLOW_EXPERIMENT if name else DEFAULT_SOURCE


def experiment_name_of(tracking_uri: str, experiment_id: str) -> str | None:
    try:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri).get_experiment(experiment_id).name
    except Exception:  # noqa: BLE001 - an unknown id: the default experiment, as MLflow would
        return None


def pinned(sources: dict[str, str], key: str) -> bool:
    """True when tracekit's own config (file, environment, ``enable()``) set ``key``."""
    return sources.get(key) not in (FROM_MLFLOW, FROM_MLFLOW_EXPERIMENT, DEFAULT_SOURCE, None)


def tracing_disabled_by_env() -> bool:
    if os.environ.get("DSPY_TRACEKIT_DISABLE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    return os.environ.get("MLFLOW_ENABLE_TRACING", "").strip().lower() in ("false", "0", "no", "off")
