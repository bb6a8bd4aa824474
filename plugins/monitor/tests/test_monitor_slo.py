"""SLOs: sketch accuracy, hysteresis, one alert per breach and one per recovery, webhook isolation."""

from __future__ import annotations

import math
import random
import time

import dspy_tracekit_monitor as monitor
import pytest
from dspy_tracekit_monitor import RELATIVE_ACCURACY, SloSpec
from dspy_tracekit_monitor._slo import SLICES, SloEngine, SloState
from monitor_testkit import run, stored

import dspy_tracekit as tk
from dspy_tracekit import delivery

START = 60.0 * 16_667  # a slice boundary of a 10-minute window


def exact_quantile(values: list[float], q: float) -> float:
    """The value of rank floor(q * (n - 1)) — the quantile DDSketch's guarantee is stated for."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


@pytest.mark.parametrize("dist", ["lognormal", "uniform", "bimodal"])
def test_sketch_quantiles_agree_with_exact_percentiles_within_the_documented_error(dist):
    rng = random.Random(7)
    draw = {"lognormal": lambda: rng.lognormvariate(3, 1.2), "uniform": lambda: rng.uniform(1, 2000),
            "bimodal": lambda: rng.gauss(20, 2) if rng.random() < 0.9 else rng.gauss(900, 50)}[dist]
    spec = SloSpec(name="x", window="10m", window_s=600, p95_ms=1.0)
    state = SloState(spec)
    values = []
    for i in range(20_000):  # spread over every slice of the window: the estimate merges ten sketches
        v = max(0.001, draw())
        values.append(v)
        state.add(START + i * (590 / 20_000), v / 1000.0, 1.0, False, 0.0)
    summary = state.summary(START + 590)
    assert summary["events"] == 20_000
    assert len({sl.index for sl in state.ring if sl is not None}) == SLICES
    for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
        exact = exact_quantile(values, q)
        assert abs(summary[key] - exact) <= RELATIVE_ACCURACY * exact + 1e-9, (q, summary[key], exact)


def test_weighted_sketch_equals_the_repeated_values():
    spec = SloSpec(name="x", window="1m", window_s=60, p95_ms=1.0)
    weighted, repeated = SloState(spec), SloState(spec)
    rng = random.Random(3)
    for _ in range(2000):
        v, w = rng.uniform(1, 500), rng.choice((1, 2, 4))
        weighted.add(100.0, v / 1000, float(w), False, 0.0)
        for _ in range(w):
            repeated.add(100.0, v / 1000, 1.0, False, 0.0)
    a, b = weighted.summary(100.0), repeated.summary(100.0)
    assert a["events"] == b["events"]
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        assert a[key] == pytest.approx(b[key], rel=1e-9)


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def test_hysteresis_one_alert_when_a_breach_starts_one_when_it_resolves():
    clock = Clock()
    spec = SloSpec(name="err", window="1m", window_s=60, error_rate=0.1)
    engine = SloEngine((spec,), hysteresis=0.2, clock=clock)
    st = engine.states[0]

    def feed(n, errors):
        for i in range(n):
            st.add(clock.now, 0.01, 1.0, i < errors, 0.0)

    alerts = []
    feed(10, 5)                                 # 50% errors: breach starts
    alerts += engine.evaluate()
    for _ in range(5):                          # still breached, values moving: no new alert
        feed(10, 3)
        alerts += engine.evaluate()
    feed(150, 0)                                # 20/210 = 9.5%: below 10%, above 8% → still breached
    alerts += engine.evaluate()
    assert [a["state"] for a in alerts] == ["firing"]
    assert 0.08 < st.last_observed["error_rate"] < 0.1
    feed(100, 0)                                # 20/310 = 6.5% <= 8%: resolves
    alerts += engine.evaluate()
    feed(10, 0)
    alerts += engine.evaluate()                 # calm: nothing more
    assert [a["state"] for a in alerts] == ["firing", "resolved"]
    firing, resolved = alerts
    assert firing["breaches"] == ["error_rate"] and firing["thresholds"] == {"error_rate": 0.1}
    assert resolved["breach_started_at"] == firing["at"]
    clock.now += 61                             # the window empties: no data is not a breach
    assert engine.evaluate() == []


def test_window_rolls_off_old_spans():
    clock = Clock()
    spec = SloSpec(name="lat", window="1m", window_s=60, p95_ms=100)
    engine = SloEngine((spec,), clock=clock)
    st = engine.states[0]
    for _ in range(20):
        st.add(clock.now, 0.5, 1.0, False, 0.0)
    assert [a["state"] for a in engine.evaluate()] == ["firing"]
    clock.now += 30
    assert st.summary(clock.now)["events"] == 20 and engine.evaluate() == []
    clock.now += 31
    assert st.summary(clock.now)["events"] == 0
    assert [a["state"] for a in engine.evaluate()] == ["resolved"]


def test_slo_breach_in_a_dspy_program_fires_one_alert_and_one_resolved_to_a_webhook(
        enable, program, receiver, store_uri, experiment):
    hook = receiver()
    enable({"webhook_url": hook.url, "evaluate_every_s": 0.05,
            "slo": [{"name": "intent", "span": "Intent.forward", "p95_ms": 40, "error_rate": 0.2, "window": "5m"}]})
    run(program, 5, errors=5)                  # errors...
    run(program, 5, slow_s=0.06)               # ... and slow spans
    first = hook.wait_for(1)
    assert [b["state"] for b in first] == ["firing"]
    run(program, 400)                          # recovery: fast, healthy calls dilute the window
    both = hook.wait_for(2)
    time.sleep(0.5)                            # ten more evaluations: nothing else is sent
    assert [b["state"] for b in hook.bodies] == ["firing", "resolved"]
    firing, resolved = both
    assert firing["slo"] == "intent" and firing["selector"] == {"span": "Intent.forward"}
    assert set(firing["breaches"]) <= {"error_rate", "p95_ms"} and firing["breaches"]
    assert resolved["observed"]["error_rate"] <= 0.2 * 0.9
    assert resolved["observed"]["p95_ms"] <= 40 * 0.9
    deadline = time.monotonic() + 20           # the receiver records a body before it answers
    while tk.counters()["monitor.webhook.sent"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    counters = tk.counters()
    assert counters["monitor.alerts.firing"] == 1 and counters["monitor.alerts.resolved"] == 1
    assert counters["monitor.webhook.sent"] == 2
    assert len(stored(store_uri, experiment)) == 410


def test_a_stuck_webhook_never_holds_up_or_loses_traces(enable, program, receiver, store_uri, experiment):
    hook = receiver()
    hook.gate.clear()                          # every POST hangs until the test lets it go
    enable({"webhook_url": hook.url, "webhook_timeout_s": 30, "webhook_queue_size": 2, "evaluate_every_s": 60})
    delivery.alert({"slo": "manual", "state": "firing"})
    assert hook.arrived.wait(20)               # the webhook thread is now stuck inside a POST
    run(program, 30, errors=3)
    assert tk.flush(30) is True
    assert len(stored(store_uri, experiment)) == 30   # all delivered while the webhook hangs
    for i in range(5):                         # queue of 2 behind the stuck POST: 3 are dropped, counted
        delivery.alert({"slo": "manual", "state": "firing", "n": i})
    assert tk.counters()["monitor.webhook.dropped"] == 3
    hook.gate.set()
    deadline = time.monotonic() + 20
    while tk.counters()["monitor.webhook.sent"] < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tk.counters()["monitor.webhook.sent"] == 3


def test_a_failing_webhook_is_retried_then_counted(enable, receiver):
    hook = receiver(status=503)
    enable({"webhook_url": hook.url, "webhook_retries": 2, "evaluate_every_s": 60})
    mon = monitor.current()
    mon.webhook.backoff = 0.01
    delivery.alert({"slo": "manual", "state": "firing"})
    deadline = time.monotonic() + 20
    while tk.counters()["monitor.webhook.failed"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    counters = tk.counters()
    assert counters["monitor.webhook.failed"] == 1 and counters["monitor.webhook.retried"] == 2
    assert hook.attempts == 3
