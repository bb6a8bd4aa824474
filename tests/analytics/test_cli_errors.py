"""Bad input ends a command with one line on stderr and a non-zero exit — never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from dspy_tracekit.cli import main
from dspy_tracekit.cli.ui import free_port


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *needles):
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize("command", [["stats"], ["tree", "--last"], ["export", "--out", "x.csv"],
                                     ["prune", "--older-than", "30d"], ["report", "--out", "r.html"]])
def test_unknown_experiment(command, synthetic_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(*command, "--tracking-uri", synthetic_store.uri, "--experiment", "no_such_experiment")
    assert_one_line_error(result, "no_such_experiment", "not found")
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "r.html").exists()


def test_missing_sqlite_file_is_unreachable_and_not_created(tmp_path):
    db = tmp_path / "nowhere" / "mlflow.db"
    result = run("stats", "--tracking-uri", f"sqlite:///{db}", "--experiment", "x")
    assert_one_line_error(result, "cannot reach MLflow store", "no such file")
    assert not db.exists()


def test_unreachable_tracking_server():
    result = run("stats", "--tracking-uri", f"http://127.0.0.1:{free_port()}", "--experiment", "x")
    assert_one_line_error(result, "cannot reach MLflow store")


def test_bad_filter(synthetic_store):
    result = run("stats", "--tracking-uri", synthetic_store.uri, "--experiment", synthetic_store.experiment,
                 "--filter", "nonsense.key = 'x'")
    assert_one_line_error(result, "bad filter")


@pytest.mark.parametrize("since", ["yesterday", "7", "2026-02-30"])
def test_bad_since(since, synthetic_store):
    result = run("stats", "--since", since, "--tracking-uri", synthetic_store.uri,
                 "--experiment", synthetic_store.experiment)
    assert_one_line_error(result, "bad --since", since)


def test_bad_older_than(synthetic_store):
    result = run("prune", "--older-than", "a month", "--tracking-uri", synthetic_store.uri,
                 "--experiment", synthetic_store.experiment)
    assert_one_line_error(result, "bad duration")


def test_unknown_trace_id(synthetic_store):
    result = run("tree", "tr-0000000000000000", "--tracking-uri", synthetic_store.uri,
                 "--experiment", synthetic_store.experiment)
    assert_one_line_error(result, "tr-0000000000000000", "not found")


def test_tree_last_on_an_empty_experiment(empty_store):
    result = run("tree", "--last", "--tracking-uri", empty_store.uri, "--experiment", empty_store.experiment)
    assert_one_line_error(result, "no traces")


def test_a_real_process_prints_one_line_and_no_traceback(synthetic_store):
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.run(
        [sys.executable, "-m", "dspy_tracekit.cli", "stats", "--tracking-uri", synthetic_store.uri,
         "--experiment", "no_such_experiment"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: experiment 'no_such_experiment' not found in {synthetic_store.uri}; "
        "experiments there: 'tk_analytics', 'Default' (pick one with --experiment/-e)"
    ], proc.stderr
    assert proc.stdout == ""
