"""Settings for every test folder (``tests/`` and ``plugins/*/tests/``).

The redact plugin keeps its compiled Hyperscan database under ``$XDG_CACHE_HOME`` (``prefilter_cache``'s
default): the tests, and the programs they start, keep theirs in a folder of the run's own instead of the
real home. A test of the cache itself sets its own folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile

_made: list[str] = []


def pytest_configure(config):
    folder = tempfile.mkdtemp(prefix="tk-test-cache-")
    _made.append(folder)
    os.environ["XDG_CACHE_HOME"] = folder


def pytest_unconfigure(config):
    while _made:
        shutil.rmtree(_made.pop(), ignore_errors=True)
