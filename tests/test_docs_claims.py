"""Statements of fact in the docs that name a default: each checked against the code."""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_deployment_page_states_the_sample_plugins_keep_errors_default_as_it_is():
    from dspy_tracekit_sample import parse_policy

    text = (ROOT / "docs" / "deployment.md").read_text()
    (value,) = re.findall(r"keep_errors = (\S+) by default", text)
    stated = tomllib.loads(f"keep_errors = {value}")["keep_errors"]
    assert stated is True  # a boolean, as the table takes it (not the ratio 1.0)
    assert parse_policy({"keep_errors": stated}) == parse_policy({})


def test_cli_page_says_no_read_command_creates_a_store_doctor_included():
    text = " ".join((ROOT / "docs" / "cli.md").read_text().split())
    assert "No read command creates a store — `doctor` included" in text  # tests/analytics: test_no_read_command_creates_a_store
