"""The main job: the intent-detection demo stores complete traces and prints the last one."""

from __future__ import annotations

import io

from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from dspy_tracekit.cli import main
from dspy_tracekit.demo.app import run_demo

from tk_testing import tree_of


def test_demo_stores_one_complete_trace_per_message(fresh_store_uri):
    out = io.StringIO()
    assert run_demo(n=12, tracking_uri=fresh_store_uri, plugins=[], out=out) == 0
    client = MlflowClient(fresh_store_uri)
    exp = client.get_experiment_by_name("dspy_intent_classification")
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
    assert "mlflow ui --backend-store-uri" in text


def test_demo_command_line(fresh_store_uri):
    result = CliRunner().invoke(main, ["demo", "--n", "3", "--latency-ms", "0", "--tracking-uri", fresh_store_uri,
                                       "--plugins", ""])
    assert result.exit_code == 0, result.output
    assert "classified 3 messages" in result.output
    assert "database_query" in result.output
