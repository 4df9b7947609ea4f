"""Stand-ins for `core.review`'s draw and band while they are unimplemented in this tree (the
abstain's tests need them); once `core.review` has them, the fixture patches nothing."""

from __future__ import annotations

import hashlib

import pytest

from truthloop.core import review
from truthloop.core.spec import AbstainSpec, ReviewSpec


def _draw(monitor: str, seed: int, prediction_id: str) -> float:
    digest = hashlib.blake2b(f"{monitor}\0{seed}\0{prediction_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2.0**64


def _in_band(abstain: AbstainSpec | None, score: float | None) -> bool:
    return abstain is not None and score is not None and abstain.low <= score <= abstain.high


def _abstains(monitor: str, spec: ReviewSpec, prediction_id: str, score: float | None) -> bool:
    abstain = spec.abstain
    if abstain is None:
        return False
    return _in_band(abstain, score) or _draw(monitor, spec.seed, prediction_id) < abstain.explore


@pytest.fixture
def review_math(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        review.draw("ml/churn", 0, "id")
    except NotImplementedError:
        monkeypatch.setattr(review, "draw", _draw)
        monkeypatch.setattr(review, "in_band", _in_band)
        monkeypatch.setattr(review, "abstains", _abstains)
