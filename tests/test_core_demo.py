"""The main job: the intent-detection demo stores complete traces and prints the last one."""

from __future__ import annotations

import io
import sys

from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from tk_testing import tree_of

from dspy_tracekit.cli import main
from dspy_tracekit.cli.demo.app import run_demo
from dspy_tracekit.config import resolve


def test_demo_stores_one_complete_trace_per_message(fresh_store_uri):
    out = io.StringIO()
    assert run_demo(n=12, tracking_uri=fresh_store_uri, plugins=[], out=out) == 0
    client = MlflowClient(fresh_store_uri)
    exp = client.get_experiment_by_name(resolve().core["experiment"])  # enable()'s default, not the demo's own
    infos = client.search_traces(locations=[exp.experiment_id], max_results=100)
    assert len(infos) == 12
    states = sorted(t.info.state.value for t in infos)
    assert "ERROR" in states and "OK" in states  # some messages fail validation
    trace = client.get_trace(infos[0].info.trace_id)
    tree = tree_of(trace)
    assert tree["dspy_intent_detection"] is None
    assert tree["IntentDetector.forward"] == "dspy_intent_detection"
    assert tree["get_workflow_templates"] == "IntentDetector.forward"
    assert tree["get_agent_templates"] == "IntentDetector.forward"
    assert tree["process_context"] == "IntentDetector.forward"
    assert tree["validate_result"] == "IntentDetector.forward"
    assert tree["LM.__call__"] == "Predict.forward"
    queries = [s for s in trace.data.spans if s.name == "database_query"]
    assert len(queries) == 2 and {tree_of(trace)["database_query"]} <= {"get_workflow_templates",
                                                                        "get_agent_templates"}
    assert {"user_role", "current_module", "tab"} <= set(trace.info.tags)
    lm = next(s for s in trace.data.spans if s.name == "LM.__call__")
    usage = lm.attributes["mlflow.chat.tokenUsage"]
    assert usage["input_tokens"] > 100 and usage["output_tokens"] > 10
    assert lm.attributes["mlflow.llm.model"] == "openai/gpt-4o-mini"
    text = out.getvalue()
    assert "dspy_intent_detection (" in text and "└── IntentDetector.forward" in text or "IntentDetector.forward" in text
    assert f"stats --tracking-uri {fresh_store_uri}" in text  # not the default store: the flag is needed


def test_demo_command_line(fresh_store_uri):
    result = CliRunner().invoke(main, ["demo", "--n", "3", "--latency-ms", "0", "--tracking-uri", fresh_store_uri,
                                       "--plugins", ""])
    assert result.exit_code == 0, result.output
    assert "classified 3 messages" in result.output
    assert "database_query" in result.output


def next_commands(output: str) -> dict[str, list[str]]:
    """The commands the demo printed after "Next:", by subcommand, as argument lists."""
    import shlex

    lines = output.split("Next:", 1)[1].splitlines()
    commands = {}
    for line in lines:
        if line.strip():
            args = shlex.split(line.split("#", 1)[0])
            commands[args[args.index("dspy-tracekit") + 1]] = args
    return commands


def test_demo_and_the_read_commands_default_to_the_same_experiment(tmp_path, monkeypatch):
    """`dspy-tracekit demo` then `dspy-tracekit stats`, in an empty folder, with no flags: it finds the traces."""
    import os

    from dspy_tracekit import analytics

    monkeypatch.delenv("UV_RUN_RECURSION_DEPTH", raising=False)  # as a shell with the venv activated
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    runner = CliRunner()
    demo = runner.invoke(main, ["demo", "--n", "3", "--latency-ms", "0", "--plugins", ""])
    assert demo.exit_code == 0, demo.output
    commands = next_commands(demo.stdout)
    assert set(commands) == {"stats", "tree", "report", "ui"}
    assert all(args[0] == "dspy-tracekit" for args in commands.values())
    assert commands["stats"] == ["dspy-tracekit", "stats"]  # defaults agree: no flags needed
    for name in ("stats", "tree", "report"):
        result = runner.invoke(main, commands[name][1:])
        assert result.exit_code == 0, (commands[name], result.output)
    assert "3 traces from 3 stored" in runner.invoke(main, commands["stats"][1:]).stdout
    assert (tmp_path / "report.html").is_file()
    store = analytics.open_store()  # what `ui` opens with no flags
    assert store.experiment_name == resolve().core["experiment"]


def test_demo_with_its_own_experiment_prints_the_flag_the_read_commands_need(fresh_store_uri, monkeypatch):
    monkeypatch.setenv("UV_RUN_RECURSION_DEPTH", "1")  # started by `uv run`: so are the next commands
    runner = CliRunner()
    demo = runner.invoke(main, ["demo", "--n", "2", "--latency-ms", "0", "--plugins", "", "-e", "my demo",
                                "--tracking-uri", fresh_store_uri])
    assert demo.exit_code == 0, demo.output
    commands = next_commands(demo.stdout)
    assert commands["stats"] == ["uv", "run", "dspy-tracekit", "stats", "--tracking-uri", fresh_store_uri,
                                 "-e", "my demo"]
    stats = runner.invoke(main, commands["stats"][3:])
    assert stats.exit_code == 0 and "2 traces from 2 stored" in stats.stdout, stats.output
    tree = runner.invoke(main, commands["tree"][3:])
    assert tree.exit_code == 0 and "dspy_intent_detection" in tree.stdout, tree.output
