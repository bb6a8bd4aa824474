"""Regenerate ``src/dspy_tracekit_cost/prices.json`` from LiteLLM's price map.

The source is ``model_prices_and_context_window_backup.json`` shipped inside the installed ``litellm``
wheel (read as a file: litellm is not imported, so nothing is fetched). The snapshot keeps only what the
cost plugin prices: per-token input, output, cached-input read, cache write (5-minute) and reasoning
prices, the ``_above_<N>k_tokens`` tiers of those, and ``max_output_tokens`` for budget estimates.
Batch, priority, flex, per-image/audio/second prices are left out on purpose.

Run from the repository root::

    uv run python plugins/cost/scripts/build_price_table.py

The snapshot records the litellm version, the source file's SHA-256 and the SHA-256 of its own
``models`` content; ``version`` (``litellm-<ver>+<hash12>``) is stamped on every priced LM span.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "dspy_tracekit_cost" / "prices.json"

#: source key → snapshot key (standard tier only)
FIELDS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_write",
    "output_cost_per_reasoning_token": "reasoning",
}
TIER = re.compile(r"^(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost|"
                  r"cache_creation_input_token_cost|output_cost_per_reasoning_token)_above_(\d+)k_tokens$")
MODES = {None, "chat", "completion", "responses", "embedding", "realtime"}


def _num(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


def build(source: dict) -> dict[str, dict]:
    models: dict[str, dict] = {}
    for name, entry in sorted(source.items()):
        if name == "sample_spec" or not isinstance(entry, dict) or entry.get("mode") not in MODES:
            continue
        row: dict = {}
        for src, dst in FIELDS.items():
            if (v := _num(entry.get(src))) is not None:
                row[dst] = v
        if "input" not in row and "output" not in row:
            continue
        tiers: dict[int, dict] = {}
        for key, value in entry.items():
            m = TIER.match(key)
            if m and (v := _num(value)) is not None:
                tiers.setdefault(int(m.group(2)) * 1000, {})[FIELDS[m.group(1)]] = v
        if tiers:
            row["tiers"] = [[threshold, tiers[threshold]] for threshold in sorted(tiers)]
        if isinstance(entry.get("max_output_tokens"), int):
            row["max_output_tokens"] = entry["max_output_tokens"]
        if isinstance(entry.get("litellm_provider"), str):
            row["provider"] = entry["litellm_provider"]
        models[name] = row
    return models


def main() -> int:
    spec = find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        print("litellm is not installed", file=sys.stderr)
        return 1
    src = Path(next(iter(spec.submodule_search_locations))) / "model_prices_and_context_window_backup.json"
    raw = src.read_bytes()
    models = build(json.loads(raw))
    canonical = json.dumps(models, sort_keys=True, separators=(",", ":")).encode()
    content_sha = hashlib.sha256(canonical).hexdigest()
    ver = version("litellm")
    header = {
        "version": f"litellm-{ver}+{content_sha[:12]}",
        "source": f"litellm {ver}: litellm/model_prices_and_context_window_backup.json",
        "source_sha256": hashlib.sha256(raw).hexdigest(),
        "content_sha256": content_sha,
        "unit": "USD per token",
        "generated_by": "plugins/cost/scripts/build_price_table.py",
    }
    # one model per line: small diffs when prices change
    lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in header.items()] + ['  "models": {']
    items = list(models.items())
    for i, (name, row) in enumerate(items):
        sep = "," if i < len(items) - 1 else ""
        lines.append(f"    {json.dumps(name)}: {json.dumps(row, sort_keys=True, separators=(',', ':'))}{sep}")
    lines += ["  }", "}", ""]
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT} ({len(models)} models, {header['version']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
