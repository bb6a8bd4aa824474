"""Context identifiers become stable keyed-HMAC pseudonyms: joinable, never the identifier itself."""

from __future__ import annotations

import os
import stat

import dspy
import pytest
from dspy_tracekit_redact import Redactor, default_key_path, pseudonym, tracekit_process_trace
from dspy_tracekit_redact._pseudonym import Pseudonymizer, load_key

import dspy_tracekit as tk

EMAIL = "jane.roe@example.com"


def _program_run(uri: str, experiment: str, config: dict | None = None, **tags) -> None:
    tk.enable(plugins=["redact"], tracking_uri=uri, experiment=experiment, config={"redact": config or {}})
    lm = dspy.utils.DummyLM([{"answer": "ok"}])
    with dspy.context(lm=lm), tk.context(**tags):
        dspy.Predict("question -> answer")(question="where is my parcel?")
    assert tk.flush(30)
    tk.disable()


def _traces(uri: str, experiment: str):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return [client.get_trace(t.info.trace_id) for t in client.search_traces(locations=[exp.experiment_id])]


def test_the_key_is_made_once_readable_by_the_owner_only(tmp_path):
    path = tmp_path / "k" / "pseudonym.key"
    key, got = load_key(path, create=True)
    assert got == path and len(key) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key(path, create=True)[0] == key  # not made again
    assert load_key(path)[0] == key


def test_the_default_key_lives_in_the_users_config_dir(tmp_path):
    assert default_key_path() == tmp_path / "config" / "dspy-tracekit" / "pseudonym.key"  # XDG_CONFIG_HOME


def test_same_value_same_pseudonym_different_kinds_differ():
    pz = Pseudonymizer(b"k" * 32)
    a = pz.pseudonym("user", EMAIL)
    assert a == pz.pseudonym("user", EMAIL.upper()) == pz.pseudonym("user", f" {EMAIL} ")
    assert a != pz.pseudonym("session", EMAIL)
    assert a != Pseudonymizer(b"j" * 32).pseudonym("user", EMAIL)
    assert pz.pseudonym("user", a) == a  # processing a trace twice keeps the pseudonym
    assert pz.kind("user_id") == pz.kind("user") == pz.kind("user.id") == pz.kind("mlflow.trace.user") == "user"
    assert pz.kind("tracekit.context.session_id") == "session"
    assert pz.kind("tab") is None


def test_a_missing_key_file_stops_enable_naming_the_key_and_the_file(store, tmp_path):
    missing = tmp_path / "nowhere" / "pseudonym.key"
    with pytest.raises(ValueError, match=r"redact\.pseudonym_key_file: no pseudonym key at this path") as info:
        tk.enable(plugins=["redact"], tracking_uri=f"sqlite:///{store}",
                  config={"redact": {"pseudonym_key_file": str(missing)}})
    assert str(missing) in str(info.value)


@pytest.mark.parametrize("content", ["not a key", "ab" * 31, ""])
def test_a_key_file_without_a_key_stops_enable(store, tmp_path, content):
    bad = tmp_path / "bad.key"
    bad.write_text(content)
    with pytest.raises(ValueError, match=r"redact\.pseudonym_key_file: not a pseudonym key") as info:
        tk.enable(plugins=["redact"], tracking_uri=f"sqlite:///{store}",
                  config={"redact": {"pseudonym_key_file": str(bad)}})
    assert str(bad) in str(info.value)


def test_an_unreadable_key_file_stops_enable(store, tmp_path):
    unreadable = tmp_path / "dir.key"
    unreadable.mkdir()  # a directory cannot be read as a file, even by root
    with pytest.raises(ValueError, match=r"redact\.pseudonym_key_file: cannot read the pseudonym key"):
        tk.enable(plugins=["redact"], tracking_uri=f"sqlite:///{store}",
                  config={"redact": {"pseudonym_key_file": str(unreadable)}})


def test_bad_pseudonym_settings_name_the_key():
    with pytest.raises(ValueError, match=r"redact\.pseudonyms: must be true or false"):
        Redactor({"pseudonyms": "maybe"})
    with pytest.raises(ValueError, match=r"redact\.pseudonym_keys"):
        Redactor({"pseudonym_keys": "org_id"})
    with pytest.raises(ValueError, match=r"redact\.pseudonym_key_file: must be a file path"):
        Redactor({"pseudonym_key_file": 3})


def test_identifiers_reach_the_store_as_pseudonyms_everywhere(store, scan):
    uri = f"sqlite:///{store}"
    _program_run(uri, "pseudo", {"pseudonym_keys": ["org_id"]}, user_id=EMAIL, session_id="sess-0042",
                 tenant="acme-corp", org_id="org-777", tab="billing")
    (trace,) = _traces(uri, "pseudo")
    user, session = pseudonym(EMAIL), pseudonym("sess-0042", "session")
    tenant, org = pseudonym("acme-corp", "tenant"), pseudonym("org-777", "org_id")
    assert trace.info.trace_metadata["mlflow.trace.user"] == user  # what MLflow's UI groups by
    assert trace.info.trace_metadata["mlflow.trace.session"] == session
    tags = trace.info.tags
    assert (tags["user_id"], tags["session_id"], tags["tenant"], tags["org_id"], tags["tab"]) == (
        user, session, tenant, org, "billing")
    for span in trace.data.spans:
        assert span.attributes["tracekit.context.user_id"] == user
        assert span.attributes["tracekit.context.org_id"] == org
    assert scan.leaks(store, [EMAIL, "sess-0042", "acme-corp", "org-777"]) == []
    assert default_key_path().exists()
    key = default_key_path().read_bytes().strip()
    config_dir = default_key_path().parent.parent
    stored = b"".join(p.read_bytes() for p in store.parent.rglob("*")
                      if p.is_file() and config_dir not in p.parents)
    assert b"SQLite format 3" in stored and key not in stored  # the key is never in the trace store


def test_the_same_user_gets_the_same_pseudonym_after_enable_again(store):
    uri = f"sqlite:///{store}"
    _program_run(uri, "twice", user_id=EMAIL)
    _program_run(uri, "twice", user_id=EMAIL)
    users = {t.info.trace_metadata["mlflow.trace.user"] for t in _traces(uri, "twice")}
    assert users == {pseudonym(EMAIL)}


def test_pseudonyms_off_keeps_todays_redaction(store):
    uri = f"sqlite:///{store}"
    _program_run(uri, "off", {"pseudonyms": False}, user_id=EMAIL)
    (trace,) = _traces(uri, "off")
    assert trace.info.trace_metadata["mlflow.trace.user"] == "<EMAIL>"
    assert not default_key_path().exists()  # no key made when none is needed


def test_free_text_pii_keeps_its_marker_next_to_a_pseudonymized_user(monkeypatch):
    from dspy_tracekit_redact import _plugin

    from dspy_tracekit.records import SpanRecord, TraceRecord

    monkeypatch.setattr(_plugin._state, "redactor", None)  # the defaults, with this test's key

    class TraceWithMetadata(TraceRecord):  # TraceRecord.metadata arrives with issue #10
        pass

    trace = TraceRecord() if hasattr(TraceRecord(), "metadata") else TraceWithMetadata()
    trace.tags = {"user_id": EMAIL}
    root = SpanRecord(trace, None, "root", "module")
    trace.root = root
    trace.spans = [root]
    root.inputs = {"message": f"I am {EMAIL}"}
    root.attributes = {"user.id": EMAIL, "session.id": "s-1", "note": EMAIL}
    root.materialized = True
    trace.metadata = {"mlflow.trace.user": EMAIL, "mlflow.trace.session": "s-1", "source": f"from {EMAIL}"}
    tracekit_process_trace(trace)
    user = pseudonym(EMAIL)
    assert trace.tags == {"user_id": user}
    assert root.inputs == {"message": "I am <EMAIL>"}
    assert root.attributes["user.id"] == user and root.attributes["note"] == "<EMAIL>"
    assert root.attributes["session.id"] == pseudonym("s-1", "session")
    assert trace.metadata == {"mlflow.trace.user": user, "mlflow.trace.session": pseudonym("s-1", "session"),
                              "source": "from <EMAIL>"}


def test_doctor_checks_the_key_file_and_creates_none(tmp_path):
    from dspy_tracekit_redact import tracekit_configure

    from dspy_tracekit.records import Settings

    dry = Settings(tracking_uri=f"sqlite:///{tmp_path}/x.db", experiment="x", dry_run=True)
    tracekit_configure({}, dry)
    assert not default_key_path().exists()
    with pytest.raises(ValueError, match=r"redact\.pseudonym_key_file: no pseudonym key"):
        tracekit_configure({"pseudonym_key_file": str(tmp_path / "missing.key")}, dry)


def _mlflow_only_handler(customer: str) -> None:
    """A trace made with MLflow's API alone: identifiers and PII in trace tags, metadata and attributes."""
    import mlflow

    @mlflow.trace(name="handler")
    def handler(message):
        mlflow.update_current_trace(tags={"user_id": EMAIL, "customer": customer, "tab": "billing"},
                                    metadata={"contact": "call +44 20 7946 0958"}, user=EMAIL,
                                    session_id="sess-7f3a9")
        span = mlflow.get_current_active_span()
        span.set_attribute("user.id", EMAIL)
        span.set_attribute("session_id", "sess-7f3a9")
        span.set_attribute("note", f"from {customer}")
        return "ok"

    handler(f"I am {customer}")


@pytest.mark.parametrize("mode", ["all", "dspy"])
def test_mlflow_only_traces_get_the_same_pseudonyms_and_markers_in_both_modes(store, scan, monkeypatch, mode):
    """mlflow_traces = "all": the trace passes tracekit_process_trace; "dspy": MLflow exports it itself
    (to ./mlflow.db here) after the plugin's span processor, which must redact its trace tags and
    metadata and pseudonymize identifiers the same way."""
    import mlflow

    monkeypatch.setenv("DSPY_TRACEKIT_MLFLOW_TRACES", mode)
    uri = f"sqlite:///{store.parent / 'tracekit.db'}"
    tk.enable(plugins=["redact"], tracking_uri=uri, experiment="live")
    _mlflow_only_handler("bob.stone@example.org")
    assert tk.flush(30)
    mlflow.flush_trace_async_logging()
    if mode == "all":
        (trace,) = _traces(uri, "live")
    else:
        trace = mlflow.get_trace(mlflow.get_last_active_trace_id())
    tk.disable()
    user, session = pseudonym(EMAIL), pseudonym("sess-7f3a9", "session")
    tags, metadata = trace.info.tags, trace.info.trace_metadata
    assert (tags["user_id"], tags["customer"], tags["tab"]) == (user, "<EMAIL>", "billing")
    assert (metadata["mlflow.trace.user"], metadata["mlflow.trace.session"]) == (user, session)
    assert metadata["contact"] == "call <PHONE>"
    (span,) = trace.data.spans
    assert (span.attributes["user.id"], span.attributes["session_id"]) == (user, session)
    assert span.attributes["note"] == "from <EMAIL>"
    assert span.inputs == {"message": "I am <EMAIL>"}
    assert span.attributes["redaction.counts"] == {"PSEUDONYM": 5, "EMAIL": 3, "PHONE": 1}
    written = store.parent / ("tracekit.db" if mode == "all" else "mlflow.db")  # the whole directory is scanned
    assert scan.leaks(written, [EMAIL, "bob.stone@example.org", "sess-7f3a9", "7946 0958"]) == []


def test_a_failure_on_a_trace_mlflow_exports_itself_blanks_its_tags_and_metadata(store, scan, monkeypatch):
    """mlflow_traces = "dspy": MLflow swallows a span processor's exception and exports raw; the plugin
    fails closed itself, for the trace's tags and metadata too."""
    import mlflow
    from dspy_tracekit_redact import _plugin

    def broken(*args, **kwargs):
        raise RuntimeError("redactor broke")

    monkeypatch.setenv("DSPY_TRACEKIT_MLFLOW_TRACES", "dspy")
    tk.enable(plugins=["redact"], tracking_uri=f"sqlite:///{store.parent / 'tracekit.db'}")
    monkeypatch.setattr(_plugin, "_redact_tags", broken)  # what redacts trace tags and metadata
    _mlflow_only_handler("bob.stone@example.org")
    mlflow.flush_trace_async_logging()
    trace = mlflow.get_trace(mlflow.get_last_active_trace_id())
    failures = tk.counters().get("redact.mlflow_span_failures")
    tk.disable()
    assert failures == 1
    assert trace.info.tags["customer"] == trace.info.trace_metadata["mlflow.trace.user"] == "<REDACTION_FAILED>"
    assert trace.data.spans[0].inputs == "<REDACTION_FAILED>"
    assert scan.leaks(store, [EMAIL, "bob.stone@example.org", "sess-7f3a9", "7946 0958"]) == []
