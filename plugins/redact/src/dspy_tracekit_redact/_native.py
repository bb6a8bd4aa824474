"""Which copy of the engine's modules runs: the compiled one (``setup.py``) or the ``.py`` files.

Python imports a compiled module in place of the ``.py`` beside it. That is right when the compiled module was built
from that ``.py``; after an edit in a checkout it would run the old code. :func:`load` imports the four modules before
anything else does: compiled where the build recorded the SHA-256 of the ``.py`` each was compiled from and the ``.py``
still has it; else (no build record, an edited source, or ``TRACEKIT_REDACT_NO_EXTENSIONS=1``) all four from
their ``.py`` files, with a warning for an edited source. Import time only: ~0.2 ms to hash ~150 KB of source.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from pathlib import Path

#: the modules ``setup.py`` compiles, each after those it imports (``_detectors`` imports ``_generic``)
MODULES = ("_generic", "_detectors", "_prefilter", "_redactor")
#: set (not "0"): the .py files run. Not ``DSPY_TRACEKIT_REDACT_*``: those are the plugin's settings, and
#: ``enable()`` refuses a name that is none of them
NO_EXTENSIONS = "TRACEKIT_REDACT_NO_EXTENSIONS"


def python_requested() -> bool:
    """Whether ``NO_EXTENSIONS`` asks for the .py files (set, and not ``0``)."""
    return os.environ.get(NO_EXTENSIONS, "").strip() not in ("", "0")


def _built() -> dict[str, str]:
    try:
        from ._compiled_from import SOURCES
    except ImportError:  # no build record: nothing was compiled (or a source tree without a build)
        return {}
    return dict(SOURCES)


def _stale(here: Path, built: dict[str, str]) -> list[str]:
    """The compiled modules whose ``.py`` no longer has the digest recorded when it was compiled."""
    out = []
    for name, digest in built.items():
        try:
            if hashlib.sha256((here / f"{name}.py").read_bytes()).hexdigest() != digest:
                out.append(name)
        except OSError:  # a wheel without its sources: the compiled module is all there is
            continue
    return out


def load(package: str, here: Path) -> bool:
    """Import the engine's modules of ``package`` (whose directory is ``here``); whether the compiled ones run."""
    built = _built()
    compiled = all(name in built for name in MODULES) and _has_extensions(here)
    if compiled and python_requested():
        compiled = False
    elif compiled:
        stale = _stale(here, built)
        if stale:
            warnings.warn(f"dspy-tracekit-redact: {', '.join(f'{n}.py' for n in stale)} changed since the engine was "
                          "compiled: running the .py files (rebuild: uv sync --reinstall-package dspy-tracekit-redact)",
                          RuntimeWarning, stacklevel=3)
            compiled = False
    if compiled:
        return True
    for name in MODULES:  # the .py files, by path: the compiled modules beside them are not looked at
        full = f"{package}.{name}"
        if full in sys.modules:  # imported by one loaded before it
            setattr(sys.modules[package], name, sys.modules[full])
            continue
        spec = importlib.util.spec_from_file_location(full, here / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[full]
            raise
        setattr(sys.modules[package], name, module)  # as an import sets it: ``package._redactor``
    return False


def _has_extensions(here: Path) -> bool:
    """Whether each of the modules has a compiled copy Python would import beside its ``.py``."""
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return all(any((here / f"{name}{suffix}").exists() for suffix in suffixes) for name in MODULES)
