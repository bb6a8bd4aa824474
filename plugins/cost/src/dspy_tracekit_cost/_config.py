"""The ``[tool.dspy-tracekit.cost]`` table, validated: a bad value is a ValueError naming its key."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ._prices import Price, price_from_config

__all__ = ["ACTIONS", "SCOPES", "WINDOWS", "BudgetSpec", "CostConfig", "parse_config"]

#: window name → length in seconds (0: never resets). Windows are fixed, aligned to the Unix epoch (UTC).
WINDOWS = {"minute": 60, "hour": 3600, "day": 86400, "total": 0}
#: process: all calls; trace: each trace; compile: each optimizer run (a trace whose workload is
#: "compile"); context: each value of a context tag (``key``), e.g. each user_id.
SCOPES = ("process", "trace", "compile", "context")
ACTIONS = ("warn", "raise")
DEFAULT_CONTEXT_KEYS = ("user_id", "session_id", "tenant")
_TOP_KEYS = ("context_keys", "prices", "budgets", "max_groups", "max_budget_keys")
_BUDGET_KEYS = ("limit_usd", "scope", "key", "window", "action")


@dataclass(frozen=True)
class BudgetSpec:
    """One named budget: at most ``limit_usd`` per ``scope`` (and ``key`` value) per ``window``."""

    name: str
    limit_usd: float
    scope: str = "process"
    key: str | None = None
    window: str = "total"
    action: str = "warn"

    @property
    def window_seconds(self) -> int:
        return WINDOWS[self.window]


@dataclass
class CostConfig:
    context_keys: tuple[str, ...] = DEFAULT_CONTEXT_KEYS
    prices: dict[str, Price] = field(default_factory=dict)
    budgets: tuple[BudgetSpec, ...] = ()
    #: values kept per roll-up of totals() (by_model, by_module, by_workload, each by_context tag)
    max_groups: int = 10_000
    #: budget accounts kept (one per budget and key value); least recently used evicted beyond it
    max_budget_keys: int = 100_000


def _budget(name: str, table: Any) -> BudgetSpec:
    where = f"budgets.{name}"
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table, got {type(table).__name__}")  # noqa: TRY004 - config errors are ValueErrors by contract
    for key in table:
        if key not in _BUDGET_KEYS:
            raise ValueError(f"unknown key {where}.{key} (known keys: {', '.join(_BUDGET_KEYS)})")
    if "limit_usd" not in table:
        raise ValueError(f"{where}.limit_usd is required")
    limit = table["limit_usd"]
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit) or limit < 0:
        raise ValueError(f"{where}.limit_usd must be a non-negative number of USD, got {limit!r}")
    scope = table.get("scope", "process")
    if scope not in SCOPES:
        raise ValueError(f"{where}.scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    window = table.get("window", "total")
    if window not in WINDOWS:
        raise ValueError(f"{where}.window must be one of {', '.join(WINDOWS)}, got {window!r}")
    if scope in ("trace", "compile") and window != "total":
        raise ValueError(f"{where}.window must be 'total' for scope {scope!r} (a trace is its own window), "
                         f"got {window!r}")
    action = table.get("action", "warn")
    if action not in ACTIONS:
        raise ValueError(f"{where}.action must be one of {', '.join(ACTIONS)}, got {action!r}")
    key = table.get("key")
    if scope == "context":
        if not isinstance(key, str) or not key:
            raise ValueError(f"{where}.key must name a context tag (e.g. 'user_id') for scope 'context', "
                             f"got {key!r}")
    elif key is not None:
        raise ValueError(f"{where}.key is only valid with scope 'context', got scope {scope!r}")
    return BudgetSpec(name, float(limit), scope, key, window, action)


def parse_config(table: dict[str, Any]) -> CostConfig:
    """Validate the plugin's table; raises ValueError naming the offending key."""
    for key in table:
        if key not in _TOP_KEYS:
            raise ValueError(f"unknown key {key!r} (known keys: {', '.join(_TOP_KEYS)})")
    cfg = CostConfig()
    if "context_keys" in table:
        keys = table["context_keys"]
        if isinstance(keys, str) or not isinstance(keys, (list, tuple)) or \
                not all(isinstance(k, str) and k for k in keys):
            raise ValueError(f"context_keys must be a list of tag names, got {keys!r}")
        cfg.context_keys = tuple(dict.fromkeys(keys))
    for key in ("max_groups", "max_budget_keys"):
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
            setattr(cfg, key, value)
    prices = table.get("prices", {})
    if not isinstance(prices, dict):
        raise ValueError(f"prices must be a table of model tables, got {type(prices).__name__}")  # noqa: TRY004 - config errors are ValueErrors by contract
    cfg.prices = {str(name): price_from_config(str(name), t) for name, t in prices.items()}
    budgets = table.get("budgets", {})
    if not isinstance(budgets, dict):
        raise ValueError(f"budgets must be a table of named budgets, got {type(budgets).__name__}")  # noqa: TRY004 - config errors are ValueErrors by contract
    cfg.budgets = tuple(_budget(str(name), t) for name, t in budgets.items())
    return cfg
