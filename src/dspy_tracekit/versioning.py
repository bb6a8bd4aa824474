"""Program versions: a short stable fingerprint of a DSPy module's learnable state.

The fingerprint hashes what ``module.save()`` writes (``dump_state()``: every predictor's signature
with its instructions and field prefixes/descriptions, its demos, its own LM) plus the model and
parameters of the LM each predictor would call (its own, else the one ``dspy.configure`` set). The same
saved program gives the same fingerprint in any process; ``compile`` or ``load`` of a changed program
gives another.

Request path cost: one cache lookup per root span. The fingerprint is cached per module instance and
recomputed when tracekit sees ``compile``, ``load_state``/``load`` or ``save`` return (a generation
counter), or when the configured LM object changes. Mutating a predictor by hand (``p.demos = …``)
without one of those is not seen until the next one happens.

Evaluation and compile spans get their scores and candidate versions here too, when they end (once per
``Evaluate`` call, not per request).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import weakref
from typing import Any

from dspy_tracekit.records import VERSION_TAG, SpanKind, SpanRecord, TraceRecord

__all__ = ["VERSION_TAG", "fingerprint", "invalidate", "on_span_end", "root_version", "version_of"]

#: span attributes written on ``Evaluate`` spans (trials) and the program calls under them.
TRIAL_SCORE_ATTR = "tracekit.trial.score"
TRIAL_MEAN_ATTR = "tracekit.trial.mean_score"
TRIAL_EXAMPLES_ATTR = "tracekit.trial.examples"
TRIAL_VERSION_ATTR = "tracekit.trial.program_version"
EXAMPLE_SCORE_ATTR = "tracekit.eval.score"
#: on compile spans: the version of the program ``compile`` returned.
RESULT_VERSION_ATTR = "tracekit.optimizer.result_version"
#: trace tag of optimizer runs (a ``compile`` root): the optimizer's class name.
OPTIMIZER_TAG = "tracekit.optimizer"

_LENGTH = 12
_generation = 0
_cache: dict[int, tuple] = {}
_lock = threading.Lock()
_settings = None


def invalidate() -> None:
    """Forget every cached fingerprint (compile / load / save returned)."""
    global _generation
    _generation += 1
    if len(_cache) > 10_000:
        _cache.clear()


def _lm_state(lm: Any) -> Any:
    if lm is None:
        return None
    try:
        state = lm.dump_state()
    except Exception:  # noqa: BLE001 - a custom LM without dump_state: its model name and kwargs
        state = {"model": getattr(lm, "model", None), "kwargs": getattr(lm, "kwargs", None)}
    if isinstance(state, dict):
        state = {k: v for k, v in state.items() if k not in ("api_key", "api_base", "base_url", "headers",
                                                               "extra_headers")}
    return {"class": type(lm).__name__, "state": state}


def _module_part(module: Any) -> tuple[str, bool] | None:
    """What the module itself holds (``dump_state()`` plus its predictors' own LMs), as canonical JSON,
    and whether some predictor has no LM of its own (then the configured LM is part of the version)."""
    import dspy

    if not isinstance(module, dspy.BaseModule):
        return None
    state = module.dump_state()
    own_lms, needs_global = [], False
    for name, predictor in module.named_predictors():
        lm = getattr(predictor, "lm", None)
        if lm is None:
            needs_global = True
            own_lms.append([name, None])
        else:
            own_lms.append([name, _lm_state(lm)])
    if isinstance(module, dspy.Predict):
        state = {"self": state}
    return json.dumps({"state": state, "lms": own_lms}, sort_keys=True, default=str, ensure_ascii=True), needs_global


def _lm_part(lm: Any) -> str:
    return json.dumps(_lm_state(lm), sort_keys=True, default=str, ensure_ascii=True)


def _combine(module_part: str, lm_part: str) -> str:
    return hashlib.blake2b(f"{module_part}|{lm_part}".encode(), digest_size=16).hexdigest()[:_LENGTH]


def fingerprint(module: Any, lm: Any = None) -> str | None:
    """The fingerprint of ``module`` (uncached): 12 hex characters, or ``None`` if it is not a DSPy module.

    :param lm: the LM for predictors without their own (default: ``dspy.settings.lm``).
    """
    try:
        part = _module_part(module)
        if part is None:
            return None
        if part[1] and lm is None:
            import dspy

            lm = dspy.settings.lm
        return _combine(part[0], _lm_part(lm) if part[1] else "")
    except Exception:  # noqa: BLE001 - an unusual module: no version rather than a broken call
        return None


_lm_cache: dict[int, tuple[Any, str]] = {}


def _cached_lm_part(lm: Any) -> str:
    entry = _lm_cache.get(id(lm))
    if entry is not None and entry[0]() is lm:
        return entry[1]
    part = _lm_part(lm)
    try:
        ref = weakref.ref(lm)
    except TypeError:
        return part
    if len(_lm_cache) > 10_000:
        _lm_cache.clear()
    _lm_cache[id(lm)] = (ref, part)
    return part


def version_of(module: Any) -> str | None:
    """:func:`fingerprint`, cached per module instance: one dict lookup when nothing changed; a new
    configured LM object costs a hash of the cached parts, not a new ``dump_state()``."""
    global _settings
    settings = _settings
    try:
        if settings is None:
            import dspy

            settings = _settings = dspy.settings
        lm = settings["lm"]  # item access skips the failed attribute lookup that settings.lm costs
    except Exception:  # noqa: BLE001
        return None
    key = id(module)
    entry = _cache.get(key)
    if entry is not None and entry[1] == _generation and entry[0]() is module:
        if entry[2] is lm or not entry[5]:
            return entry[3]
        module_part, needs_global = entry[4], True
    else:
        try:
            part = _module_part(module)
        except Exception:  # noqa: BLE001
            return None
        if part is None:
            return None
        module_part, needs_global = part
    generation = _generation
    try:
        fp = _combine(module_part, _cached_lm_part(lm) if needs_global else "")
    except Exception:  # noqa: BLE001
        return None
    try:
        ref = weakref.ref(module)
    except TypeError:
        return fp
    with _lock:
        _cache[key] = (ref, generation, lm, fp, module_part, needs_global)
    return fp


def _program_arg(args: tuple, kwargs: dict | None, name: str) -> Any:
    if args:
        return args[0]
    return (kwargs or {}).get(name)


def root_version(trace: TraceRecord, kind: str, instance: Any, args: tuple, kwargs: dict | None,
                 tags: dict[str, str]) -> None:
    """Tag a new trace with its program version (request path; never raises).

    Module roots: the module. ``Evaluate`` roots: the program evaluated. ``compile`` roots: the student.
    A ``program_version`` context tag wins over the fingerprint.
    """
    try:
        if VERSION_TAG in trace.tags:  # a DSPy call inside a user's MLflow trace: the first one names it
            return
        override = tags.get("program_version")
        if override and kind != SpanKind.COMPILE:
            trace.tags[VERSION_TAG] = override
            return
        if kind == SpanKind.MODULE or kind == SpanKind.PREDICT:
            target = instance
        elif kind == SpanKind.EVALUATE:
            target = _program_arg(args, kwargs, "program")
        elif kind == SpanKind.COMPILE:
            target = _program_arg(args, kwargs, "student")
            trace.tags[OPTIMIZER_TAG] = type(instance).__name__
        else:
            return
        version = override or version_of(target)
        if version is not None:
            trace.tags[VERSION_TAG] = version
    except Exception:  # noqa: BLE001, S110 - bookkeeping must never break the call
        pass


def on_span_end(span: SpanRecord) -> None:
    """An ``Evaluate`` or ``compile`` span ended: record scores and versions (never raises)."""
    try:
        if span.kind == SpanKind.COMPILE:
            invalidate()
            if span.error is None and span.outputs is not None:
                version = version_of(span.outputs)
                if version is not None:
                    span.set_attribute(RESULT_VERSION_ATTR, version)
        elif span.kind == SpanKind.EVALUATE:
            _record_trial(span)
    except Exception:  # noqa: BLE001, S110 - bookkeeping must never break the call
        pass


def _score(value: Any) -> float | None:
    inner = getattr(value, "score", None) if not isinstance(value, (int, float)) else None
    if inner is not None and not callable(inner):
        value = inner
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _record_trial(span: SpanRecord) -> None:
    result = span.outputs
    program = _program_arg(span.args, span.kwargs, "program")
    version = version_of(program)
    if version is not None:
        span.set_attribute(TRIAL_VERSION_ATTR, version)
    if result is None:
        return
    score = _score(getattr(result, "score", result))
    if score is not None:
        span.set_attribute(TRIAL_SCORE_ATTR, score)
    results = getattr(result, "results", None)
    if not isinstance(results, list):
        return
    by_prediction: dict[int, float] = {}
    scores = []
    for item in results:
        try:
            _, prediction, example_score = item
        except (TypeError, ValueError):
            continue
        s = _score(example_score)
        if s is None:
            continue
        scores.append(s)
        by_prediction[id(prediction)] = s
    span.set_attribute(TRIAL_EXAMPLES_ATTR, len(results))
    if scores:
        span.set_attribute(TRIAL_MEAN_ATTR, sum(scores) / len(scores))
    if not by_prediction:
        return
    for child in list(span.trace.spans):
        if child.parent_id == span.span_id and child.outputs is not None:
            s = by_prediction.get(id(child.outputs))
            if s is not None:
                child.set_attribute(EXAMPLE_SCORE_ATTR, s)


# ------------------------------------------------------------------------------------------
# load / save invalidate the cache (compile does so in on_span_end)
# ------------------------------------------------------------------------------------------

def _invalidating(wrapped, instance, args, kwargs):
    try:
        return wrapped(*args, **kwargs)
    finally:
        invalidate()


def instrument(patch) -> None:
    """Wrap ``BaseModule.load_state``/``save`` (and ``Predict.load_state``) with ``patch(owner, name, wrapper)``."""
    from dspy.predict.predict import Predict
    from dspy.primitives.base_module import BaseModule

    for owner, name in ((BaseModule, "load_state"), (BaseModule, "save"), (Predict, "load_state")):
        patch(owner, name, _invalidating)
