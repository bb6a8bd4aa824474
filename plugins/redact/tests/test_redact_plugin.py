"""The plugin through the real core: DSPy programs on DummyLM, real MLflow SQLite stores, raw-byte scans."""

from __future__ import annotations

import json

import dspy
import mlflow
import pytest
from dspy_tracekit_redact import Redactor, tracekit_process_trace

import dspy_tracekit as tk

PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
PLANTED = {
    "email": "maria.gonzalez@example.org",
    "phone": "+44 20 7946 0958",
    "card": "4539 1488 0343 6467",
    "iban": "DE89 3704 0044 0532 0130 00",
    "ssn": "536-22-8817",
    "ip": "203.0.113.77",
    "openai": "sk-proj-" + "Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7" * 3,
    "aws": "AKIAZ7Q3X5LMNOPQRS2T",
    "github": "ghp_" + "x7Yk2Lm9Qp4Rs8Tv1Wz3Ab6Cd0Ef5Gh9Jk2M",
    "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MjQyNDIiLCJuYW1lIjoiTWFyaWEifQ."
           "Qm9ndXNTaWduYXR1cmVGb3JUZXN0aW5nT25seTEyMw",
    "password": "Tr0ub4dor&3x",
    "pem": PEM_BODY,
    "tag_email": "vip.customer@example.net",
    "demo_secret": "hunter2-but-longer-77",
    "answer_email": "refunds.team@acme-support.io",
    "error_phone": "(415) 555-0142",
}
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\nAbCdEfGh1234==\n-----END RSA PRIVATE KEY-----"


class SupportSig(dspy.Signature):
    """Classify a support message and draft a reply."""

    message: str = dspy.InputField()
    intent: str = dspy.OutputField()
    reply: str = dspy.OutputField()


class Support(dspy.Module):
    def __init__(self):
        super().__init__()
        self.answer = dspy.ChainOfThought(SupportSig)
        # a few-shot demo carrying PII: it is rendered into every prompt
        self.answer.predict.demos = [dspy.Example(
            message=f"my email is {PLANTED['tag_email']}", reasoning="asks to update", intent="account",
            reply="done")]

    def forward(self, message):
        config = self.lookup(customer={"ssn": PLANTED["ssn"], "api_key": PLANTED["demo_secret"]})
        return self.answer(message=f"{message} (config {config})")

    @tk.trace(name="lookup", span_type="TOOL")
    def lookup(self, customer):
        return f"found customer with ssn {customer['ssn']}"


def _message() -> str:
    p = PLANTED
    return (f"Hi, I'm {p['email']}, phone {p['phone']}. Card {p['card']}, IBAN {p['iban']}. "
            f"Login from {p['ip']}. Keys: {p['openai']} {p['aws']} {p['github']} token {p['jwt']} "
            f"password={p['password']}\n{PEM}")


def _lm(n: int = 4):
    return dspy.utils.DummyLM([{"reasoning": "billing question", "intent": "billing",
                                "reply": f"write to {PLANTED['answer_email']}"}] * n)


def _experiment_traces(uri: str, name: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    assert exp is not None, "nothing was exported"
    infos = client.search_traces(locations=[exp.experiment_id], max_results=100)
    return [client.get_trace(t.info.trace_id) for t in infos]


def test_no_planted_value_reaches_the_sqlite_store(store, scan):
    uri = f"sqlite:///{store}"
    assert tk.enable(plugins=["redact"], tracking_uri=uri, experiment="redact-e2e", config={"redact": {}})
    before = tk.counters()  # the plugin's counters add up over the process: earlier tests may have redacted
    program = Support()
    with dspy.context(lm=_lm()), tk.context(user_id=PLANTED["tag_email"], session_id="s-1"):
        pred = program(message=_message())
    assert pred.intent == "billing"
    assert tk.flush(30)
    counters = tk.counters()
    tk.disable()

    assert scan.leaks(store, PLANTED.values()) == []
    data = scan.store_bytes(store)
    for marker in (b"<EMAIL>", b"<CREDIT_CARD>", b"<IBAN>", b"<OPENAI_KEY>", b"<PRIVATE_KEY>", b"<SECRET_FIELD>"):
        assert marker in data, marker  # the trace is there, redacted (not simply missing)

    (trace,) = _experiment_traces(uri, "redact-e2e")
    spans = {s.name: s for s in trace.data.spans}
    assert len(spans) >= 5
    counts = [s.attributes.get("redaction.counts") for s in trace.data.spans]
    assert all(isinstance(c, dict) for c in counts)
    total: dict = {}
    for c in counts:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    for entity in ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "OPENAI_KEY", "AWS_ACCESS_KEY_ID",
                   "GITHUB_TOKEN", "JWT", "CREDENTIAL", "PRIVATE_KEY", "SECRET_FIELD"):
        assert total.get(entity, 0) >= 1, (entity, total)
    assert counters["redact.traces"] - before.get("redact.traces", 0) == 1
    assert counters["redact.spans"] - before.get("redact.spans", 0) == len(trace.data.spans)


def raising_validator(value: str) -> bool:
    raise RuntimeError(f"validator broke on {value}")


def test_a_failing_redaction_drops_the_trace_instead_of_exporting_it(store, scan):
    uri = f"sqlite:///{store}"
    cfg = {"patterns": [{"name": "ORDER_REF", "regex": r"REF-\d+",
                         "validator": f"{__name__}.raising_validator"}]}
    tk.enable(plugins=["redact"], tracking_uri=uri, experiment="redact-fail", config={"redact": cfg})
    program = Support()
    with dspy.context(lm=_lm(8)):
        program(message=f"order REF-1234 for {PLANTED['email']}")  # the validator raises: dropped
        program(message="no reference here")  # this one is redacted and exported
    assert tk.flush(30)
    counters = tk.counters()
    tk.disable()
    assert counters.get("core.traces_dropped.process_error") == 1
    assert counters.get("core.traces_exported") == 1
    assert len(_experiment_traces(uri, "redact-fail")) == 1
    assert scan.leaks(store, [PLANTED["email"], "REF-1234"]) == []


def _user_function():
    @mlflow.trace(name="user_function")
    def user_function(message, api_key):
        with mlflow.start_span("inner") as span:
            span.set_attribute("customer.email", PLANTED["email"])
            span.set_inputs({"card": PLANTED["card"]})
            span.set_outputs(f"reply to {PLANTED['answer_email']}")
        try:
            with mlflow.start_span("failing"):
                raise ValueError(f"cannot reach {PLANTED['error_phone']}")
        except ValueError:
            pass
        return {"echo": message}

    user_function(f"my iban is {PLANTED['iban']}", api_key=PLANTED["demo_secret"])


def _assert_user_function_redacted(trace, store, scan):
    names = {s.name for s in trace.data.spans}
    assert {"user_function", "inner", "failing"} <= names
    inner = next(s for s in trace.data.spans if s.name == "inner")
    assert inner.attributes["customer.email"] == "<EMAIL>"
    assert inner.attributes["redaction.counts"] == {"EMAIL": 2, "CREDIT_CARD": 1}
    failing = next(s for s in trace.data.spans if s.name == "failing")
    assert "<PHONE>" in json.dumps([e.attributes for e in failing.events])
    assert scan.leaks(store, [PLANTED[k] for k in ("email", "card", "answer_email", "iban", "demo_secret",
                                              "error_phone")]) == []


def test_mlflow_own_spans_are_redacted_through_the_pipeline(store, scan):
    """Default (mlflow_traces = "all"): MLflow-made spans pass tracekit_process_trace like DSPy's and
    land in tracekit's store; no MLflow span processor is needed."""
    from mlflow.tracing.config import get_config

    uri = f"sqlite:///{store}"
    tk.enable(plugins=["redact"], tracking_uri=uri, experiment="redact-mlflow")
    assert get_config().span_processors == []
    _user_function()
    assert tk.flush(30)
    assert tk.counters()["core.traces_exported"] == 1
    (trace,) = _experiment_traces(uri, "redact-mlflow")
    tk.disable()
    _assert_user_function_redacted(trace, store, scan)


def test_update_current_trace_tags_metadata_and_events_are_redacted(store, scan):
    uri = f"sqlite:///{store}"
    tk.enable(plugins=["redact"], tracking_uri=uri, experiment="redact-update")

    @mlflow.trace(name="handler")
    def handler():
        mlflow.update_current_trace(tags={"customer": PLANTED["email"]},
                                    metadata={"contact": f"call {PLANTED['phone']}"})
        span = mlflow.get_current_active_span()
        span.add_event(mlflow.entities.SpanEvent("lookup", attributes={"card": PLANTED["card"]}))
        return "ok"

    handler()
    assert tk.flush(30)
    (trace,) = _experiment_traces(uri, "redact-update")
    tk.disable()
    assert trace.info.tags["customer"] == "<EMAIL>"
    assert trace.info.trace_metadata["contact"] == "call <PHONE>"
    assert "<CREDIT_CARD>" in json.dumps([e.attributes for e in trace.data.spans[0].events])
    assert scan.leaks(store, [PLANTED["email"], PLANTED["phone"], PLANTED["card"]]) == []


def test_mlflow_only_traces_left_to_mlflow_are_redacted_by_its_span_processor(store, scan, monkeypatch):
    """mlflow_traces = "dspy": MLflow exports traces without DSPy spans itself (to its own default
    store, ./mlflow.db here); the plugin's MLflow span processor redacts them first."""
    monkeypatch.setenv("DSPY_TRACEKIT_MLFLOW_TRACES", "dspy")
    tk.enable(plugins=["redact"], tracking_uri=f"sqlite:///{store.parent / 'tracekit.db'}")
    _user_function()
    mlflow.flush_trace_async_logging()
    trace = mlflow.get_trace(mlflow.get_last_active_trace_id())
    tk.disable()
    assert trace is not None
    _assert_user_function_redacted(trace, store, scan)


def test_disable_removes_the_mlflow_span_processor_and_keeps_the_users(store, monkeypatch):
    from mlflow.tracing.config import get_config

    def users_processor(span):
        return None

    monkeypatch.setenv("DSPY_TRACEKIT_MLFLOW_TRACES", "dspy")  # the processor serves only this mode
    mlflow.tracing.configure(span_processors=[users_processor])
    tk.enable(plugins=["redact"], tracking_uri=f"sqlite:///{store}")
    assert [p.__name__ for p in get_config().span_processors] == ["users_processor", "redact_live_span"]
    tk.disable()
    assert get_config().span_processors == [users_processor]


def test_mlflow_set_tracking_uri_does_not_drop_the_processor(store, monkeypatch):
    """``mlflow.set_tracking_uri`` resets MLflow's tracing config (span processors included)."""
    from mlflow.tracing.config import get_config

    monkeypatch.setenv("DSPY_TRACEKIT_MLFLOW_TRACES", "dspy")
    tk.enable(plugins=["redact"], tracking_uri=f"sqlite:///{store}")
    mlflow.set_tracking_uri(f"sqlite:///{store.parent / 'other.db'}")
    assert [p.__name__ for p in get_config().span_processors] == ["redact_live_span"]
    tk.disable()
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    assert get_config().span_processors == []


def test_mlflow_spans_can_be_left_alone(store):
    from mlflow.tracing.config import get_config

    tk.enable(plugins=["redact"], tracking_uri=f"sqlite:///{store}", config={"redact": {"mlflow_spans": False}})
    assert get_config().span_processors == []


def test_bad_config_fails_enable_naming_the_key(store):
    with pytest.raises(ValueError, match=r"redact\.patterns\[0\]\.regex: invalid regular expression"):
        tk.enable(plugins=["redact"], tracking_uri=f"sqlite:///{store}",
                  config={"redact": {"patterns": [{"name": "X", "regex": "(oops"}]}})


def test_process_trace_redacts_every_field_and_counts_per_span():
    from dspy_tracekit.records import SpanRecord, TraceRecord

    trace = TraceRecord()
    trace.tags = {"user_id": PLANTED["email"], "tab": "billing"}
    root = SpanRecord(trace, None, "root", "module")
    trace.root = root
    child = SpanRecord(trace, root.span_id, "lm", "lm")
    trace.spans = [root, child]
    root.inputs = {"message": f"call {PLANTED['phone']}"}
    root.outputs = {"answer": "fine"}
    child.params = {"temperature": 0.0, "user": PLANTED["email"]}
    child.attributes = {"note": PLANTED["ip"], "redaction.counts": {"FAKE": 9}}
    child.error = {"type": "ValueError", "message": f"bad card {PLANTED['card']}",
                   "traceback": f"Traceback ...\nValueError: bad card {PLANTED['card']}"}
    child.tags = {"user_id": PLANTED["email"]}
    for s in trace.spans:
        s.materialized = True

    tracekit_process_trace(trace)
    pseudonym = trace.tags["user_id"]
    assert pseudonym.startswith("ps_") and len(pseudonym) == 27  # an identifier: a pseudonym, not a marker
    assert trace.tags == {"user_id": pseudonym, "tab": "billing"}
    assert root.inputs == {"message": "call <PHONE>"}
    assert child.params == {"temperature": 0.0, "user": "<EMAIL>"}
    assert child.error["message"] == "bad card <CREDIT_CARD>" and PLANTED["card"] not in child.error["traceback"]
    assert child.tags == {"user_id": pseudonym}
    assert root.attributes["redaction.counts"] == {"PHONE": 1, "PSEUDONYM": 1}  # trace tags count on the root
    assert child.attributes == {"note": "<IP_ADDRESS>",
                                "redaction.counts": {"EMAIL": 1, "PSEUDONYM": 1, "IP_ADDRESS": 1, "CREDIT_CARD": 2}}


def test_redactor_is_what_the_plugin_uses_for_text():
    assert Redactor().redact_text(_message()).count("<") >= 10


def test_plugin_has_no_request_path_hooks():
    import dspy_tracekit_redact as plugin

    hooks = {name for name in dir(plugin) if name.startswith("tracekit_")}
    assert hooks == {"tracekit_configure", "tracekit_process_trace", "tracekit_shutdown", "tracekit_counters"}


@pytest.mark.parametrize("key,value", [("ner", True), ("ner", False), ("ner_entities", ["PERSON"]), ("ner_score", 0.5)])
def test_the_removed_ner_settings_stop_enable_saying_why(store, key, value):
    with pytest.raises(ValueError, match=rf"redact\.{key}: the NER backend \(Presidio\) was removed"):
        tk.enable(plugins=["redact"], tracking_uri=f"sqlite:///{store}", config={"redact": {key: value}})
