"""dspy-tracekit plugin ``redact``: no PII or secret ever reaches the trace store.

Public API: :class:`Redactor` (``redact_text``, ``redact``, ``find``); pseudonyms of context
identifiers (:func:`pseudonym`, :func:`default_key_path`); erasure (:func:`plan_erasure`, :func:`erase`,
:func:`erase_user`). The tracekit hooks live in
:mod:`dspy_tracekit_redact._plugin` and are re-exported here, because the entry point
(``redact = "dspy_tracekit_redact"``) registers this module.
"""

from pathlib import Path as _Path

from . import _native

#: whether the engine runs compiled (Cython, built with the package where a C compiler exists) or as Python
COMPILED: bool = _native.load(__name__, _Path(__file__).parent)

from ._detectors import BUILTIN_ENTITIES  # (after _native.load chose the copy)
from ._erase import ErasurePlan, ErasureReceipt, erase, erase_user, plan_erasure
from ._plugin import (
    COUNTS_ATTRIBUTE,
    redact_live_span,
    tracekit_configure,
    tracekit_counters,
    tracekit_process_trace,
    tracekit_shutdown,
)
from ._pseudonym import DEFAULT_IDENTIFIERS, default_key_path, pseudonym
from ._redactor import ACTIONS, DEFAULT_SECRET_KEYS, Finding, Redactor

__all__ = [
    "ACTIONS",
    "BUILTIN_ENTITIES",
    "COMPILED",
    "COUNTS_ATTRIBUTE",
    "DEFAULT_IDENTIFIERS",
    "DEFAULT_SECRET_KEYS",
    "ErasurePlan",
    "ErasureReceipt",
    "Finding",
    "Redactor",
    "default_key_path",
    "erase",
    "erase_user",
    "plan_erasure",
    "pseudonym",
    "redact_live_span",
    "tracekit_configure",
    "tracekit_counters",
    "tracekit_process_trace",
    "tracekit_shutdown",
]
