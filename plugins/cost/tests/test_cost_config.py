"""Config validation: every bad value is a ValueError naming its key."""

from __future__ import annotations

import pytest
from dspy_tracekit_cost._config import parse_config


def test_cost_config_defaults():
    cfg = parse_config({})
    assert cfg.context_keys == ("user_id", "session_id", "tenant")
    assert cfg.prices == {} and cfg.budgets == ()


def test_cost_config_budget_parsed():
    cfg = parse_config({"budgets": {"daily": {"limit_usd": 5, "scope": "context", "key": "user_id",
                                              "window": "day", "action": "raise"}}})
    (b,) = cfg.budgets
    assert (b.name, b.limit_usd, b.scope, b.key, b.window, b.action) == ("daily", 5.0, "context", "user_id",
                                                                          "day", "raise")
    assert b.window_seconds == 86400


@pytest.mark.parametrize(("table", "message"), [
    ({"budgets": {"b": {"limit_usd": 1, "window": "week"}}}, r"budgets\.b\.window must be one of"),
    ({"budgets": {"b": {"limit_usd": -1}}}, r"budgets\.b\.limit_usd must be a non-negative"),
    ({"budgets": {"b": {"limit_usd": 1, "action": "block"}}}, r"budgets\.b\.action must be one of"),
    ({"budgets": {"b": {"limit_usd": 1, "scope": "context"}}}, r"budgets\.b\.key must name a context tag"),
    ({"budgets": {"b": {"limit_usd": 1, "scope": "trace", "window": "day"}}}, r"budgets\.b\.window must be 'total'"),
    ({"budgets": {"b": {"scope": "process"}}}, r"budgets\.b\.limit_usd is required"),
    ({"budgets": {"b": {"limit_usd": 1, "limit": 2}}}, r"unknown key budgets\.b\.limit"),
    ({"prices": {"m": {"input_per_million": -0.5}}}, r"prices\.m\.input_per_million must not be negative"),
    ({"prices": {"m": {"input_per_million": "cheap"}}}, r"prices\.m\.input_per_million must be a number"),
    ({"context_keys": "user_id"}, r"context_keys must be a list"),
    ({"budget": {}}, r"unknown key 'budget'"),
])
def test_cost_config_bad_value_names_the_key(table, message):
    with pytest.raises(ValueError, match=message):
        parse_config(table)
