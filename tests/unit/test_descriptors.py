"""The file-descriptor limit the proxy asks for, and the connections it serves under it."""

from __future__ import annotations

import resource

import pytest

from truthloop.sidecar.descriptors import Fit, fit, needed

INF = resource.RLIM_INFINITY
NEED = needed(1024, 64, 8)


def test_what_the_defaults_need() -> None:
    assert NEED == 2 * 1024 + 64 + 8 + 64


@pytest.mark.parametrize(
    ("soft", "hard", "expected"),
    [
        (NEED, NEED, Fit(NEED, 1024)),  # enough: left alone
        (1 << 20, 1 << 20, Fit(1 << 20, 1024)),  # more than enough: not lowered
        (INF, INF, Fit(INF, 1024)),
        (1024, 1 << 20, Fit(NEED, 1024)),  # raised to what is needed, not to the hard limit
        (1024, INF, Fit(NEED, 1024)),
        (1024, NEED, Fit(NEED, 1024)),
        (1024, NEED - 1, Fit(NEED - 1, 1023)),  # one short: a connection (two descriptors) less
        (256, 256, Fit(256, 60)),  # (256 - 64 - 8 - 64) / 2
        (64, 64, Fit(64, 1)),  # never none
    ],
)
def test_the_soft_limit_and_the_connections_it_serves(soft: int, hard: int, expected: Fit) -> None:
    assert fit(soft, hard, 1024, 64, 8) == expected


def test_a_cap_under_what_the_limit_allows_is_kept() -> None:
    assert fit(256, 256, 10, 64, 8) == Fit(256, 10)
