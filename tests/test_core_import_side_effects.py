"""Importing tracekit changes nothing process-wide; enable() sets LiteLLM's offline price map only when unset."""

from __future__ import annotations

import json
import os
import subprocess
import sys

_SNAPSHOT = r"""
import json, logging, os, sys, threading, warnings
env, filters = dict(os.environ), list(warnings.filters)
root, hooks = list(logging.getLogger().handlers), (sys.excepthook, threading.excepthook)
levels = {n: logging.getLogger(n).level for n in ("mlflow", "litellm", "dspy", "sqlalchemy", "alembic")}
import dspy_tracekit, dspy_tracekit.cli, dspy_tracekit.analytics, dspy_tracekit.delivery, dspy_tracekit.config
import dspy_tracekit_redact, dspy_tracekit_sample, dspy_tracekit_cost, dspy_tracekit_buffer, dspy_tracekit_monitor
changed = sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k))
print(json.dumps({
    "env": changed,
    "warning_filters": len(warnings.filters) - len(filters),
    "root_handlers": len(logging.getLogger().handlers) - len(root),
    "hooks": (sys.excepthook, threading.excepthook) != hooks,
    "levels": sorted(n for n, v in levels.items() if logging.getLogger(n).level != v),
    "litellm_imported": "litellm" in sys.modules,
}))
"""

_ENABLE = r"""
import os, sys
import dspy_tracekit as tk
tk.enable(plugins=[], tracking_uri=sys.argv[1])
print(os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP"))
tk.disable()
"""


def _run(code, tmp_path, *args, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("DSPY_TRACEKIT_")}
    base.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)
    base.update(env)
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, env=base, capture_output=True,
                         text=True, timeout=300, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_importing_the_package_and_its_plugins_changes_no_process_wide_setting(tmp_path):
    found = json.loads(_run(_SNAPSHOT, tmp_path))
    assert found == {"env": [], "warning_filters": 0, "root_handlers": 0, "hooks": False, "levels": [],
                     "litellm_imported": False}


def test_enable_with_a_database_store_sets_litellms_offline_price_map_only_when_unset(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert _run(_ENABLE, tmp_path, uri) == "True"
    assert _run(_ENABLE, tmp_path, uri, LITELLM_LOCAL_MODEL_COST_MAP="False") == "False"  # the user's value stays
