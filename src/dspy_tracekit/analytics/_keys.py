"""Names shared by the analytics modules."""

from __future__ import annotations

#: trace tag the sample plugin writes: the probability with which the trace was kept.
SAMPLING_TAG = "tracekit.sampling.probability"
#: span attribute prefix under which the core copies the context tags onto every span.
CONTEXT_ATTR_PREFIX = "tracekit.context."
TOKEN_USAGE_ATTR = "mlflow.chat.tokenUsage"
COST_ATTR = "mlflow.llm.cost"
MODEL_ATTR = "mlflow.llm.model"
#: span attribute the core writes: dotted path of the enclosing DSPy modules.
MODULE_PATH_ATTR = "tracekit.module_path"
#: trace tags that are bookkeeping, not context: left out of error correlation and CSV context columns.
_INTERNAL_TAG_PREFIXES = ("mlflow.", "tracekit.")
#: span types that are calls to a model, not DSPy modules: a model's cost is charged to the enclosing module.
_MODEL_SPAN_TYPES = {"CHAT_MODEL", "LLM_CALL", "EMBEDDING"}
_MODULE_SPAN_TYPES = {"CHAIN", "AGENT", "LLM", "TOOL", "RETRIEVER", "EVALUATOR"}
_PAGE_SIZE = 200


class AnalyticsError(Exception):
    """Bad input or an unreachable store: the message is one line, meant for the user as is."""


