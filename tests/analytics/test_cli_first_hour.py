"""What a new user meets in the first hour with the command line (issue #16): commands that guide."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys

import pytest
from click.testing import CliRunner

from dspy_tracekit.cli import main


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def where(store):
    return ["--tracking-uri", store.uri, "--experiment", store.experiment]


def files_in(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# ------------------------------------------------------------------------------------------- stats -e typo


def test_stats_with_a_mistyped_experiment_lists_the_experiments_of_that_store(synthetic_store):
    result = run("stats", "--tracking-uri", synthetic_store.uri, "-e", "tk_analytic")
    assert result.exit_code == 1
    assert "experiment 'tk_analytic' not found" in result.stderr
    assert "experiments there: 'tk_analytics', 'Default'" in result.stderr


# ------------------------------------------------------------------------------------------- doctor


def test_doctor_in_an_empty_folder_creates_nothing_and_says_what_is_missing(tmp_path, monkeypatch):
    # the production plugin set, buffer included: its spool directory must not appear either
    (tmp_path / "pyproject.toml").write_text(
        '[tool.dspy-tracekit]\nplugins = ["redact", "sample", "cost", "buffer"]\n'
    )
    monkeypatch.chdir(tmp_path)
    before = files_in(tmp_path)
    result = run("doctor")
    assert files_in(tmp_path) == before  # no mlflow.db, no .dspy-tracekit/spool
    assert result.exit_code == 0, result.output
    assert "missing: no store yet:" in result.stdout and str(tmp_path / "mlflow.db") in result.stdout
    assert "has 0 traces" not in result.stdout
    data = json.loads(run("doctor", "--json").stdout)
    assert data["store"]["store_found"] is False and data["store"]["traces"] is None
    assert data["missing"] and files_in(tmp_path) == before


def test_doctor_names_a_missing_experiment_and_the_ones_that_exist(synthetic_store):
    result = run("doctor", "--json", "--tracking-uri", synthetic_store.uri, "-e", "not_yet")
    data = json.loads(result.stdout)
    assert data["store"]["reachable"] and not data["store"]["experiment_found"]
    assert data["store"]["traces"] is None
    (missing,) = data["missing"]
    assert "experiment 'not_yet' does not exist" in missing and "'tk_analytics'" in missing


def test_doctor_human_output_keeps_bracketed_text(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[tool.dspy-tracekit]\nbogus = 1\n")
    monkeypatch.chdir(tmp_path)
    result = run("doctor")
    assert result.exit_code == 1
    text = " ".join(result.stdout.split())  # rich wraps long lines
    assert "unknown key 'bogus' in [tool.dspy-tracekit]" in text


@pytest.mark.parametrize("command", [["stats"], ["tree", "--last"], ["export", "--out", "t.json"],
                                     ["prune", "--older-than", "1d", "--yes"], ["report"], ["ui"], ["doctor"]])
def test_no_read_command_creates_a_store(command, tmp_path, monkeypatch):
    """docs/cli.md: no read command creates a store, doctor included."""
    monkeypatch.chdir(tmp_path)
    result = run(*command)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / ".dspy-tracekit").exists()
    assert not (tmp_path / "mlruns").exists()
    if command != ["doctor"]:
        assert result.exit_code == 1 and "no such file" in result.stderr, result.output


# ------------------------------------------------------------------------------------------- stats width


@pytest.mark.parametrize("columns", ["80", "60"])
def test_stats_piped_never_cuts_span_names(demo_store, columns, monkeypatch):
    """CliRunner's stdout is a pipe; rich lays it out at COLUMNS (80 when unset)."""
    monkeypatch.setenv("COLUMNS", columns)
    result = run("stats", "--tracking-uri", demo_store, "--experiment", "demo")
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    table = result.stdout.split("Spans by name", 1)[1].split("Slowest spans", 1)[0]
    first_cells = {line.split()[0] for line in table.splitlines()[3:] if line.strip()}
    for name in ("ChatAdapter.format", "ChatAdapter.parse", "IntentDetector.forward", "get_workflow_templates"):
        assert name in first_cells, (name, table)
    slowest = result.stdout.split("Slowest spans", 1)[1].split("Most common", 1)[0]
    assert "IntentDetector.forward" in slowest
    assert max(len(line) for line in result.stdout.splitlines()) <= max(int(columns), 24)


# ------------------------------------------------------------------------------------------- export


def test_export_refuses_an_extension_it_cannot_write(synthetic_store, tmp_path):
    out = tmp_path / "x.parquet"
    result = run("export", "--out", out, *where(synthetic_store))
    assert result.exit_code == 2
    assert "cannot tell the format of" in result.stderr and ".parquet" in result.stderr
    assert "--format json|csv" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(("name", "fmt"), [("t.json", "json"), ("T.CSV", "csv")])
def test_export_infers_the_format_from_the_extension(synthetic_store, tmp_path, name, fmt):
    out = tmp_path / name
    result = run("export", "--out", out, "--limit", "1", *where(synthetic_store))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    if fmt == "json":
        assert len(json.loads(text)) == 1
        assert result.stderr.strip() == f"wrote 1 trace to {out}"
    else:
        assert text.startswith("trace_id,span_id")
        rows = len(text.strip().splitlines()) - 1
        assert rows > 1 and result.stderr.strip() == f"wrote {rows} spans of 1 trace to {out}"


def test_prune_speaks_of_one_trace_in_the_singular(store_copy):
    # of the six 40-day-old traces, only the first is an admin's in session s-0
    one = "tag.session_id = 's-0' AND tag.user_role = 'admin'"
    result = run("prune", "--older-than", "30d", "--filter", one, *where(store_copy), input="y\n")
    assert result.exit_code == 0, result.output
    assert "Will delete 1 trace from" in result.stdout
    assert "Delete this trace?" in result.stderr
    assert "Deleted 1 trace." in result.stdout


# ------------------------------------------------------------------------------------------- progress


def run_on_a_terminal(args: list[str]) -> tuple[int, str, str]:
    """Run the CLI in a real process whose stderr is a pseudo-terminal; return (rc, stdout, terminal text)."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "dspy_tracekit.cli", *args], stdout=subprocess.PIPE,
                            stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    stdout = proc.stdout.read().decode()
    rc = proc.wait(timeout=120)
    os.close(master)
    return rc, stdout, b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize(
    ("command", "label"),
    [(["stats"], "reading traces"), (["report", "--out", "r.html"], "reading traces"),
     (["export", "--out", "t.json"], "exporting")],
)
def test_long_reads_show_progress_on_a_terminal_and_not_in_a_pipe(synthetic_store, tmp_path, monkeypatch,
                                                                  command, label):
    monkeypatch.chdir(tmp_path)
    rc, _, terminal = run_on_a_terminal([*command, *where(synthetic_store)])
    assert rc == 0, terminal
    assert label in terminal and "30/30" in terminal  # the bar counts the traces it read
    piped = run(*command, *where(synthetic_store))  # CliRunner: stderr is not a terminal
    assert piped.exit_code == 0 and label not in piped.stderr and "30/30" not in piped.stderr


def test_stats_keeps_a_span_name_longer_than_the_terminal_whole(fresh_store_uri, monkeypatch):
    import dspy

    import dspy_tracekit as tk

    long_name = "retrieve_customer_history_from_the_warehouse_with_a_name_that_is_much_longer_than_usual"
    tk.enable(plugins=[], tracking_uri=fresh_store_uri, experiment="long")
    try:
        with tk.span(long_name, span_type="RETRIEVER"), dspy.context(lm=dspy.utils.DummyLM([{"answer": "4"}])):
            dspy.Predict("question -> answer")(question="2 + 2?")
    finally:
        tk.disable()
    monkeypatch.setenv("COLUMNS", "80")
    result = run("stats", "--tracking-uri", fresh_store_uri, "-e", "long")
    assert result.exit_code == 0, result.output
    table = result.stdout.split("Spans by name", 1)[1].split("Slowest spans", 1)[0]
    (row,) = [line for line in table.splitlines() if long_name in line]  # whole, on one line
    assert "RETRIEVER" in row and "$" not in row and row.split()[-1] == "-"  # …with every other column
    assert "ChatAdapter.format" in table and "…" not in result.stdout


# ------------------------------------------------------------------------------------------- where traces go


def test_doctor_shows_where_traces_go_and_where_they_come_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/users.db")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "support-bot")
    data = json.loads(run("doctor", "--json").stdout)
    dest = data["destination"]
    assert dest["tracking_uri"] == f"sqlite:///{tmp_path}/users.db" and dest["experiment"] == "support-bot"
    assert dest["tracking_uri_from"].startswith("MLflow") and dest["experiment_from"].startswith("MLflow")
    assert dest["notes"] == []
    text = run("doctor").stdout
    assert "Traces go to" in " ".join(text.split()) and "support-bot" in text


def test_doctor_says_when_mlflows_destination_differs_from_tracekits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.dspy-tracekit]\ntracking_uri = "sqlite:///traces.db"\n')
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/users.db")
    data = json.loads(run("doctor", "--json").stdout)
    (note,) = data["destination"]["notes"]
    assert "users.db" in note and "traces.db" in note and "every MLflow trace" in note
    text = "".join(run("doctor").stdout.split())  # rich may wrap a long path anywhere
    assert "note" in text and "users.db" in text
