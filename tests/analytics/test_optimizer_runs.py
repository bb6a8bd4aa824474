"""Optimizer runs: one compile = one trace, each candidate evaluation a child with the optimizer's own score."""

from __future__ import annotations

import json

import dspy
import pytest
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
    # each trial span carries its own tokens and cost (what the MLflow UI shows on the span)
    (trace,) = TraceReader(store_uri, experiment_name).traces()
    spans = {s.span_id: s for s in trace.data.spans}
    for t in run.trials:
        attrs = spans[t.span_id].attributes
        assert attrs["tracekit.trial.tokens"] == t.tokens > 0
        assert abs(attrs["tracekit.trial.cost_usd"] - t.cost_usd) < 1e-12 and t.cost_usd > 0


@pytest.mark.parametrize("threads", [1, 2])
def test_simba_candidate_evaluations_are_trials_with_the_scores_it_logs(traced, caplog, threads):
    """SIMBA scores candidates through its own ``dspy.Parallel`` runner, not ``Evaluate``."""
    import re

    lm = dspy.utils.DummyLM([{"answer": str(i % 3 % 2), "discussion": "d", "module_advice": {"qa": f"Rule {i}"}}
                             for i in range(2000)])
    dspy.configure(lm=lm)
    optimizer = dspy.SIMBA(metric=exact, bsize=2, num_candidates=2, max_steps=2, max_demos=1, num_threads=threads)
    with caplog.at_level("INFO", logger="dspy.teleprompt.simba"):
        compiled = optimizer.compile(Program(), trainset=trainset(4))
    run = the_run(traced)
    assert run.optimizer == "SIMBA"
    logged = [json.loads(m) for m in re.findall(r"Scores after \d+ batches: (\[.*?\])", caplog.text)]
    minibatch = [t for t in run.trials if t.examples == 2]
    assert logged and [t.score for t in minibatch] == [s for step in logged for s in step]
    # the final validation on the trainset: SIMBA's candidate_programs scores, in the order it evaluated them
    validation = [t for t in run.trials if t.examples == 4]
    final = re.search(r"Final trainset scores: (\[.*?\])", caplog.text)
    assert [t.score for t in validation] == json.loads(final.group(1))
    assert sorted(t.score for t in validation) == sorted(c["score"] for c in compiled.candidate_programs)
    assert run.best.examples == 4 and run.best.score == max(c["score"] for c in compiled.candidate_programs)
    assert run.best.program_version == versioning.version_of(compiled) == run.result_version
    assert all(t.name == "SIMBA.evaluate_candidate" for t in run.trials)
    # each candidate's program calls sit under its trial span, each with its own metric score
    (trace,) = traced.traces()
    by_id = {s.span_id: s for s in trace.data.spans}
    programs = [s for s in trace.data.spans if s.name == "QAProgram.forward"]
    parents = {by_id[s.parent_id].name for s in programs}
    assert parents == {"SIMBA.evaluate_candidate", "SIMBA.sample_trajectories"}
    under_trials = [s for s in programs if by_id[s.parent_id].name == "SIMBA.evaluate_candidate"]
    assert len(under_trials) == sum(t.examples for t in run.trials)
    assert all(s.attributes.get("tracekit.eval.score") in (0.0, 1.0) for s in under_trials)


def test_miprov2_trials_are_its_full_and_minibatch_evaluations(traced):
    """MIPROv2 (optuna) evaluates through ``Evaluate``: its full-valset and mini-batch scores are the trials'."""
    lm = dspy.utils.DummyLM([{"answer": str(i % 3 % 2), "proposed_instruction": f"Instruction {i}"}
                             for i in range(3000)])
    dspy.configure(lm=lm)
    optimizer = dspy.MIPROv2(metric=exact, auto=None, num_candidates=2, num_threads=1, max_bootstrapped_demos=1,
                             max_labeled_demos=1)
    valset = trainset(4)
    compiled = optimizer.compile(Program(), trainset=trainset(6), valset=valset, num_trials=3, minibatch=True,
                                 minibatch_size=2, minibatch_full_eval_steps=2, program_aware_proposer=False,
                                 data_aware_proposer=False, tip_aware_proposer=False, fewshot_aware_proposer=False)
    run = the_run(traced)
    assert run.optimizer == "MIPROv2"
    full = sorted(t.score for t in run.trials if t.examples == len(valset))
    minibatch = sorted(t.score for t in run.trials if t.examples == 2)
    assert full == sorted(c["score"] for c in compiled.candidate_programs) and len(full) >= 2
    assert minibatch == sorted(c["score"] for c in compiled.mb_candidate_programs) and minibatch
    # the best candidate is MIPROv2's: the best full evaluation, not a lucky mini-batch
    assert run.best.examples == len(valset) and run.best.score == compiled.score
    assert run.best.program_version == run.result_version == versioning.version_of(compiled)


class FinetuneProvider(dspy.Provider):
    """A provider that can fine-tune, the way DSPy's ``Provider`` docstring shows: the new model's name."""

    def __init__(self):
        super().__init__()
        self.finetunable = True
        self.train_sizes = []

    def finetune(self, job, model, train_data, train_data_format, train_kwargs=None):
        self.train_sizes.append(len(train_data))
        return f"{model}-ft"


class EvenAnswersEngine:
    """Answers ``q<n>`` with n % 2 (right), except every third question (wrong), with real usage."""

    def complete(self, request):
        import re

        from dspy.lm15 import Message, Response, Usage

        n = int(re.findall(r"q(\d+)", repr(request))[-1])
        answer = str(n % 2) if n % 3 else "x"
        return Response(id=None, model="m", message=Message.assistant(ANSWER.format(answer)), finish_reason="stop",
                        usage=Usage(input_tokens=100, output_tokens=20))


def test_bootstrap_finetune_run_has_the_teachers_trial_and_the_finetuned_version(traced):
    provider = FinetuneProvider()
    lm = dspy.LM("openai/gpt-4o-mini", engine=EvenAnswersEngine(), provider=provider, cache=False)
    dspy.configure(lm=lm)
    student = Program()
    student.set_lm(lm)  # BootstrapFinetune fine-tunes the predictors' own LMs
    before = versioning.fingerprint(student)
    data = trainset(6)
    compiled = dspy.BootstrapFinetune(metric=exact, num_threads=1).compile(student, trainset=data, teacher=Program())
    assert compiled.qa.lm.model == "openai/gpt-4o-mini-ft"
    run = the_run(traced)
    assert run.optimizer == "BootstrapFinetune"
    # a custom engine DSPy cannot save still gives a version, and fine-tuning (a new model) changes it
    assert run.student_version == before is not None
    assert run.result_version == versioning.version_of(compiled) not in (None, before)
    (trial,) = run.trials  # the teacher's bootstrap evaluation, whose passing examples become the train data
    assert trial.examples == len(data)
    assert round(trial.mean_score * trial.examples) == provider.train_sizes[0] == 4
    assert run.lm_calls == len(data) and run.total_tokens == 120 * len(data)
