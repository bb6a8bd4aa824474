"""Head and tail sampling decisions, the rate limit and the counters.

Every ratio decision uses the same number: ``u = trace_id & (2**64 - 1)``, kept iff
``u < round(ratio * 2**64)`` (OpenTelemetry ``TraceIdRatioBased``). Because the rule that applies to a
trace depends on what the trace did, not on its id, a trace is kept with exactly the probability of
the rule that decides it — which is the probability written on it, so re-weighted totals are unbiased.
The shared ``u`` also lets the head drop a trace early: if ``u`` is at or above the bound of every
rule that could still apply, no tail outcome can keep it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from dspy_tracekit.keys import SAMPLING_PROBABILITY_TAG as PROBABILITY_TAG
from dspy_tracekit.keys import SAMPLING_RULE_TAG as RULE_TAG

from ._policy import TRACE_ID_MASK, Rule, SamplingPolicy, _prob_str

__all__ = ["PROBABILITY_TAG", "RULE_TAG", "Sampler", "TokenBucket"]

_WORKLOADS = ("default", "evaluate", "compile")


class TokenBucket:
    """A thread-safe token bucket: ``rate`` tokens per second, at most ``capacity`` saved up.

    :param clock: a monotonic clock in seconds (injectable for tests).
    """

    __slots__ = ("capacity", "clock", "last", "lock", "rate", "tokens")

    def __init__(self, rate: float, capacity: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.rate = float(rate)
        self.capacity = float(capacity) if capacity is not None else max(1.0, self.rate)
        self.tokens = self.capacity
        self.clock = clock
        self.last = clock()
        self.lock = threading.Lock()

    def take(self) -> bool:
        """Take one token if there is one."""
        with self.lock:
            now = self.clock()
            elapsed = now - self.last
            if elapsed > 0:
                self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
                self.last = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


class _Counts:
    __slots__ = ("lock", "values")

    def __init__(self):
        self.lock = threading.Lock()
        self.values: dict[str, int] = {}

    def add(self, key: str) -> None:
        with self.lock:
            self.values[key] = self.values.get(key, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.values)


class _HeadPlan:
    """What the head can know for one workload when no rule is judged on the trace itself."""

    __slots__ = ("candidates", "decided", "drop_key", "fallback", "max_bound")

    def __init__(self, candidates: tuple[Rule, ...], fallback: Rule):
        self.fallback = fallback
        self.candidates = candidates
        self.max_bound = max(r.bound for r in candidates)
        self.decided = _decided(candidates)
        self.drop_key = f"head.dropped.{candidates[0].name}" if len(candidates) == 1 else "head.dropped.all_rules"


def _decided(candidates: tuple[Rule, ...]) -> Rule | None:
    """The rule the head can apply now: the only candidate, or — when every candidate keeps with the
    same probability — the last one (the fallback, or the rule that surely matches)."""
    if all(r.ratio == candidates[0].ratio for r in candidates):
        return candidates[-1]
    return None


class Sampler:
    """Decides, per trace, whether it is recorded (head) and kept (tail); tags kept traces.

    :param policy: the validated policy.
    :param clock: the rate limiter's clock (tests inject one).
    """

    def __init__(self, policy: SamplingPolicy | None = None, clock: Callable[[], float] = time.monotonic):
        self.policy = policy = policy or SamplingPolicy()
        self.rules: tuple[Rule, ...] = policy.tail_rules
        self.fallbacks = {w: policy.fallback(w) for w in _WORKLOADS}
        self.plans = {w: _HeadPlan(self.rules + (fb,), fb) for w, fb in self.fallbacks.items()}
        #: rules with conditions the head can judge (root span name, context tags): slow head path.
        self.head_judged = any(r.head_judgeable for r in self.rules)
        self.bucket = TokenBucket(policy.max_traces_per_second, clock=clock) \
            if policy.max_traces_per_second else None
        self.counts = _Counts()

    # ------------------------------------------------------------------ request path
    def head(self, trace) -> bool:
        """``tracekit_sample``: True to record the trace (kept, or left to the tail), False to drop it."""
        plan = self.plans.get(trace.workload) or self.plans["default"]
        u = trace.trace_id & TRACE_ID_MASK
        if self.head_judged:
            candidates = self._candidates(trace, plan.fallback)
            if u >= max(r.bound for r in candidates):
                self.counts.add(f"head.dropped.{candidates[0].name}" if len(candidates) == 1
                                else "head.dropped.all_rules")
                return False
            decided = _decided(candidates)
        else:
            if u >= plan.max_bound:
                self.counts.add(plan.drop_key)
                return False
            decided = plan.decided
        if decided is None:
            self.counts.add("head.pending")
            return True  # the tail decides, with the whole trace in hand
        return self._keep(trace, decided, "head")

    def _candidates(self, trace, fallback: Rule) -> tuple[Rule, ...]:
        out = []
        for rule in self.rules:
            verdict = rule.at_head(trace)
            if verdict is False:
                continue
            out.append(rule)
            if verdict is True:
                return tuple(out)  # a rule that surely matches ends the list: later rules never apply
        out.append(fallback)
        return tuple(out)

    def _keep(self, trace, rule: Rule, stage: str) -> bool:
        # Callers have checked the ratio already; what is left is the rate limit.
        if self.bucket is not None and not self.bucket.take():
            self.counts.add(f"{stage}.dropped.rate_limit")
            return False
        self._tag(trace, rule.name, rule.probability, rule.ratio)
        self.counts.add(f"{stage}.kept.{rule.name}")
        return True

    @staticmethod
    def _tag(trace, rule: str, probability: str, ratio: float) -> None:
        narrowed = trace.attributes.get("mlflow.sampling_ratio")
        if narrowed is not None and narrowed < ratio:
            # MLFLOW_TRACE_SAMPLING_RATIO kept the trace first, by the same rule on the same trace-id
            # bits (OpenTelemetry's TraceIdRatioBased): kept by both = kept by the smaller ratio
            ratio = narrowed
            probability = _prob_str(ratio)
        trace.tags[PROBABILITY_TAG] = probability
        trace.tags[RULE_TAG] = rule
        trace.attributes["sampling.probability"] = ratio

    # ------------------------------------------------------------------ delivery path
    def decide_rule(self, trace) -> Rule:
        """The rule that applies to a finished trace: the first tail rule that matches, else the
        ratio of its workload."""
        for rule in self.rules:
            if rule.at_tail(trace):
                return rule
        return self.fallbacks.get(trace.workload) or self.fallbacks["default"]

    def tail(self, trace) -> bool:
        """``tracekit_keep_trace``: keep or drop a finished trace the head left to the tail."""
        if RULE_TAG in trace.tags:
            return True  # decided at the head (or by the parent)
        rule = self.decide_rule(trace)
        if (trace.trace_id & TRACE_ID_MASK) >= rule.bound:
            self.counts.add(f"tail.dropped.{rule.name}")
            return False
        return self._keep(trace, rule, "tail")

    # ------------------------------------------------------------------ counters
    def counters(self) -> dict[str, int]:
        """``head.kept.<rule>``, ``head.dropped.<rule>``, ``head.pending``, ``tail.kept.<rule>``,
        ``tail.dropped.<rule>`` (``rate_limit`` among the rules), plus ``kept`` and ``dropped`` totals."""
        snap = self.counts.snapshot()
        snap["kept"] = sum(v for k, v in snap.items() if ".kept." in k)
        snap["dropped"] = sum(v for k, v in snap.items() if ".dropped." in k)
        return snap
