"""The commands as users run them, in processes of their own (the demo, `truthloop run`, the
services' starts and stops): every test here is in the `e2e` tier, which a plain `pytest` leaves
out to keep within 5 minutes on 2 cores and `pytest -m e2e` (and CI) runs."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)
