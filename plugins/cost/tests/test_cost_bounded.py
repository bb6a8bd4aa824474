"""Bounded memory in a long-running service: roll-ups and budget accounts keep a documented number of keys."""

from __future__ import annotations

import dspy
import dspy_tracekit_cost as cost
import pytest
from dspy_tracekit_cost._config import BudgetSpec, parse_config
from dspy_tracekit_cost._ledger import BudgetLedger, Totals

import dspy_tracekit as tk

ANSWER = "[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"


def test_cost_totals_keep_the_most_recent_sessions_and_count_the_evicted(tracekit):
    tracekit({"max_groups": 5})
    lm = dspy.LM("openai/gpt-4o-mini", engine="litellm", cache=False, api_key="x", mock_response=ANSWER)
    ask = dspy.Predict("question -> answer")
    with dspy.context(lm=lm):
        for i in range(8):
            with tk.context(session_id=f"s-{i}"):
                ask(question="What is 2+2?")
    t = cost.totals()
    assert list(t["by_context"]["session_id"]) == ["s-3", "s-4", "s-5", "s-6", "s-7"]
    assert t["overall"]["calls"] == 8  # evicted sessions still count in the overall figures
    assert tk.counters()["cost.evicted.by_context.session_id"] == 3


def test_cost_roll_up_touched_again_is_kept():
    totals = Totals(("user_id",), max_groups=2)
    for user in ("a", "b", "a", "c"):  # "a" used again before "c" arrives: "b" is the least recent
        totals.record("m", "", {"user_id": user}, "default", 0.1, 0.0, False, False, 1, 1)
    assert list(totals.snapshot()["by_context"]["user_id"]) == ["a", "c"]
    assert totals.evictions()["by_context.user_id"] == 1


def test_cost_budget_accounts_are_capped_and_evictions_counted():
    spec = BudgetSpec("per_user", 1.0, scope="context", key="user_id", window="minute")
    now = [600.0]
    ledger = BudgetLedger((spec,), clock=lambda: now[0], max_keys=2)
    for user in ("a", "b"):
        res, _, _ = ledger.admit([(spec, user)], 0.1)
        ledger.settle(res, 0.1)
    now[0] += 60  # a new window: a's and b's accounts are of the ended one
    res, _, _ = ledger.admit([(spec, "c")], 0.1)
    assert (ledger.evicted_expired, ledger.evicted_live) == (1, 0)
    ledger.admit([(spec, "d")], 0.1)
    assert (ledger.evicted_expired, ledger.evicted_live) == (2, 0)
    ledger.admit([(spec, "e")], 0.1)  # c's window is still running: its spend restarts if it comes back
    assert (ledger.evicted_expired, ledger.evicted_live) == (2, 1)
    assert len(ledger._accounts) == 2


@pytest.mark.parametrize("key", ["max_groups", "max_budget_keys"])
@pytest.mark.parametrize("value", [0, -1, 1.5, True, "10"])
def test_cost_caps_must_be_positive_integers(key, value):
    with pytest.raises(ValueError, match=rf"{key} must be a positive integer, got {value!r}"):
        parse_config({key: value})
