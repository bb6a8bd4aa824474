"""Stable pseudonyms for context identifiers (``user_id``, ``session_id``, ``tenant``, …).

A pseudonym is a keyed HMAC-SHA256 of the identifier: the same user gets the same pseudonym in every
process that reads the same key, so traces stay joinable (group by user, count a user's cost, erase
a user's traces), while the trace store never sees the identifier or the key. The key is 32 random
bytes, written once (hex) to a file outside the trace store — by default in the user's config
directory — and read from there on every ``enable()``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sys
from pathlib import Path

from dspy_tracekit.keys import CONTEXT_ATTR_PREFIX as _CONTEXT_PREFIX

__all__ = ["DEFAULT_IDENTIFIERS", "Pseudonymizer", "default_key_path", "is_pseudonym", "load_key", "pseudonym"]

#: context keys pseudonymized by default (compared lower-case, ``-`` as ``_``)
DEFAULT_IDENTIFIERS = ("user_id", "user", "session_id", "session", "tenant", "tenant_id")
#: which identifiers share a pseudonym space: ``user`` and ``user_id`` name the same person
_KIND = {"user_id": "user", "user": "user", "session_id": "session", "session": "session",
         "tenant_id": "tenant", "tenant": "tenant"}
#: attribute and metadata keys MLflow and the core derive from the context identifiers
_DERIVED = {"user.id": "user", "session.id": "session", "mlflow.trace.user": "user",
            "mlflow.trace.session": "session"}

PREFIX = "ps_"
_PSEUDONYM = re.compile(r"ps_[0-9a-f]{24}")
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
KEY_FILE_NAME = "pseudonym.key"
#: a Pseudonymizer remembers kinds and pseudonyms of at most this many keys / identifiers
_MEMO_MAX = 8192
_UNKNOWN = object()


def default_key_path() -> Path:
    """``$XDG_CONFIG_HOME/dspy-tracekit/pseudonym.key`` (``~/.config/...``; ``%APPDATA%\\...`` on Windows)."""
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        base = Path(os.environ["APPDATA"])
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "dspy-tracekit" / KEY_FILE_NAME


def is_pseudonym(value: object) -> bool:
    return isinstance(value, str) and _PSEUDONYM.fullmatch(value) is not None


def _err(path: Path, msg: str) -> ValueError:
    return ValueError(f"redact.pseudonym_key_file: {msg} ({path})")


def _read(path: Path) -> bytes:
    try:
        raw = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise _err(path, f"cannot read the pseudonym key: {type(exc).__name__}: {exc}") from exc
    if not _HEX_KEY.fullmatch(raw):
        raise _err(path, "not a pseudonym key: the file must hold 64 hexadecimal characters (32 random bytes)")
    return bytes.fromhex(raw)


def load_key(path: str | os.PathLike | None = None, create: bool = False) -> tuple[bytes, Path]:
    """The key in ``path`` (default: :func:`default_key_path`), and the path.

    :param create: write a new random key if the file does not exist (atomically: two processes
        starting at once end up with the same key).
    :raises ValueError: naming ``redact.pseudonym_key_file`` and the file, if it is missing (and
        ``create`` is false), unreadable, or does not hold a key.
    """
    p = Path(path).expanduser() if path is not None else default_key_path()
    if p.exists() or not create:
        if not p.exists():
            raise _err(p, "no pseudonym key at this path; it is made once (by the first enable() with the "
                          "default path) and must be kept: without it no pseudonym can be computed again. "
                          "To make one here: python -c \"import secrets; print(secrets.token_hex(32))\" > FILE "
                          "(readable by you only)")
        return _read(p), p
    try:
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, p)  # fails if another process made the key meanwhile: then that one is used
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise _err(p, f"cannot create the pseudonym key: {type(exc).__name__}: {exc}; set "
                      "pseudonym_key_file to a writable path, or pseudonyms = false") from exc
    return _read(p), p


def _norm(key: str) -> str:
    return key.lower().replace("-", "_").replace(" ", "_")


class Pseudonymizer:
    """Maps context identifiers to ``ps_<24 hex>`` pseudonyms with a keyed HMAC."""

    __slots__ = ("_key", "_kinds", "_pseudonyms", "keys", "path")

    def __init__(self, key: bytes, identifiers: tuple[str, ...] | list[str] = DEFAULT_IDENTIFIERS,
                 path: Path | None = None):
        self._key = key
        self.keys = frozenset(_norm(k) for k in identifiers)
        self.path = path
        #: key -> kind (None for no identifier), and (kind, text) -> pseudonym: the same few keys and
        #: identifiers come back on every span of every trace
        self._kinds: dict[str, str | None] = {}
        self._pseudonyms: dict[tuple[str, str], str] = {}

    def kind(self, key: object) -> str | None:
        """The pseudonym space of a tag, attribute or metadata key, or ``None`` if it is no identifier."""
        if type(key) is str:
            kind = self._kinds.get(key, _UNKNOWN)
            if kind is not _UNKNOWN:
                return kind
        elif not isinstance(key, str):
            return None
        kind = self._kind(key)
        kinds = self._kinds
        if len(kinds) >= _MEMO_MAX:
            kinds.clear()
        kinds[key] = kind
        return kind

    def _kind(self, key: str) -> str | None:
        if key in _DERIVED:
            return _DERIVED[key]
        key = key.removeprefix(_CONTEXT_PREFIX)
        k = _norm(key)
        if k in self.keys:
            return _KIND.get(k, k)
        return None

    def pseudonym(self, kind: str, value: object) -> str:
        """The pseudonym of ``value`` as an identifier of ``kind`` (``user``, ``session``, ``tenant``, …).

        Values are compared as text with surrounding spaces removed; e-mail addresses ignore case.
        A value that is already a pseudonym is returned as is.
        """
        text = str(value).strip()
        memo = self._pseudonyms
        hit = memo.get((kind, text))
        if hit is not None:
            return hit
        out = self._pseudonym(kind, text)
        if len(memo) >= _MEMO_MAX:
            memo.clear()
        memo[(kind, text)] = out
        return out

    def _pseudonym(self, kind: str, text: str) -> str:
        if is_pseudonym(text):
            return text
        if "@" in text:
            text = text.lower()
        digest = hmac.new(self._key, f"{kind}\x00{text}".encode(), hashlib.sha256).hexdigest()
        return PREFIX + digest[:24]


def pseudonym(value: str, kind: str = "user", key_file: str | os.PathLike | None = None) -> str:
    """The pseudonym the redact plugin writes for ``value`` as a ``kind`` identifier (``user``,
    ``session``, ``tenant`` or the name of a listed key): what to filter traces by, e.g.
    ``metadata.`mlflow.trace.user` = '<pseudonym>'``. Reads the key file, never creates it."""
    key, path = load_key(key_file, create=False)
    return Pseudonymizer(key, path=path).pseudonym(kind, value)
