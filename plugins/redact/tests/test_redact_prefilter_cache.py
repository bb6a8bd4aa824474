"""The prefilter's compiled Hyperscan database is kept on disk between processes (issue #12: the compile
was ~0.13 s of every ``enable()``), and a cache file is never trusted blindly: one that is damaged, made
for other patterns, or writable by others is refused and the database compiled instead."""

from __future__ import annotations

import os
import shutil

import pytest
from dspy_tracekit_redact import Redactor
from dspy_tracekit_redact import _prefilter as prefilter_module

needs_hyperscan = pytest.mark.skipif(prefilter_module.hyperscan is None, reason="no hyperscan wheel here")


def _stats():
    from dspy_tracekit_redact import _dbcache

    return dict(_dbcache.stats)


def _delta(before):
    return {k: v - before[k] for k, v in _stats().items()}


def _files(folder):
    return sorted(p for p in os.listdir(folder) if p.endswith(".hsdb"))


def _same_findings(redactor, texts):
    reference = Redactor({"prefilter": False})
    return [t for t in texts if redactor.find(t) != reference.find(t)] == []


@needs_hyperscan
def test_the_second_redactor_loads_the_compiled_database_from_the_cache(tmp_path, regression_set):
    cfg = {"prefilter_cache": str(tmp_path / "cache")}
    before = _stats()
    first = Redactor(cfg)
    assert _delta(before) == {"compiled": 1, "loaded": 0, "rejected": 0, "written": 1}
    assert len(_files(tmp_path / "cache")) == 1
    before = _stats()
    second = Redactor(cfg)
    assert _delta(before) == {"compiled": 0, "loaded": 1, "rejected": 0, "written": 0}
    texts = regression_set[::7]
    assert _same_findings(second, texts) and _same_findings(first, texts)
    assert sum(1 for t in texts if second.find(t)) > 500  # the sample does hold findings


@needs_hyperscan
def test_a_damaged_cache_file_is_refused_and_compiled_again(tmp_path, regression_set, caplog):
    cfg = {"prefilter_cache": str(tmp_path)}
    Redactor(cfg)
    (name,) = _files(tmp_path)
    data = bytearray((tmp_path / name).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one bit flip inside the database bytes
    (tmp_path / name).write_bytes(bytes(data))
    before = _stats()
    with caplog.at_level("WARNING", logger="dspy_tracekit.redact"):
        redactor = Redactor(cfg)
    assert _delta(before) == {"compiled": 1, "loaded": 0, "rejected": 1, "written": 1}
    assert "digest does not match" in caplog.text and name in caplog.text
    assert _same_findings(redactor, regression_set[::13])
    before = _stats()
    Redactor(cfg)  # the file was written again, whole
    assert _delta(before)["loaded"] == 1


@needs_hyperscan
def test_a_cache_file_made_for_other_patterns_is_refused(tmp_path, regression_set):
    # (EMAIL alone compiles nothing: its one trigger, "@", is found by "in"; US_SSN gives the pass a pattern)
    narrow = {"prefilter_cache": str(tmp_path), "entities": ["EMAIL", "US_SSN"]}
    Redactor(narrow)
    (narrow_file,) = _files(tmp_path)
    full = {"prefilter_cache": str(tmp_path)}
    Redactor(full)
    (full_file,) = set(_files(tmp_path)) - {narrow_file}
    shutil.copy(tmp_path / narrow_file, tmp_path / full_file)  # a valid database under the wrong key
    before = _stats()
    redactor = Redactor(full)
    assert _delta(before) == {"compiled": 1, "loaded": 0, "rejected": 1, "written": 1}
    assert _same_findings(redactor, regression_set[::13])


@needs_hyperscan
@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_cache_that_others_can_write_is_not_used(tmp_path, what):
    cfg = {"prefilter_cache": str(tmp_path / "cache")}
    Redactor(cfg)
    (name,) = _files(tmp_path / "cache")
    target = tmp_path / "cache" / name if what == "file" else tmp_path / "cache"
    os.chmod(target, 0o666 if what == "file" else 0o777)
    before = _stats()
    Redactor(cfg)
    delta = _delta(before)
    assert delta["loaded"] == 0 and delta["compiled"] == 1 and delta["rejected"] == 1


@needs_hyperscan
def test_an_unusable_cache_folder_costs_a_compile_and_nothing_else(tmp_path):
    (tmp_path / "taken").write_text("a file where the folder should be")
    before = _stats()
    redactor = Redactor({"prefilter_cache": str(tmp_path / "taken")})
    assert _delta(before)["compiled"] == 1
    assert redactor.find("mail ops@example.com") != []


@needs_hyperscan
def test_prefilter_cache_false_compiles_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    before = _stats()
    Redactor({"prefilter_cache": False})
    Redactor({"prefilter_cache": "false"})  # as an environment variable gives it
    assert _delta(before) == {"compiled": 2, "loaded": 0, "rejected": 0, "written": 0}
    assert list(tmp_path.iterdir()) == []


@needs_hyperscan
def test_the_default_cache_is_the_users_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    Redactor()
    assert len(_files(tmp_path / "dspy-tracekit" / "hyperscan")) == 1


@pytest.mark.parametrize("value", [3, "", ["a"]])
def test_a_bad_prefilter_cache_value_names_the_key(value):
    with pytest.raises(ValueError, match=r"redact\.prefilter_cache: must be true, false or a folder path"):
        Redactor({"prefilter_cache": value})


@needs_hyperscan
def test_enable_keeps_the_database_where_the_environment_says(tmp_path, monkeypatch):
    import dspy_tracekit as tk

    monkeypatch.setenv("DSPY_TRACEKIT_REDACT_PREFILTER_CACHE", str(tmp_path / "from-env"))
    before = _stats()
    assert tk.enable(plugins=["redact"], tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="cache")
    tk.disable()
    assert tk.enable(plugins=["redact"], tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="cache")
    tk.disable()
    assert _delta(before) == {"compiled": 1, "loaded": 1, "rejected": 0, "written": 1}
    assert len(_files(tmp_path / "from-env")) == 1
