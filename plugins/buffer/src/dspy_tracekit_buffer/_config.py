"""The buffer's settings: one validated table, every key with a type and a default."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

OVERFLOW_POLICIES = ("spill", "block", "drop_oldest", "drop_newest")
DEFAULT_SPOOL_DIR = os.path.join(".dspy-tracekit", "spool")
#: bytes one span is assumed to take in memory until the worker has measured a prepared trace
#: (see _sizing.py: from then on the figure follows the traces the program makes).
SPAN_BYTES_ESTIMATE = 2048


@dataclass(frozen=True)
class BufferConfig:
    """``[tool.dspy-tracekit.buffer]``; see the plugin README for what each key does."""

    max_traces: int = 10_000
    max_bytes: int = 256 * 1024 * 1024
    batch_size: int = 200
    flush_interval: float = 0.5
    overflow: str = "spill"
    block_timeout: float = 1.0
    spool_dir: str = DEFAULT_SPOOL_DIR
    spool_max_bytes: int = 1024 * 1024 * 1024
    spool_required: bool = False
    dead_letter_path: str = ""
    retry_attempts: int = 5
    retry_initial_backoff: float = 0.2
    retry_max_backoff: float = 10.0
    exit_timeout: float = 10.0

    @property
    def dead_letter_file(self) -> str:
        from ._spool import DEAD_LETTER

        return self.dead_letter_path or os.path.join(self.spool_dir, DEAD_LETTER)


_KEYS = {f.name: f for f in fields(BufferConfig)}


def parse_config(table: dict[str, Any], environ: dict[str, str] | None = None) -> BufferConfig:
    """Validate the plugin's table; raise ValueError naming the key (``buffer.<key> ...``).

    Values may be strings (from ``DSPY_TRACEKIT_BUFFER_*`` environment variables).
    ``MLFLOW_TRACE_BUFFER_SIZE`` sizes the queue when ``max_traces`` is absent.
    """
    env = os.environ if environ is None else environ
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise ValueError(f"unknown key buffer.{unknown[0]} (known keys: {', '.join(sorted(_KEYS))})")
    values: dict[str, Any] = {}
    for name, value in table.items():
        values[name] = _coerce(name, value, type(getattr(BufferConfig, name)))
    if "max_traces" not in values and env.get("MLFLOW_TRACE_BUFFER_SIZE"):
        raw = env["MLFLOW_TRACE_BUFFER_SIZE"]
        try:
            values["max_traces"] = int(raw)
        except ValueError:
            raise ValueError(f"MLFLOW_TRACE_BUFFER_SIZE must be a positive integer, got {raw!r}") from None
        if values["max_traces"] <= 0:
            raise ValueError(f"MLFLOW_TRACE_BUFFER_SIZE must be a positive integer, got {raw!r}")
    cfg = BufferConfig(**values)
    for name in ("max_traces", "max_bytes", "batch_size", "spool_max_bytes", "retry_attempts"):
        if getattr(cfg, name) <= 0:
            raise ValueError(f"buffer.{name} must be a positive integer, got {getattr(cfg, name)!r}")
    for name in ("flush_interval", "block_timeout", "retry_initial_backoff", "retry_max_backoff", "exit_timeout"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"buffer.{name} must be >= 0 seconds, got {getattr(cfg, name)!r}")
    if cfg.overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"buffer.overflow must be one of {', '.join(OVERFLOW_POLICIES)}, got {cfg.overflow!r}")
    if not cfg.spool_dir:
        raise ValueError("buffer.spool_dir must be a directory path, got ''")
    return cfg


def _coerce(name: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.strip().lower() in ("1", "true", "yes", "on")
        raise ValueError(f"buffer.{name} must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ValueError(f"buffer.{name} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""))
            except ValueError:
                pass
        raise ValueError(f"buffer.{name} must be an integer, got {value!r}")
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(f"buffer.{name} must be a number of seconds, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"buffer.{name} must be a number of seconds, got {value!r}")
    if not isinstance(value, str):
        raise ValueError(f"buffer.{name} must be a string, got {value!r}")  # noqa: TRY004 - config errors are ValueErrors
    return value
