"""The Redactor API: actions, allow-list, custom patterns, field policies, structures, bad config."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import dspy
import pydantic
import pytest
from dspy_tracekit_redact import Redactor

CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@example.com"


def test_mask_replaces_values_with_typed_markers():
    out = Redactor().redact_text(f"mail {EMAIL}, card {CARD}, ip 10.1.2.3")
    assert out == "mail <EMAIL>, card <CREDIT_CARD>, ip <IP_ADDRESS>"


def test_partial_keeps_the_last_four_digits_of_a_card():
    out = Redactor({"actions": {"CREDIT_CARD": "partial"}}).redact_text(f"card {CARD} ok")
    assert out == "card <CREDIT_CARD:…1111> ok"


def test_drop_removes_the_field_that_holds_the_value():
    r = Redactor({"actions": {"PRIVATE_KEY": "drop"}})
    key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----"
    out = r.redact({"note": f"here: {key}", "other": "fine", "items": [key, "x"]})
    assert out == {"other": "fine", "items": ["x"]}
    assert r.redact_text(f"a {key} b") == "a  b"


def test_hash_is_a_stable_keyed_pseudonym_across_processes():
    cfg = {"actions": {"EMAIL": "hash"}, "hash_secret": "s3cret"}
    here = Redactor(cfg).redact_text(f"from {EMAIL}")
    code = ("from dspy_tracekit_redact import Redactor;"
            f"print(Redactor({cfg!r}).redact_text('from {EMAIL.upper()}'))")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert here == there  # same secret, other process, other case: same pseudonym
    assert here.startswith("from <EMAIL:") and len(here) == len("from <EMAIL:12345678>")
    other = Redactor({**cfg, "hash_secret": "other"}).redact_text(f"from {EMAIL}")
    assert other != here


def test_hash_without_a_secret_is_refused(monkeypatch):
    monkeypatch.delenv("DSPY_TRACEKIT_REDACT_HASH_SECRET", raising=False)
    with pytest.raises(ValueError, match=r"redact\.hash_secret: required because actions\.EMAIL is 'hash'"):
        Redactor({"actions": {"EMAIL": "hash"}})


def test_hash_secret_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DSPY_TRACEKIT_REDACT_HASH_SECRET", "from-env")
    a = Redactor({"actions": {"EMAIL": "hash"}}).redact_text(EMAIL)
    b = Redactor({"actions": {"EMAIL": "hash"}, "hash_secret": "from-env"}).redact_text(EMAIL)
    assert a == b != "<EMAIL>"


def test_allow_list_values_and_patterns_are_kept():
    r = Redactor({"allow": ["support@acme.com"], "allow_patterns": [r"10\.0\.0\.\d+"]})
    out = r.redact_text(f"write to support@acme.com or {EMAIL}; hosts 10.0.0.7 and 8.8.4.4")
    assert out == "write to support@acme.com or <EMAIL>; hosts 10.0.0.7 and <IP_ADDRESS>"


def employee_id_ok(value: str) -> bool:
    return int(value[-1]) % 2 == 0


def test_custom_pattern_with_validator_and_value_group():
    r = Redactor({"patterns": [
        {"name": "EMPLOYEE_ID", "regex": r"EMP-\d{5}", "validator": f"{__name__}.employee_id_ok"},
        {"name": "TICKET_SECRET", "regex": r"ticket pin (?P<value>\d{4})", "action": "partial"},
    ]})
    counts: dict = {}
    out = r.redact_text("EMP-12344 and EMP-12345, ticket pin 9876", counts)
    assert out == "<EMPLOYEE_ID> and EMP-12345, ticket pin <TICKET_SECRET>"
    assert counts == {"EMPLOYEE_ID": 1, "TICKET_SECRET": 1}


def test_entities_restricts_the_detectors():
    out = Redactor({"entities": ["EMAIL"]}).redact_text(f"{EMAIL} {CARD}")
    assert out == f"<EMAIL> {CARD}"


def test_field_policy_by_signature_field_name():
    r = Redactor({"fields": {"intent": "skip", "notes": "mask", "raw": "drop"}})
    out = r.redact({"message": f"I am {EMAIL}", "intent": "contact jane.doe@example.com", "notes": "anything",
                    "raw": "x", "nested": {"notes": "deep"}})
    assert out == {"message": "I am <EMAIL>", "intent": "contact jane.doe@example.com", "notes": "<FIELD>",
                   "nested": {"notes": "<FIELD>"}}
    prompt = "[[ ## message ## ]]\nhello\n\n[[ ## notes ## ]]\nprivate words\n\n[[ ## intent ## ]]\nbilling"
    assert r.redact_text(prompt) == (
        "[[ ## message ## ]]\nhello\n\n[[ ## notes ## ]]\n<FIELD>\n\n[[ ## intent ## ]]\nbilling")


def test_secret_keys_are_masked_whole_whatever_the_value():
    r = Redactor({"secret_keys": ["x-internal-auth"]})
    out = r.redact({"password": "plain words", "Authorization": "abc", "db_password": 12,
                    "X-Internal-Auth": "v", "max_tokens": 100, "token": "", "cookie": None})
    assert out == {"password": "<SECRET_FIELD>", "Authorization": "<SECRET_FIELD>", "db_password": "<SECRET_FIELD>",
                   "X-Internal-Auth": "<SECRET_FIELD>", "max_tokens": 100, "token": "", "cookie": None}


def test_json_inside_strings_is_parsed_and_key_rules_apply():
    text = json.dumps({"user": {"email": EMAIL, "password": "hunter2"}, "n": 3})
    out = json.loads(Redactor().redact_text(text))
    assert out == {"user": {"email": "<EMAIL>", "password": "<SECRET_FIELD>"}, "n": 3}


@dataclass
class Ticket:
    body: str
    ref: int


class Customer(pydantic.BaseModel):
    email: str
    note: str = ""


def test_structures_are_copied_not_changed():
    pred = dspy.Prediction(answer=f"mail {EMAIL}", score=0.5)
    ex = dspy.Example(message=f"card {CARD}", label="x").with_inputs("message")
    obj = {"pred": pred, "ex": ex, "tuple": (EMAIL, 1), "model": Customer(email=EMAIL, note="hi"),
           "dc": Ticket(body="call 212-555-0187", ref=7), "bytes": b"\x00\x01", "big": 4111111111111111,
           "small": 42, "float": 1.5, "none": None, "set": {EMAIL}}
    counts: dict = {}
    out = Redactor().redact(obj, counts)
    assert isinstance(out["pred"], dspy.Prediction) and out["pred"].answer == "mail <EMAIL>"
    assert out["pred"].score == 0.5
    assert isinstance(out["ex"], dspy.Example) and out["ex"].message == "card <CREDIT_CARD>"
    assert out["ex"].inputs().keys() == ["message"]
    assert out["tuple"] == ("<EMAIL>", 1)
    assert isinstance(out["model"], Customer) and out["model"].email == "<EMAIL>" and out["model"].note == "hi"
    assert out["dc"] == {"body": "call <PHONE>", "ref": 7}
    assert out["bytes"] == "<BINARY:2 bytes>"
    assert out["big"] == "<CREDIT_CARD>" and out["small"] == 42 and out["float"] == 1.5 and out["none"] is None
    assert out["set"] == {"<EMAIL>"}
    assert counts == {"EMAIL": 4, "CREDIT_CARD": 2, "PHONE": 1, "BINARY": 1}
    # the originals are untouched
    assert pred.answer == f"mail {EMAIL}" and obj["model"].email == EMAIL


def test_huge_and_binary_strings_get_typed_markers():
    r = Redactor({"max_text_chars": 10_000})
    counts: dict = {}
    huge = ("word " * 3000) + EMAIL
    out = r.redact_text(huge, counts)
    assert EMAIL not in out and out.endswith(" chars>") and "<TRUNCATED:" in out and len(out) < 10_100
    assert r.redact_text("abc\x00def", counts) == "<BINARY:7 chars>"
    assert counts == {"TRUNCATED": 1, "BINARY": 1}


def test_default_max_is_one_megabyte_and_scanned():
    text = ("lorem ipsum " * 100_000)[:1_200_000] + EMAIL
    counts: dict = {}
    out = Redactor().redact_text("mail " + EMAIL + " " + text, counts)
    assert EMAIL not in out and counts["EMAIL"] == 1 and counts["TRUNCATED"] == 1


@pytest.mark.parametrize(("config", "message"), [
    ({"patterns": [{"name": "X", "regex": "(unclosed"}]}, r"redact\.patterns\[0\]\.regex: invalid regular expression"),
    ({"patterns": [{"name": "X", "regex": "a*"}]}, r"redact\.patterns\[0\]\.regex: .* matches the empty string"),
    ({"patterns": [{"name": "x y", "regex": "a"}]}, r"redact\.patterns\[0\]\.name"),
    ({"patterns": [{"name": "EMAIL", "regex": "a"}]}, r"redact\.patterns\[0\]\.name: 'EMAIL' is already"),
    ({"patterns": [{"name": "X", "regex": "a", "validator": "no_such_mod.fn"}]},
     r"redact\.patterns\[0\]\.validator: cannot import"),
    ({"patterns": [{"name": "X", "regex": "a", "colour": "red"}]}, r"redact\.patterns\[0\]\.colour: unknown key"),
    ({"entities": ["EMAIL", "EMIAL"]}, r"redact\.entities\[1\]: unknown entity type 'EMIAL'"),
    ({"actions": {"EMIAL": "mask"}}, r"redact\.actions\.EMIAL: unknown entity type"),
    ({"actions": {"EMAIL": "blur"}}, r"redact\.actions\.EMAIL: must be one of mask, partial, drop, hash"),
    ({"fields": {"intent": "hide"}}, r"redact\.fields\.intent: must be one of scan, skip, mask, drop"),
    ({"allow_patterns": ["[a-"]}, r"redact\.allow_patterns\[0\]: invalid regular expression"),
    ({"allow": "x@y.z"}, r"redact\.allow: must be a list of strings"),
    ({"max_text_chars": 10}, r"redact\.max_text_chars: must be an integer between"),
    ({"colour": "red"}, r"redact\.colour: unknown key"),
])
def test_bad_config_names_the_key(config, message):
    with pytest.raises(ValueError, match=message):
        Redactor(config)


@pytest.mark.parametrize("text", [
    "order ORD-2024-118823 shipped 2024-03-15T10:22:33Z",
    "request 550e8400-e29b-41d4-a716-446655440000 on app version 4.12.0.1",
    "paid $1,299.99 on 15/03/2024, UPS 1Z999AA10123456784, FedEx 781234567890",
    "the password is incorrect and the token has expired",
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 at 10:22:33",
])
def test_hard_negatives_are_left_alone(text):
    assert Redactor().redact_text(text) == text
