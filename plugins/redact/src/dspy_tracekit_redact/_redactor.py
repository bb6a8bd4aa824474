"""The :class:`Redactor`: config parsing, text scanning and structure walking.

A Redactor is immutable after construction and safe to share between threads; the per-call counts
live in a dict the caller passes in.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import importlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from dspy_tracekit.keys import CREDENTIAL_KEYS, CREDENTIAL_SUFFIXES

from ._detectors import (
    _DIGIT_AT_COLON,
    BUILTIN_ENTITIES,
    SPECIAL_ENTITIES,
    Detector,
    Text,
    builtin_detectors,
    matches_at_positions,
    may_hold_builtin,
    normalize,
)
from ._generic import GenericSecretDetector, GenericSecretRule
from ._prefilter import make_prefilter
from ._pseudonym import DEFAULT_IDENTIFIERS, Pseudonymizer, default_key_path, load_key

__all__ = ["ACTIONS", "DEFAULT_SECRET_KEYS", "Finding", "Redactor"]

ACTIONS = ("mask", "partial", "drop", "hash")
FIELD_POLICIES = ("scan", "skip", "mask", "drop")
HASH_SECRET_ENV = "DSPY_TRACEKIT_REDACT_HASH_SECRET"

#: dict keys whose values are masked whole, whatever they look like (compared lower-case, ``-`` as ``_``).
#: The core's credential keys (one list, :data:`dspy_tracekit.keys.CREDENTIAL_KEYS`) plus identifiers
#: of payment cards and people.
DEFAULT_SECRET_KEYS = CREDENTIAL_KEYS | frozenset({
    "ssn", "social_security_number", "credit_card", "card_number", "cc_number", "cvv", "cvc", "pin", "otp",
})
_SECRET_SUFFIXES = CREDENTIAL_SUFFIXES

_KNOWN_KEYS = (
    "entities", "actions", "hash_secret", "hash_length", "secret_keys", "allow", "allow_patterns",
    "patterns", "fields", "scan_json", "max_text_chars", "mlflow_spans", "prefilter",
    "generic_secret_entropy", "generic_secret_min_length", "pseudonyms", "pseudonym_keys",
    "pseudonym_key_file", "prefilter_cache",
)
_REMOVED_KEYS = ("ner", "ner_entities", "ner_score")
_PATTERN_KEYS = ("name", "regex", "validator", "action", "ignore_case")
_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_SECTION_PRE = "[[ ## "
#: longer texts are tested for ``[\d@:]`` before :func:`may_hold_builtin` (see ``find``)
_LONG_TEXT = 64
#: the cross-trace cache of strings that repeat across traces (system prompts, signature instructions,
#: demos, tag values): at most this many strings, of at most this many characters in all, each at most
#: _SHARED_MAX_STRING long; a string is admitted the second time it is seen, so one-off values (the
#: user's messages) do not push the repeated ones out
_SHARED_MAX_ENTRIES = 4096
_SHARED_MAX_CHARS = 2_000_000
_SHARED_MAX_STRING = 100_000
_SEEN_MAX = 16_384
#: the detector sets remembered per set of gates the pass switched on
_MEMO_MAX = 512
#: key decisions and pseudonym kinds are remembered for at most this many distinct keys
_KEY_MEMO_MAX = 8192
#: what _key_rule says about a key that has no field policy and is no secret key: walk its value
_SCAN = "scan"
_SECRET = "secret"


class Finding(NamedTuple):
    """A detected value: ``text[start:end]`` is of type ``entity``."""

    start: int
    end: int
    entity: str


class _Drop:
    """Marker for "remove the enclosing field"."""

    __repr__ = lambda self: "<drop>"


DROP = _Drop()


class _Custom:
    __slots__ = ("entity", "gate", "priority", "regex", "validator")

    def __init__(self, entity, regex, validator):
        self.entity = self.gate = entity
        self.regex = regex
        self.validator = validator
        self.priority = 96  # the user said so: custom patterns win over built-ins

    def find(self, text: str, ctx: Text | None = None):
        group = "value" if "value" in self.regex.groupindex else 0
        for m in self.regex.finditer(text):
            value = m.group(group)
            if not value:
                continue
            if self.validator is not None and not self.validator(value):
                continue
            yield m.span(group)


def _widen(out: list, generic: list) -> list:
    """A generic secret token that lost to an overlapping finding (an AWS-shaped run inside a longer
    token) widens that finding to the whole token, so no part of the token is left in the text.
    (Candidates as ``find`` holds them: ``(start, -priority, start - end, index, end, entity)``.)"""
    for c in generic:
        gs, ge = c[0], c[4]
        for i, (s, prio, _, k, e, ent) in enumerate(out):
            if s < ge and gs < e:
                ns, ne = min(s, gs), max(e, ge)
                if (i == 0 or out[i - 1][4] <= ns) and (i + 1 == len(out) or out[i + 1][0] >= ne):
                    out[i] = (ns, prio, ns - ne, k, ne, ent)
                break
    return out


def _resolve(cands: list[tuple[int, int, int, int, int, str]]) -> list[tuple[int, int, int, int, int, str]]:
    """The candidates ``(start, -priority, start - end, detector index, end, entity)`` that are findings: in
    order of start, an overlapping candidate replaces the one before it when its priority is higher, or as high
    and it is longer (as long: the first detector's stays); then :func:`_widen`. (``find`` makes them
    :class:`Finding`; ``_text`` reads them as they are.)"""
    cands.sort()
    out: list[tuple[int, int, int, int, int, str]] = []
    lost: list[tuple[int, int, int, int, int, str]] = []
    end = -1  # the end of out[-1] (no candidate starts before 0)
    for c in cands:
        if c[0] < end:
            last = out[-1]
            if (c[1], c[2]) < (last[1], last[2]):  # a higher priority, or as high and longer
                out[-1] = c
                end = c[4]
                lost.append(last)
            else:
                lost.append(c)
            continue
        out.append(c)
        end = c[4]
    if lost:
        out = _widen(out, [c for c in lost if c[5] == "GENERIC_SECRET"])
    return out


def _err(key: str, msg: str) -> ValueError:
    return ValueError(f"redact.{key}: {msg}")


def _load_callable(path: str, key: str) -> Callable[[str], Any]:
    mod_name, sep, attr = path.partition(":")
    if not sep:
        mod_name, _, attr = path.rpartition(".")
    if not mod_name or not attr:
        raise _err(key, f"{path!r} is not a dotted import path like 'package.module.function'")
    try:
        obj = importlib.import_module(mod_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise _err(key, f"cannot import {path!r}: {exc}") from exc
    if not callable(obj):
        raise _err(key, f"{path!r} is not callable")
    return obj


def _str_list(config: dict, key: str) -> list[str] | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) for v in value):
        raise _err(key, f"must be a list of strings, got {value!r}")
    return list(value)


def _bool(config: dict, key: str, default: bool) -> bool:
    value = config.get(key, default)
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")  # from environment variables
    if not isinstance(value, bool):
        raise _err(key, f"must be true or false, got {value!r}")
    return value


def _int(config: dict, key: str, default: int, lo: int, hi: int) -> int:
    value = config.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _err(key, f"must be an integer between {lo} and {hi}, got {value!r}")
    return value


def _number(config: dict, key: str, default: float, lo: float, hi: float, unit: str) -> float:
    value = config.get(key, default)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise _err(key, f"must be a number of {unit} between {lo:g} and {hi:g}, got {value!r}")
    return float(value)


def _cache_dir(config: dict) -> str | None:
    """``prefilter_cache``: true (default) = the user's cache folder, false = none, a string = that folder."""
    value = config.get("prefilter_cache", True)
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        value = value.strip().lower() in ("1", "true", "yes", "on")  # from environment variables
    if value is True:
        from ._dbcache import default_dir

        return default_dir()
    if value is False:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _err("prefilter_cache", f"must be true, false or a folder path, got {value!r}")
    return os.path.abspath(os.path.expanduser(value))


def norm_key(key: str) -> str:
    return key.lower().replace("-", "_").replace(" ", "_")


class Redactor:
    """Finds PII and secrets in text and structures and replaces them.

    :param config: the same keys as the ``[tool.dspy-tracekit.redact]`` table (see the plugin's
        README); ``None`` for the defaults (every built-in entity type, action ``mask``).
    :raises ValueError: naming the key, for a bad regex, an unknown entity type, action or key.
    """

    def __init__(self, config: dict[str, Any] | None = None):
        config = dict(config or {})
        removed = sorted(set(config) & set(_REMOVED_KEYS))
        if removed:
            raise _err(removed[0], "the NER backend (Presidio) was removed: no spaCy model installs from the "
                                   "package registry, so it could never be tested; remove this key and add "
                                   "names or addresses you must catch as 'patterns' or 'fields'")
        unknown = sorted(set(config) - set(_KNOWN_KEYS))
        if unknown:
            raise _err(unknown[0], f"unknown key (known keys: {', '.join(_KNOWN_KEYS)})")

        entities = _str_list(config, "entities")
        if entities is None:
            entities = list(BUILTIN_ENTITIES)
        for i, name in enumerate(entities):
            if name not in BUILTIN_ENTITIES:
                raise _err(f"entities[{i}]", f"unknown entity type {name!r} (known: {', '.join(BUILTIN_ENTITIES)})")
        by_entity = builtin_detectors()
        by_entity["GENERIC_SECRET"] = [GenericSecretDetector(GenericSecretRule(
            entropy=_number(config, "generic_secret_entropy", 3.5, 1.0, 6.0, "bits per character"),
            min_length=_int(config, "generic_secret_min_length", 16, 8, 256)))]
        detectors: list[Detector | _Custom] = [d for e in entities for d in by_entity[e]]

        # custom patterns
        raw_patterns = config.get("patterns") or []
        if not isinstance(raw_patterns, list):
            raise _err("patterns", f"must be a list of tables, got {raw_patterns!r}")
        custom_actions: dict[str, str] = {}
        custom_names: list[str] = []
        for i, p in enumerate(raw_patterns):
            key = f"patterns[{i}]"
            if not isinstance(p, dict):
                raise _err(key, f"must be a table with name and regex, got {p!r}")
            bad = sorted(set(p) - set(_PATTERN_KEYS))
            if bad:
                raise _err(f"{key}.{bad[0]}", f"unknown key (known keys: {', '.join(_PATTERN_KEYS)})")
            name = p.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                raise _err(f"{key}.name", f"must be an upper-case name like 'EMPLOYEE_ID', got {name!r}")
            if name in BUILTIN_ENTITIES or name in SPECIAL_ENTITIES or name in custom_names:
                raise _err(f"{key}.name", f"{name!r} is already an entity type")
            regex = p.get("regex")
            if not isinstance(regex, str) or not regex:
                raise _err(f"{key}.regex", f"must be a non-empty string, got {regex!r}")
            try:
                compiled = re.compile(regex, re.IGNORECASE if p.get("ignore_case") else 0)
            except re.error as exc:
                raise _err(f"{key}.regex", f"invalid regular expression {regex!r}: {exc}") from exc
            if compiled.match(""):
                raise _err(f"{key}.regex", f"{regex!r} matches the empty string")
            validator = None
            if p.get("validator") is not None:
                if not isinstance(p["validator"], str):
                    raise _err(f"{key}.validator", f"must be a dotted import path, got {p['validator']!r}")
                validator = _load_callable(p["validator"], f"{key}.validator")
            if p.get("action") is not None:
                if p["action"] not in ACTIONS:
                    raise _err(f"{key}.action", f"must be one of {', '.join(ACTIONS)}, got {p['action']!r}")
                custom_actions[name] = p["action"]
            custom_names.append(name)
            detectors.append(_Custom(name, compiled, validator))

        # actions
        known_for_actions = set(BUILTIN_ENTITIES) | set(SPECIAL_ENTITIES) | set(custom_names)
        raw_actions = config.get("actions") or {}
        if not isinstance(raw_actions, dict):
            raise _err("actions", f"must be a table of entity type = action, got {raw_actions!r}")
        default_action = raw_actions.get("default", "mask")
        actions: dict[str, str] = {}
        for name, action in raw_actions.items():
            if name != "default" and name not in known_for_actions:
                raise _err(f"actions.{name}", f"unknown entity type (known: {', '.join(sorted(known_for_actions))})")
            if action not in ACTIONS:
                raise _err(f"actions.{name}", f"must be one of {', '.join(ACTIONS)}, got {action!r}")
        for name in known_for_actions:
            actions[name] = raw_actions.get(name, custom_actions.get(name, default_action))
        for name in ("BINARY", "TRUNCATED"):
            actions[name] = "mask"  # typed markers, whatever the default

        secret = config.get("hash_secret")
        if secret is None:
            secret = os.environ.get(HASH_SECRET_ENV) or None
        if isinstance(secret, int) and not isinstance(secret, bool):  # a numeric environment value
            secret = str(secret)
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise _err("hash_secret", "must be a non-empty string")
        if "hash" in actions.values() and secret is None:
            who = next(k for k, v in sorted(actions.items()) if v == "hash")
            raise _err("hash_secret", f"required because actions.{who} is 'hash' (set it in the table or in "
                                      f"{HASH_SECRET_ENV}); pseudonyms must be stable across processes")
        self._secret = secret.encode() if secret else None
        self._hash_length = _int(config, "hash_length", 8, 6, 64)

        extra_keys = _str_list(config, "secret_keys") or []
        self._secret_keys = frozenset(DEFAULT_SECRET_KEYS | {norm_key(k) for k in extra_keys})

        self._allow = frozenset(_str_list(config, "allow") or [])
        allow_patterns = []
        for i, pat in enumerate(_str_list(config, "allow_patterns") or []):
            try:
                allow_patterns.append(re.compile(pat))
            except re.error as exc:
                raise _err(f"allow_patterns[{i}]", f"invalid regular expression {pat!r}: {exc}") from exc
        self._allow_patterns = tuple(allow_patterns)

        raw_fields = config.get("fields") or {}
        if not isinstance(raw_fields, dict):
            raise _err("fields", f"must be a table of field name = policy, got {raw_fields!r}")
        for name, policy in raw_fields.items():
            if policy not in FIELD_POLICIES:
                raise _err(f"fields.{name}", f"must be one of {', '.join(FIELD_POLICIES)}, got {policy!r}")
        self._fields = {str(k): v for k, v in raw_fields.items() if v != "scan"}
        hidden = [re.escape(k) for k, v in self._fields.items() if v in ("mask", "drop")]
        # the same fields inside DSPy ChatAdapter prompts: "[[ ## notes ## ]]\n<value>"
        self._sections = re.compile(
            r"(\[\[ ## (?:" + "|".join(hidden) + r") ## \]\]\n)(.*?)(?=\n\s*\[\[ ## |\Z)", re.DOTALL) if hidden else None

        self._scan_json = _bool(config, "scan_json", True)
        self._max_chars = _int(config, "max_text_chars", 1_000_000, 1_000, 1_000_000_000)
        #: read by the plugin, not by the Redactor.
        self.mlflow_spans = _bool(config, "mlflow_spans", True)

        # context identifiers → pseudonyms (the key file is read by pseudonymizer(), on enable())
        self._pseudonyms = _bool(config, "pseudonyms", True)
        self._identifiers = tuple(DEFAULT_IDENTIFIERS) + tuple(_str_list(config, "pseudonym_keys") or ())
        key_file = config.get("pseudonym_key_file")
        if key_file is not None and (not isinstance(key_file, str) or not key_file.strip()):
            raise _err("pseudonym_key_file", f"must be a file path, got {key_file!r}")
        self._key_file = key_file
        self._pseudonymizer: Pseudonymizer | None = None

        # GENERIC_SECRET last: it skips tokens the detectors before it have claimed
        self._detectors = tuple(sorted(detectors, key=lambda d: isinstance(d, GenericSecretDetector)))
        #: (the detectors they were made from, active gates → what ``_running`` gives)
        self._memo: tuple[tuple, dict] = ((), {})
        self._all_memo: tuple[tuple, tuple] = ((), ())
        #: one Hyperscan pass says which built-in detectors can match (None: every detector runs)
        cache_dir = _cache_dir(config)
        self._prefilter = make_prefilter(entities, cache_dir) if _bool(config, "prefilter", True) else None
        #: custom patterns can match anything: no whole-string pre-filter then
        self._builtin_only = not custom_names
        self._generic = "GENERIC_SECRET" in entities
        self.entities: tuple[str, ...] = tuple(entities) + tuple(custom_names)
        self._actions = actions
        #: ``find`` is this class's: ``_text`` reads ``_found``'s candidates instead of a Finding made for each
        self._own_find = type(self).find is Redactor.find
        #: the marker of each entity type whose action is ``mask`` (what ``marker`` returns for it)
        self._masks = {name: f"<{name}>" for name, action in actions.items() if action == "mask"}

        # What the structure walk remembers; everything in here is a pure function of the string (or key)
        # and this Redactor's config, so a hit gives what a scan would give.
        #: str -> (redacted value, ((entity, count), ...)) of strings seen in more than one trace
        self._shared: dict[str, tuple[Any, tuple[tuple[str, int], ...]]] = {}
        self._shared_chars = 0
        #: hashes of strings seen once (a collision only admits a string early)
        self._seen: set[int] = set()
        self._shared_lock = threading.Lock()
        #: key -> _SCAN, _SECRET or its field policy ("skip", "mask", "drop")
        self._key_rules: dict[str, str] = {}

    def pseudonymizer(self) -> Pseudonymizer | None:
        """The pseudonymizer of context identifiers (``None`` with ``pseudonyms = false``); reads the
        key file on first use (writing a new key at the default path if there is none).

        :raises ValueError: naming ``redact.pseudonym_key_file`` and the file.
        """
        if not self._pseudonyms:
            return None
        if self._pseudonymizer is None:
            key, path = load_key(self._key_file, create=self._key_file is None)
            self._pseudonymizer = Pseudonymizer(key, self._identifiers, path)
        return self._pseudonymizer

    def check_pseudonym_key(self) -> None:
        """What :meth:`pseudonymizer` checks, without writing a key (a missing default key is made later).

        :raises ValueError: naming ``redact.pseudonym_key_file`` and the file.
        """
        if not self._pseudonyms:
            return
        if self._key_file is not None or default_key_path().exists():
            load_key(self._key_file, create=False)

    # ------------------------------------------------------------------------------ text
    def find(self, text: str) -> list[Finding]:
        """Every value to redact in ``text``, non-overlapping, in order (allow-list applied)."""
        new = tuple.__new__  # a Finding without the Python-level __new__ of a named tuple
        return [new(Finding, (c[0], c[4], c[5])) for c in self._found(text)]

    def _found(self, text: str) -> list[tuple[int, int, int, int, int, str]]:
        """:meth:`find`'s findings as the candidates ``_resolve`` keeps (``c[0]``, ``c[4]``, ``c[5]`` are a
        finding's start, end and entity): ``_text`` reads them without making each a :class:`Finding`."""
        # a prompt-sized text almost always holds a digit, '@' or ':': say so before may_hold_builtin
        # lower-cases all of it (2-4 us per 2 KB prompt; short labels go to it directly). ``":" in text`` first: a
        # ChatAdapter prompt has one within its first line, which ``in`` finds at C speed (~60 ns), where the regex
        # search (Unicode ``\d`` tested per character) takes ~0.45 us to reach it
        if self._builtin_only and not (len(text) > _LONG_TEXT and (
                ":" in text or _DIGIT_AT_COLON.search(text) is not None)) and not may_hold_builtin(text):
            return []
        ctx = Text(text)
        prefilter = self._prefilter
        detectors = None
        if prefilter is not None:
            ctx.finders = prefilter.finders
            if ctx.scannable:
                active, ctx.context_starts, ctx.digit_runs, ctx.positions = prefilter.scan(text)
                if not ctx.ascii and self._generic:
                    # the pass holds only the ASCII credential words (lower-casing such text changes no
                    # ASCII letter and no length): the others are looked for in the lower-cased text
                    wide = prefilter.wide_word_starts_in(text, ctx)
                    if wide:
                        ctx.context_starts = sorted({*ctx.context_starts, *wide})
                        active.add("GENERIC_SECRET")
                detectors = self._running(active)
            elif not ctx.ascii and self._generic:
                # no pass (every detector runs): all the credential words, in the lower-cased text
                ctx.context_starts = (prefilter.word_starts(ctx.lower) if len(ctx.lower) == len(text)
                                      else None)
        if detectors is None:
            detectors = self._all
        # a candidate is (start, -priority, start - end, detector index, end, entity): sorted as it is, it is in
        # the order of the resolution below (start, then the higher priority, then the longer; the index keeps
        # the order among equals the detectors' own, as a stable sort by the first three did)
        cands: list[tuple[int, int, int, int, int, str]] = []
        add = cands.append
        for k, find, prio, entity, claims in detectors:
            if k < 0:  # the detectors that only match at the pass's positions, in one loop
                self._at_positions(text, ctx, find, add)
                continue
            if claims:  # GENERIC_SECRET: what a more specific detector already took need not be checked again
                # in order of start, as GENERIC_SECRET reads them (_claimed_lists): sorted here, _resolve's sort then
                # finds the candidates in order but GENERIC_SECRET's, at the end (one sort of them, ~0.4 us less)
                cands.sort()
                ctx.claimed = [(c[0], c[4]) for c in cands if c[1] < prio]
            for s, e in find(text, ctx):
                add((s, prio, s - e, k, e, entity))
        if not cands:
            return []
        if self._allow or self._allow_patterns:
            cands = [c for c in cands if not self._allowed(text[c[0]:c[4]])]
        return _resolve(cands)

    def _entry(self, k: int, det: Detector | _Custom) -> tuple:
        """What ``find``'s loop reads of the detector ``det`` at index ``k``: ``(k, its find, -priority, entity,
        whether it reads the spans found before it)``."""
        claims = det.entity == "GENERIC_SECRET" and not (self._allow or self._allow_patterns)
        return k, det.find, -det.priority, det.entity, claims

    def _running(self, active: set[str]) -> tuple[tuple, ...]:
        """``_entry`` of each detector the pass's ``active`` gates (and custom patterns) run, in order, the
        ``by_position`` ones as one entry ``(-1, their (index, detector) pairs, ...)`` where the first of them
        was; remembered per set of gates (most texts share a few), for the detectors held now."""
        memo = self._memo
        if memo[0] is not self._detectors:  # replaced (the benchmark's per-detector timing)
            memo = self._memo = (self._detectors, {})
        key = frozenset(active)
        run = memo[1].get(key)
        if run is None:
            chosen = [(k, d) for k, d in enumerate(self._detectors) if d.gate in key or isinstance(d, _Custom)]
            group = tuple((k, d) for k, d in chosen if getattr(d, "by_position", False))
            run = []
            for k, d in chosen:
                if not getattr(d, "by_position", False):
                    run.append(self._entry(k, d))
                elif d is group[0][1]:  # where the first of them was
                    run.append((-1, group, 0, "", False))
            run = tuple(run)
            if len(memo[1]) >= _MEMO_MAX:
                memo[1].clear()
            memo[1][key] = run
        return run

    #: the ``by_position`` detectors of a group, ``(text, ctx, group, add)``: an attribute of its own, which the
    #: benchmark replaces to time it (the function itself, not a method calling it: one call less per text)
    _at_positions = staticmethod(matches_at_positions)

    @property
    def _all(self) -> tuple[tuple, ...]:
        """``_entry`` of every detector (no pass: each one runs), for the detectors held now."""
        memo = self._all_memo
        if memo[0] is not self._detectors:
            memo = self._all_memo = (self._detectors, tuple(self._entry(k, d) for k, d in enumerate(self._detectors)))
        return memo[1]

    def _allowed(self, value: str) -> bool:
        return value in self._allow or any(p.fullmatch(value) for p in self._allow_patterns)

    def marker(self, entity: str, value: str, action: str | None = None) -> str:
        """The replacement for ``value`` (``""`` for ``drop``)."""
        action = action or self._actions.get(entity, "mask")
        if action == "hash" and self._secret is not None:
            digest = hmac.new(self._secret, f"{entity}:{normalize(entity, value)}".encode(), hashlib.sha256)
            return f"<{entity}:{digest.hexdigest()[:self._hash_length]}>"
        if action == "partial":
            alnum = [c for c in value if c.isalnum()]
            if len(alnum) >= 8:
                return f"<{entity}:…{''.join(alnum[-4:])}>"
        if action == "drop":
            return ""
        return f"<{entity}>"

    def _text(self, text: str, counts: dict[str, int]) -> tuple[str, bool]:
        """Redacted text and whether a ``drop`` entity was in it."""
        if self._own_find:
            findings = self._found(text)
        else:  # a subclass's find() (a test's counting one, a user's filter) decides, as it always did
            findings = [(f[0], 0, 0, 0, f[1], f[2]) for f in self.find(text)]
        if not findings:
            return text, False
        parts = []
        pos = 0
        dropped = False
        actions = self._actions
        masks = self._masks
        for c in findings:
            s, e, entity = c[0], c[4], c[5]
            parts.append(text[pos:s])
            mask = masks.get(entity)
            if mask is not None:  # marker()'s answer for a masked type, without the call
                parts.append(mask)
            else:
                action = actions.get(entity, "mask")
                dropped = dropped or action == "drop"
                parts.append(self.marker(entity, text[s:e], action))
            counts[entity] = counts.get(entity, 0) + 1
            pos = e
        parts.append(text[pos:])
        return "".join(parts), dropped

    def redact_text(self, text: str, counts: dict[str, int] | None = None) -> str:
        """``text`` with every detected value replaced by its marker (``drop`` removes the value).

        :param counts: if given, incremented per entity type.
        """
        if counts is None:
            counts = {}
        return self._string(text, counts, keep_text=True)

    def _string(self, s: str, counts: dict[str, int], keep_text: bool = False, cache: dict | None = None) -> Any:
        """A string of a structure: with a per-trace ``cache``, each distinct string is redacted once per
        trace (and a string that repeats across traces once while it stays in the shared cache); its
        counts are added on every occurrence, as a scan would add them."""
        if cache is None or keep_text:
            return self._string_uncached(s, counts, keep_text, cache)
        hit = cache.get(s)
        if hit is None:
            hit = self._shared.get(s)
            if hit is None:
                found: dict[str, int] = {}
                hit = (self._string_uncached(s, found, False, cache), tuple(found.items()))
                self._admit(s, hit)
            cache[s] = hit
        if hit[1]:
            for entity, n in hit[1]:
                counts[entity] = counts.get(entity, 0) + n
        return hit[0]

    def _admit(self, s: str, hit: tuple[Any, tuple[tuple[str, int], ...]]) -> None:
        """Keep ``s``'s result across traces if ``s`` was seen before (by an earlier trace: within one
        trace the per-trace cache answers first)."""
        if len(s) > _SHARED_MAX_STRING:
            return
        h = hash(s)
        seen = self._seen
        if h not in seen:
            if len(seen) >= _SEEN_MAX:
                seen.clear()
            seen.add(h)
            return
        with self._shared_lock:
            shared = self._shared
            if s in shared:
                return
            if len(shared) >= _SHARED_MAX_ENTRIES or self._shared_chars + len(s) > _SHARED_MAX_CHARS:
                # the older half goes: what every trace repeats is seen again and comes back
                for k in list(shared)[:len(shared) // 2 + 1]:
                    self._shared_chars -= len(k)
                    del shared[k]
            shared[s] = hit
            self._shared_chars += len(s)

    def _string_uncached(self, s: str, counts: dict[str, int], keep_text: bool = False,
                         cache: dict | None = None) -> Any:
        if "\x00" in s:
            counts["BINARY"] = counts.get("BINARY", 0) + 1
            return f"<BINARY:{len(s)} chars>"
        suffix = ""
        if len(s) > self._max_chars:
            cut = s.rfind(" ", self._max_chars - 256, self._max_chars)
            cut = cut if cut > 0 else self._max_chars
            suffix = f"…<TRUNCATED:{len(s) - cut} chars>"
            counts["TRUNCATED"] = counts.get("TRUNCATED", 0) + 1
            s = s[:cut]
        if self._sections is not None and _SECTION_PRE in s:
            s = self._sections.sub(lambda m: self._field_marker(m, counts), s)
        if self._scan_json and len(s) > 1 and s[0] in "{[" and s[-1] in "}]":
            try:
                parsed = json.loads(s)
            except ValueError:
                parsed = None
            if isinstance(parsed, (dict, list)):
                red = self._value(parsed, counts, cache)
                if red is DROP:
                    return DROP
                return (s if red == parsed else json.dumps(red, ensure_ascii=False)) + suffix
        out, dropped = self._text(s, counts)
        return DROP if dropped and not keep_text else out + suffix

    def _field_marker(self, m: re.Match[str], counts: dict[str, int]) -> str:
        counts["FIELD"] = counts.get("FIELD", 0) + 1
        return m.group(1) + "<FIELD>"

    # ------------------------------------------------------------------------------ structures
    def redact(self, obj: Any, counts: dict[str, int] | None = None, cache: dict | None = None) -> Any:
        """A redacted copy of ``obj`` (``None`` if a ``drop`` action removes all of it).

        Walks dicts, lists, tuples, sets, ``dspy.Example``/``Prediction``, pydantic models and
        dataclasses; scans strings (and JSON inside strings); big integers are scanned as text;
        bytes become ``<BINARY:n bytes>``; other objects are scanned as their ``str()``.

        :param counts: if given, incremented per entity type.
        :param cache: a dict to share between the calls over one trace: a string seen before (the LM
            span's messages repeat the module's inputs) is then redacted once, and counted each time.
        """
        if counts is None:
            counts = {}
        out = self._value(obj, counts, cache)
        return None if out is DROP else out

    def _secret_key(self, key: str) -> bool:
        k = norm_key(key)
        return k in self._secret_keys or k.endswith(_SECRET_SUFFIXES)

    def _key_rule(self, key: str) -> str:
        """What the key-based rules say about ``key``'s value: its field policy, ``_SECRET``, or
        ``_SCAN`` (remembered per key)."""
        rule = self._key_rules.get(key)
        if rule is None:
            rule = self._fields.get(key) or (_SECRET if self._secret_key(key) else _SCAN)
            rules = self._key_rules
            if len(rules) >= _KEY_MEMO_MAX:
                rules.clear()
            rules[key] = rule
        return rule

    def _keyed(self, key: Any, value: Any, counts: dict[str, int], cache: dict | None = None) -> Any:
        """The value of a mapping entry, after the key-based rules and the per-field policy."""
        if type(key) is str or isinstance(key, str):
            rule = self._key_rules.get(key) or self._key_rule(key)
            if rule is not _SCAN:
                return self._keyed_rule(rule, value, counts, cache)
        t = type(value)
        if t is str:  # a string seen before in this trace: _string's hit, inlined
            hit = cache.get(value) if cache is not None else None
            if hit is None:
                return self._string(value, counts, cache=cache)
            for entity, n in hit[1]:
                counts[entity] = counts.get(entity, 0) + n
            return hit[0]
        if value is None or t is float or t is bool:
            return value
        return self._value(value, counts, cache)

    def _keyed_rule(self, rule: str, value: Any, counts: dict[str, int], cache: dict | None) -> Any:
        """The value of an entry whose key has a field policy or is a secret key."""
        if rule is not _SECRET:  # a field policy
            if rule == "skip":
                return copy.deepcopy(value)
            if value is None or value == "":
                return value
            counts["FIELD"] = counts.get("FIELD", 0) + 1
            return DROP if rule == "drop" else self.marker("FIELD", "", "mask")
        if value in (None, ""):
            return self._value(value, counts, cache)  # a str subclass comes back a str, as before
        if isinstance(value, str) and value.startswith("<") and value.endswith(">"):
            return value  # already a marker (the core's own credential scrub)
        if isinstance(value, (dict, list)) and not value:
            return value
        counts["SECRET_FIELD"] = counts.get("SECRET_FIELD", 0) + 1
        action = self._actions["SECRET_FIELD"]
        if action == "drop":
            return DROP
        raw = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
        return self.marker("SECRET_FIELD", raw, action)

    def _value(self, obj: Any, counts: dict[str, int], cache: dict | None = None) -> Any:
        # the exact JSON types first (what the core's materialize produces), by type; subclasses and
        # everything else take the isinstance chain of _other
        t = type(obj)
        if t is str:
            return self._string(obj, counts, cache=cache)
        if t is dict:
            return self._mapping(obj.items(), counts, cache)
        if t is list:
            out = []
            for x in obj:
                if type(x) is str:  # _string's hit, inlined
                    hit = cache.get(x) if cache is not None else None
                    if hit is None:
                        v = self._string(x, counts, cache=cache)
                    else:
                        v = hit[0]
                        for entity, n in hit[1]:
                            counts[entity] = counts.get(entity, 0) + n
                else:
                    v = self._value(x, counts, cache)
                if v is not DROP:
                    out.append(v)
            return out
        if obj is None or t is float or t is bool:
            return obj
        if t is int and -100_000_000 < obj < 100_000_000:
            return obj
        return self._other(obj, counts, cache)

    def _other(self, obj: Any, counts: dict[str, int], cache: dict | None = None) -> Any:
        if isinstance(obj, str):
            return self._string(obj, counts, cache=cache)
        if obj is None or isinstance(obj, (bool, float)):
            return obj
        if isinstance(obj, int):
            if -100_000_000 < obj < 100_000_000:
                return obj
            text = str(obj)
            out, dropped = self._text(text, counts)
            return DROP if dropped else (obj if out == text else out)
        if isinstance(obj, dict):
            return self._mapping(obj.items(), counts, cache)
        if isinstance(obj, (list, tuple, set, frozenset)):
            items = [v for v in (self._value(x, counts, cache) for x in obj) if v is not DROP]
            if isinstance(obj, list):
                return items
            if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple: keep the shape
                try:
                    return type(obj)(*items)
                except TypeError:
                    return items
            try:
                return type(obj)(items)
            except TypeError:  # unhashable markers cannot happen (strings), but be safe
                return items
        if isinstance(obj, (bytes, bytearray, memoryview)):
            counts["BINARY"] = counts.get("BINARY", 0) + 1
            return f"<BINARY:{len(obj)} bytes>"
        store = getattr(obj, "_store", None)
        if isinstance(store, dict) and hasattr(obj, "toDict"):  # dspy.Example / dspy.Prediction
            new = copy.copy(obj)
            new._store = self._mapping(store.items(), counts, cache)
            if hasattr(new, "_completions"):
                new._completions = None  # holds the raw completions: not redacted, so not kept
            return new
        fields = getattr(type(obj), "model_fields", None)
        if isinstance(fields, dict) and hasattr(obj, "model_copy"):  # pydantic v2 model
            update = {}
            for name in fields:
                value = getattr(obj, name, None)
                red = self._keyed(name, value, counts, cache)
                update[name] = None if red is DROP else red
            return obj.model_copy(update=update)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return self._mapping(((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)), counts, cache)
        try:
            text = str(obj)
        except Exception:  # noqa: BLE001 - a broken __str__ must not stop redaction of the rest
            return f"<{type(obj).__name__}>"
        return self._string(text, counts, cache=cache)

    def _mapping(self, items: Iterable[tuple[Any, Any]], counts: dict[str, int],
                 cache: dict | None = None) -> dict:
        out = {}
        rules = self._key_rules
        for k, v in items:
            if type(k) is str:  # _keyed, and for a string seen before in this trace _string, inlined
                rule = rules.get(k) or self._key_rule(k)
                if rule is not _SCAN:
                    red = self._keyed_rule(rule, v, counts, cache)
                elif type(v) is str:
                    hit = cache.get(v) if cache is not None else None
                    if hit is None:
                        red = self._string(v, counts, cache=cache)
                    else:
                        red = hit[0]
                        for entity, n in hit[1]:
                            counts[entity] = counts.get(entity, 0) + n
                elif v is None or type(v) is float or type(v) is bool:
                    red = v
                else:
                    red = self._value(v, counts, cache)
            else:
                red = self._keyed(k, v, counts, cache)
            if red is not DROP:
                out[k] = red
        return out
