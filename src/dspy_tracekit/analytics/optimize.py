"""Optimizer runs read back: ``dspy-tracekit optimize [RUN_TRACE_ID|--last]``.

One ``compile`` call is one trace (tagged ``tracekit.optimizer`` = the optimizer's class). Each candidate
evaluation the optimizer makes through ``dspy.Evaluate`` — BootstrapFewShotWithRandomSearch's seeds,
COPRO's and MIPROv2's instruction candidates, GEPA's candidate evaluations, InferRules' candidates — is
an ``Evaluate`` span inside it (SIMBA's, which do not go through ``Evaluate``, get one
``SIMBA.evaluate_candidate`` span each: see ``optimizer_trials``), on which tracekit records the score ``Evaluate`` returned
(``tracekit.trial.score``, the number the optimizer reads), the mean of the per-example scores
(``tracekit.trial.mean_score``, GEPA's scale), the number of examples and the candidate's program version.
Tokens and cost of a trial are those of the LM calls under it; the cumulative cost of the run at a trial
counts every LM call of the run that ended before the trial did (bootstrapping and instruction proposals
included). Optimizers that evaluate no candidates (BootstrapFewShot, LabeledFewShot) have no trials: their
run shows the result's program version and the cost. The best trial is the highest score among the
trials evaluated on the most examples (a mini-batch score is not compared with a full evaluation's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dspy_tracekit.analytics import AnalyticsError, Store, TraceView, _num, get_trace, iter_traces, trace_view
from dspy_tracekit.analytics.views import subtree
from dspy_tracekit.keys import KIND_ATTR
from dspy_tracekit.records import VERSION_TAG
from dspy_tracekit.versioning import (
    OPTIMIZER_TAG,
    RESULT_VERSION_ATTR,
    TRIAL_EXAMPLES_ATTR,
    TRIAL_MEAN_ATTR,
    TRIAL_SCORE_ATTR,
    TRIAL_VERSION_ATTR,
)

__all__ = ["RUN_FILTER", "OptimizerRun", "Trial", "is_optimizer_run", "last_run", "optimizer_run"]

RUN_FILTER = f"tag.`{OPTIMIZER_TAG}` LIKE '%'"


@dataclass
class Trial:
    index: int
    span_id: str
    name: str
    start_ms: float  # after the run started
    duration_ms: float
    score: float | None
    mean_score: float | None
    examples: int | None
    program_version: str | None
    tokens: float
    cost_usd: float
    cumulative_tokens: float
    cumulative_cost_usd: float
    status: str


@dataclass
class OptimizerRun:
    """What ``dspy-tracekit optimize`` prints; ``to_dict()`` is its ``--json``."""

    trace_id: str
    optimizer: str
    status: str
    duration_ms: float
    student_version: str | None
    result_version: str | None
    total_tokens: float
    total_cost_usd: float
    lm_calls: int
    trials: list[Trial] = field(default_factory=list)
    best: Trial | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_optimizer_run(view: TraceView) -> bool:
    return bool(view.tags.get(OPTIMIZER_TAG)) or (
        view.root is not None and view.root.attributes.get(KIND_ATTR) == "compile")


def _is_lm(span) -> bool:
    kind = span.attributes.get(KIND_ATTR)
    return kind == "lm" if kind is not None else span.span_type in ("CHAT_MODEL", "LLM_CALL")


def optimizer_run(view: TraceView) -> OptimizerRun:
    """The run in one compile trace. :raises AnalyticsError: the trace is not an optimizer run."""
    if not is_optimizer_run(view):
        raise AnalyticsError(f"trace {view.trace_id} is not an optimizer run (its root is not a compile call)")
    root = view.root
    lm_spans = sorted((s for s in view.spans if _is_lm(s)), key=lambda s: s.end_ns)
    trials = []
    for span in sorted(view.spans, key=lambda s: s.start_ns):
        attrs = span.attributes
        if TRIAL_SCORE_ATTR not in attrs and TRIAL_VERSION_ATTR not in attrs:
            continue
        sub = subtree(span)
        cum = [s for s in lm_spans if s.end_ns <= span.end_ns]
        examples = _num(attrs.get(TRIAL_EXAMPLES_ATTR))
        trials.append(Trial(
            index=len(trials) + 1,
            span_id=span.span_id,
            name=span.name,
            start_ms=(span.start_ns - root.start_ns) / 1e6,
            duration_ms=span.duration_ms,
            score=_num(attrs.get(TRIAL_SCORE_ATTR)),
            mean_score=_num(attrs.get(TRIAL_MEAN_ATTR)),
            examples=int(examples) if examples is not None else None,
            program_version=attrs.get(TRIAL_VERSION_ATTR),
            tokens=sum(s.total_tokens or 0 for s in sub),
            cost_usd=sum(s.cost_usd or 0 for s in sub),
            cumulative_tokens=sum(s.total_tokens or 0 for s in cum),
            cumulative_cost_usd=sum(s.cost_usd or 0 for s in cum),
            status=span.status,
        ))
    scored = [t for t in trials if t.score is not None]
    # mini-batch scores (SIMBA, GEPA, MIPROv2 minibatch) are not comparable with full evaluations: the
    # best is the highest score among the trials on the most examples
    most = max((t.examples or 0 for t in scored), default=0)
    best = max((t for t in scored if (t.examples or 0) == most), key=lambda t: (t.score, -t.index)) if scored else None
    optimizer = view.tags.get(OPTIMIZER_TAG) or (root.name.rsplit(".compile", 1)[0] if root else "?")
    return OptimizerRun(
        trace_id=view.trace_id,
        optimizer=optimizer,
        status=view.status,
        duration_ms=view.duration_ms,
        student_version=view.tags.get(VERSION_TAG),
        result_version=root.attributes.get(RESULT_VERSION_ATTR) if root else None,
        total_tokens=sum(s.total_tokens or 0 for s in view.spans),
        total_cost_usd=view.cost_usd,
        lm_calls=len(lm_spans),
        trials=trials,
        best=best,
    )


def last_run(store: Store, since: str | None = None, filter: str | None = None) -> TraceView:
    """The newest optimizer run. :raises AnalyticsError: there is none."""
    for trace in iter_traces(store, since, filter, limit=1, extra=(RUN_FILTER,)):
        return trace_view(trace)
    raise AnalyticsError(f"no optimizer runs (compile traces) in experiment {store.experiment_name!r}"
                         + (" match" if since or filter else ""))


def run_by_id(store: Store, trace_id: str) -> TraceView:
    return trace_view(get_trace(store, trace_id))


def runs_in(views: Sequence[TraceView]) -> list[OptimizerRun]:
    return [optimizer_run(v) for v in views if is_optimizer_run(v)]
