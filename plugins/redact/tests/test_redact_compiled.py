"""The engine compiled by Cython (``setup.py``) and the ``.py`` files it is compiled from: which one runs, and that
they find the same values.

Where a C compiler exists, installing the package (``uv sync`` included) compiles ``_detectors``, ``_generic``,
``_prefilter`` and ``_redactor``; ``_native.load`` imports the compiled modules unless a ``.py`` changed since they
were built, or ``TRACEKIT_REDACT_NO_EXTENSIONS=1``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import dspy_tracekit_redact
import pytest
from dspy_tracekit_redact import Redactor, _native

SRC = Path(dspy_tracekit_redact.__file__).parent


def _compiler() -> bool:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is not None and Path(sysconfig.get_paths()["include"], "Python.h").exists()


def test_the_installed_engine_runs_compiled_where_a_compiler_exists():
    if not _compiler():
        pytest.skip("no C compiler or Python headers here: the package installs as Python")
    if _native.python_requested():
        pytest.skip(f"{_native.NO_EXTENSIONS} is set")
    assert _native._has_extensions(SRC), f"no compiled modules beside the sources in {SRC}: the build skipped them"
    assert dspy_tracekit_redact.COMPILED
    for name in _native.MODULES:
        module = sys.modules[f"dspy_tracekit_redact.{name}"]
        assert not module.__file__.endswith(".py"), module.__file__


def test_compiled_and_python_engines_find_the_same_values(regression_set, python_engine):
    if python_engine is None:
        pytest.skip("the engine runs as Python here: nothing compiled to compare")
    pure = python_engine
    for config in ({}, {"actions": {"EMAIL": "hash", "PHONE": "partial"}, "hash_secret": "k"},
                   {"entities": ["EMAIL", "GENERIC_SECRET", "CREDIT_CARD"], "allow": ["ops@example.com"]}):
        a, b = Redactor(config), pure.Redactor(config)
        texts = regression_set if not config else regression_set[::7]
        differ = [t for t in texts if a.find(t) != b.find(t)]
        assert differ == [], (config, differ[:3])
        assert [a.redact_text(t) for t in texts[:2000]] == [b.redact_text(t) for t in texts[:2000]]
    doc = {"messages": [{"role": "user", "content": regression_set[3]}], "api_key": "x", "n": 3, "ok": True}
    assert Redactor().redact(doc) == pure.Redactor().redact(doc)


class _Label(str):
    """A ``str`` subclass (an enum-like label, a DSPy field type): compiled code must take it as Python does."""


def test_the_compiled_engine_takes_what_the_python_one_takes():
    r = Redactor({"generic_secret_entropy": 3, "actions": {"EMAIL": "hash"}, "hash_secret": "k"})
    text = _Label("mail jane.doe@example.com, card 4111 1111 1111 1111")
    assert [f.entity for f in r.find(text)] == ["EMAIL", "CREDIT_CARD"]
    counts: dict[str, int] = __import__("collections").Counter()
    out = r.redact_text(text, counts)
    assert "jane.doe" not in out and "4111" not in out and counts == {"EMAIL": 1, "CREDIT_CARD": 1}
    assert r.redact({"k": _Label("jane.doe@example.com")}) != {"k": "jane.doe@example.com"}


def _run(pkg_parent: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    code = ("import dspy_tracekit_redact as d, sys; "
            "print(d.COMPILED, d._generic.__file__.endswith('.py'), d.Redactor().redact_text('mail a.b@example.com'))")
    return subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(pkg_parent), **(env or {})}, timeout=120, check=True)


def test_a_source_edited_since_the_build_runs_as_python_with_a_warning(tmp_path):
    if not dspy_tracekit_redact.COMPILED:
        pytest.skip("the engine runs as Python here: no compiled copy to go stale")
    copy = tmp_path / "dspy_tracekit_redact"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("*.c", "__pycache__"))
    first = _run(tmp_path)
    assert first.stdout.split()[:2] == ["True", "False"], first.stdout + first.stderr
    forced = _run(tmp_path, {_native.NO_EXTENSIONS: "1"})
    assert forced.stdout.split()[:2] == ["False", "True"], forced.stdout + forced.stderr
    assert "changed since" not in forced.stderr

    with open(copy / "_generic.py", "a") as f:
        f.write("\nEDITED_AFTER_THE_BUILD = True\n")
    edited = _run(tmp_path)
    assert edited.stdout.split() == ["False", "True", "mail", "<EMAIL>"], edited.stdout + edited.stderr
    assert "_generic.py changed since the engine was compiled" in edited.stderr
    assert "uv sync --reinstall-package dspy-tracekit-redact" in edited.stderr


def test_the_switch_to_python_is_no_setting_that_enable_refuses(tmp_path):
    """``DSPY_TRACEKIT_REDACT_<KEY>`` variables are the plugin's settings (``enable()`` refuses unknown keys): the
    switch has a name outside them, and a program that sets it enables the plugin as before."""
    assert not _native.NO_EXTENSIONS.startswith("DSPY_TRACEKIT_")
    code = ("import dspy_tracekit as tk, dspy_tracekit_redact as r; "
            f"assert tk.enable(plugins=['redact'], tracking_uri='sqlite:///{tmp_path / 'm.db'}'); tk.disable(); "
            "print(r.COMPILED)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, _native.NO_EXTENSIONS: "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False"]
