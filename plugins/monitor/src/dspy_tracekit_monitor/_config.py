"""The ``[tool.dspy-tracekit.monitor]`` table, validated: a bad value is a ValueError naming its key."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["DEFAULT_BUCKETS_S", "MonitorConfig", "SloSpec", "parse_config", "parse_window"]

#: seconds; OpenTelemetry's advice for gen_ai.client.operation.duration, plus 0.001–0.005 for the
#: short spans (adapters, parsers) DSPy makes.
DEFAULT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12,
                     10.24, 20.48, 40.96, 81.92)
_TOP_KEYS = ("port", "host", "webhook_url", "webhook_timeout_s", "webhook_retries", "webhook_queue_size",
             "log_alerts", "evaluate_every_s", "hysteresis", "duration_buckets_s", "slo")
_SLO_KEYS = ("name", "span", "module", "kind", "tag", "p95_ms", "error_rate", "cost_usd_per_hour", "window")
_SELECTORS = ("span", "module", "kind", "tag")
_WINDOW = re.compile(r"^([1-9][0-9]*)(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


def parse_window(value: Any, where: str = "window") -> int:
    """``"30s"``, ``"5m"``, ``"1h"``, ``"1d"`` → seconds (the forms Prometheus accepts in a range)."""
    m = _WINDOW.match(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"{where} must be a duration like '30s', '5m', '1h' or '1d', got {value!r}")
    seconds = int(m.group(1)) * _UNIT_S[m.group(2)]
    if seconds < 10:
        raise ValueError(f"{where} must be at least 10s (the window is evaluated in tenths), got {value!r}")
    return seconds


@dataclass(frozen=True)
class SloSpec:
    """One service-level objective over the spans its selectors match, in a rolling window.

    Without any selector it judges whole traces (their root spans).
    """

    name: str
    window: str = "5m"
    window_s: int = 300
    span: str | None = None
    module: str | None = None
    kind: str | None = None
    tag: tuple[tuple[str, str], ...] = ()
    p95_ms: float | None = None
    error_rate: float | None = None
    cost_usd_per_hour: float | None = None

    @property
    def roots_only(self) -> bool:
        return self.span is None and self.module is None and self.kind is None and not self.tag

    def selector(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in ("span", "module", "kind") if getattr(self, k)}
        if self.tag:
            out["tag"] = dict(self.tag)
        return out or {"root": True}

    def thresholds(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("p95_ms", "error_rate", "cost_usd_per_hour")
                if getattr(self, k) is not None}


@dataclass
class MonitorConfig:
    port: int | None = None
    host: str = "127.0.0.1"
    webhook_url: str | None = None
    webhook_timeout_s: float = 5.0
    webhook_retries: int = 3
    webhook_queue_size: int = 1000
    log_alerts: bool = True
    evaluate_every_s: float = 1.0
    hysteresis: float = 0.1
    duration_buckets_s: tuple[float, ...] = DEFAULT_BUCKETS_S
    slos: tuple[SloSpec, ...] = field(default_factory=tuple)


def _number(value: Any, where: str, *, low: float, high: float = math.inf, low_open: bool = False,
            what: str = "a number") -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        if high != math.inf:
            bound += f" and <= {high}"
        raise ValueError(f"{where} must be {what} {bound}, got {value!r}")
    return float(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where} must be a non-empty string, got {value!r}")
    return value


def _slo(i: int, table: Any, seen: set[str]) -> SloSpec:
    where = f"slo[{i}]"
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table ([[tool.dspy-tracekit.monitor.slo]]), "  # noqa: TRY004
                         f"got {type(table).__name__}")
    name = table.get("name")
    if isinstance(name, str) and name:
        where = f"slo[{i}] ({name!r})"
    for key in table:
        if key not in _SLO_KEYS:
            raise ValueError(f"unknown key {where}.{key} (known keys: {', '.join(_SLO_KEYS)}; "
                             f"selectors: {', '.join(_SELECTORS)})")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{where}.name is required: letters, digits and _ . : - only, got {name!r}")
    if name in seen:
        raise ValueError(f"{where}.name {name!r} is used by two SLOs")
    seen.add(name)
    window = table.get("window", "5m")
    window_s = parse_window(window, f"{where}.window")
    values: dict[str, Any] = {}
    for key in ("span", "module", "kind"):
        if key in table:
            values[key] = _text(table[key], f"{where}.{key}")
    tag = table.get("tag", {})
    if not isinstance(tag, dict) or not all(isinstance(k, str) and k and isinstance(v, str) for k, v in tag.items()):
        raise ValueError(f"{where}.tag must be a table of tag name = string value, got {tag!r}")
    if "p95_ms" in table:
        values["p95_ms"] = _number(table["p95_ms"], f"{where}.p95_ms", low=0, low_open=True,
                                   what="a number of milliseconds")
    if "error_rate" in table:
        values["error_rate"] = _number(table["error_rate"], f"{where}.error_rate", low=0, high=1,
                                       what="a fraction")
    if "cost_usd_per_hour" in table:
        values["cost_usd_per_hour"] = _number(table["cost_usd_per_hour"], f"{where}.cost_usd_per_hour", low=0,
                                              what="a number of USD")
    if not any(k in values for k in ("p95_ms", "error_rate", "cost_usd_per_hour")):
        raise ValueError(f"{where} needs at least one objective: p95_ms, error_rate or cost_usd_per_hour")
    return SloSpec(name=name, window=window, window_s=window_s, tag=tuple(sorted(tag.items())), **values)


def _webhook_url(value: Any) -> str:
    where = "webhook_url"
    if not isinstance(value, str):
        raise ValueError(f"{where} must be an http:// or https:// URL, got {value!r}")  # noqa: TRY004 - config errors are ValueErrors
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{where} must be an http:// or https:// URL with a host, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"{where} has a bad port: {value!r}") from None
    return value


def parse_config(table: dict[str, Any]) -> MonitorConfig:
    """Validate the plugin's table; raises ValueError naming the offending key."""
    for key in table:
        if key not in _TOP_KEYS:
            raise ValueError(f"unknown key {key!r} (known keys: {', '.join(_TOP_KEYS)})")
    cfg = MonitorConfig()
    if "port" in table:
        port = table["port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer from 0 (any free port) to 65535, got {port!r}")
        cfg.port = port
    if "host" in table:
        cfg.host = _text(table["host"], "host")
    if "webhook_url" in table:
        cfg.webhook_url = _webhook_url(table["webhook_url"])
    if "webhook_timeout_s" in table:
        cfg.webhook_timeout_s = _number(table["webhook_timeout_s"], "webhook_timeout_s", low=0, low_open=True,
                                        what="a number of seconds")
    for key in ("webhook_retries", "webhook_queue_size"):
        if key in table:
            value = table[key]
            low = 0 if key == "webhook_retries" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
            setattr(cfg, key, value)
    if "log_alerts" in table:
        if not isinstance(table["log_alerts"], bool):
            raise ValueError(f"log_alerts must be true or false, got {table['log_alerts']!r}")
        cfg.log_alerts = table["log_alerts"]
    if "evaluate_every_s" in table:
        cfg.evaluate_every_s = _number(table["evaluate_every_s"], "evaluate_every_s", low=0.01,
                                       what="a number of seconds")
    if "hysteresis" in table:
        cfg.hysteresis = _number(table["hysteresis"], "hysteresis", low=0, high=0.9, what="a fraction")
    if "duration_buckets_s" in table:
        b = table["duration_buckets_s"]
        if (not isinstance(b, (list, tuple)) or not b
                or not all(not isinstance(x, bool) and isinstance(x, (int, float)) and x > 0 for x in b)
                or list(b) != sorted(set(b))):
            raise ValueError(f"duration_buckets_s must be a non-empty list of increasing positive seconds, got {b!r}")
        cfg.duration_buckets_s = tuple(float(x) for x in b)
    slos = table.get("slo", [])
    if isinstance(slos, dict):
        slos = [slos]
    if not isinstance(slos, (list, tuple)):
        raise ValueError(f"slo must be an array of tables ([[tool.dspy-tracekit.monitor.slo]]), got {slos!r}")  # noqa: TRY004 - config errors are ValueErrors
    seen: set[str] = set()
    cfg.slos = tuple(_slo(i, t, seen) for i, t in enumerate(slos))
    return cfg
