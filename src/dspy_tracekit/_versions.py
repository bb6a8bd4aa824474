"""The DSPy and MLflow versions tracekit is tested with; ``enable()`` warns once outside them.

Keep in step with ``pyproject.toml`` (``dependencies``: the MLflow range; the comment next to ``dspy``)
— tests/test_versions.py checks that they agree.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

logger = logging.getLogger("dspy_tracekit")

#: minor versions (major, minor) the test suite runs on
TESTED = {"dspy": ((3, 4),), "mlflow": ((3, 17), (3, 18))}
_warned: set[str] = set()


def _minor(text: str) -> tuple[int, int] | None:
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def untested() -> dict[str, str]:
    """Installed distributions whose minor version is outside :data:`TESTED`: name -> version."""
    out = {}
    for name, minors in TESTED.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        if _minor(installed) not in minors:
            out[name] = installed
    return out


def warn_untested() -> None:
    """Log once per process and distribution when DSPy or MLflow is of a minor version not tested."""
    for name, installed in untested().items():
        if name in _warned:
            continue
        _warned.add(name)
        tested = ", ".join(f"{a}.{b}" for a, b in TESTED[name])
        logger.warning("dspy-tracekit: %s %s is not a tested version (tested: %s.x); tracing may miss "
                       "calls or fail without notice — please report what you see", name, installed, tested)
