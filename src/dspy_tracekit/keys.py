"""The names tracekit reads and writes in MLflow traces, defined once (public: plugins import them).

MLflow's own span attribute keys, the keys tracekit adds to spans and trace tags, the dict keys whose
values are credentials, and the one reading of the sampling tag.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "COST_ATTR", "CPU_ATTR", "CREDENTIAL_KEYS", "CREDENTIAL_SUFFIXES", "CONTEXT_ATTR_PREFIX", "EXPERIMENT_ID_ATTR",
    "FORMAT_ATTR", "INPUTS_ATTR", "IN_FLIGHT_TAG", "KIND_ATTR", "MODEL_ATTR", "MODULE_PATH_ATTR", "OUTPUTS_ATTR",
    "PEAK_MEMORY_TAG", "PROVIDER_ATTR", "REQUEST_ID_ATTR", "SAMPLING_PROBABILITY_TAG", "SAMPLING_RULE_TAG",
    "SPAN_TYPE_ATTR", "TOKEN_USAGE_ATTR", "TOOLS_ATTR", "VERSION_TAG", "is_credential_key", "sampling_probability",
]

# --- MLflow's span attributes (mlflow.tracing.constant.SpanAttributeKey) ---------------------------
REQUEST_ID_ATTR = "mlflow.traceRequestId"
EXPERIMENT_ID_ATTR = "mlflow.experimentId"
SPAN_TYPE_ATTR = "mlflow.spanType"
INPUTS_ATTR = "mlflow.spanInputs"
OUTPUTS_ATTR = "mlflow.spanOutputs"
TOKEN_USAGE_ATTR = "mlflow.chat.tokenUsage"
COST_ATTR = "mlflow.llm.cost"
MODEL_ATTR = "mlflow.llm.model"
PROVIDER_ATTR = "mlflow.llm.provider"
FORMAT_ATTR = "mlflow.message.format"
TOOLS_ATTR = "mlflow.chat.tools"

# --- tracekit's span attributes --------------------------------------------------------------------
#: the kind of call the span records (``module``, ``lm``, ``tool``, …; ``mlflow`` for MLflow-made spans)
KIND_ATTR = "tracekit.kind"
#: dotted path of the enclosing DSPy modules
MODULE_PATH_ATTR = "tracekit.module_path"
#: prefix under which the context tags (``tk.context(...)``) are copied onto every span
CONTEXT_ATTR_PREFIX = "tracekit.context."
#: thread CPU time of the span in ms (see docs/analytics.md, "Resource usage")
CPU_ATTR = "tracekit.cpu_ms"

# --- tracekit's trace tags -------------------------------------------------------------------------
#: traces in flight in the process when the root started; peak traced memory (bytes)
IN_FLIGHT_TAG = "tracekit.load.in_flight"
PEAK_MEMORY_TAG = "tracekit.memory.peak_bytes"
#: the program version (fingerprint of the root module's learnable state, or the ``program_version`` tag)
VERSION_TAG = "tracekit.program_version"
#: the probability the sample plugin kept the trace with, and the rule that decided it
SAMPLING_PROBABILITY_TAG = "tracekit.sampling.probability"
SAMPLING_RULE_TAG = "tracekit.sampling.rule"

# --- credentials -----------------------------------------------------------------------------------
#: dict keys whose values are credentials (compared lower-case, with ``-`` read as ``_``); the core
#: masks them with or without the redact plugin, and the redact plugin masks them too.
CREDENTIAL_KEYS = frozenset({
    "api_key", "apikey", "api_secret", "secret", "secret_key", "client_secret", "password", "passwd", "pwd",
    "passphrase", "token", "access_token", "refresh_token", "id_token", "auth_token", "bearer_token",
    "session_token", "authorization", "proxy_authorization", "x_api_key", "api_token", "cookie", "cookies",
    "set_cookie", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_bearer_token_bedrock",
    "azure_ad_token", "azure_api_key", "vertex_credentials", "credentials", "private_key",
    "service_account_json", "openai_api_key", "anthropic_api_key", "extra_headers", "headers",
    "ocp_apim_subscription_key", "x_goog_api_key",
})
#: a key ending in one of these is a credential too (``stripe_api_key``, ``db_password``)
CREDENTIAL_SUFFIXES = ("_api_key", "_apikey", "_secret", "_password", "_token", "_private_key")


def is_credential_key(key: str) -> bool:
    """Whether a dict key names a credential (``API-Key``, ``db_password``, ``authorization``)."""
    k = key.lower().replace("-", "_")
    return k in CREDENTIAL_KEYS or k.endswith(CREDENTIAL_SUFFIXES)


def sampling_probability(tags: Mapping[str, str] | None) -> float | None:
    """The probability a trace was kept with, read from its trace tags.

    ``None`` when the tag is missing or not a probability in (0, 1] (a hand-edited or foreign tag):
    callers weigh such a trace as if it had been kept with probability 1.
    """
    value = (tags or {}).get(SAMPLING_PROBABILITY_TAG)
    if value is None:
        return None
    try:
        p = float(value)
    except (TypeError, ValueError):
        return None
    return p if 0.0 < p <= 1.0 else None
