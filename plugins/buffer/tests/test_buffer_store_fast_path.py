"""The store fast path (``dspy_tracekit.mlflow.store``) writes exactly the rows MLflow's log_spans writes.

Same traces, three copies of one migrated store (SQLite, and PostgreSQL when ``TRACEKIT_TEST_POSTGRES`` names
a server): one written by ``TracingClient.log_spans``, one
by the fast path from MLflow ``Span`` entities, one by the fast path straight from tracekit's records
(``mlflow_rows.trace_views``); every table is compared row by row, and MLflow's readers are checked.
The traces hold the values that MLflow's translation treats specially: strings that are themselves
JSON, non-ASCII text, an error, a plugin attribute, a "model" key in inputs.
"""

from __future__ import annotations

import os
import shutil
import sqlite3

import dspy
import pytest
from buffer_testkit import make_program

import dspy_tracekit as tk
from dspy_tracekit import hookimpl
from dspy_tracekit.mlflow import plugin as mlflow_core
from dspy_tracekit.mlflow import rows as mlflow_rows
from dspy_tracekit.mlflow import store as mlflow_store
from dspy_tracekit.records import TraceRecord


class Capture:
    def __init__(self):
        self.dicts = []

    @hookimpl
    def tracekit_process_trace(self, trace):
        for span in trace.spans:
            # the third trace's LM calls stay unpriced: MLflow's store prices them (LiteLLM's table)
            if span.kind == "lm" and trace.tags.get("session_id") != "s-2":
                span.cost = {"input_cost": 0.001, "output_cost": 0.002, "total_cost": 0.003}
        self.dicts.append(trace.to_dict())


def _traces(tmp_path, store):
    capture = Capture()
    tk.enable(plugins=[capture], tracking_uri=store[0], experiment="capture")
    lm = dspy.LM("openai/gpt-4o-mini", cache=False, api_key="x",
                 mock_response="[[ ## reasoning ## ]]\nr\n\n[[ ## intent ## ]]\nbuy ü\n\n[[ ## completed ## ]]")
    program, _ = make_program()
    with dspy.context(lm=lm):
        with tk.context(session_id="s-1", user_id="u-7", user_role="admin"):
            program(message="hello, I want to buy")
        program(message="no context here")
        with tk.context(session_id="s-2"):
            _odd_values(program, lm)
    # DummyLM reports no tokens (MLflow's store never prices those), twice: memoized helpers hit; a long
    # tag value (past the memos' length), a tag key MLflow rejects, and a trace name tag
    _, dummy = make_program()
    with dspy.context(lm=dummy):
        for i in range(2):
            with tk.context(**{"long_tag": "ü" * 300 + str(i), "bad key/..": "x", "mlflow.traceName": f"n{i}"}):
                program(message=f"dummy {i}")
    assert tk.flush(30)
    tk.disable()
    return [TraceRecord.from_dict(d) for d in capture.dicts]


def _odd_values(program, lm):
    @tk.trace(name="json_like", span_type="TOOL")
    def json_like(text):
        return text

    @tk.trace(name="fails")
    def fails():
        raise ValueError("no such workflow ü")

    with tk.span("outer", span_type="CHAIN") as outer:
        outer.set_inputs({"model": "gpt-x", "q": "mit Ümlaut \u2028 \x01"})
        json_like('{"a": 1}')
        json_like('"quoted"')
        json_like("[1, 2]")
        json_like(' {"padded": true}')
        json_like("{not json")
        json_like("42")
        try:
            fails()
        except ValueError:
            pass
        _mlflow_spans()
        program(message="und noch einmal")


def _mlflow_spans():
    """Spans made through MLflow's own API: plain values, a plugin-like key, a translator's key, an event."""
    import mlflow
    from mlflow.entities import SpanEvent

    with mlflow.start_span("user_tool", span_type="TOOL") as span:
        span.set_inputs({"q": "look it up"})
        span.set_outputs("found it")
        span.set_attribute("custom.key", {"a": [1, 2]})
    with mlflow.start_span("user_llm") as span:
        span.set_attribute("gen_ai.request.model", "gpt-4o-mini")  # an OTel GenAI key: MLflow translates
        span.set_outputs({"text": "hi"})
    with mlflow.start_span("user_event") as span:
        span.add_event(SpanEvent("note", attributes={"k": "v"}))


WRITE_TIME = {"creation_time", "last_update_time", "enqueued_at_ms", "created_at_ms", "updated_at_ms"}


def _dump(path) -> dict[str, list]:
    con = sqlite3.connect(path)
    tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
    out = {}
    for table in tables:
        if table == "alembic_version":
            continue
        cols = [r[1] for r in con.execute(f"pragma table_info({table})")]
        rows = con.execute(f"select * from {table}").fetchall()
        # wall-clock time of the write itself differs between the two runs
        out[table] = sorted((tuple((c, v) for c, v in zip(cols, r) if c not in WRITE_TIME) for r in rows),
                            key=repr)
    con.close()
    return out


POSTGRES = os.environ.get("TRACEKIT_TEST_POSTGRES")
MYSQL = os.environ.get("TRACEKIT_TEST_MYSQL")


class SqliteCopies:
    """Fresh copies of the migrated SQLite template."""

    def __init__(self, tmp_path, template):
        self.tmp_path, self.template = tmp_path, template

    def new(self, name: str) -> str:
        path = self.tmp_path / f"{name}.db"
        shutil.copy(self.template, path)
        return f"sqlite:///{path}"

    def dump(self, uri: str) -> dict[str, list]:
        return _dump(uri[len("sqlite:///"):])


class PostgresCopies:
    """Databases on a real PostgreSQL server, each a copy (CREATE DATABASE ... TEMPLATE) of one that
    MLflow migrated."""

    def __init__(self, superuser_uri: str, template: str):
        self.superuser_uri, self.template = superuser_uri, template
        self.made: list[str] = []

    def new(self, name: str) -> str:
        import psycopg

        db = f"tk_{name}_{os.getpid()}"
        with psycopg.connect(self.superuser_uri, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{db}"')
            con.execute(f'CREATE DATABASE "{db}" TEMPLATE "{self.template}"')
        self.made.append(db)
        return _database_uri(self.superuser_uri, db)

    def dump(self, uri: str) -> dict[str, list]:
        import sqlalchemy

        engine = sqlalchemy.create_engine(uri)
        try:
            with engine.connect() as con:
                tables = sqlalchemy.inspect(con).get_table_names()
                out = {}
                quote = con.dialect.identifier_preparer.quote
                for table in tables:
                    if table == "alembic_version":
                        continue
                    result = con.execute(sqlalchemy.text(f"SELECT * FROM {quote(table)}"))
                    cols = list(result.keys())
                    out[table] = sorted((tuple((c, v) for c, v in zip(cols, r) if c not in WRITE_TIME)
                                         for r in result), key=repr)
                return out
        finally:
            engine.dispose()


class MysqlCopies(PostgresCopies):
    """Databases on a real MySQL/MariaDB server, each a copy (``SHOW CREATE TABLE``, then ``INSERT ... SELECT``)
    of one that MLflow migrated."""

    def new(self, name: str) -> str:
        db = f"tk_{name}_{os.getpid()}"
        con = _mysql_connect(self.superuser_uri)
        try:
            cur = con.cursor()
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
            cur.execute(f"CREATE DATABASE `{db}`")
            cur.execute("SET FOREIGN_KEY_CHECKS = 0")
            # MLflow's Default experiment has id 0, which an AUTO_INCREMENT column otherwise renumbers
            cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')")
            cur.execute(f"SHOW FULL TABLES FROM `{self.template}` WHERE Table_type = 'BASE TABLE'")
            for (table, _) in cur.fetchall():
                cur.execute(f"SHOW CREATE TABLE `{self.template}`.`{table}`")
                ddl = cur.fetchone()[1]
                cur.execute(f"USE `{db}`")
                cur.execute(ddl)
                cur.execute(f"INSERT INTO `{db}`.`{table}` SELECT * FROM `{self.template}`.`{table}`")
        finally:
            con.close()
        self.made.append(db)
        return _database_uri(self.superuser_uri, db)


def _mysql_connect(uri: str):
    import pymysql
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    return pymysql.connect(host=url.host, port=url.port or 3306, user=url.username, password=url.password or "",
                           autocommit=True)


def _database_uri(superuser_uri: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(superuser_uri).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _postgres_template():
    """A database on the PostgreSQL server that MLflow migrated once (migrations take seconds)."""
    import psycopg
    from mlflow.tracking import MlflowClient

    template = f"tk_template_{os.getpid()}"
    with psycopg.connect(POSTGRES, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{template}"')
        con.execute(f'CREATE DATABASE "{template}"')
    uri = _database_uri(POSTGRES, template)
    MlflowClient(uri).search_experiments()
    import sqlalchemy
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    for engine in list(getattr(SqlAlchemyStore, "_engine_map", {}).values()):
        engine.dispose()  # CREATE DATABASE ... TEMPLATE needs the template without connections
    sqlalchemy.create_engine(uri).dispose()
    yield template


@pytest.fixture(scope="session")
def _mysql_template():
    """A database on the MySQL/MariaDB server that MLflow migrated once (migrations take many seconds)."""
    from mlflow.tracking import MlflowClient

    template = f"tk_template_{os.getpid()}"
    con = _mysql_connect(MYSQL)
    try:
        con.cursor().execute(f"DROP DATABASE IF EXISTS `{template}`")
        con.cursor().execute(f"CREATE DATABASE `{template}`")
    finally:
        con.close()
    MlflowClient(_database_uri(MYSQL, template)).search_experiments()
    yield template


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not POSTGRES, reason="no PostgreSQL: set TRACEKIT_TEST_POSTGRES (.ci/postgres-start starts one)")),
    pytest.param("mysql", marks=pytest.mark.skipif(
        not MYSQL, reason="no MySQL/MariaDB: set TRACEKIT_TEST_MYSQL (.ci/mysql-start starts one)"))])
def databases(request, tmp_path, _template_db):
    if request.param == "sqlite":
        yield SqliteCopies(tmp_path, _template_db)
        return
    if request.param == "mysql":
        copies = MysqlCopies(MYSQL, request.getfixturevalue("_mysql_template"))
    else:
        copies = PostgresCopies(POSTGRES, request.getfixturevalue("_postgres_template"))
    yield copies
    mlflow_store.reset()
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    for engine in list(getattr(SqlAlchemyStore, "_engine_map", {}).values()):
        engine.dispose()


def test_fast_path_writes_the_same_rows_as_mlflow_log_spans(tmp_path, store, databases):
    from mlflow.tracking import MlflowClient

    traces = _traces(tmp_path, store)
    assert len(traces) == 5
    assert {"user_tool", "user_llm", "user_event"} <= {s.name for s in traces[2].spans}
    assert any(s.events for s in traces[2].spans)
    traces[1].spans[-1].set_attribute("plugin.note", {"k": [1, 2.5, None]})  # a key of a plugin's own
    traces[1].spans[0].outputs = '{"looks": "like json"}'
    for trace in traces:
        trace.materialize()
    spans = [s for t in traces for s in mlflow_core.to_mlflow_spans(t)]
    n_spans = sum(len(t.spans) for t in traces)
    uris = []
    for name in ("reference", "fast_spans", "fast_records"):
        uri = databases.new(name)
        uris.append(uri)
        exp = MlflowClient(uri).create_experiment("same", artifact_location="/tmp/same-artifacts")
        client = mlflow_store.tracing_client(uri)
        if name == "reference":
            client.log_spans(exp, spans)
            continue
        assert mlflow_store.fast_path_available(uri), mlflow_store.fast_path_reason(uri)
        if name == "fast_spans":
            views = {}
            for span in spans:
                views.setdefault(span.trace_id, []).append(mlflow_rows.view_of_span(span))
            views = list(views.values())
        else:
            assert mlflow_rows.self_check(traces[0])
            views = [mlflow_rows.trace_views(t) for t in traces]
            plain = sum(1 for t in traces for s in t.spans if mlflow_rows._is_plain(
                s, mlflow_core.span_attribute_values(t, s)))
            assert plain >= n_spans - 5  # all but the error, the event, the GenAI key (and "model" input)
        assert mlflow_store.insert_views(uri, exp, views) is True
        assert mlflow_store.insert_views(uri, exp, views) is False  # exists: log_spans' job
    reference, *fast_ones = (databases.dump(u) for u in uris)
    for fast in fast_ones:
        assert reference.keys() == fast.keys()
        for table in reference:
            assert fast[table] == reference[table], (table, [sorted(set(a) ^ set(b)) for a, b in zip(fast[table], reference[table]) if a != b][:2])
    assert len(fast["spans"]) == n_spans and len(fast["trace_info"]) == 5
    tags = {(r["request_id"], r["key"]): r["value"] for r in (dict(row) for row in reference["trace_tags"])}
    assert tags[(traces[3].mlflow_trace_id, "long_tag")] == "ü" * 300 + "0"
    assert (traces[3].mlflow_trace_id, "bad key/..") not in tags  # MLflow skips it: so does the fast path
    info = {dict(r)["request_id"]: dict(r) for r in reference["trace_info"]}
    assert info[traces[4].mlflow_trace_id]["trace_name"] == "n1"

    client = MlflowClient(uris[2])
    got = client.get_trace(traces[0].mlflow_trace_id)
    assert len(got.data.spans) == 6
    assert got.info.token_usage["total_tokens"] == 30
    assert got.info.tags["user_role"] == "admin"
    found = client.search_traces(locations=[exp], filter_string="metadata.`mlflow.trace.user` = 'u-7'")
    assert [t.info.trace_id for t in found] == [traces[0].mlflow_trace_id]


def test_store_of_an_unknown_schema_falls_back_to_log_spans_with_one_warning(tmp_path, _template_db, caplog):
    import sqlite3

    from buffer_testkit import run_requests
    from mlflow.tracking import MlflowClient

    path = tmp_path / "changed.db"
    shutil.copy(_template_db, path)
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE spans ADD COLUMN added_later TEXT")
    con.commit()
    con.close()
    uri = f"sqlite:///{path}"
    with caplog.at_level("WARNING", logger="dspy_tracekit"):
        tk.enable(plugins=[], tracking_uri=uri, experiment="changed")
        program, lm = make_program()
        run_requests(program, lm, 3)
        assert tk.flush(30)
    assert not mlflow_store.fast_path_available(uri)
    assert "added_later" in mlflow_store.fast_path_reason(uri)
    warnings = [r for r in caplog.records if "store fast path is off" in r.getMessage()]
    assert len(warnings) == 1 and "spans" in warnings[0].getMessage()
    exp = MlflowClient(uri).get_experiment_by_name("changed").experiment_id
    assert len(MlflowClient(uri).search_traces(locations=[exp])) == 3


def test_a_trace_another_writer_created_meanwhile_goes_to_log_spans(tmp_path, store, databases, monkeypatch):
    """The fast path's existence check passes, then the insert collides: not an error, log_spans' job."""
    from mlflow.tracking import MlflowClient

    traces = _traces(tmp_path, store)[:1]
    uri = databases.new("race")
    exp = MlflowClient(uri).create_experiment("race")
    views = [mlflow_rows.trace_views(t) for t in traces]
    assert mlflow_store.insert_views(uri, exp, views) is True

    class NoRows:  # the existence check sees nothing, as if the other writer had not committed yet
        def filter(self, *a):
            return self

        def first(self):
            return None

    from sqlalchemy.orm import Session

    original = Session.query
    monkeypatch.setattr(Session, "query", lambda self, *a, **k: NoRows() if a and getattr(
        a[0], "key", None) == "request_id" else original(self, *a, **k))
    assert mlflow_store.insert_views(uri, exp, views) is False


def test_content_column_from_fragments_is_mlflows_encoding_of_the_span(tmp_path, store):
    """The fast path builds a direct span's ``spans.content`` from fragments; the text is what MLflow's
    ``TraceJSONEncoder`` makes of the span dict, for both of MLflow's settings (MSSQL escapes non-ASCII)."""
    from mlflow.tracing.utils import TraceJSONEncoder

    traces = _traces(tmp_path, store)
    for trace in traces:
        trace.materialize()
    odd = {"plain": '"x"', "quotes": 'say "hi" \\ back', "controls": "\x00\x01\t\n\u2028", "non_ascii": "ümlaut 漢字 🙂",
           "surrogate": "lone \ud800 half", "empty": ""}
    views = [v for t in traces for v in mlflow_rows.trace_views(t) if v.direct]
    assert len(views) > 20
    for ascii in (False, True):
        encoder = TraceJSONEncoder(ensure_ascii=ascii)
        content = mlflow_rows.content_encoder(encoder)
        assert content is not None
        for view in views:
            assert content(view.span_dict) == encoder.encode(view.span_dict)
        for key, text in odd.items():
            span_dict = {**views[0].span_dict, "name": text, "parent_span_id": None,
                         "attributes": {**views[0].span_dict["attributes"], key: text, "n": 7}}
            assert content(span_dict) == encoder.encode(span_dict), key
        empty = {**views[0].span_dict, "attributes": {}}
        assert content(empty) == encoder.encode(empty)


def test_an_experiment_removed_from_the_store_is_not_written_to_by_the_fast_path(tmp_path, store, _template_db):
    """The fast path reads an experiment's artifact location once; a trace for an experiment that is
    gone since then fails its insert (foreign key) and goes to MLflow's log_spans, which reports it."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    traces = _traces(tmp_path, store)
    for trace in traces:
        trace.materialize()
    uri = f"sqlite:///{tmp_path / 'gone.db'}"
    shutil.copy(_template_db, tmp_path / "gone.db")
    exp = MlflowClient(uri).create_experiment("gone")
    assert mlflow_store.insert_views(uri, exp, [mlflow_rows.trace_views(traces[0])]) is True
    con = sqlite3.connect(tmp_path / "gone.db")
    con.execute("PRAGMA foreign_keys = OFF")  # as `mlflow gc` would leave it: the experiment's rows are gone
    for table in ("spans", "trace_tags", "trace_request_metadata", "trace_info", "experiment_tags"):
        con.execute(f"DELETE FROM {table} WHERE " + ("experiment_id = ?" if table in ("spans", "trace_info")
                    else "request_id IN (SELECT request_id FROM trace_info WHERE experiment_id = ?)"
                    if table != "experiment_tags" else "experiment_id = ?"), (exp,))
    con.execute("DELETE FROM experiments WHERE experiment_id = ?", (exp,))
    con.commit()
    assert mlflow_store.insert_views(uri, exp, [mlflow_rows.trace_views(traces[1])]) is False
    with pytest.raises(MlflowException, match="No Experiment with id"):
        mlflow_store.log_spans(uri, exp, mlflow_core.to_mlflow_spans(traces[1]), fast=False)
    assert con.execute("SELECT count(*) FROM trace_info").fetchone()[0] == 0
    con.close()
