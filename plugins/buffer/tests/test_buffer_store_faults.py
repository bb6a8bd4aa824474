"""The store fast path under store faults: a locked SQLite file, a full disk, a read-only file system, a
dropped PostgreSQL connection. The buffer never loses a trace it holds: each one is stored once
(retried, or spooled and replayed) or counted and kept in the dead-letter file.

The full-disk and read-only tests mount a small tmpfs for the store (root only; they skip elsewhere).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time

import pytest
from buffer_testkit import make_program, run_requests, store_trace_ids

import dspy_tracekit as tk
from dspy_tracekit.mlflow import store as mlflow_store

FAST_RETRIES = {"retry_attempts": 2, "flush_interval": 0.05, "retry_initial_backoff": 0.05,
                "retry_max_backoff": 0.2}


def _enable(uri: str, experiment: str, spool_dir: str, **extra) -> None:
    tk.enable(plugins=["buffer"], tracking_uri=uri, experiment=experiment,
              config={"buffer": {"spool_dir": spool_dir, **FAST_RETRIES, **extra}})


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, tk.counters()
        time.sleep(0.05)


def _warm(uri: str, experiment: str, program, lm) -> None:
    """First traces: the store is open and the fast path's schema check has passed."""
    run_requests(program, lm, 3, prefix="warm")
    assert tk.flush(60)
    assert mlflow_store.fast_path_available(uri), mlflow_store.fast_path_reason(uri)


def test_locked_sqlite_store_spools_and_then_stores_every_trace_once(tmp_path, store, spool_dir):
    uri, experiment = store
    path = uri[len("sqlite:///"):]
    uri = f"{uri}?timeout=0.2"  # SQLite's busy timeout (5 s by default) would only make this test slow
    _enable(uri, experiment, spool_dir)
    program, lm = make_program()
    _warm(uri, experiment, program, lm)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        run_requests(program, lm, 10, prefix="locked")
        _wait_for(lambda: tk.counters().get("buffer.spilled", 0) >= 10)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert tk.flush(60)
    c = tk.counters()
    ids = store_trace_ids(uri, experiment)
    assert len(ids) == len(set(ids)) == 13
    assert c["buffer.store_unavailable_events"] >= 1 and c["buffer.replayed"] == 10
    assert c.get("buffer.dead_lettered", 0) == 0


@pytest.fixture
def small_disk(tmp_path, _template_db):
    """A migrated store alone on a 2 MiB tmpfs (root can mount one)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    size = os.path.getsize(_template_db) + 2 * 1024 * 1024
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        shutil.copy(_template_db, mount / "mlflow.db")
        yield mount
    finally:
        tk.disable(timeout=5.0)
        mlflow_store.reset()
        _close_pooled_connections()
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _close_pooled_connections() -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    for engine in list(getattr(SqlAlchemyStore, "_engine_map", {}).values()):
        engine.dispose()


def _fill(directory) -> str:
    filler = os.path.join(directory, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
        try:
            os.fsync(f.fileno())
        except OSError:
            pass
    return filler


def test_full_disk_under_the_store_spools_and_replays_once_space_is_back(small_disk, spool_dir):
    uri, experiment = f"sqlite:///{small_disk / 'mlflow.db'}", "full-disk"
    _enable(uri, experiment, spool_dir)
    program, lm = make_program()
    _warm(uri, experiment, program, lm)
    filler = _fill(small_disk)
    run_requests(program, lm, 10, prefix="full")
    _wait_for(lambda: tk.counters().get("buffer.spilled", 0) >= 10)
    c = tk.counters()
    assert c.get("buffer.dead_lettered", 0) == 0 and c["buffer.store_unavailable_events"] >= 1
    os.unlink(filler)  # space is back: the spool is replayed
    assert tk.flush(60)
    ids = store_trace_ids(uri, experiment)
    assert len(ids) == len(set(ids)) == 13
    assert tk.counters()["buffer.replayed"] == 10


def test_read_only_store_dead_letters_every_trace_with_the_reason(small_disk, tmp_path, spool_dir):
    uri, experiment = f"sqlite:///{small_disk / 'mlflow.db'}", "read-only"
    dead = tmp_path / "dead-letters.jsonl"
    _enable(uri, experiment, spool_dir, dead_letter_path=str(dead))
    program, lm = make_program()
    _warm(uri, experiment, program, lm)
    _close_pooled_connections()  # a file system with files open for writing cannot be made read-only
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    run_requests(program, lm, 5, prefix="ro")
    assert tk.flush(60)
    c = tk.counters()
    assert c["buffer.dead_lettered"] == 5
    entries = [json.loads(line) for line in dead.read_text().splitlines()]
    assert len(entries) == 5 and all("readonly database" in e["error"] for e in entries)
    assert {e["trace"]["trace_id"] for e in entries}.isdisjoint(store_trace_ids(uri, experiment))
    assert len(store_trace_ids(uri, experiment)) == 3


POSTGRES = os.environ.get("TRACEKIT_TEST_POSTGRES")


@pytest.mark.skipif(not POSTGRES, reason="no PostgreSQL: set TRACEKIT_TEST_POSTGRES (.ci/postgres-start)")
def test_dropped_postgresql_connections_lose_no_trace(spool_dir):
    import psycopg
    from sqlalchemy.engine import make_url

    database = f"tk_dropped_{os.getpid()}"
    with psycopg.connect(POSTGRES, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{database}"')
        con.execute(f'CREATE DATABASE "{database}"')
    uri = make_url(POSTGRES).set(database=database).render_as_string(hide_password=False)
    _enable(uri, "dropped", spool_dir)
    program, lm = make_program()
    _warm(uri, "dropped", program, lm)
    for round_ in range(3):
        with psycopg.connect(POSTGRES, autocommit=True) as con:  # the server drops every pooled connection
            dropped = con.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                  "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)).fetchone()[0]
        assert dropped >= 1
        run_requests(program, lm, 5, prefix=f"drop{round_}")
        assert tk.flush(60)
    c = tk.counters()
    ids = store_trace_ids(uri, "dropped")
    assert len(ids) == len(set(ids)) == 18
    assert c.get("buffer.dead_lettered", 0) == 0
    tk.disable()
    mlflow_store.reset()
    _close_pooled_connections()
