"""Real model servers nobody here wrote (MLServer, KServe's Python server), started as processes
from their own venvs with the sidecar in front: every test here is in the `e2e` tier, which a
plain `pytest` leaves out and `pytest -m e2e` (and CI, after scripts/model-servers) runs."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)
