"""Program versions (fingerprints) and ``dspy-tracekit compare``, on real DSPy programs and real stores."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import dspy
import pytest
from click.testing import CliRunner
from tk_analytics2 import QAProgram, mock_lm, run_two_versions

import dspy_tracekit as tk
from dspy_tracekit import analytics, versioning
from dspy_tracekit.analytics.compare import OVERALL, compare, compare_views, parse_side
from dspy_tracekit.cli import main
from dspy_tracekit.records import VERSION_TAG

PROGRAM = textwrap.dedent('''
    import sys, dspy
    from dspy_tracekit import versioning

    class QA(dspy.Signature):
        """Answer the question."""
        question: str = dspy.InputField()
        answer: str = dspy.OutputField()

    class Program(dspy.Module):
        def __init__(self):
            super().__init__()
            self.qa = dspy.Predict(QA)
        def forward(self, question):
            return self.qa(question=question)

    dspy.configure(lm=dspy.utils.DummyLM([{"answer": "4"}] * 20))
    program = Program()
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "save":
        program.save(path)
    elif mode == "load":
        program.load(path)
    elif mode == "compile":
        trainset = [dspy.Example(question=f"q{i}", answer="4").with_inputs("question") for i in range(3)]
        program = dspy.BootstrapFewShot(metric=lambda e, p, trace=None: True, max_bootstrapped_demos=2).compile(
            program, trainset=trainset)
    print(versioning.version_of(program))
''')


def _version_in_process(tmp_path, mode, path):
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    out = subprocess.run([sys.executable, str(script), mode, str(path)], capture_output=True, text=True, check=False,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_fingerprint_is_equal_across_processes_and_differs_after_compile(tmp_path):
    saved = tmp_path / "program.json"
    fresh = _version_in_process(tmp_path, "save", saved)
    loaded = _version_in_process(tmp_path, "load", saved)
    compiled = _version_in_process(tmp_path, "compile", saved)
    assert len(fresh) == 12 and fresh != "None"
    assert loaded == fresh
    assert compiled not in (fresh, "None")


Program = QAProgram


def test_version_cache_sees_load_and_the_configured_lm(tmp_path):
    dspy.configure(lm=dspy.utils.DummyLM([{"answer": "4"}] * 5))
    program = Program()
    before = versioning.version_of(program)
    assert versioning.version_of(program) is before  # cached: the same object back
    changed = Program()
    changed.qa.signature = changed.qa.signature.with_instructions("Answer briefly.")
    changed.save(str(tmp_path / "p.json"))
    tk.enable(plugins=[], tracking_uri=f"sqlite:///{tmp_path}/v.db", experiment="v")  # load_state is patched
    program.load(str(tmp_path / "p.json"))
    after_load = versioning.version_of(program)
    assert after_load != before and after_load == versioning.fingerprint(changed)
    with dspy.context(lm=mock_lm("openai/gpt-4o")):
        assert versioning.version_of(program) != after_load
    with dspy.context(lm=mock_lm("openai/gpt-4o-mini")):
        other = versioning.version_of(program)
    with dspy.context(lm=mock_lm("openai/gpt-4o-mini")):  # a new LM object in the same state
        assert versioning.version_of(program) == other


def test_every_trace_carries_the_version_and_context_overrides_it(traced):
    dspy.configure(lm=dspy.utils.DummyLM([{"answer": "4"}] * 5))
    program = Program()
    program(question="a")
    with tk.context(program_version="v7"):
        program(question="b")
    tags = [t.info.tags for t in traced.traces()]
    assert tags[0][VERSION_TAG] == versioning.version_of(program)
    assert tags[1][VERSION_TAG] == "v7"


@pytest.fixture
def two_versions(store_uri, experiment_name):
    va, vb = run_two_versions(store_uri, experiment_name)
    return store_uri, experiment_name, va, vb


def test_compare_finds_the_planted_latency_and_cost_difference_and_not_the_tokens(two_versions):
    uri, exp, va, vb = two_versions
    assert va != vb
    result = compare(analytics.open_store(uri, exp), va, vb)
    assert result.a.traces == result.b.traces == 14
    p50 = result.row(OVERALL, "p50_ms")
    assert p50.significant and p50.change > 20 and p50.ci_low > 0
    cost = result.row(OVERALL, "cost_per_request")
    assert cost.significant and cost.b > cost.a > 0
    tokens = result.row(OVERALL, "tokens_per_request")
    assert tokens.a == tokens.b and tokens.a > 0 and not tokens.significant
    errors = result.row(OVERALL, "error_rate")
    assert errors.a == errors.b == 0 and not errors.significant
    lm_rows = [r for r in result.rows if r.group.endswith(".__call__") and r.metric == "cost_per_request"]
    assert lm_rows and lm_rows[0].significant


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_compare_cli_json_and_table(two_versions):
    uri, exp, va, vb = two_versions
    where = ["--tracking-uri", uri, "--experiment", exp]
    result = run("compare", va[:8], vb, "--json", *where)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["a"]["version"] == va and data["b"]["version"] == vb
    assert any(r["group"] == OVERALL and r["metric"] == "p50_ms" and r["significant"] for r in data["rows"])
    table = run("compare", va, vb, *where)
    assert table.exit_code == 0 and "Overall" in table.stdout and "P95 ms" in table.stdout
    assert "Significant overall:" in table.stdout and "cost/request" in table.stdout


def test_compare_time_ranges_and_filters(two_versions):
    uri, exp, va, vb = two_versions
    store = analytics.open_store(uri, exp)
    by_filter = compare(store, f"filter:tag.`{VERSION_TAG}` = '{va}'", f"filter:tag.`{VERSION_TAG}` = '{vb}'")
    assert by_filter.row(OVERALL, "cost_per_request").significant
    stamps = sorted(t.info.request_time for t in analytics.iter_traces(store, include_spans=False))
    middle = stamps[len(stamps) // 2]
    iso = lambda ms: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}"
    ranged = compare(store, f"..{iso(middle)}", f"{iso(middle)}..")
    assert ranged.a.traces + ranged.b.traces == len(stamps)


@pytest.mark.parametrize("a,b,message", [
    ("nosuchversion", None, "unknown program version 'nosuchversion'"),
    ("30d..29d", None, "matches no traces"),
    ("2h..5m", "1h..", "ranges overlap"),
    ("7d..1d..x", None, "neither an age"),
])
def test_compare_bad_input_is_one_error_line(two_versions, a, b, message):
    uri, exp, va, _vb = two_versions
    result = run("compare", a, b or va, "--tracking-uri", uri, "--experiment", exp)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_parse_side_kinds():
    assert parse_side("abc123").kind == "version"
    assert parse_side("version:v7").version == "v7"
    assert parse_side("filter:tag.x = 'y'").filter == "tag.x = 'y'"
    side = parse_side("2026-11-01..2026-11-08")
    assert side.kind == "range" and side.since_ms < side.until_ms
    with pytest.raises(analytics.AnalyticsError, match="ends before it starts"):
        parse_side("2026-11-08..2026-11-01")


def test_compare_views_on_identical_sides_finds_nothing(two_versions):
    uri, exp, va, _ = two_versions
    store = analytics.open_store(uri, exp)
    views = analytics.trace_views(analytics.iter_traces(store, filter=f"tag.`{VERSION_TAG}` = '{va}'"))
    result = compare_views(views, list(views))
    assert result.rows and not result.significant


def test_a_dspy_program_inside_a_users_mlflow_span_names_the_trace_version(traced):
    import mlflow

    dspy.configure(lm=dspy.utils.DummyLM([{"answer": "4"}] * 5))
    program = Program()
    with mlflow.start_span("handler"):
        program(question="a")
    (trace,) = traced.traces()
    assert trace.info.tags[VERSION_TAG] == versioning.version_of(program)
    assert trace.data.spans[0].name == "handler"


def test_compare_reads_evaluate_scores_per_example(traced):
    devset = [dspy.Example(question=f"q{i}", answer="4").with_inputs("question") for i in range(8)]
    metric = lambda example, prediction, trace=None: float(prediction.answer == example.answer)
    right, wrong = Program(), Program()
    right.qa.lm = dspy.utils.DummyLM([{"answer": "4"}] * 8)
    wrong.qa.lm = dspy.utils.DummyLM([{"answer": "5"}] * 8)
    wrong.qa.signature = wrong.qa.signature.with_instructions("Answer wrongly.")
    for program in (right, wrong):
        dspy.Evaluate(devset=devset, metric=metric, num_threads=2)(program)
    traces = traced.traces()
    assert [t.info.tags[VERSION_TAG] for t in traces] == [versioning.version_of(right), versioning.version_of(wrong)]
    scores = [s.attributes.get("tracekit.eval.score") for s in traces[0].data.spans
              if s.name == "QAProgram.forward"]
    assert scores == [1.0] * 8
    result = compare(analytics.open_store(traced.uri, traced.experiment), versioning.version_of(right),
                     versioning.version_of(wrong))
    score = result.row(OVERALL, "score")
    assert score.a == 1.0 and score.b == 0.0 and score.significant
