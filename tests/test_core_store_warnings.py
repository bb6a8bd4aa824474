"""What tracekit prints about a store it cannot use: no password, no page of tracebacks per trace."""

from __future__ import annotations

import logging

import dspy
from tk_testing import Pipeline, dummy_lm

import dspy_tracekit as tk


def test_store_not_usable_warning_does_not_print_the_database_password(caplog):
    uri = "postgresql+nosuchdriver://admin:hunter2@127.0.0.1:1/traces"
    with caplog.at_level(logging.WARNING, logger="dspy_tracekit"):
        assert tk.enable(plugins=[], tracking_uri=uri)
    text = caplog.text
    assert "not usable yet" in text and "127.0.0.1:1/traces" in text
    assert "hunter2" not in text


def test_a_read_only_store_costs_one_short_warning_not_tracebacks_per_trace(tmp_path, caplog):
    path = tmp_path / "ro.db"
    tk.enable(plugins=[], tracking_uri=f"sqlite:///{path}", experiment="ro")  # the store exists, writable
    dspy.configure(lm=dummy_lm(40))
    Pipeline()(message="hello")
    tk.disable()

    caplog.clear()
    with caplog.at_level(logging.INFO):
        tk.enable(plugins=[], tracking_uri=f"sqlite:///file:{path}?mode=ro&uri=true", experiment="ro")
        program = Pipeline()
        for i in range(10):
            program(message=f"request {i}")  # the user's calls go on
    counters = tk.counters()
    printed = [r for r in caplog.records if r.levelno >= logging.WARNING]
    text = "\n".join(r.getMessage() for r in printed)
    assert counters["core.traces_dropped.export_error"] == 10  # every lost trace is counted
    assert counters["mlflow.store_errors"] == 10
    assert counters["mlflow.mlflow_log_records_suppressed"] >= 10
    assert [r.name for r in printed if r.exc_info] == [], text  # no tracebacks
    assert "[SQL:" not in text and "[parameters:" not in text, text  # nor the trace content in SQL parameters
    assert text.count("refused a write") == 1, text  # rate-limited: one line for the ten
    assert len(printed) <= 2 and len(text) < 1200, text


def test_a_read_only_store_behind_the_buffer_logs_no_traceback_and_no_sql(tmp_path, caplog):
    path = tmp_path / "ro.db"
    tk.enable(plugins=[], tracking_uri=f"sqlite:///{path}", experiment="ro")
    dspy.configure(lm=dummy_lm(40))
    Pipeline()(message="hello")
    tk.disable()

    caplog.clear()
    with caplog.at_level(logging.INFO):
        tk.enable(plugins=["buffer"], tracking_uri=f"sqlite:///file:{path}?mode=ro&uri=true", experiment="ro",
                  config={"buffer": {"spool_dir": str(tmp_path / "spool"), "flush_interval": 0.05}})
        program = Pipeline()
        for i in range(10):
            program(message=f"request {i}")
        tk.flush(30)
    counters = tk.counters()
    printed = [r for r in caplog.records if r.levelno >= logging.WARNING]
    text = "\n".join(r.getMessage() for r in printed)
    assert counters["buffer.dead_lettered"] == 10  # kept on disk, counted
    assert [r.name for r in printed if r.exc_info] == [], text
    assert "[SQL:" not in text and "[parameters:" not in text, text
