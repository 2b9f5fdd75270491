"""Shared test set-up. The folders mirror the code: ``lib/`` the library, ``experiments/`` the
suite, ``integration/`` what runs other processes, examples, benchmarks or optional frameworks
(marked ``integration``; ``make test-fast`` leaves those and ``slow`` tests out)."""

from __future__ import annotations

from pathlib import Path

import pytest

INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION in item.path.parents:
            item.add_marker(pytest.mark.integration)
