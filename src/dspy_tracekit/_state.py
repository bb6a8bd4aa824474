"""Process-wide state of the tracer (set by ``enable()``, cleared by ``disable()``)."""

from __future__ import annotations

import logging
from typing import Any

#: the active :class:`~dspy_tracekit.manager.TracekitManager`, or None when tracing is off.
manager: Any = None
settings: Any = None


def internal_error(where: str, exc: BaseException) -> None:
    """A failure of tracekit's own bookkeeping: counted (and logged once) like a plugin's, never raised."""
    if manager is not None:
        manager.hook_failed("core", where, exc)
    else:
        logging.getLogger("dspy_tracekit").debug("dspy-tracekit: %s failed: %s", where, exc)
