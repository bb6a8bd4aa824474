"""Credentials never leave the process, with or without the redact plugin.

Applied on the delivery path to every span's inputs, outputs, parameters and attributes: values
under credential-like keys are replaced, and ``user:password@`` is cut out of URLs.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "<REDACTED>"

#: keys whose values are credentials (compared lower-case, with ``-`` read as ``_``).
SECRET_KEYS = frozenset({
    "api_key", "apikey", "api_secret", "secret", "secret_key", "client_secret", "password", "passwd",
    "token", "access_token", "refresh_token", "id_token", "auth_token", "bearer_token", "session_token",
    "authorization", "proxy_authorization", "x_api_key", "api_token", "cookie", "set_cookie",
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_bearer_token_bedrock",
    "azure_ad_token", "azure_api_key", "vertex_credentials", "credentials", "private_key",
    "service_account_json", "openai_api_key", "anthropic_api_key", "extra_headers", "headers",
    "ocp_apim_subscription_key", "x_goog_api_key",
})

_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/@\s:]*(?::[^/@\s]*)?)@")


def is_secret_key(key: str) -> bool:
    k = key.lower().replace("-", "_")
    return k in SECRET_KEYS or k.endswith(("_api_key", "_secret", "_password", "_token"))


def strip_url_credentials(text: str) -> str:
    if "@" not in text or "://" not in text:
        return text
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def scrub(value: Any) -> Any:
    """A copy of a JSON-able value with credentials masked (dicts/lists walked recursively)."""
    if isinstance(value, str):
        return strip_url_credentials(value)
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and is_secret_key(k) and v not in (None, "")
                    else scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value
