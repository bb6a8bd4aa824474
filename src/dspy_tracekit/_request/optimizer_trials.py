"""Trials of optimizers that score candidates without ``dspy.Evaluate``: SIMBA.

SIMBA (DSPy 3.4) evaluates its candidates through its own ``dspy.Parallel`` runner on
``wrap_program(candidate, metric)`` functions, never through ``Evaluate``, so no ``Evaluate`` span marks
a trial. tracekit wraps three names to make the same trials other optimizers get:

* ``wrap_program`` (in ``dspy.teleprompt.simba``): remembers which candidate each function runs;
* ``prepare_models_for_resampling`` (same module): the next ``Parallel`` call of this compile samples
  trajectories (pool programs under resampling LMs) — it gets one ``SIMBA.sample_trajectories`` span, no
  trial;
* ``dspy.Parallel.forward``, only when called directly inside a SIMBA ``compile`` on those functions: one
  ``SIMBA.evaluate_candidate`` span (kind ``evaluate``) per candidate in the batch — a mini-batch step or
  the final validation on the trainset — with the candidate's program calls under it. Its score is the
  mean of the metric over its examples: the number SIMBA logs ("Scores after N batches") and keeps in
  ``candidate_programs``.

Compile path only (once per ``Parallel`` call of a SIMBA run); never raises into the optimizer.
"""

from __future__ import annotations

from typing import Any

from dspy_tracekit import _state
from dspy_tracekit._request.tracer import current_span, end_span, start_span
from dspy_tracekit.records import SpanKind

__all__ = ["instrument"]

#: attribute set on SIMBA's wrapped-program functions: the candidate the function runs.
_PROGRAM_MARK = "__tracekit_candidate__"
_simba_cls: Any = None
#: compile span ids whose next ``Parallel`` call samples trajectories.
_sampling_next: set[int] = set()


def _simba_compile_span():
    span = current_span.get()
    if span is not None and span.kind == SpanKind.COMPILE and _simba_cls is not None \
            and isinstance(span.instance, _simba_cls):
        return span
    return None


def _wrap_program(wrapped, instance, args, kwargs):
    fn = wrapped(*args, **kwargs)
    try:
        program = args[0] if args else kwargs.get("program")
        setattr(fn, _PROGRAM_MARK, program)
    except Exception:  # noqa: BLE001, S110 - no mark: that call is simply not grouped into a trial
        pass
    return fn


def _prepare_models(wrapped, instance, args, kwargs):
    span = _simba_compile_span()
    if span is not None:
        _sampling_next.add(span.span_id)
    return wrapped(*args, **kwargs)


def _under(span, fn):
    def run(*a, **kw):
        token = current_span.set(span)
        try:
            return fn(*a, **kw)
        finally:
            current_span.reset(token)

    return run


def _parallel_forward(wrapped, instance, args, kwargs):
    compile_span = _simba_compile_span()
    if compile_span is None:
        return wrapped(*args, **kwargs)
    name = type(compile_span.instance).__name__
    if compile_span.span_id in _sampling_next:
        _sampling_next.discard(compile_span.span_id)
        opened = start_span(f"{name}.sample_trajectories", SpanKind.CUSTOM, "CHAIN")
        if opened is not None:
            opened[0].inputs = {"pairs": len(_pairs(args, kwargs) or ())}
        return _call(opened, wrapped, args, kwargs)
    try:
        plan = _trial_plan(args, kwargs, name)
    except Exception as exc:  # noqa: BLE001
        _state.internal_error("simba_trials", exc)
        plan = None
    if plan is None:
        return wrapped(*args, **kwargs)
    trials, new_args, new_kwargs = plan
    try:
        outputs = wrapped(*new_args, **new_kwargs)
    except BaseException as exc:
        for span, _program, _indices in trials:
            end_span(span, None, None, exc)
        raise
    _end_trials(trials, outputs, _pairs(args, kwargs))
    return outputs


def _call(opened, wrapped, args, kwargs):
    if opened is None:
        return wrapped(*args, **kwargs)
    span, token = opened
    try:
        out = wrapped(*args, **kwargs)
    except BaseException as exc:
        end_span(span, token, None, exc)
        raise
    end_span(span, token, None)
    return out


def _pairs(args, kwargs):
    return args[0] if args else kwargs.get("exec_pairs")


def _trial_plan(args, kwargs, name):
    """One open trial span per candidate of the batch, and the call's arguments with each pair's
    function run under its candidate's span; ``None`` when the pairs are not SIMBA's wrapped programs."""
    pairs = _pairs(args, kwargs)
    if not isinstance(pairs, list) or not pairs:
        return None
    groups: dict[int, tuple[Any, list[int]]] = {}
    for i, pair in enumerate(pairs):
        program = getattr(pair[0], _PROGRAM_MARK, None)
        if program is None:
            return None
        groups.setdefault(id(program), (program, []))[1].append(i)
    trials, span_of = [], {}
    for key, (program, indices) in groups.items():
        opened = start_span(f"{name}.evaluate_candidate", SpanKind.EVALUATE, "EVALUATOR", args=(program,))
        if opened is None:
            return None
        span, token = opened
        current_span.reset(token)  # siblings: the next candidate's span is not nested under this one
        span.inputs = {"program": program, "num_examples": len(indices)}
        trials.append((span, program, indices))
        span_of[key] = span
    new_pairs = [(_under(span_of[id(getattr(fn, _PROGRAM_MARK))], fn), example) for fn, example in pairs]
    if args:
        return trials, (new_pairs, *args[1:]), kwargs
    return trials, args, {**kwargs, "exec_pairs": new_pairs}


def _end_trials(trials, outputs, pairs) -> None:
    from dspy.evaluate.evaluate import EvaluationResult

    results_of = outputs[0] if isinstance(outputs, tuple) else outputs  # return_failed_examples=True
    for span, _program, indices in trials:
        try:
            results, scores = [], []
            for i in indices:
                out = results_of[i] if i < len(results_of) else None
                if isinstance(out, dict) and "score" in out:
                    score = float(out["score"])
                    results.append((out.get("example", pairs[i][1]), out.get("prediction"), score))
                    scores.append(score)
                else:  # a pair that failed inside Parallel: SIMBA would raise on it; count it as 0
                    results.append((pairs[i][1], None, 0.0))
                    scores.append(0.0)
            result = EvaluationResult(score=sum(scores) / len(scores) if scores else 0.0, results=results)
        except Exception as exc:  # noqa: BLE001
            _state.internal_error("simba_trials", exc)
            result = None
        end_span(span, None, result)


def instrument(patch) -> None:
    """Wrap SIMBA's ``wrap_program`` / ``prepare_models_for_resampling`` and ``dspy.Parallel.forward``
    with ``patch(owner, name, wrapper)``."""
    global _simba_cls
    import dspy.teleprompt.simba as simba_module
    from dspy.predict.parallel import Parallel

    from dspy_tracekit.mlflow._compat import dspy_simba_module

    dspy_simba_module()  # its private names resolve, or this target is reported as missing
    _simba_cls = simba_module.SIMBA
    patch(simba_module, "wrap_program", _wrap_program)
    patch(simba_module, "prepare_models_for_resampling", _prepare_models)
    patch(Parallel, "forward", _parallel_forward)
