"""A new SQLite tracking store in one step: MLflow's migrated schema, replayed from a shipped SQL script.

MLflow creates a new SQLite store by running every alembic migration since its first schema (seconds
of DDL, paid by every new user, test store and CI run). The result is the same for every new store of
one alembic head revision, so tracekit ships it: ``schemas/<revision>.sql`` is the DDL and the
rows of a freshly migrated database (``sqlite_master`` in creation order, then every table's rows),
written by ``python -m dspy_tracekit.mlflow.schema`` with the MLflow version of that revision installed.
A store whose file does not exist yet, on an MLflow whose head revision has a script, is created from
it; anything else is left to MLflow. tests/test_mlflow_schema.py compares the result with a migration.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger("dspy_tracekit")
SCHEMA_DIR = Path(__file__).with_name("schemas")


_REVISION_LINE = re.compile(r"""^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+?)\s*$""", re.MULTILINE)
_QUOTED = re.compile(r"""["']([0-9A-Za-z_]+)["']""")


def head_revision() -> str | None:
    """The alembic head revision of the installed MLflow's migrations.

    Read from the migration files' ``revision`` / ``down_revision`` lines: asking alembic means
    importing MLflow's store and alembic (seconds in ``enable()``). Falls back to alembic when the
    files do not name exactly one head.
    """
    head = _head_from_files()
    if head is not None:
        return head
    try:
        from mlflow.store.db.utils import _get_latest_schema_revision

        return _get_latest_schema_revision()
    except Exception:  # noqa: BLE001 - unknown: MLflow migrates as usual
        return None


#: (migrations folder, its mtime) → head revision: enable() asks twice (create, then check the store)
_heads: dict[tuple[str, int], str | None] = {}


def _head_from_files() -> str | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec("mlflow")
        if spec is None or not spec.submodule_search_locations:
            return None
        versions = Path(next(iter(spec.submodule_search_locations))) / "store" / "db_migrations" / "versions"
        key = (str(versions), versions.stat().st_mtime_ns)  # another MLflow installed meanwhile: read again
    except (OSError, ValueError, ImportError):
        return None
    if key not in _heads:
        _heads[key] = _read_head(versions)
    return _heads[key]


def _read_head(versions: Path) -> str | None:
    try:
        revisions: set[str] = set()
        parents: set[str] = set()
        for path in versions.glob("*.py"):
            found = dict.fromkeys(("revision", "down_revision"))
            for name, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8")):
                if found[name] is None:
                    found[name] = value
            if found["revision"] is None:
                continue
            ids = _QUOTED.findall(found["revision"])
            if len(ids) != 1:
                return None
            revisions.add(ids[0])
            parents.update(_QUOTED.findall(found["down_revision"] or ""))
    except (OSError, ValueError, ImportError):
        return None
    heads = revisions - parents
    return next(iter(heads)) if len(heads) == 1 else None


def store_problem(tracking_uri: str) -> str:
    """Why the SQLite store at ``tracking_uri`` cannot be written yet ("" when it looks usable).

    A cheap look with ``sqlite3`` (no MLflow import), so that ``enable()`` still reports an unusable
    store while opening it through MLflow waits for the first export.
    """
    path = sqlite_path(tracking_uri)
    if path is None:
        return ""
    if not os.path.exists(path):
        return f"{path} does not exist and could not be created"
    try:
        con = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=1.0)
        try:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            con.close()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return ""  # an empty database: MLflow creates its tables
        if "locked" in str(exc):
            return ""  # in use by another writer: fine
        return f"{type(exc).__name__}: {exc}"
    except sqlite3.Error as exc:
        return f"{type(exc).__name__}: {exc}"
    head = head_revision()
    current = row[0] if row else None
    if head is not None and current is not None and current != head:
        return (f"its schema is at alembic revision {current}, the installed MLflow expects {head} "
                f"(run 'mlflow db upgrade {tracking_uri}')")
    return ""


def script_for(revision: str | None) -> Path | None:
    if not revision:
        return None
    path = SCHEMA_DIR / f"{revision}.sql"
    return path if path.is_file() else None


def sqlite_path(tracking_uri: str) -> str | None:
    """The database file of a ``sqlite:///`` URI (None for memory databases and other stores)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return path


def create_sqlite_store(tracking_uri: str) -> str:
    """Create the store's file from the shipped schema when it does not exist yet.

    Returns what was done: ``"created"``, or why not (``"exists"``, ``"not sqlite"``, ``"no script for
    revision X"``, an error) — then MLflow creates it as usual.
    """
    path = sqlite_path(tracking_uri)
    if path is None:
        return "not sqlite"
    if os.path.exists(path) and os.path.getsize(path) > 0:
        return "exists"
    revision = head_revision()
    script = script_for(revision)
    if script is None:
        return f"no script for revision {revision}"
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tracekit-new-store-", suffix=".db", dir=directory)
        os.close(fd)
        try:
            con = sqlite3.connect(tmp)
            try:
                con.executescript(script.read_text(encoding="utf-8"))
                con.commit()
            finally:
                con.close()
            if os.path.exists(path) and os.path.getsize(path) == 0:
                os.unlink(path)  # an empty file (touched, never initialised) counts as new
            try:
                os.link(tmp, path)  # atomic: another process creating the same store wins, we step back
            except FileExistsError:
                return "exists"
        finally:
            os.unlink(tmp)
    except (OSError, sqlite3.Error) as exc:
        return f"{type(exc).__name__}: {exc}"
    return "created"


def dump(path: str) -> str:
    """The schema and rows of a SQLite database as a script that recreates it (creation order)."""
    con = sqlite3.connect(path)
    try:
        lines = ["-- generated by python -m dspy_tracekit.mlflow.schema: a freshly migrated MLflow store",
                 "PRAGMA foreign_keys = OFF;", "BEGIN;"]
        entries = con.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                              "ORDER BY rowid").fetchall()
        for kind, name, sql in entries:
            if name == "sqlite_sequence":
                continue  # created by SQLite with the first AUTOINCREMENT table
            lines.append(f"{sql};")
        for kind, name, _ in entries:
            if kind != "table":
                continue
            cols = [r[1] for r in con.execute(f'PRAGMA table_info("{name}")')]
            names = ", ".join(f'"{c}"' for c in cols)
            select = ", ".join(f'quote("{c}")' for c in cols)
            for row in con.execute(f'SELECT {select} FROM "{name}" ORDER BY rowid'):
                lines.append(f'INSERT INTO "{name}" ({names}) VALUES ({", ".join(row)});')
        lines.append("COMMIT;")
        return "\n".join(lines) + "\n"
    finally:
        con.close()


def generate(out_dir: Path = SCHEMA_DIR) -> Path:
    """Migrate a new SQLite database with the installed MLflow and write its script."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    revision = head_revision()
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "mlflow.db")
        engine = sqlalchemy.create_engine(f"sqlite:///{db}")
        _initialize_tables(engine)
        engine.dispose()
        text = dump(db)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{revision}.sql"
    target.write_text(text, encoding="utf-8")
    return target


if __name__ == "__main__":
    print(generate(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR))
