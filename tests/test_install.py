"""Installing dspy-tracekit the ways docs/index.md says, into clean virtual environments (marker ``install``).

Not part of the default run (it builds wheels and installs dspy and MLflow from the package index);
``.ci/run`` runs it once: ``uv run pytest -m install tests/test_install.py``.

- From built wheels: ``uv build --all-packages``, ``twine check`` on every wheel, each plugin's wheel
  declares a tested range of ``dspy-tracekit`` that holds the core's version, then
  ``pip install --find-links dist "dspy-tracekit[all]"`` into a fresh venv; the demo runs from there, in
  an empty folder, and the commands it prints run as printed.
- From a clone: ``pip install . ./plugins/*`` into another fresh venv, and ``uv add --editable`` in a uv
  project of one's own; the CLI and every plugin load.
"""

from __future__ import annotations

import glob
import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ("redact", "sample", "cost", "buffer", "monitor")

pytestmark = [pytest.mark.install, pytest.mark.timeout(1800)]


def sh(args, cwd=None, env=None, timeout=1200) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"{shlex.join(map(str, args))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def uv() -> str:
    return os.environ.get("UV") or "uv"


def clean_env(venv: Path) -> dict[str, str]:
    """A shell with only the fresh venv activated: nothing from the workspace's environment leaks in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VIRTUAL_ENV", "UV_", "PYTHON", "DSPY_TRACEKIT_", "MLFLOW_TRACKING"))}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return env


def fresh_venv(path: Path) -> Path:
    sh([sys.executable, "-m", "venv", path])
    sh([path / "bin" / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    return path


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    sh([uv(), "build", "--all-packages", "--out-dir", out], cwd=ROOT)
    return out


def wheels(dist: Path) -> dict[str, Path]:
    found = {}
    for path in glob.glob(str(dist / "*.whl")):
        found[Path(path).name.split("-")[0].replace("_", "-")] = Path(path)
    return found


def metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return zf.read(name).decode()


def test_every_distribution_builds_and_passes_twine_check(dist):
    built = wheels(dist)
    assert set(built) == {"dspy-tracekit", *(f"dspy-tracekit-{p}" for p in PLUGINS)}, built
    assert len(glob.glob(str(dist / "*.tar.gz"))) == len(built)  # an sdist next to every wheel
    sh([sys.executable, "-m", "twine", "check", "--strict", *sorted(glob.glob(str(dist / "*")))])


def test_each_plugin_wheel_declares_the_tested_range_of_the_core(dist):
    from packaging.requirements import Requirement
    from packaging.version import Version

    core = Version(next(ln.split(": ", 1)[1] for ln in metadata(wheels(dist)["dspy-tracekit"]).splitlines()
                        if ln.startswith("Version: ")))
    for plugin in PLUGINS:
        lines = metadata(wheels(dist)[f"dspy-tracekit-{plugin}"]).splitlines()
        (req,) = [Requirement(ln.split(": ", 1)[1]) for ln in lines
                  if ln.startswith("Requires-Dist: dspy-tracekit") and "extra ==" not in ln]
        operators = {s.operator for s in req.specifier}
        assert {">=", "<"} <= operators, (plugin, str(req))
        assert core in req.specifier, (plugin, str(req), core)


@pytest.fixture(scope="module")
def wheel_venv(dist, tmp_path_factory) -> Path:
    venv = fresh_venv(tmp_path_factory.mktemp("wheels") / "venv")
    # as docs/index.md says, with the venv's own pip
    sh([venv / "bin" / "pip", "install", "--quiet", "--find-links", dist, "dspy-tracekit[all]"],
       env=clean_env(venv), cwd=tmp_path_factory.mktemp("elsewhere"))
    return venv


def next_commands(output: str) -> dict[str, list[str]]:
    commands = {}
    for line in output.split("Next:", 1)[1].splitlines():
        if line.strip():
            args = shlex.split(line.split("#", 1)[0])
            commands[args[args.index("dspy-tracekit") + 1]] = args
    return commands


def test_from_built_wheels_the_demo_runs_and_its_next_commands_work_as_printed(wheel_venv, tmp_path):
    env = clean_env(wheel_venv)
    where = sh([wheel_venv / "bin" / "python", "-c", "import dspy_tracekit; print(dspy_tracekit.__file__)"],
               env=env, cwd=tmp_path).stdout
    assert str(wheel_venv) in where and str(ROOT / "src") not in where  # the wheel, not the clone
    doctor = json.loads(sh(["dspy-tracekit", "doctor", "--json"], env=env, cwd=tmp_path).stdout)
    assert {p["distribution"] for p in doctor["installed_plugins"]} == {f"dspy-tracekit-{p}" for p in PLUGINS}
    assert not list(tmp_path.iterdir())  # doctor created nothing

    demo = sh(["dspy-tracekit", "demo", "--n", "6"], env=env, cwd=tmp_path)
    assert "classified 6 messages" in demo.stdout
    commands = next_commands(demo.stdout)
    assert set(commands) == {"stats", "tree", "report", "ui"}
    for name in ("stats", "tree", "report"):
        result = sh(commands[name], env=env, cwd=tmp_path)
        if name == "stats":
            assert "6 traces from 6 stored" in result.stdout, result.stdout
    assert (tmp_path / "report.html").is_file()
    # ui as printed, on a free port instead of 5000 (other tests run beside this one)
    proc = subprocess.Popen([*commands["ui"], "--port", "0"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    try:
        url = lines.get(timeout=240).strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/traces"), url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_from_a_clone_pip_installs_the_core_and_every_plugin(tmp_path):
    venv = fresh_venv(tmp_path / "venv")
    env = clean_env(venv)
    # `pip install . ./plugins/*`, in the clone (the shell expands the glob)
    sh(["sh", "-c", f"{shlex.quote(str(venv / 'bin' / 'pip'))} install --quiet . ./plugins/*"], env=env, cwd=ROOT)
    out = tmp_path / "elsewhere"
    out.mkdir()
    doctor = json.loads(sh(["dspy-tracekit", "doctor", "--json"], env=env, cwd=out).stdout)
    assert {p["name"] for p in doctor["installed_plugins"]} == set(PLUGINS)
    script = ("import dspy_tracekit as tk; assert tk.enable(plugins=['redact', 'sample', 'cost', 'buffer'], "
              "tracking_uri='sqlite:///m.db'); tk.disable()")
    sh([venv / "bin" / "python", "-c", script], env=env, cwd=out)
    # where a C compiler exists (CI), the redact plugin's engine was compiled by the install
    compiled = sh([venv / "bin" / "python", "-c", "import dspy_tracekit_redact as r; print(r.COMPILED)"], env=env,
                  cwd=out).stdout.split()
    assert compiled == ["True"]


def test_without_a_c_compiler_the_redact_plugin_installs_and_runs_as_python(tmp_path):
    """``plugins/redact/setup.py`` compiles its engine where it can; a failed compile leaves the ``.py`` files."""
    venv = fresh_venv(tmp_path / "venv")
    env = {**clean_env(venv), "CC": "false", "LDSHARED": "false"}  # every compile and link fails
    # the plugin's tracked files only: a build/ folder an earlier install left in the clone holds compiled modules
    # that setuptools would take as up to date
    tracked = sh(["git", "ls-files", "plugins/redact"], cwd=ROOT).stdout.split()
    for name in tracked:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    done = sh([venv / "bin" / "pip", "install", "-v", ROOT, tmp_path / "plugins" / "redact"], env=env, cwd=tmp_path)
    assert "not compiled" in done.stdout + done.stderr  # the build went on without its extensions
    script = ("import dspy_tracekit_redact as r; print(r.COMPILED, r._redactor.__file__.endswith('.py')); "
              "print(r.Redactor().redact_text('mail jane.doe@example.com, key sk-proj-' + 'a1B2' * 8))")
    out = sh([venv / "bin" / "python", "-W", "error::RuntimeWarning", "-c", script], env=env, cwd=tmp_path).stdout
    assert out.splitlines() == ["False True", "mail <EMAIL>, key <OPENAI_KEY>"]


def test_from_a_clone_uv_add_editable_in_a_project_of_ones_own(tmp_path):
    project = tmp_path / "myapp"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_RUN", "DSPY_TRACEKIT_"))}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    sh([uv(), "init", "--bare", "--name", "myapp", "--python", f"{sys.version_info[0]}.{sys.version_info[1]}"],
       cwd=project, env=env)
    plugins = sorted(str(p) for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())
    sh([uv(), "add", "--editable", ROOT, *plugins], cwd=project, env=env)  # uv add --editable ./dspy-tracekit …
    doctor = json.loads(sh([uv(), "run", "dspy-tracekit", "doctor", "--json"], cwd=project, env=env).stdout)
    assert {p["name"] for p in doctor["installed_plugins"]} == set(PLUGINS)
    assert not (project / "mlflow.db").exists()
