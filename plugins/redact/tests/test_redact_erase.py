"""Erasure end to end: traces written by separate processes (before and after a restart), erased by
``dspy-tracekit erase`` and by the Python API, on a SQLite store and on a real ``mlflow server``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from dspy_tracekit_redact import erase_user, plan_erasure, pseudonym

from dspy_tracekit.cli import main

WRITER = Path(__file__).with_name("erase_writer.py")
JANE, BOB = "jane.roe@example.com", "bob-1234"


def _write(uri: str, experiment: str, user: str, session: str, n: int) -> None:
    """One program run in a process of its own (the next run is a restart)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSPY_TRACEKIT_")}
    subprocess.run([sys.executable, str(WRITER), uri, experiment, user, session, str(n)], check=True, env=env,
                   timeout=300)


def _users(uri: str) -> dict[str, int]:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(uri)
    out: dict[str, int] = {}
    for exp in client.search_experiments(view_type=ViewType.ALL):
        for t in client.search_traces(locations=[exp.experiment_id], include_spans=False, max_results=500):
            user = t.info.trace_metadata.get("mlflow.trace.user")
            out[user] = out.get(user, 0) + 1
    return out


def _erase(*args: str, input: str | None = None):
    return CliRunner().invoke(main, ["erase", *args], input=input, catch_exceptions=False)


def test_erase_deletes_every_trace_of_a_user_written_before_and_after_a_restart(store):
    uri = f"sqlite:///{store}"
    _write(uri, "support", JANE, "s-1", 2)
    _write(uri, "support", BOB, "s-9", 1)
    _write(uri, "billing", JANE, "s-2", 1)  # after a restart, in another experiment
    jane, bob = pseudonym(JANE), pseudonym(BOB)
    assert _users(uri) == {jane: 3, bob: 1}  # the same pseudonym from every process

    asked = _erase("--user-id", JANE, "--tracking-uri", uri, input="n\n")  # says no: nothing goes
    assert asked.exit_code == 1
    assert f"Will delete 3 traces of user {jane} from {uri}" in asked.output
    assert "'support' (2)" in asked.output and "'billing' (1)" in asked.output
    assert _users(uri) == {jane: 3, bob: 1}

    one = _erase("--user-id", JANE, "--session-id", "s-2", "--tracking-uri", uri, "--yes")
    assert one.exit_code == 0, one.output
    assert "Receipt: deleted 1 traces" in one.output
    assert _users(uri) == {jane: 2, bob: 1}

    rest = _erase("--user-id", JANE, "--tracking-uri", uri, "--yes", "--json")
    assert rest.exit_code == 0, rest.output
    receipt = json.loads(rest.stdout)
    assert receipt["deleted"] == 2 and len(receipt["trace_ids"]) == 2 and receipt["user_pseudonym"] == jane
    assert receipt["erased_at"].endswith("+00:00") and receipt["oldest_ms"] <= receipt["newest_ms"]
    assert _users(uri) == {bob: 1}

    again = _erase("--user-id", JANE, "--tracking-uri", uri, "--yes")
    assert again.exit_code == 0 and "Nothing to delete" in again.output


def test_erase_without_the_key_names_the_file_and_deletes_nothing(store, tmp_path):
    uri = f"sqlite:///{store}"
    _write(uri, "support", JANE, "s-1", 1)
    missing = tmp_path / "elsewhere.key"
    result = _erase("--user-id", JANE, "--tracking-uri", uri, "--yes", "--key-file", str(missing))
    assert result.exit_code == 1
    assert "redact.pseudonym_key_file: no pseudonym key at this path" in result.output
    assert str(missing) in result.output
    assert sum(_users(uri).values()) == 1


def test_erase_of_a_missing_store_does_not_create_one(store, tmp_path):
    uri = f"sqlite:///{tmp_path}/typo.db"
    result = _erase("--user-id", JANE, "--tracking-uri", uri, "--yes")
    assert result.exit_code == 1 and "no such file" in result.output
    assert not (tmp_path / "typo.db").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    log = open(tmp_path / "server.log", "ab")  # noqa: SIM115 - closed after the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--default-artifact-root", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=log, stderr=log, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not start within 180 s"
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its worker: our own process group
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        log.close()


def test_erase_on_a_tracking_server_from_python_and_the_cli(store, mlflow_server):
    uri = mlflow_server
    _write(uri, "support", JANE, "s-1", 2)
    _write(uri, "support", BOB, "s-9", 1)
    _write(uri, "support", JANE, "s-2", 1)  # after a restart of the program
    jane, bob = pseudonym(JANE), pseudonym(BOB)
    assert _users(uri) == {jane: 3, bob: 1}

    plan = plan_erasure(JANE, "s-1", tracking_uri=uri)
    assert plan.count == 2 and plan.session_pseudonym == pseudonym("s-1", "session")
    receipt = erase_user(JANE, "s-1", tracking_uri=uri)
    assert receipt.deleted == 2 and sorted(receipt.trace_ids) == sorted(t for v in plan.traces.values() for t, _ in v)
    assert _users(uri) == {jane: 1, bob: 1}

    result = _erase("--user-id", JANE, "--tracking-uri", uri, "--yes")
    assert result.exit_code == 0, result.output
    assert "Receipt: deleted 1 traces" in result.output
    assert _users(uri) == {bob: 1}
