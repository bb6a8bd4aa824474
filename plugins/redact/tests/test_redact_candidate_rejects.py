"""PHONE and GENERIC_SECRET reject most candidates on their shape before validating them: on generated text
made to sit at the edges of those shapes, the findings are those of the plain detectors (every candidate
validated). Each generator is checked to catch a shape made one case too narrow."""

from __future__ import annotations

import random

import pytest
from dspy_tracekit_redact import Redactor
from dspy_tracekit_redact import _detectors as detectors
from dspy_tracekit_redact import _prefilter as prefilter_module
from dspy_tracekit_redact._detectors import _PHONE_CAND, Detector, _v_phone, phone_ok

needs_hyperscan = pytest.mark.skipif(prefilter_module.hyperscan is None, reason="no hyperscan wheel here")

_PHONES = ["+1 212 555 0100", "(212) 555-1234", "212-555-1234", "212.555.1234", "2125551234", "1-800-555-0199",
           "1 800 555 0199", "02079460958", "020 7946 0958", "0161 496 0000", "07700 900123", "+44 20 7946 0958",
           "0044 20 7946 0958", "98765 43210", "98765-43210", "6123456789", "01 23 45 67 89", "06.12.34.56.78",
           "030 12345678", "0151 23456789", "089/1234567", "(030) 1234567", "098765 43210", "0 98765 43210",
           "(11) 91234-5678", "(21) 2345-6789", "11 91234-5678", "+49 30 1234567", "+8613812345678", "0301234567",
           "+33 1 23 45 67 89", "00 33 1 23 45 67 89", "+(44) 20 7946 0958"]
_BEFORE = ["", "", "", "call ", "tel ", "phone: ", "a", "x", "#", "-", ".", "+", "/", ":", "@", "_", "é", "(", "0",
           "1 ", "5-", "12 ", "v", "order ", "2024-"]
_AFTER = ["", "", " ", ".", "-", "-1", ".5", "a", " 2 times", " 2", ",", "/", ")", " 12", "\n", "x1", "x12", " - 7",
          "-12", " 1234"]
_SEPARATORS = [" ", " ", "-", "-", ".", "/", ") ", " (", "  ", "(", ")", "+", " - ", "- "]


def _digits(rng: random.Random, n: int) -> str:
    first = rng.choice("0123456789123456789")
    return first + "".join(rng.choice("0123456789") for _ in range(n - 1))


def _phone_like(rng: random.Random) -> str:
    """A phone, or digit groups of the sizes phones, dates, order and build numbers have."""
    if rng.random() < 0.3:
        phone = list(rng.choice(_PHONES))
        for _ in range(rng.randint(0, 2)):  # a digit more, less or changed
            i = rng.randrange(len(phone))
            op = rng.random()
            if op < 0.3:
                phone.insert(i, rng.choice("0123456789"))
            elif op < 0.6 and phone[i].isdigit():
                del phone[i]
            elif phone[i].isdigit():
                phone[i] = rng.choice("0123456789")
        return "".join(phone)
    sizes = [rng.choice([1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 6, 7, 8, 9, 10, 11, 12]) for _ in range(rng.randint(1, 5))]
    sep = rng.choice(_SEPARATORS)
    groups = [_digits(rng, n) for n in sizes]
    text = groups[0]
    for g in groups[1:]:
        text += (sep if rng.random() < 0.8 else rng.choice(_SEPARATORS)) + g
    return rng.choice(["", "", "", "+", "00", "(", "+(", "0"]) + text


def _phone_texts(n: int, seed: int = 29) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        values = [rng.choice(_BEFORE) + _phone_like(rng) + rng.choice(_AFTER) for _ in range(rng.randint(1, 4))]
        out.append(rng.choice(["", " ", "x ", " and "]).join(values))
    return out


def _plain_phone() -> Redactor:
    """A redactor whose PHONE detector validates every candidate of the whole text (no runs, no shape test)."""
    r = Redactor({"entities": ["PHONE"], "prefilter": False})
    r._detectors = (Detector("PHONE", _PHONE_CAND, None, _v_phone, priority=55, trim=phone_ok, trim_min_digits=8),)
    return r


def _phone_differences(texts: list[str]) -> list[str]:
    fast, plain = Redactor({"entities": ["PHONE"]}), _plain_phone()
    return [t for t in texts if fast.find(t) != plain.find(t)]


@needs_hyperscan
def test_phone_candidates_rejected_on_their_groups_hide_no_phone():
    """``_PHONE_HEADS`` (candidates) and ``_PHONE_RUN`` (runs of the pass) leave every phone and trimmed
    phone of 30,000 texts of phones, near misses, dates and order and build numbers."""
    texts = _phone_texts(30_000)
    plain = _plain_phone()
    found = sum(len(plain.find(t)) for t in texts)
    assert found > 5_000  # the texts hold phones of every kind...
    assert _phone_differences(texts) == []


@needs_hyperscan
@pytest.mark.parametrize("narrower", [
    ("_PHONE_HEADS", detectors._PHONE_HEADS - {(2, 4)}),
    ("_PHONE_HEADS", detectors._PHONE_HEADS - {(1, 3)}),
    ("_PHONE_RUN", detectors.re.compile(detectors._PHONE_RUN.pattern.replace("(?:0|", "(?:"))),
    ("_PHONE_RUN", detectors.re.compile(detectors._PHONE_RUN.pattern.replace("[0-9]{5}[^0-9]+[0-9]{5}", "x"))),
    ("_PHONE_RUN", detectors.re.compile(detectors._PHONE_RUN.pattern.replace("[0-9]{10}|", ""))),
], ids=["no BR 2-4", "no NANP 1-3", "no trunk 0", "no IN 5-5", "no bare 10"])
def test_the_phone_texts_catch_a_shape_one_case_too_narrow(monkeypatch, narrower):
    """...and a shape test that forgets one case changes findings on them (so the test above can fail)."""
    monkeypatch.setattr(detectors, *narrower)
    assert _phone_differences(_phone_texts(30_000)) != []
