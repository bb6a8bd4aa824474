"""A new SQLite store created from the shipped schema script is the store MLflow's migrations make."""

from __future__ import annotations

import sqlite3

import sqlalchemy

import dspy_tracekit as tk
from dspy_tracekit.mlflow import schema as mlflow_schema


def _migrated(path) -> None:
    from mlflow.store.db.utils import _initialize_tables

    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    _initialize_tables(engine)
    engine.dispose()


def _unordered(sql):
    """DDL as the set of its lines: two runs of MLflow's own migrations order CHECK constraints and
    indexes differently (batch migrations recreate tables from reflected, unordered metadata)."""
    return None if sql is None else sorted(line.strip().rstrip(",") for line in sql.splitlines())


def _shape(path) -> dict:
    """Tables, columns, indexes, foreign keys, rows and the alembic version of a SQLite database."""
    con = sqlite3.connect(path)
    try:
        master = sorted(((t, n, tb, _unordered(sql)) for t, n, tb, sql in
                         con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")), key=repr)
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = {"master": master, "version": con.execute("SELECT version_num FROM alembic_version").fetchall()}
        for t in tables:
            out[f"{t}.columns"] = con.execute(f'PRAGMA table_info("{t}")').fetchall()
            out[f"{t}.fks"] = con.execute(f'PRAGMA foreign_key_list("{t}")').fetchall()
            indexes = con.execute(f'PRAGMA index_list("{t}")').fetchall()
            # without PRAGMA index_list's seq (see _unordered)
            out[f"{t}.indexes"] = sorted(idx[1:] for idx in indexes)
            for idx in indexes:
                out[f"{t}.{idx[1]}"] = con.execute(f'PRAGMA index_xinfo("{idx[1]}")').fetchall()
            out[f"{t}.rows"] = sorted(con.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)
        return out
    finally:
        con.close()


def test_shipped_schema_script_exists_for_the_installed_mlflow():
    revision = mlflow_schema.head_revision()
    assert mlflow_schema.script_for(revision) is not None, (
        f"no mlflow_schemas/{revision}.sql: run python -m dspy_tracekit.mlflow.schema with this MLflow")


def test_store_created_from_the_script_equals_the_migrated_store(tmp_path):
    _migrated(tmp_path / "migrated.db")
    _migrated(tmp_path / "migrated-again.db")
    assert _shape(tmp_path / "migrated-again.db") == _shape(tmp_path / "migrated.db")  # the yardstick holds
    assert mlflow_schema.create_sqlite_store(f"sqlite:///{tmp_path / 'fast.db'}") == "created"
    migrated, fast = _shape(tmp_path / "migrated.db"), _shape(tmp_path / "fast.db")
    assert migrated.keys() == fast.keys()
    for key in migrated:
        assert fast[key] == migrated[key], key


def test_existing_store_is_left_alone(tmp_path):
    path = tmp_path / "mine.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    assert mlflow_schema.create_sqlite_store(f"sqlite:///{path}") == "exists"
    assert [r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")] == ["t"]
    assert mlflow_schema.create_sqlite_store("postgresql://u@h/db") == "not sqlite"


def test_enable_on_a_new_store_writes_traces_mlflow_reads(tmp_path, caplog):
    import dspy
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'sub' / 'new.db'}"
    with caplog.at_level("INFO", logger="mlflow"):
        tk.enable(plugins=[], tracking_uri=uri, experiment="fresh")
        lm = dspy.utils.DummyLM([{"answer": "4"}] * 3)
        dspy.Predict("question -> answer")(question="2+2?", lm=lm)
        assert tk.flush(30)
    assert not [r for r in caplog.records if "Creating initial MLflow database tables" in r.getMessage()]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("fresh")
    traces = client.search_traces(locations=[exp.experiment_id])
    assert len(traces) == 1
    assert client.get_experiment_by_name("Default") is not None  # MLflow's own start-up still ran


def test_head_revision_read_from_the_migration_files_is_alembics():
    from mlflow.store.db.utils import _get_latest_schema_revision

    assert mlflow_schema._head_from_files() == _get_latest_schema_revision()


def test_enable_reads_the_migration_files_once_for_the_create_and_the_check(tmp_path, monkeypatch):
    from pathlib import Path

    read: list[str] = []
    real = Path.read_text

    def counting(self, *args, **kwargs):
        if self.parent.name == "versions" and self.parent.parent.name == "db_migrations":
            read.append(self.name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    monkeypatch.setattr(mlflow_schema, "_heads", {}, raising=False)
    assert tk.enable(plugins=[], tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="once")
    try:
        assert mlflow_schema.create_sqlite_store(f"sqlite:///{tmp_path}/other.db") == "created"
    finally:
        tk.disable()
    assert read and len(read) == len(set(read))  # every migration file once, for three head lookups


_FIRST_ENABLE = r"""
import json, sys
import dspy
import dspy_tracekit as tk

uri, spool = sys.argv[1], sys.argv[2]
tk.enable(plugins=["redact", "sample", "cost", "buffer"], tracking_uri=uri, experiment="first",
          config={"buffer": {"spool_dir": spool}, "sample": {"ratio": 1.0}})
at_enable = {m: m in sys.modules for m in ("litellm", "mlflow.store.tracking.sqlalchemy_store", "alembic")}
dspy.Predict("question -> answer")(question="2+2?", lm=dspy.utils.DummyLM([{"answer": "4"}]))
flushed = tk.flush(120)
tk.disable()
print(json.dumps({"at_enable": at_enable, "flushed": flushed}))
"""


def test_first_enable_on_a_new_sqlite_store_leaves_mlflows_sql_store_and_litellm_to_delivery(tmp_path):
    """enable() on a new SQLite store imports neither LiteLLM nor MLflow's SQL store (seconds); the
    buffer's worker opens the store on the first export and the trace is stored."""
    import json
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'new.db'}"
    out = subprocess.run([sys.executable, "-c", _FIRST_ENABLE, uri, str(tmp_path / "spool")],
                         capture_output=True, text=True, timeout=600, check=False)
    lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
    assert lines, out.stderr[-3000:]
    result = json.loads(lines[-1])
    assert result["at_enable"] == {"litellm": False, "mlflow.store.tracking.sqlalchemy_store": False,
                                   "alembic": False}
    assert result["flushed"] is True
    client = MlflowClient(uri)
    assert len(client.search_traces(locations=[client.get_experiment_by_name("first").experiment_id])) == 1


def test_enable_reports_a_sqlite_store_that_is_not_a_database(tmp_path, caplog):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 200)
    uri = f"sqlite:///{path}"
    with caplog.at_level("WARNING", logger="dspy_tracekit"):
        tk.enable(plugins=[], tracking_uri=uri, experiment="x")
        tk.disable()
    warned = [r.getMessage() for r in caplog.records if "not usable yet" in r.getMessage()]
    assert len(warned) == 1 and str(path) in warned[0] and "not a database" in warned[0]


def test_enable_reports_a_sqlite_store_of_an_older_schema(tmp_path, caplog):
    path = tmp_path / "old.db"
    assert mlflow_schema.create_sqlite_store(f"sqlite:///{path}") == "created"
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = 'abc123older'")
    con.commit()
    con.close()
    with caplog.at_level("WARNING", logger="dspy_tracekit"):
        tk.enable(plugins=[], tracking_uri=f"sqlite:///{path}", experiment="x")
        tk.disable()
    warned = [r.getMessage() for r in caplog.records if "not usable yet" in r.getMessage()]
    assert len(warned) == 1 and "abc123older" in warned[0] and "mlflow db upgrade" in warned[0]
