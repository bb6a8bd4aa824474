"""Price math and the pinned snapshot, without DSPy or MLflow."""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

import pytest
from dspy_tracekit_cost import Price, PriceTable
from dspy_tracekit_cost._prices import load_snapshot, price_from_config

TABLE = PriceTable.bundled()


def test_cost_plain_call_is_tokens_times_price():
    p = TABLE.lookup("gpt-4o-mini")
    c = p.cost(input_tokens=1000, output_tokens=200)
    assert c.input_cost == pytest.approx(1000 * p.input)
    assert c.output_cost == pytest.approx(200 * p.output)
    assert c.total_cost == pytest.approx(1000 * 1.5e-07 + 200 * 6e-07)


def test_cost_cached_input_is_priced_at_the_cache_read_rate():
    p = TABLE.lookup("gpt-4o-mini")
    c = p.cost(input_tokens=1200, output_tokens=30, cached_tokens=1024)
    assert c.uncached_input_cost == pytest.approx(176 * p.input)
    assert c.cached_input_cost == pytest.approx(1024 * p.cache_read)
    assert p.cache_read < p.input
    assert c.input_cost == pytest.approx(c.uncached_input_cost + c.cached_input_cost)


def test_cost_cache_write_and_reasoning_use_their_own_rates():
    p = Price("m", input=1e-6, output=4e-6, cache_read=1e-7, cache_write=1.25e-6, reasoning=8e-6)
    c = p.cost(input_tokens=1000, output_tokens=500, cached_tokens=200, cache_write_tokens=300,
               reasoning_tokens=100)
    assert c.uncached_input_cost == pytest.approx(500 * 1e-6)
    assert c.cache_write_cost == pytest.approx(300 * 1.25e-6)
    assert c.reasoning_cost == pytest.approx(100 * 8e-6)
    assert c.output_cost == pytest.approx(400 * 4e-6 + 100 * 8e-6)
    assert c.total_cost == pytest.approx(c.input_cost + c.output_cost)


def test_cost_missing_specific_rates_fall_back_to_plain_input_and_output():
    p = Price("m", input=2e-6, output=3e-6)
    c = p.cost(input_tokens=100, output_tokens=10, cached_tokens=40, reasoning_tokens=5)
    assert c.total_cost == pytest.approx(100 * 2e-6 + 10 * 3e-6)


def test_cost_tier_applies_above_its_threshold():
    p = TABLE.lookup("gemini/gemini-2.5-pro")
    assert p.tiers and p.tiers[0][0] == 200_000
    small = p.cost(input_tokens=200_000, output_tokens=1000)
    large = p.cost(input_tokens=200_001, output_tokens=1000)
    assert small.total_cost == pytest.approx(200_000 * 1.25e-06 + 1000 * 1e-05)
    assert large.total_cost == pytest.approx(200_001 * 2.5e-06 + 1000 * 1.5e-05)


def test_cost_lookup_exact_then_provider_stripped():
    assert TABLE.lookup("gemini/gemini-2.5-pro").name == "gemini/gemini-2.5-pro"  # exact beats stripped
    assert TABLE.lookup("openai/gpt-4o-mini").name == "gpt-4o-mini"
    assert TABLE.lookup("anthropic/claude-sonnet-4-5").name == "claude-sonnet-4-5"
    assert TABLE.lookup("someproxy/openai/gpt-4o-mini").name == "gpt-4o-mini"
    assert TABLE.lookup("openai/no-such-model-xyz") is None
    assert TABLE.lookup(None) is None


def test_cost_override_beats_snapshot_and_is_per_million():
    override = price_from_config("gpt-4o-mini", {"input_per_million": 1.0, "output_per_million": 2.0})
    table = PriceTable.bundled({"gpt-4o-mini": override})
    p = table.lookup("openai/gpt-4o-mini")
    assert p is override
    assert p.cost(1_000_000, 1_000_000).total_cost == pytest.approx(3.0)


def test_cost_negative_override_price_names_the_key():
    with pytest.raises(ValueError, match=r'prices\."my-model"\.output_per_million must not be negative'):
        price_from_config("my-model", {"input_per_million": 1.0, "output_per_million": -2.0})


def test_cost_unknown_override_key_names_the_key():
    with pytest.raises(ValueError, match=r"unknown key prices\.mine\.input_per_token"):
        price_from_config("mine", {"input_per_token": 1e-6})


def test_cost_worst_case_bounds_every_real_cost_of_that_size():
    p = TABLE.lookup("claude-sonnet-4-5")
    bound = p.worst_case(prompt_tokens=5000, max_output_tokens=1000)
    for cached, written, reasoning in [(0, 0, 0), (4000, 0, 0), (0, 5000, 0), (1000, 2000, 900)]:
        assert p.cost(5000, 1000, cached, written, reasoning).total_cost <= bound + 1e-12


def test_cost_snapshot_hash_matches_its_content():
    data = load_snapshot()
    canonical = json.dumps(data["models"], sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(canonical).hexdigest()
    assert data["content_sha256"] == digest
    assert data["version"].endswith("+" + digest[:12])
    assert len(data["models"]) > 1000


def test_cost_snapshot_is_what_the_script_builds_from_the_installed_litellm():
    data = load_snapshot()
    if find_spec("litellm") is None or f"litellm {version('litellm')}:" not in data["source"]:
        pytest.skip("installed litellm differs from the snapshot's source; regenerate to compare")
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "build_price_table.py"
    spec = importlib.util.spec_from_file_location("build_price_table", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    src = Path(next(iter(find_spec("litellm").submodule_search_locations)))
    source = json.loads((src / "model_prices_and_context_window_backup.json").read_text())
    assert module.build(source) == data["models"]
