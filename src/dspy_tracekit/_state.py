"""Process-wide state of the tracer (set by ``enable()``, cleared by ``disable()``)."""

from __future__ import annotations

from typing import Any

#: the active :class:`~dspy_tracekit.manager.TracekitManager`, or None when tracing is off.
manager: Any = None
settings: Any = None
