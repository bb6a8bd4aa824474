"""Optimizer runs: one compile = one trace, each candidate evaluation a child with the optimizer's own score."""

from __future__ import annotations

import json

import dspy
from click.testing import CliRunner
from tk_analytics2 import QAProgram, answers, exact, trainset
from tk_testing import TraceReader

import dspy_tracekit as tk
from dspy_tracekit import analytics, versioning
from dspy_tracekit.analytics.optimize import last_run, optimizer_run
from dspy_tracekit.cli import main

Program = QAProgram


def the_run(reader):
    traces = reader.traces()
    assert len(traces) == 1, [t.data.spans[0].name for t in traces]  # one compile = one trace
    return optimizer_run(analytics.trace_view(traces[0]))


def test_bootstrap_fewshot_run_has_the_result_version_and_no_trials(traced):
    dspy.configure(lm=answers())
    program = Program()
    compiled = dspy.BootstrapFewShot(metric=exact, max_bootstrapped_demos=2).compile(program, trainset=trainset())
    run = the_run(traced)
    assert run.optimizer == "BootstrapFewShot"
    assert run.result_version == versioning.version_of(compiled) != run.student_version
    assert run.trials == [] and run.lm_calls > 0


def test_random_search_trial_scores_are_the_optimizers(traced):
    dspy.configure(lm=answers())
    optimizer = dspy.BootstrapFewShotWithRandomSearch(metric=exact, max_bootstrapped_demos=1,
                                                      num_candidate_programs=2, num_threads=1)
    compiled = optimizer.compile(Program(), trainset=trainset(4), valset=trainset(4))
    run = the_run(traced)
    reported = sorted(c["score"] for c in compiled.candidate_programs)
    assert sorted(t.score for t in run.trials) == reported and len(reported) >= 3
    assert run.best.score == max(reported)
    versions = {versioning.version_of(c["program"]) for c in compiled.candidate_programs}
    assert {t.program_version for t in run.trials} == versions
    assert all(t.examples == 4 for t in run.trials)
    cumulative = [t.cumulative_tokens for t in run.trials]
    assert cumulative == sorted(cumulative)


def test_copro_trial_scores_are_the_optimizers(traced):
    proposals = [{"proposed_instruction": f"Instruction {i}", "proposed_prefix_for_output_field": "Answer:"}
                 for i in range(40)]
    dspy.configure(lm=answers())
    optimizer = dspy.COPRO(prompt_model=dspy.utils.DummyLM(proposals), metric=exact, breadth=2, depth=2,
                           init_temperature=1.0)
    compiled = optimizer.compile(Program(), trainset=trainset(4), eval_kwargs={"num_threads": 1})
    run = the_run(traced)
    trial_scores = [t.score for t in run.trials]
    assert len(trial_scores) >= 2
    reported = [c["score"] for c in compiled.candidate_programs]
    assert set(reported) <= set(trial_scores)
    assert run.best.score == max(reported)


def test_infer_rules_a_subclass_of_bootstrap_fewshot_records_its_candidates(traced, caplog):
    lm = dspy.utils.DummyLM([{"answer": str(i % 3 % 2), "reasoning": "r", "natural_language_rules": f"Rule {i}"} for i in range(400)])
    dspy.configure(lm=lm)
    optimizer = dspy.InferRules(metric=exact, num_candidates=2, num_rules=2, max_bootstrapped_demos=1)
    with caplog.at_level("INFO", logger="dspy.teleprompt.infer_rules"):
        optimizer.compile(Program(), trainset=trainset(4), valset=trainset(4))
    run = the_run(traced)
    import re

    logged = [float(m) for m in re.findall(r"Evaluated Candidate \d+ with score (\d+(?:\.\d+)?)", caplog.text)]
    assert logged and [t.score for t in run.trials] == logged
    assert run.optimizer == "InferRules"


def test_optimize_cli_last_and_by_id(traced):
    dspy.configure(lm=answers())
    optimizer = dspy.BootstrapFewShotWithRandomSearch(metric=exact, max_bootstrapped_demos=1,
                                                      num_candidate_programs=1, num_threads=1)
    optimizer.compile(Program(), trainset=trainset(4), valset=trainset(4))
    Program()(question="served after the run")  # a newer, non-compile trace
    tk.flush(30)
    where = ["--tracking-uri", traced.uri, "--experiment", traced.experiment]
    result = CliRunner().invoke(main, ["optimize", "--last", "--json", *where], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["optimizer"] == "BootstrapFewShotWithRandomSearch" and data["trials"]
    table = CliRunner().invoke(main, ["optimize", data["trace_id"], *where], catch_exceptions=False)
    assert table.exit_code == 0 and "Trials" in table.stdout and "Best: trial" in table.stdout
    store = analytics.open_store(traced.uri, traced.experiment)
    assert last_run(store).trace_id == data["trace_id"]


def test_optimize_on_a_non_compile_trace_is_an_error(traced):
    dspy.configure(lm=answers())
    Program()(question="x")
    (trace,) = traced.traces()
    where = ["--tracking-uri", traced.uri, "--experiment", traced.experiment]
    result = CliRunner().invoke(main, ["optimize", trace.info.trace_id, *where], catch_exceptions=False)
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "not an optimizer run" in result.stderr


ANSWER = "[[ ## answer ## ]]\n{}\n\n[[ ## completed ## ]]"


class InstructionSensitiveEngine:
    """A ``dspy.LM`` engine that answers right only under an improved instruction, with real usage."""

    def complete(self, request):
        from dspy.lm15 import Message, Response, Usage

        right = "Better instruction" in repr(request)
        return Response(id=None, model="m", message=Message.assistant(ANSWER.format("1" if right else "0")),
                        finish_reason="stop", usage=Usage(input_tokens=100, output_tokens=20))


def feedback_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    return float(str(getattr(pred, "answer", "")).strip() == gold.answer)


def test_gepa_trial_scores_are_its_validation_scores(store_uri, experiment_name):
    assert tk.enable(plugins=["cost"], tracking_uri=store_uri, experiment=experiment_name)
    data = [dspy.Example(question=f"q{i}", answer="1").with_inputs("question") for i in range(4)]
    dspy.configure(lm=dspy.LM("openai/gpt-4o-mini", engine=InstructionSensitiveEngine(), cache=False))
    reflection = dspy.utils.DummyLM([{"new_instruction": f"Better instruction {i}"} for i in range(100)],
                                    adapter=dspy.JSONAdapter())
    optimizer = dspy.GEPA(metric=feedback_metric, reflection_lm=reflection, max_metric_calls=30, track_stats=True,
                          num_threads=1, use_merge=False)
    compiled = optimizer.compile(Program(), trainset=data, valset=data)
    run = the_run(TraceReader(store_uri, experiment_name))
    reported = compiled.detailed_results.val_aggregate_scores
    assert reported == [0.0, 1.0]  # the seed candidate and one improved candidate
    full = [t for t in run.trials if t.examples == len(data)]
    assert [t.mean_score for t in full] == reported
    assert full[-1].program_version == versioning.version_of(compiled)
    assert run.total_cost_usd > 0 and full[-1].cumulative_cost_usd <= run.total_cost_usd
    assert run.optimizer == "GEPA"
