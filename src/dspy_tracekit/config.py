"""Configuration: ``[tool.dspy-tracekit]`` in pyproject.toml or ``dspy-tracekit.toml``, env, arguments.

Precedence (later wins): file → ``DSPY_TRACEKIT_*`` environment variables → ``enable(...)`` arguments.
"""

from __future__ import annotations

import math
import os
import re
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
                      "Seconds disable() and interpreter exit wait for pending traces (a finite number >= 0)."),
    "cpu_time": (bool, True, "DSPY_TRACEKIT_CPU_TIME",
                 "Record each span's thread CPU time next to its wall time (attribute tracekit.cpu_ms)."),
    "peak_memory": (bool, False, "DSPY_TRACEKIT_PEAK_MEMORY",
                    "Record each trace's peak memory with tracemalloc (tag tracekit.memory.peak_bytes); "
                    "slows every allocation of the process while on."),
    "disable": (bool, False, "DSPY_TRACEKIT_DISABLE",
                "true turns tracing off before anything is loaded: enable() returns False (zero cost)."),
    "fast_store": (bool, True, "DSPY_TRACEKIT_FAST_STORE",
                   "false writes every trace through MLflow's log_spans instead of the fast path "
                   "(SQLite, PostgreSQL, MySQL; see docs/mlflow.md)."),
    "debug_hooks": (bool, False, "DSPY_TRACEKIT_DEBUG_HOOKS", "Print every hook call to stderr."),
    "debug": (bool, False, "DSPY_TRACEKIT_DEBUG",
              "The dspy-tracekit command prints the traceback of an unexpected error instead of one line."),
}

#: words the one yes/no parser (:func:`parse_yes_no`) reads, in any case
YES = frozenset({"1", "true", "yes", "on"})
NO = frozenset({"0", "false", "no", "off"})


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
                if _mentions_tracekit(pyproject):
                    raise  # it may hold our table (redaction, sampling): never run without it
                continue  # an unrelated broken pyproject further up is not ours to judge
            if "dspy-tracekit" in data.get("tool", {}):
                return pyproject, data["tool"]["dspy-tracekit"]
    return None


def _mentions_tracekit(path: Path) -> bool:
    try:
        return "dspy-tracekit" in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True


_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_POSITION.search(str(exc))
        if found:
            line = found.group(1)
        else:  # "(at end of document)": the last line
            with open(path, "rb") as fh:
                line = str(max(1, fh.read().rstrip(b"\n").count(b"\n") + 1))
        at = f"{path}:{line}"
        raise ConfigError(f"config file {at} is not valid TOML: {exc}") from exc


# ------------------------------------------------------------------------------------------------
# Validators: one helper per kind of value, shared by the core and every plugin's own table.
# Each returns the value (converted where that is unambiguous) or raises ConfigError naming the key
# and the value. Plugins pass their dotted key ("buffer.flush_interval"); enable() adds the source.
# ------------------------------------------------------------------------------------------------


def _at(where: str | None) -> str:
    return f" ({where})" if where else ""


def _fail(key: str, want: str, value: Any, where: str | None) -> ConfigError:
    err = ConfigError(f"{key} must be {want}, got {value!r}{_at(where)}")
    err.key = key  # type: ignore[attr-defined]
    return err


def parse_yes_no(value: Any, key: str, where: str | None = None) -> bool:
    """The one yes/no parser: ``true``/``false``, or in text (environment variables) ``1``/``0``,
    ``yes``/``no``, ``on``/``off``, ``true``/``false`` in any case. Anything else is an error."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):  # an environment value "1" reads as the TOML integer 1
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in YES:
            return True
        if low in NO:
            return False
    raise _fail(key, "true or false (yes/no, on/off, 1/0)", value, where)


def env_flag(name: str, default: bool = False) -> bool:
    """A yes/no environment variable through :func:`parse_yes_no`; unset or empty → ``default``."""
    raw = os.environ.get(name, "")
    if not raw.strip():
        return default
    return parse_yes_no(raw, name, f"environment variable {name}")


def check_number(value: Any, key: str, where: str | None = None, *, minimum: float | None = None,
                 above: float | None = None, maximum: float | None = None, integer: bool = False,
                 unit: str = "") -> int | float:
    """A finite number (an ``int`` with ``integer=True``) within the bounds given. Text is refused:
    ``ratio = "0.5"`` is a typo to report, not a number to guess (environment variables arrive parsed)."""
    bounds = []
    if minimum is not None:
        bounds.append(f">= {minimum:g}")
    if above is not None:
        bounds.append(f"> {above:g}")
    if maximum is not None:
        bounds.append(f"<= {maximum:g}")
    want = ("an integer" if integer else "a finite number") + (f" {' and '.join(bounds)}" if bounds else "") \
        + (f" ({unit})" if unit else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(key, want, value, where)
    if integer and not isinstance(value, int):
        if not (math.isfinite(value) and value.is_integer()):
            raise _fail(key, want, value, where)
        value = int(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(key, want, value, where)
    if (minimum is not None and value < minimum) or (above is not None and value <= above) or \
            (maximum is not None and value > maximum):
        raise _fail(key, want, value, where)
    return value


def check_text(value: Any, key: str, where: str | None = None, *, choices: tuple[str, ...] = (),
               allow_empty: bool = False) -> str:
    """A string (non-empty unless ``allow_empty``), one of ``choices`` when given."""
    if choices:
        if value not in choices:
            raise _fail(key, " or ".join(f'"{c}"' for c in choices), value, where)
        return value
    if not isinstance(value, str) or (not value and not allow_empty):
        raise _fail(key, "a string" if allow_empty else "a non-empty string", value, where)
    return value


def check_names(value: Any, key: str, where: str | None = None) -> list[str]:
    """A list of non-empty strings (``plugins = ["redact"]``, not ``plugins = "redact"``)."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise _fail(key, "a list of names, e.g. [\"redact\", \"sample\"]", value, where)
    return list(value)


def check_writable_dir(value: Any, key: str, where: str | None = None) -> str:
    """A directory that exists or can be created, and where a file can be written (checked now)."""
    path = check_text(value, key, where)
    probe_dir = os.path.abspath(path)
    try:
        os.makedirs(probe_dir, exist_ok=True)
        probe = os.path.join(probe_dir, f".tracekit-probe-{os.getpid()}")
        with open(probe, "wb") as fh:
            fh.write(b"ok")
        os.unlink(probe)
    except OSError as exc:
        err = ConfigError(f"{key} {path!r} is not a writable directory ({exc.strerror or exc}){_at(where)}")
        err.key = key  # type: ignore[attr-defined]
        raise err from exc
    return path


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _coerce(key: str, value: Any, where: str) -> Any:
    typ = CORE_SCHEMA[key][0]
    name = f"'{key}'"
    if typ is list:
        if isinstance(value, str) and where.startswith("environment variable"):
            value = [v.strip() for v in value.split(",") if v.strip()]  # the documented comma form
        return check_names(value, name, where)
    if typ is bool:
        return parse_yes_no(value, name, where)
    if key == "mlflow_traces":
        return check_text(value, name, where, choices=("all", "dspy"))
    if key == "flush_timeout":
        return check_number(value, name, where, minimum=0, unit="seconds")
    return check_text(value, name, where)


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
                sources.update({f"{key}.{k}": where for k in value})
            elif key in CORE_SCHEMA:
                core[key] = _coerce(key, value, where)
                sources[key] = where
            else:
                raise ConfigError(f"unknown key '{key}' in [tool.dspy-tracekit] ({where}); "
                                  f"known keys: {', '.join(CORE_SCHEMA)} and one table per plugin")

    env_plugin_names = set(installed) | set(tables) | set(core["plugins"])
    for env_key, raw in os.environ.items():
        if not env_key.startswith(ENV_PREFIX):
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
            sources[plugin] = sources[f"{plugin}.{key}"] = where
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
            sources.update({f"{name}.{k}": "enable(config=...)" for k in table})

    known = set(installed) | {"mlflow"}
    for name in tables:
        if name not in known:
            where = sources.get(name, "config")
            raise ConfigError(f"config table for unknown plugin '{name}' ({where}); installed plugins: "
                              f"{', '.join(sorted(installed)) or 'none'}")
    resolve_destination(core, sources)
    check_tracking_uri(core["tracking_uri"], sources.get("tracking_uri"))
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


def check_tracking_uri(uri: str, where: str | None = None) -> str:
    """A tracking URI MLflow has a store for (its built-in schemes and installed store plugins)."""
    from dspy_tracekit._delivery.secrets import strip_url_credentials
    from dspy_tracekit.mlflow import _compat as mlflow_compat

    supported = mlflow_compat.unsupported_tracking_uri(uri)
    if supported is not None:
        err = ConfigError(f"'tracking_uri' {strip_url_credentials(uri)!r} has a scheme MLflow has no store for{_at(where)}; "
                          f"supported: {', '.join(s + '://' if s else '<path>' for s in supported)}")
        err.key = "tracking_uri"  # type: ignore[attr-defined]
        raise err
    return uri


def tracing_disabled_by_env() -> bool:
    """``DSPY_TRACEKIT_DISABLE`` (validated: a bad value raises ConfigError) or MLflow's own switch."""
    if env_flag("DSPY_TRACEKIT_DISABLE"):
        return True
    return os.environ.get("MLFLOW_ENABLE_TRACING", "").strip().lower() in NO
