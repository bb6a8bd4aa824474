"""The budget ledger: atomic admission, reservations, windows, warn-once."""

from __future__ import annotations

import threading

import pytest
from dspy_tracekit_cost._config import BudgetSpec
from dspy_tracekit_cost._ledger import BudgetLedger, Totals


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_cost_ledger_refuses_a_call_whose_estimate_would_exceed_the_limit():
    spec = BudgetSpec("p", 1.0, action="raise")
    ledger = BudgetLedger((spec,))
    res, refusal, _ = ledger.admit([(spec, None)], 0.6)
    assert refusal is None
    ledger.settle(res, 0.5)
    res2, refusal, _ = ledger.admit([(spec, None)], 0.6)
    assert res2 is None and refusal == (spec, None, 0.5)
    assert ledger.spent("p") == (0.5, 0.0)  # a refused call reserves nothing
    assert ledger.refusals == 1


def test_cost_ledger_reservations_count_until_settled():
    spec = BudgetSpec("p", 1.0, action="raise")
    ledger = BudgetLedger((spec,))
    a, _, _ = ledger.admit([(spec, None)], 0.4)
    b, _, _ = ledger.admit([(spec, None)], 0.4)
    assert ledger.spent("p") == (0.0, pytest.approx(0.8))
    _, refusal, _ = ledger.admit([(spec, None)], 0.4)
    assert refusal is not None
    ledger.settle(a, 0.1)
    ledger.settle(b, 0.1)
    assert ledger.spent("p") == (pytest.approx(0.2), pytest.approx(0.0))


def test_cost_ledger_concurrent_admission_never_overshoots_with_true_estimates():
    spec = BudgetSpec("p", 5.0, action="raise")
    ledger = BudgetLedger((spec,))
    admitted = []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        for _ in range(50):
            res, refusal, _ = ledger.admit([(spec, None)], 0.1)
            if refusal is None:
                admitted.append(res)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 50  # 5.0 / 0.1, whatever the interleaving
    for res in admitted:
        ledger.settle(res, 0.1)
    spent, reserved = ledger.spent("p")
    assert spent == pytest.approx(5.0) and reserved == pytest.approx(0.0)


def test_cost_ledger_window_resets_spend():
    clock = Clock(3600.0 * 10)
    spec = BudgetSpec("h", 1.0, scope="context", key="user_id", window="hour", action="raise")
    ledger = BudgetLedger((spec,), clock=clock)
    res, _, _ = ledger.admit([(spec, "u1")], 0.9)
    ledger.settle(res, 0.9)
    assert ledger.admit([(spec, "u1")], 0.2)[1] is not None
    assert ledger.admit([(spec, "u2")], 0.2)[1] is None  # another key, its own account
    clock.t += 3600
    assert ledger.admit([(spec, "u1")], 0.2)[1] is None


def test_cost_ledger_warns_once_per_key_and_window():
    clock = Clock(60.0 * 100)
    spec = BudgetSpec("w", 0.1, window="minute", action="warn")
    ledger = BudgetLedger((spec,), clock=clock)
    warned = []
    for _ in range(5):
        res, refusal, warnings = ledger.admit([(spec, None)], 0.05)
        assert refusal is None  # warn never refuses
        warned += warnings
        warned += ledger.settle(res, 0.05, [(spec, None)])
    assert len(warned) == 1
    clock.t += 60
    res, _, warnings = ledger.admit([(spec, None)], 0.2)
    assert len(warnings) == 1


def test_cost_ledger_trace_accounts_are_forgotten_at_trace_end():
    spec = BudgetSpec("t", 1.0, scope="trace", action="raise")
    ledger = BudgetLedger((spec,))
    res, _, _ = ledger.admit(ledger.keys_for({}, "tr-1", "default"), 0.7)
    ledger.settle(res, 0.7)
    assert ledger.spent("t", "tr-1")[0] == pytest.approx(0.7)
    ledger.end_trace("tr-1")
    assert ledger.spent("t", "tr-1") == (0.0, 0.0)


def test_cost_ledger_compile_budget_applies_only_to_compile_traces():
    spec = BudgetSpec("run", 1.0, scope="compile", action="raise")
    ledger = BudgetLedger((spec,))
    assert ledger.keys_for({}, "tr-1", "default") == []
    assert ledger.keys_for({}, "tr-1", "compile") == [(spec, "tr-1")]


def test_cost_totals_roll_up_by_model_module_and_context():
    totals = Totals(("user_id",))
    totals.record("m1", "A.x", {"user_id": "u1"}, "default", 1.0, 0.0, False, False, 10, 2)
    totals.record("m2", "A.y", {"user_id": "u2", "other": "z"}, "default", 2.0, 0.5, False, True, 0, 0)
    snap = totals.snapshot()
    assert snap["overall"]["cost_usd"] == 3.0 and snap["overall"]["calls"] == 2
    assert snap["by_model"]["m2"]["saved_usd"] == 0.5
    assert snap["by_module"]["A.x"]["input_tokens"] == 10
    assert set(snap["by_context"]["user_id"]) == {"u1", "u2"}
    assert "other" not in snap["by_context"]
