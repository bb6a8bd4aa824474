"""dspy-tracekit plugin ``redact``: no PII or secret ever reaches the trace store.

Public API: :class:`Redactor` (``redact_text``, ``redact``, ``find``). The tracekit hooks live in
:mod:`dspy_tracekit_redact._plugin` and are re-exported here, because the entry point
(``redact = "dspy_tracekit_redact"``) registers this module.
"""

from ._detectors import BUILTIN_ENTITIES
from ._plugin import (
    COUNTS_ATTRIBUTE,
    redact_live_span,
    tracekit_configure,
    tracekit_counters,
    tracekit_process_trace,
    tracekit_shutdown,
)
from ._redactor import ACTIONS, DEFAULT_SECRET_KEYS, Finding, Redactor

__all__ = [
    "ACTIONS",
    "BUILTIN_ENTITIES",
    "COUNTS_ATTRIBUTE",
    "DEFAULT_SECRET_KEYS",
    "Finding",
    "Redactor",
    "redact_live_span",
    "tracekit_configure",
    "tracekit_counters",
    "tracekit_process_trace",
    "tracekit_shutdown",
]
