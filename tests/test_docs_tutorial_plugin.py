"""The "write your own plugin" tutorial's example works as the docs say, through the real plugin manager.

The example (``docs/examples/tenant_tag/``) is made discoverable exactly as ``pip install`` would: a
``*.dist-info`` folder whose ``entry_points.txt`` is generated from the example's own ``pyproject.toml``,
put on ``sys.path`` next to the module. So a typo in the entry point, the module or the hooks fails here,
and nothing is installed into the environment.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "tenant_tag"


@pytest.fixture
def tenant_plugin_installed(tmp_path, monkeypatch):
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    dist = tmp_path / "site" / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = ["[dspy_tracekit]"] + [f"{k} = {v}" for k, v in project["entry-points"]["dspy_tracekit"].items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    yield
    sys.modules.pop("tracekit_tenant", None)


def test_the_example_is_about_twenty_lines():
    code = [ln for ln in (EXAMPLE / "tracekit_tenant.py").read_text().splitlines() if ln.strip()]
    assert len(code) <= 25


def test_tenant_tag_lands_on_every_span_and_the_trace(tenant_plugin_installed, tmp_path):
    import dspy
    from mlflow import MlflowClient

    import dspy_tracekit as tk
    from dspy_tracekit.manager import TracekitManager

    assert "tenant" in TracekitManager.installed_plugins()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tk.enable(plugins=["tenant"], tracking_uri=uri, experiment="tutorial", config={"tenant": {"name": "acme"}})
    try:
        program = dspy.Predict("question -> answer")
        with dspy.context(lm=dspy.utils.DummyLM([{"answer": "42"}])):
            program(question="What is six times seven?")
        assert tk.flush(30)
    finally:
        tk.disable()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tutorial")
    traces = client.search_traces(locations=[experiment.experiment_id], filter_string="tag.tenant = 'acme'")
    assert len(traces) == 1
    spans = traces[0].data.spans
    assert len(spans) >= 3  # Predict, adapter format/parse, LM
    assert {s.attributes.get("tenant") for s in spans} == {"acme"}


def test_bad_tenant_config_stops_enable_naming_the_key(tenant_plugin_installed, tmp_path):
    import dspy_tracekit as tk
    from dspy_tracekit.errors import ConfigError

    with pytest.raises(ConfigError, match="tenant.name"):
        tk.enable(plugins=["tenant"], tracking_uri=f"sqlite:///{tmp_path / 'x.db'}", config={"tenant": {"name": 5}})
    tk.disable()
