"""The sampler's decisions on real TraceRecord / SpanRecord objects (no DSPy run needed)."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest
from dspy_tracekit_sample import (
    PROBABILITY_TAG,
    RULE_TAG,
    Sampler,
    TokenBucket,
    estimate_total,
    parse_policy,
    ratio_bound,
)
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased


def sampler(**config) -> Sampler:
    return Sampler(parse_policy(config))


def _ids(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(128) or 1 for _ in range(n)]


# ---------------------------------------------------------------------------------------- head ratio


@pytest.mark.parametrize("ratio", [0.0, 0.001, 0.1, 0.5, 0.9, 1.0])
def test_head_ratio_agrees_with_opentelemetry_trace_id_ratio_based(ratio, at_head):
    otel = TraceIdRatioBased(ratio)
    s = sampler(ratio=ratio, keep_errors=False)
    ids = _ids(5000, seed=7) + [0, 1, ratio_bound(ratio) - 1, ratio_bound(ratio), (1 << 64) - 1, (1 << 128) - 1]
    for trace_id in ids:
        if trace_id <= 0:
            continue
        ours = s.head(at_head(trace_id))
        theirs = otel.should_sample(None, trace_id, "x").decision is Decision.RECORD_AND_SAMPLE
        assert ours == theirs, hex(trace_id)


def test_head_ratio_observed_over_100000_ids_is_within_a_binomial_bound(at_head):
    n = 100_000
    ids = _ids(n, seed=2024)
    for ratio in (0.01, 0.1, 0.37):
        s = sampler(ratio=ratio, keep_errors=False)
        kept = sum(s.head(at_head(i)) for i in ids)
        sigma = math.sqrt(n * ratio * (1 - ratio))
        assert abs(kept - n * ratio) <= 4.5 * sigma, (ratio, kept)
        assert s.counters()["head.kept.ratio"] == kept
        assert s.counters()["head.dropped.ratio"] == n - kept


_CHILD = """
import json, sys
from dspy_tracekit.records import SpanRecord, TraceRecord
from dspy_tracekit_sample import Sampler, parse_policy
ids = json.loads(sys.stdin.read())
s = Sampler(parse_policy({"ratio": 0.3, "keep_errors": False}))
out = []
for i in ids:
    t = TraceRecord(i)
    t.root = SpanRecord(t, None, "Prog.forward", "module")
    out.append(s.head(t))
print(json.dumps(out))
"""


def test_head_decision_is_the_same_in_another_process_for_the_same_ids(at_head):
    ids = _ids(2000, seed=99)
    s = sampler(ratio=0.3, keep_errors=False)
    here = [s.head(at_head(i)) for i in ids]
    child = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(ids), capture_output=True,
                           text=True, timeout=120, check=True)
    there = json.loads(child.stdout.strip().splitlines()[-1])
    assert there == here
    assert 0 < sum(here) < len(ids)


def test_workload_ratios_apply_to_evaluate_and_compile_traces(at_head):
    s = sampler(ratio=1.0, evaluate_ratio=0.0, compile_ratio=0.5, keep_errors=False)
    assert s.head(at_head(12345)) is True
    assert s.head(at_head(12345, workload="evaluate")) is False
    low, high = 1, (1 << 64) - 1  # below / above the 0.5 bound
    assert s.head(at_head(low, workload="compile")) is True
    assert s.head(at_head(high, workload="compile")) is False
    counts = s.counters()
    assert counts["head.dropped.evaluate_ratio"] == 1
    assert counts["head.kept.compile_ratio"] == 1 and counts["head.dropped.compile_ratio"] == 1


def test_workload_ratios_default_to_a_small_share_never_above_ratio():
    policy = parse_policy({})
    assert (policy.ratio, policy.evaluate_ratio, policy.compile_ratio) == (1.0, 0.1, 0.01)
    policy = parse_policy({"ratio": 0.05})
    assert (policy.evaluate_ratio, policy.compile_ratio) == (0.05, 0.01)


def test_head_keeps_and_tags_when_no_tail_rule_is_configured(at_head):
    s = sampler(ratio=0.5, keep_errors=False)
    trace = at_head(1)
    assert s.head(trace) is True
    assert trace.tags[PROBABILITY_TAG] == "0.5" and trace.tags[RULE_TAG] == "ratio"
    assert s.tail(trace) is True  # the tail sees the head's decision and keeps it as is
    assert s.counters() == {"head.kept.ratio": 1, "kept": 1, "dropped": 0}


# ---------------------------------------------------------------------------------------- parent


def test_mlflow_sampling_ratio_caps_the_probability_written(at_head):
    s = sampler(ratio=1.0, keep_errors=False)
    trace = at_head(1)
    trace.attributes["mlflow.sampling_ratio"] = 0.5  # set by the core when MLFLOW_TRACE_SAMPLING_RATIO < 1
    assert s.head(trace) is True
    assert trace.tags[PROBABILITY_TAG] == "0.5" and trace.attributes["sampling.probability"] == 0.5
    narrower = at_head(1)
    narrower.attributes["mlflow.sampling_ratio"] = 0.5
    assert sampler(ratio=0.25, keep_errors=False).head(narrower) is True
    assert narrower.tags[PROBABILITY_TAG] == "0.25"  # both rules on the same id bits: the smaller wins


# ---------------------------------------------------------------------------------------- tail rules


def test_head_leaves_traces_to_the_tail_when_a_tail_rule_could_keep_them(at_head):
    s = sampler(ratio=0.0)  # keep_errors defaults to true: any trace may still error
    trace = at_head((1 << 64) - 1)
    assert s.head(trace) is True
    assert RULE_TAG not in trace.tags
    assert s.counters()["head.pending"] == 1


def test_head_drops_a_trace_whose_id_is_above_every_rule_that_could_still_apply(at_head):
    s = sampler(ratio=0.1, keep_errors=0.5, rules=[{"latency_ms_over": 100, "ratio": 0.2}])
    assert s.head(at_head((1 << 64) - 1)) is False  # above 0.5, 0.2 and 0.1
    assert s.head(at_head(ratio_bound(0.3))) is True  # errors (0.5) could still keep it
    assert s.counters()["head.dropped.all_rules"] == 1


def test_errors_are_kept_while_ratio_is_zero(make_trace):
    s = sampler(ratio=0.0)
    failed = make_trace((1 << 64) - 1, spans=[("Prog.forward", "module", {}),
                                              ("Tool.__call__", "tool", {"error": RuntimeError("x")})])
    fine = make_trace((1 << 64) - 1)
    assert s.tail(failed) is True and failed.tags[RULE_TAG] == "errors"
    assert failed.tags[PROBABILITY_TAG] == "1.0"
    assert s.tail(fine) is False
    assert s.counters() == {"tail.kept.errors": 1, "tail.dropped.ratio": 1, "kept": 1, "dropped": 1}


def test_slow_traces_are_kept_while_ratio_is_zero(make_trace):
    s = sampler(ratio=0.0, rules=[{"name": "slow", "latency_ms_over": 500}])
    assert s.tail(make_trace(5, duration_ms=501)) is True
    assert s.tail(make_trace(5, duration_ms=499)) is False
    assert s.counters()["tail.kept.slow"] == 1


def test_first_matching_rule_wins_and_its_ratio_decides(make_trace):
    s = sampler(ratio=1.0, keep_errors=False, rules=[
        {"name": "health", "span_name": "HealthCheck.forward", "ratio": 0.0},
        {"name": "tools", "span_type": "TOOL", "ratio": 1.0},
    ])
    both = make_trace(1, spans=[("HealthCheck.forward", "module", {}), ("search", "tool", {})])
    tool_only = make_trace(1, spans=[("Agent.forward", "module", {}), ("search", "tool", {})])
    assert s.tail(both) is False  # "health" comes first, ratio 0
    assert s.tail(tool_only) is True and tool_only.tags[RULE_TAG] == "tools"


def test_cost_rule_reads_span_costs_or_the_cost_plugins_trace_total(make_trace):
    s = sampler(ratio=0.0, keep_errors=False, rules=[{"name": "costly", "cost_usd_over": 0.01}])
    spans = [("Prog.forward", "module", {}),
             ("LM.__call__", "lm", {"cost": {"total_cost": 0.006}}),
             ("LM.__call__", "lm", {"cost": {"total_cost": 0.006}})]
    assert s.tail(make_trace(9, spans=spans)) is True
    assert s.tail(make_trace(9, spans=spans[:2])) is False
    assert s.tail(make_trace(9, attributes={"cost.total_usd": 0.5})) is True


def test_tag_rule_matches_equals_and_regex_on_trace_and_span_tags(make_trace):
    s = sampler(ratio=0.0, keep_errors=False, rules=[
        {"name": "admins", "tag": "user_role", "equals": "admin"},
        {"name": "eu", "tag": "region", "regex": "^eu-"},
    ])
    assert s.tail(make_trace(3, tags={"user_role": "admin"})) is True
    assert s.tail(make_trace(3, tags={"user_role": "viewer"})) is False
    inner = make_trace(3, spans=[("Prog.forward", "module", {}), ("X.forward", "module", {"tags": {"region": "eu-west"}})])
    assert s.tail(inner) is True and inner.tags[RULE_TAG] == "eu"


def test_attribute_rule_matches_span_attributes(make_trace):
    s = sampler(ratio=0.0, keep_errors=False, rules=[{"attribute": "http.status", "regex": "^5"}])
    assert s.tail(make_trace(3, spans=[("r", "custom", {"attributes": {"http.status": 503}})])) is True
    assert s.tail(make_trace(3, spans=[("r", "custom", {"attributes": {"http.status": 200}})])) is False


def test_head_decides_a_rule_it_can_judge_on_the_root(at_head):
    s = sampler(ratio=0.0, keep_errors=False, rules=[{"name": "admins", "tag": "user_role", "equals": "admin"}])
    admin = at_head((1 << 64) - 1, tags={"user_role": "admin"})
    assert s.head(admin) is True and admin.tags[RULE_TAG] == "admins"
    other = at_head((1 << 64) - 1, tags={"user_role": "viewer"})
    assert s.head(other) is True and RULE_TAG not in other.tags  # a nested context() may still match


# ---------------------------------------------------------------------------------------- rate limit


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_holds_the_rate_over_a_window():
    clock = FakeClock()
    bucket = TokenBucket(50, clock=clock)
    taken = 0
    for _ in range(10_000):  # 10,000 attempts over 10 s: 1,000 per second of demand
        clock.now += 0.001
        taken += bucket.take()
    assert 50 * 10 <= taken <= 50 * 10 + 50  # the rate, plus at most one second of burst
    clock.now += 0.5
    assert sum(bucket.take() for _ in range(100)) == 25


def test_rate_limit_drops_kept_traces_beyond_max_traces_per_second_and_counts_them(at_head):
    clock = FakeClock()
    s = Sampler(parse_policy({"ratio": 1.0, "keep_errors": False, "max_traces_per_second": 5}), clock=clock)
    kept = 0
    for i in range(200):
        clock.now += 0.01  # 100 traces per second offered for 2 s
        kept += s.head(at_head(i + 1))
    assert 10 <= kept <= 15
    assert s.counters()["head.dropped.rate_limit"] == 200 - kept


# ---------------------------------------------------------------------------------------- estimator


def test_reweighted_totals_of_simulated_traces_estimate_the_true_totals(make_trace):
    s = sampler(ratio=0.2, rules=[{"name": "gold", "tag": "tier", "equals": "gold", "ratio": 0.7}])
    rng = random.Random(5)
    truth_count = truth_latency = 0.0
    pairs_count, pairs_latency = [], []
    for i in range(4000):
        latency = rng.expovariate(1 / 40.0)
        tier = "gold" if i % 5 == 0 else "free"
        spans = [("Prog.forward", "module", {"error": ValueError() if i % 50 == 0 else None})]
        trace = make_trace(rng.getrandbits(128), spans=spans, tags={"tier": tier}, duration_ms=latency)
        truth_count += 1
        truth_latency += latency
        if s.tail(trace):
            p = float(trace.tags[PROBABILITY_TAG])
            pairs_count.append((1.0, p))
            pairs_latency.append((latency, p))
    for pairs, truth in ((pairs_count, truth_count), (pairs_latency, truth_latency)):
        est = estimate_total(pairs)
        assert est.std_error > 0 and est.kept < 4000
        assert abs(est.total - truth) <= 4.5 * est.std_error, (est, truth)
