"""The ``dspy-tracekit`` read commands, run through click against real MLflow stores."""

from __future__ import annotations

import csv
import json
import re
from html.parser import HTMLParser

from click.testing import CliRunner
from mlflow import MlflowClient

from dspy_tracekit import analytics
from dspy_tracekit.cli import main


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


def where(store):
    return ["--tracking-uri", store.uri, "--experiment", store.experiment]


def test_every_read_command_has_help_and_the_store_options():
    for command in ("stats", "tree", "export", "prune", "report", "ui", "doctor"):
        result = run(command, "--help")
        assert result.exit_code == 0, result.output
        assert "--tracking-uri" in result.output and "--experiment" in result.output
        if command != "ui":  # ui serves the whole store: nothing to narrow
            assert "--since" in result.output and "--filter" in result.output


def test_stats_json_is_the_python_api_numbers(synthetic_store):
    result = run("stats", "--json", *where(synthetic_store))
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    expected = analytics.stats(tracking_uri=synthetic_store.uri, experiment=synthetic_store.experiment).to_dict()
    assert data == json.loads(json.dumps(expected))


def test_stats_table_names_every_span_and_says_it_reweighted(synthetic_store):
    result = run("stats", *where(synthetic_store))
    assert result.exit_code == 0, result.stderr
    for name in ("IntentDetector", "classify", "ChatAdapter.format", "LM", "ChatAdapter.parse"):
        assert name in result.stdout
    assert "re-weighted" in result.stdout
    assert "45 traces" in result.stdout  # 30 stored, 15 of them kept with p = 0.5


def test_stats_on_an_empty_experiment_says_so(empty_store):
    result = run("stats", *where(empty_store))
    assert result.exit_code == 0 and "No traces match." in result.stdout
    data = json.loads(run("stats", "--json", *where(empty_store)).stdout)
    assert data["spans"] == [] and data["traces_stored"] == 0


def test_tree_shows_spans_durations_tokens_and_cost(synthetic_store):
    spec = next(t for t in synthetic_store.traces if t["failed"])
    result = run("tree", spec["trace_id"], *where(synthetic_store))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert spec["trace_id"] in out and "ERROR" in out
    assert f"{spec['lm_ms']:.1f} ms" in out  # the LM span's stored duration
    assert "tokens 100→20" in out and "$0.001500" in out
    assert out.index("IntentDetector") < out.index("classify") < out.index("LM")


def test_tree_last_shows_the_newest_trace(synthetic_store):
    newest = max(synthetic_store.traces, key=lambda t: t["start_ns"])
    result = run("tree", "--last", *where(synthetic_store))
    assert result.exit_code == 0 and newest["trace_id"] in result.stdout


def test_export_csv_and_json_files(synthetic_store, tmp_path):
    csv_path, json_path = tmp_path / "spans.csv", tmp_path / "traces.json"
    assert run("export", "--out", csv_path, *where(synthetic_store)).exit_code == 0
    assert run("export", "--format", "json", "--out", json_path, "--since", "7d", *where(synthetic_store)).exit_code == 0
    rows = list(csv.DictReader(csv_path.open()))
    spans = sum(len(t.data.spans) for t in MlflowClient(synthetic_store.uri).search_traces(
        locations=[synthetic_store.experiment_id], max_results=1000))
    assert len(rows) == spans
    assert len(json.loads(json_path.read_text())) == 24  # --since 7d leaves out the six old traces


def test_prune_asks_and_does_nothing_when_refused(store_copy):
    result = run("prune", "--older-than", "30d", *where(store_copy), input="n\n")
    assert result.exit_code == 1  # click's Abort
    assert "Will delete 6 traces" in result.stdout
    assert len(MlflowClient(store_copy.uri).search_traces(locations=[store_copy.experiment_id])) == 30


def test_prune_deletes_after_yes(store_copy):
    result = run("prune", "--older-than", "30d", "--keep-errors", *where(store_copy), input="y\n")
    assert result.exit_code == 0, result.stderr
    assert "Deleted 4 traces." in result.stdout  # 6 old, 2 of them failed and kept
    assert len(MlflowClient(store_copy.uri).search_traces(locations=[store_copy.experiment_id])) == 26
    again = run("prune", "--older-than", "30d", "--keep-errors", "--yes", *where(store_copy))
    assert again.exit_code == 0 and "Nothing to delete" in again.stdout


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_report_is_one_self_contained_file(synthetic_store, tmp_path):
    out = tmp_path / "report.html"
    result = run("report", "--out", out, *where(synthetic_store))
    assert result.exit_code == 0, result.stderr
    html = out.read_text()
    parser = _Collect()
    parser.feed(html)
    tags = [t for t, _ in parser.tags]
    assert tags.count("svg") == 5 + 4  # 5 span-name histograms, P95 and error rate over time, 2 cost charts
    assert not [a for _, attrs in parser.tags for k, a in attrs.items() if k in ("src", "href")]
    assert "script" not in tags and "link" not in tags
    # nothing to fetch: the only URL is the SVG namespace, which browsers never request
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}
    assert "default-src 'none'" in html


def test_doctor_json_reports_config_sources_plugins_and_store(synthetic_store):
    result = run("doctor", "--json", *where(synthetic_store))
    assert result.exit_code == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True
    core = {row["key"]: row for row in data["config"]["core"]}
    assert core["tracking_uri"]["value"] == synthetic_store.uri
    assert core["tracking_uri"]["source"] == "--tracking-uri"
    assert core["flush_timeout"]["source"] == "default"
    assert {"redact", "sample", "cost", "buffer"} <= {p["name"] for p in data["installed_plugins"]}
    assert all(p["version"] for p in data["installed_plugins"])
    assert data["store"]["reachable"] and data["store"]["traces"] == 30


def test_doctor_names_the_file_a_value_came_from(synthetic_store, tmp_path, monkeypatch):
    (tmp_path / "dspy-tracekit.toml").write_text(f'experiment = "{synthetic_store.experiment}"\n')
    monkeypatch.chdir(tmp_path)
    result = run("doctor", "--json", "--tracking-uri", synthetic_store.uri)
    data = json.loads(result.stdout)
    core = {row["key"]: row for row in data["config"]["core"]}
    assert core["experiment"]["value"] == synthetic_store.experiment
    assert core["experiment"]["source"] == str(tmp_path / "dspy-tracekit.toml")
    assert data["store"]["traces"] == 30


def test_doctor_reports_a_bad_plugin_table_as_a_problem(synthetic_store, tmp_path, monkeypatch):
    (tmp_path / "dspy-tracekit.toml").write_text('plugins = ["nonexistent_plugin"]\n')
    monkeypatch.chdir(tmp_path)
    result = run("doctor", *where(synthetic_store))
    assert result.exit_code == 1
    assert "nonexistent_plugin" in result.stdout and "problem" in result.stdout
