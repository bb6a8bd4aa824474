"""The buffer's settings: one validated table, every key with a type and a default."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from dspy_tracekit.config import check_number, check_text, parse_yes_no

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
    """Validate the plugin's table; raise ConfigError (a ValueError) naming the key (``buffer.<key> ...``).

    Values arrive typed: the core reads ``DSPY_TRACEKIT_BUFFER_*`` environment variables as TOML values,
    so text where a number belongs (``flush_interval = "0.5"``) is a mistake reported here.
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
    if cfg.overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"buffer.overflow must be one of {', '.join(OVERFLOW_POLICIES)}, got {cfg.overflow!r}")
    if not cfg.spool_dir:
        raise ValueError("buffer.spool_dir must be a directory path, got ''")
    return cfg


#: counts that must be at least 1
_POSITIVE = ("max_traces", "max_bytes", "batch_size", "spool_max_bytes", "retry_attempts")


def _coerce(name: str, value: Any, kind: type) -> Any:
    key = f"buffer.{name}"
    if kind is bool:
        return parse_yes_no(value, key)
    if kind is int:
        return check_number(value, key, integer=True, minimum=1 if name in _POSITIVE else 0)
    if kind is float:
        # finite: an infinite flush_interval stops the worker from ever waking, an infinite exit_timeout
        # makes interpreter exit wait forever on a store that is down
        return float(check_number(value, key, minimum=0, unit="seconds"))
    return check_text(value, key, allow_empty=name == "dead_letter_path")
