"""Prompt token counts for budget estimates, never touching the network.

tiktoken downloads its encodings on first use; this module only uses an encoding file that is
already on disk (tiktoken's cache directory, or the copy LiteLLM ships in its wheel). It prefers
``o200k_base`` (GPT-4o family), then ``cl100k_base``. Without tiktoken or a local encoding file the
count is ``ceil(characters / 4)``. Either way each message adds 4 tokens of framing and the reply
3 (OpenAI's published rule of thumb); other providers' tokenizers differ by a few percent.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from importlib.util import find_spec
from pathlib import Path
from typing import Any

_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
_PATTERNS = {
    "o200k_base": "|".join([  # noqa: FLY002 - kept as tiktoken writes it
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]),
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
}
PER_MESSAGE = 4
PER_REPLY = 3


def _candidate_dirs() -> list[Path]:
    dirs = [os.environ.get("TIKTOKEN_CACHE_DIR"), os.environ.get("DATA_GYM_CACHE_DIR"),
            os.path.join(tempfile.gettempdir(), "data-gym-cache")]
    spec = find_spec("litellm")  # locates the package without importing it
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            dirs.append(os.path.join(loc, "litellm_core_utils", "tokenizers"))
    return [Path(d) for d in dirs if d]


def load_local_encoding() -> Any | None:
    """A tiktoken ``Encoding`` built from a local file, or ``None`` (no tiktoken / no file)."""
    try:
        import tiktoken
    except ImportError:
        return None
    for name in ("o200k_base", "cl100k_base"):
        key = hashlib.sha1(_URL.format(name).encode()).hexdigest()
        for d in _candidate_dirs():
            path = d / key
            if path.is_file():
                try:
                    ranks = {base64.b64decode(tok): int(rank)
                             for tok, rank in (line.split() for line in path.read_bytes().splitlines() if line)}
                    return tiktoken.Encoding(name=f"{name}(local)", pat_str=_PATTERNS[name],
                                             mergeable_ranks=ranks, special_tokens={})
                except Exception:  # noqa: BLE001, S112 - a broken cache file means: fall back to chars/4
                    continue
    return None


def _texts(value: Any, out: list[str]) -> int:
    """Collect message texts into ``out``; returns the number of messages."""
    if isinstance(value, str):
        out.append(value)
        return 1
    n = 0
    if isinstance(value, (list, tuple)):
        for msg in value:
            if isinstance(msg, dict):
                n += 1
                content = msg.get("content")
                if isinstance(content, str):
                    out.append(content)
                elif isinstance(content, (list, tuple)):
                    for part in content:
                        if isinstance(part, dict) and isinstance(part.get("text"), str):
                            out.append(part["text"])
                        elif isinstance(part, str):
                            out.append(part)
            elif isinstance(msg, str):
                n += 1
                out.append(msg)
    return n


class PromptCounter:
    """Counts the tokens of an LM call's prompt (``messages`` or a prompt string)."""

    def __init__(self, encoding: Any | None = None):
        self.encoding = encoding
        self.method = f"tiktoken:{encoding.name}" if encoding is not None else "chars/4"

    def count(self, messages: Any) -> int:
        texts: list[str] = []
        n = _texts(messages, texts)
        if self.encoding is not None:
            tokens = sum(len(self.encoding.encode_ordinary(t)) for t in texts)
        else:
            tokens = sum(-(-len(t) // 4) for t in texts)
        return tokens + n * PER_MESSAGE + PER_REPLY
