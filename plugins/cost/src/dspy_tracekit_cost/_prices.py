"""Prices per token and the cost of one LM call.

Usage follows LiteLLM's (and DSPy's) normalized convention: ``input_tokens`` counts every prompt token,
cached reads and cache writes included; ``output_tokens`` counts every completion token, reasoning
included. Each part is priced at its own rate, falling back to the plain input/output rate when the
table has no specific one.
"""

from __future__ import annotations

import json
import math
from importlib.resources import files
from typing import Any

__all__ = ["CallCost", "Price", "PriceTable", "price_from_config"]

PER_MILLION = 1_000_000.0

#: config key → Price field (USD per million tokens in config, per token inside)
CONFIG_UNITS = {
    "input_per_million": "input",
    "output_per_million": "output",
    "cached_input_per_million": "cache_read",
    "cache_write_per_million": "cache_write",
    "reasoning_per_million": "reasoning",
}


class Price:
    """Per-token USD prices of one model; ``tiers`` apply when the prompt exceeds their threshold."""

    __slots__ = (
        "cache_read",
        "cache_write",
        "input",
        "max_output_tokens",
        "name",
        "output",
        "reasoning",
        "tiers",
    )

    def __init__(self, name: str, input: float | None = None, output: float | None = None,
                 cache_read: float | None = None, cache_write: float | None = None,
                 reasoning: float | None = None, tiers: list[tuple[int, Price]] | None = None,
                 max_output_tokens: int | None = None):
        self.name = name
        self.input = input
        self.output = output
        self.cache_read = cache_read
        self.cache_write = cache_write
        self.reasoning = reasoning
        #: ``[(threshold_tokens, Price), ...]`` ascending; a tier's missing rates fall back to the base.
        self.tiers = tiers or []
        self.max_output_tokens = max_output_tokens

    @classmethod
    def from_row(cls, name: str, row: dict[str, Any]) -> Price:
        tiers = [(int(t), cls(name, **{k: v for k, v in rates.items()})) for t, rates in row.get("tiers", ())]
        return cls(name, row.get("input"), row.get("output"), row.get("cache_read"), row.get("cache_write"),
                   row.get("reasoning"), sorted(tiers, key=lambda x: x[0]), row.get("max_output_tokens"))

    def for_prompt(self, input_tokens: int) -> Price:
        """The rates that apply to a prompt of ``input_tokens`` (the highest tier it exceeds)."""
        chosen = None
        for threshold, tier in self.tiers:
            if input_tokens > threshold:
                chosen = tier
        if chosen is None:
            return self
        return Price(self.name,
                     _first(chosen.input, self.input), _first(chosen.output, self.output),
                     _first(chosen.cache_read, self.cache_read), _first(chosen.cache_write, self.cache_write),
                     _first(chosen.reasoning, self.reasoning), None, self.max_output_tokens)

    def cost(self, input_tokens: int = 0, output_tokens: int = 0, cached_tokens: int = 0,
             cache_write_tokens: int = 0, reasoning_tokens: int = 0) -> CallCost:
        """Price one call's usage (see the module docstring for what each count includes)."""
        p = self.for_prompt(input_tokens)
        in_rate = p.input or 0.0
        out_rate = p.output or 0.0
        cached = min(cached_tokens, input_tokens) if input_tokens else cached_tokens
        written = cache_write_tokens
        uncached = max(input_tokens - cached - written, 0)
        reasoning = min(reasoning_tokens, output_tokens) if output_tokens else reasoning_tokens
        plain_out = max(output_tokens - reasoning, 0)
        c = CallCost()
        c.uncached_input_cost = uncached * in_rate
        c.cached_input_cost = cached * (p.cache_read if p.cache_read is not None else in_rate)
        c.cache_write_cost = written * (p.cache_write if p.cache_write is not None else in_rate)
        c.reasoning_cost = reasoning * (p.reasoning if p.reasoning is not None else out_rate)
        c.input_cost = c.uncached_input_cost + c.cached_input_cost + c.cache_write_cost
        c.output_cost = plain_out * out_rate + c.reasoning_cost
        c.total_cost = c.input_cost + c.output_cost
        return c

    def worst_case(self, prompt_tokens: int, max_output_tokens: int) -> float:
        """Upper bound of a call's cost: the whole prompt uncached, every output token at the dearer rate."""
        p = self.for_prompt(prompt_tokens)
        in_rate = max(p.input or 0.0, p.cache_write or 0.0)
        out_rate = max(p.output or 0.0, p.reasoning or 0.0)
        return prompt_tokens * in_rate + max_output_tokens * out_rate

    def __repr__(self) -> str:
        return f"<Price {self.name} in={self.input} out={self.output} cached={self.cache_read}>"


def _first(a, b):
    return a if a is not None else b


class CallCost:
    """The cost of one LM call in USD, split the way MLflow and the roll-ups need it."""

    __slots__ = (
        "cache_write_cost",
        "cached_input_cost",
        "input_cost",
        "output_cost",
        "reasoning_cost",
        "total_cost",
        "uncached_input_cost",
    )

    def __init__(self):
        self.input_cost = self.output_cost = self.total_cost = 0.0
        self.uncached_input_cost = self.cached_input_cost = self.cache_write_cost = self.reasoning_cost = 0.0

    def as_dict(self) -> dict[str, float]:
        """``input_cost``/``output_cost``/``total_cost`` (MLflow's keys) plus the parts."""
        return {"input_cost": self.input_cost, "output_cost": self.output_cost, "total_cost": self.total_cost,
                "uncached_input_cost": self.uncached_input_cost, "cached_input_cost": self.cached_input_cost,
                "cache_write_cost": self.cache_write_cost, "reasoning_cost": self.reasoning_cost}


def price_from_config(name: str, table: Any) -> Price:
    """A :class:`Price` from ``prices."<name>" = {input_per_million = ..., ...}``; ValueError names the key."""
    where = f"prices.{name}" if name.isidentifier() else f'prices."{name}"'
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table of prices, got {type(table).__name__}")  # noqa: TRY004 - config errors are ValueErrors by contract
    rates: dict[str, float | None] = {}
    for key, value in table.items():
        if key == "max_output_tokens":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{where}.max_output_tokens must be a non-negative integer, got {value!r}")
            continue
        field = CONFIG_UNITS.get(key)
        if field is None:
            known = ", ".join([*CONFIG_UNITS, "max_output_tokens"])
            raise ValueError(f"unknown key {where}.{key} (known keys: {known})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where}.{key} must be a number (USD per million tokens), got {value!r}")
        if value < 0:
            raise ValueError(f"{where}.{key} must not be negative, got {value!r}")
        rates[field] = value / PER_MILLION
    if rates.get("input") is None and rates.get("output") is None:
        raise ValueError(f"{where} needs at least input_per_million or output_per_million")
    return Price(name, rates.get("input"), rates.get("output"), rates.get("cache_read"),
                 rates.get("cache_write"), rates.get("reasoning"),
                 max_output_tokens=table.get("max_output_tokens"))


class PriceTable:
    """The pinned snapshot plus user overrides; model names resolve once and are memoized.

    Lookup rule: the exact model name; then, while the name has a ``provider/`` prefix, the name with the
    leading segment dropped (``openrouter/openai/gpt-4o`` → ``openai/gpt-4o`` → ``gpt-4o``). Overrides
    are tried before the snapshot at every step.
    """

    def __init__(self, rows: dict[str, dict], version: str, overrides: dict[str, Price] | None = None):
        self._rows = rows
        self._parsed: dict[str, Price] = {}
        self.version = version
        self.overrides = dict(overrides or {})
        self._memo: dict[str, Price | None] = {}

    @classmethod
    def bundled(cls, overrides: dict[str, Price] | None = None) -> PriceTable:
        data = load_snapshot()
        return cls(data["models"], data["version"], overrides)

    def __len__(self) -> int:
        return len(self._rows)

    def _entry(self, name: str) -> Price | None:
        p = self.overrides.get(name)
        if p is not None:
            return p
        p = self._parsed.get(name)
        if p is None and name in self._rows:
            p = self._parsed[name] = Price.from_row(name, self._rows[name])
        return p

    def lookup(self, model: str | None) -> Price | None:
        """The price of ``model`` or ``None`` when unknown (memoized: O(1) after the first call)."""
        if not model:
            return None
        try:
            return self._memo[model]
        except KeyError:
            pass
        name = model
        found = self._entry(name)
        while found is None and "/" in name:
            name = name.split("/", 1)[1]
            found = self._entry(name)
        self._memo[model] = found
        return found


_SNAPSHOT: dict | None = None


def load_snapshot() -> dict:
    """The committed snapshot (``prices.json``), parsed once per process."""
    global _SNAPSHOT
    if _SNAPSHOT is None:
        _SNAPSHOT = json.loads(files(__package__).joinpath("prices.json").read_text())
    return _SNAPSHOT
