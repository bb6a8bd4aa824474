"""Names shared by the analytics modules."""

from __future__ import annotations

from dspy_tracekit.keys import (  # noqa: F401 - the names analytics reads, defined once
    CONTEXT_ATTR_PREFIX,
    COST_ATTR,
    MODEL_ATTR,
    MODULE_PATH_ATTR,
    TOKEN_USAGE_ATTR,
)
from dspy_tracekit.keys import SAMPLING_PROBABILITY_TAG as SAMPLING_TAG  # noqa: F401

#: trace tags that are bookkeeping, not context: left out of error correlation and CSV context columns.
_INTERNAL_TAG_PREFIXES = ("mlflow.", "tracekit.")
#: span types that are calls to a model, not DSPy modules: a model's cost is charged to the enclosing module.
_MODEL_SPAN_TYPES = {"CHAT_MODEL", "LLM_CALL", "EMBEDDING"}
_MODULE_SPAN_TYPES = {"CHAIN", "AGENT", "LLM", "TOOL", "RETRIEVER", "EVALUATOR"}
_PAGE_SIZE = 200


class AnalyticsError(Exception):
    """Bad input or an unreachable store: the message is one line, meant for the user as is."""


