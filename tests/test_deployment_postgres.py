"""docs/deployment.md, as written, against a real PostgreSQL: the SQL, the `mlflow server` command, the
application's config and the reading commands.

Needs a PostgreSQL superuser URI in ``TRACEKIT_TEST_POSTGRES`` (``.ci/run`` starts Debian's PostgreSQL on
a loopback port with ``.ci/postgres-start`` and sets it); skips without one. The only substitutions are
the ones a reader makes: the password, the database host, a free local port for the server, and a local
folder for the S3 bucket and the spool.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "deployment.md"
SUPERUSER_URI = os.environ.get("TRACEKIT_TEST_POSTGRES")

pytestmark = pytest.mark.skipif(
    not SUPERUSER_URI,
    reason="no PostgreSQL: set TRACEKIT_TEST_POSTGRES=postgresql://postgres@127.0.0.1:PORT/postgres "
    "(.ci/postgres-start starts one)",
)


def fenced(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", PAGE.read_text(), re.MULTILINE | re.DOTALL)


def pg_host_port() -> tuple[str, int]:
    from sqlalchemy.engine import make_url

    url = make_url(SUPERUSER_URI)
    return url.host or "127.0.0.1", url.port or 5432


@pytest.fixture(scope="module")
def database():
    """The page's SQL, run as the PostgreSQL superuser, with a real password for '...'."""
    import psycopg

    (sql,) = fenced("sql")
    password = secrets.token_hex(8)
    with psycopg.connect(SUPERUSER_URI, autocommit=True) as con:
        con.execute("DROP DATABASE IF EXISTS mlflow")  # a rerun on the same cluster
        con.execute("DROP USER IF EXISTS mlflow")
        for statement in filter(None, (s.strip() for s in sql.split(";"))):
            con.execute(statement.replace("'...'", f"'{password}'"))
    return password


def server_command(password: str, port: int, artifacts: Path) -> list[str]:
    (block,) = [b for b in fenced("bash") if "mlflow server" in b]
    install, _, command = block.partition("\n")
    assert shlex.split(install)[:2] == ["pip", "install"]
    host, pg_port = pg_host_port()
    args = shlex.split(command.replace("\\\n", " ").replace("${PGPASSWORD}", password))
    assert args[:2] == ["mlflow", "server"]
    subst = {
        "--artifacts-destination": artifacts.as_uri(),  # the S3 bucket
        "--host": "127.0.0.1",
        "--port": str(port),
        "--workers": "1",  # two cores shared by the test suite
        "--allowed-hosts": f"127.0.0.1:{port},localhost:{port}",
    }
    out = [sys.executable, "-m", "mlflow", "server"]
    it = iter(args[2:])
    for flag in it:
        value = next(it)
        if flag == "--backend-store-uri":
            value = value.replace("db.internal:5432", f"{host}:{pg_port}")
        out += [flag, subst.get(flag, value)]
    return out


def test_the_install_line_names_the_driver_sqlalchemy_uses_for_postgresql_uris():
    from sqlalchemy import create_engine

    (block,) = [b for b in fenced("bash") if "mlflow server" in b]
    install = shlex.split(block.splitlines()[0])
    assert "psycopg[binary]" in install and "psycopg2-binary" not in install
    uri = re.search(r"--backend-store-uri (\S+)", block).group(1)
    engine = create_engine(uri.replace("${PGPASSWORD}", "x"))
    assert engine.dialect.driver == "psycopg"  # SQLAlchemy 2.1: postgresql:// means psycopg 3
    import psycopg  # noqa: F401 - installed, as the page says


@pytest.fixture(scope="module")
def tracking_server(database, tmp_path_factory):
    from dspy_tracekit.cli.ui import free_port

    port = free_port()
    artifacts = tmp_path_factory.mktemp("artifacts")
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w+")  # noqa: SIM115 - closed below
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(server_command(database, port, artifacts), stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"mlflow server did not start:\n{log.read()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def run_program() -> None:
    import dspy

    with dspy.context(lm=dspy.utils.DummyLM([{"answer": "4"}] * 3)):
        program = dspy.Predict("question -> answer")
        for _ in range(3):
            program(question="2 + 2?")


def test_applications_trace_through_the_server_and_the_cli_reads_them_back(tracking_server, tmp_path,
                                                                           monkeypatch):
    from click.testing import CliRunner

    import dspy_tracekit as tk
    from dspy_tracekit.cli import main

    (app_config,) = [b for b in fenced("toml") if "[tool.dspy-tracekit]" in b]
    app_config = app_config.replace("http://mlflow.internal:5000", tracking_server)
    app_config = app_config.replace("/var/lib/intent-service/tracekit-spool", str(tmp_path / "spool"))
    (tmp_path / "pyproject.toml").write_text(app_config)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DSPY_TRACEKIT_SAMPLE_RATIO", "1.0")  # keep every trace: the test knows the count
    (startup,) = [b for b in fenced("python") if "enable()" in b]
    exec(compile(startup, f"{PAGE}:python", "exec"), {})  # noqa: S102 - the page's start-up lines
    try:
        run_program()
        assert tk.flush(60)
    finally:
        tk.disable()

    (reading,) = [b for b in fenced("bash") if "export DSPY_TRACEKIT_TRACKING_URI" in b]
    lines = [ln.split("#", 1)[0].strip() for ln in reading.splitlines() if ln.strip()]
    export_line, commands = lines[0], lines[1:]
    monkeypatch.setenv("DSPY_TRACEKIT_TRACKING_URI", tracking_server)
    assert export_line.startswith("export DSPY_TRACEKIT_TRACKING_URI=")
    runner = CliRunner()
    for line in commands:
        args = shlex.split(line)
        assert args[0] == "dspy-tracekit"
        result = runner.invoke(main, args[1:])
        assert result.exit_code == 0, (line, result.output)
        if args[1] == "stats":
            assert "3 traces from 3 stored" in result.stdout, result.stdout
        if args[1] == "ui":
            assert result.stdout.strip().startswith(f"{tracking_server}/#/experiments/")
    assert (tmp_path / "weekly.html").is_file()


def test_applications_may_write_straight_to_postgresql(database, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import dspy_tracekit as tk
    from dspy_tracekit.cli import main

    host, port = pg_host_port()
    uri = f"postgresql://mlflow:{database}@{host}:{port}/mlflow"  # as the page says: postgresql://...
    monkeypatch.chdir(tmp_path)
    tk.enable(plugins=["redact", "sample", "cost"], tracking_uri=uri, experiment="direct")
    try:
        run_program()
        assert tk.flush(60)
    finally:
        tk.disable()
    result = CliRunner().invoke(main, ["stats", "--tracking-uri", uri, "-e", "direct"])
    assert result.exit_code == 0, result.output
    assert "3 traces from 3 stored" in result.stdout
