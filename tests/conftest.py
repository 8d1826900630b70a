"""Test tiers: the default ``pytest -q`` runs the fast tier (unit tests, about a minute on 2 idle cores);
``pytest -q -m slow`` runs the end-to-end and statistical tests (real ``dreamlift generate`` and ``eval``
subprocesses, kill-and-resume, the prior's training loop, a web viewer in Chromium). ``.ci/run`` runs both."""

import pytest

# Whole modules in the slow tier, besides every test under tests/smoke/.
SLOW_MODULES = {"test_splat_viewer.py", "test_train.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = item.path
        if "smoke" in path.parts or path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
