"""Credentials never leave the process, with or without the redact plugin.

Applied on the delivery path to every span's inputs, outputs, parameters and attributes: values
under credential-like keys are replaced, and ``user:password@`` is cut out of URLs.
"""

from __future__ import annotations

import re
from typing import Any

from dspy_tracekit.keys import CREDENTIAL_KEYS, is_credential_key

MASK = "<REDACTED>"

#: keys whose values are credentials: one list, shared with the redact plugin (:mod:`dspy_tracekit.keys`)
SECRET_KEYS = CREDENTIAL_KEYS

_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/@\s:]*(?::[^/@\s]*)?)@")


is_secret_key = is_credential_key


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
