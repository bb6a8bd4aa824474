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
