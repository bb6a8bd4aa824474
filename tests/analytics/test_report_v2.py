"""The report's analytics v2 sections: versions compared, resource usage, load vs latency, optimizer run."""

from __future__ import annotations

import dspy
from click.testing import CliRunner
from tk_analytics2 import QAProgram, answers, exact, run_two_versions, trainset

from dspy_tracekit.cli import main


def test_report_has_the_v2_sections(store_uri, experiment_name, tmp_path):
    va, vb = run_two_versions(store_uri, experiment_name, n=6)
    dspy.configure(lm=answers())
    dspy.BootstrapFewShotWithRandomSearch(metric=exact, max_bootstrapped_demos=1, num_candidate_programs=1,
                                          num_threads=1).compile(QAProgram(), trainset=trainset(4),
                                                                 valset=trainset(4))
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", "--out", str(out), "--tracking-uri", store_uri,
                                       "--experiment", experiment_name], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    html = out.read_text()
    for heading in ("Program versions: the newest two compared", "Resource usage", "Load vs latency",
                    "Optimizer run: BootstrapFewShotWithRandomSearch", "Score vs cumulative"):
        assert heading in html, heading
    assert va in html and vb in html
    assert "section failed" not in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
