"""Config validation: bad values name the key."""

from __future__ import annotations

import pytest
from dspy_tracekit_sample import parse_policy


@pytest.mark.parametrize(("config", "message"), [
    ({"ratio": 1.5}, "sample.ratio must be between 0 and 1, got 1.5"),
    ({"ratio": -0.1}, "sample.ratio must be between 0 and 1"),
    ({"ratio": "0.5"}, "sample.ratio must be a finite number, got '0.5'"),  # text in the file is a typo
    ({"ratio": float("nan")}, "sample.ratio must be a finite number, got nan"),
    ({"ratio": "half"}, "sample.ratio must be a finite number, got 'half'"),
    ({"evaluate_ratio": 2}, "sample.evaluate_ratio must be between 0 and 1"),
    ({"compile_ratio": True}, "sample.compile_ratio must be a finite number, got True"),
    ({"keep_errors": 3}, "sample.keep_errors must be between 0 and 1"),
    ({"max_traces_per_second": -1}, "sample.max_traces_per_second must be > 0"),
    ({"ration": 0.5}, "sample.ration: unknown key"),
    ({"rules": {"span_name": "x"}}, "sample.rules must be a list of tables"),
    ({"rules": [{"span_name": "x"}, {"tag": "t", "equals": "v"}, {"tag": "t", "regex": "a("}]},
     "sample.rules[2].regex: bad regular expression 'a('"),
    ({"rules": [{"span_nmae": "x"}]}, "sample.rules[0].span_nmae: unknown key"),
    ({"rules": [{"ratio": 0.5}]}, "sample.rules[0]: a rule needs a condition"),
    ({"rules": [{"span_name": "x", "ratio": 1.5}]}, "sample.rules[0].ratio must be between 0 and 1"),
    ({"rules": [{"tag": "user_role"}]}, "sample.rules[0].tag: needs `equals` or `regex`"),
    ({"rules": [{"equals": "admin"}]}, "sample.rules[0].equals: needs a `tag` or `attribute` key"),
    ({"rules": [{"latency_ms_over": -5}]}, "sample.rules[0].latency_ms_over must be >= 0"),
    ({"rules": [{"name": "a", "error": True}, {"name": "a", "span_kind": "tool"}]},
     "sample.rules[1].name: 'a' is already used"),
])
def test_bad_config_raises_value_error_naming_the_key(config, message):
    with pytest.raises(ValueError) as info:
        parse_policy(config)
    assert message in str(info.value)


def test_environment_variables_are_accepted_for_numbers_booleans_and_rules(monkeypatch, tmp_path):
    from dspy_tracekit.config import resolve

    monkeypatch.chdir(tmp_path)
    for key, raw in (("RATIO", "0.25"), ("KEEP_ERRORS", "false"), ("MAX_TRACES_PER_SECOND", "10"),
                     ("RULES", '[{"name": "slow", "latency_ms_over": 250}]')):
        monkeypatch.setenv(f"DSPY_TRACEKIT_SAMPLE_{key}", raw)
    table = resolve(installed=("sample",), tracking_uri="sqlite:///unused.db").tables["sample"]
    policy = parse_policy(table)
    assert (policy.ratio, policy.keep_errors, policy.max_traces_per_second) == (0.25, None, 10.0)
    assert [r.name for r in policy.tail_rules] == ["slow"]


def test_keep_errors_takes_a_ratio_and_comes_before_the_rules():
    policy = parse_policy({"keep_errors": 0.5, "rules": [{"name": "tools", "span_kind": "tool"}]})
    assert [(r.name, r.ratio) for r in policy.tail_rules] == [("errors", 0.5), ("tools", 1.0)]
