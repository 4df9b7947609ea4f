"""The abstain decision (core.abstain) and its wire answer (sidecar.abstain): what score the band
is read on, which responses cannot be decided and why, and the response a client gets."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.support.monitors import churn_monitor
from truthloop.core import abstain, capture, review
from truthloop.core.extract import NOT_JSON
from truthloop.core.spec import AbstainResponse, AbstainSpec, Monitor, ReviewSpec, Source
from truthloop.sidecar import live
from truthloop.sidecar.abstain import Abstain

PID = "0190c6e4-0000-7000-8000-000000000001"


def reviewed(
    task: str = "binary",
    *,
    low: float = 0.4,
    high: float = 0.6,
    explore: float = 0.0,
    response: AbstainResponse | None = None,
    **capture_fields: Any,
) -> Monitor:
    """ml/churn with a score pointer (/score) and `review.abstain` (built as dataclasses: the
    spec's parser is not needed to decide)."""
    m = churn_monitor(task)
    band = AbstainSpec(low=low, high=high, explore=explore, response=response or AbstainResponse())
    cap = replace(m.spec.capture, score=Source(pointer="/score"), **capture_fields)
    spec = replace(m.spec, capture=cap, review=ReviewSpec(budget=10, abstain=band))
    return replace(m, spec=spec)


@pytest.mark.parametrize(
    ("score", "reason"), [(0.4, "band"), (0.5, "band"), (0.6, "band"), (0.39, None), (0.9, None)]
)
def test_a_binary_score_in_the_band_abstains_its_edges_included(
    score: float, reason: str | None
) -> None:
    decision = abstain.decide(reviewed(), PID, {"prediction": 1, "score": score})
    assert decision == abstain.Decision(reason)


def test_a_multiclass_response_is_read_on_its_predicted_class_score() -> None:
    m = reviewed("multiclass")
    scores = {"a": 0.45, "b": 0.35, "c": 0.2}
    assert abstain.decide(m, PID, {"prediction": "a", "score": scores}).reason == "band"
    assert abstain.decide(m, PID, {"prediction": "c", "score": scores}).reason is None
    missing = abstain.decide(m, PID, {"prediction": "d", "score": scores})
    assert missing == abstain.Decision(None, "score_missing")


def test_the_explored_ids_are_those_review_draw_puts_under_explore() -> None:
    m = reviewed(low=0.99, high=0.99, explore=0.2)
    ids = [f"id-{i}" for i in range(2000)]
    explored = {i for i in ids if abstain.decide(m, i, {"prediction": 0, "score": 0.1}).reason}
    assert explored == {i for i in ids if review.draw("ml/churn", 0, i) < 0.2}
    assert {abstain.decide(m, i, {"prediction": 0, "score": 0.1}).reason for i in explored} == {
        "explore"
    }


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (NOT_JSON, "not_json"),
        ({"score": 0.5}, "prediction_missing"),
        ({"prediction": 1}, "score_missing"),
        ({"prediction": 1, "score": "high"}, "score_invalid"),
        ({"prediction": 1, "score": {"a": 0.5}}, "score_invalid"),  # class scores, binary model
    ],
)
def test_a_response_that_cannot_be_decided_says_why(response: Any, error: str) -> None:
    assert abstain.decide(reviewed(), PID, response) == abstain.Decision(None, error)


def test_only_records_capture_keeps_may_abstain_and_only_with_an_abstain_spec() -> None:
    m = reviewed(low=0.0, high=1.0, sample_rate=0.5)
    ids = [f"id-{i}" for i in range(200)]
    decided = {i: abstain.decide(m, i, {"prediction": 1, "score": 0.5}) for i in ids}
    for i, decision in decided.items():
        kept = capture.sampled(i, 0.5)
        assert decision == (
            abstain.Decision("band") if kept else abstain.Decision(None, "sampled_out")
        )
    plain = churn_monitor()
    assert abstain.decide(plain, PID, {"prediction": 1}) == abstain.Decision(None, "no_abstain")


def test_the_abstain_answer_carries_the_spec_response_and_the_abstain_header() -> None:
    response = AbstainResponse(status=503, body='{"why":"unsure"}', headers=(("X-Foo", "bar"),))
    state = live.Live(live.Current())
    judge = Abstain(state)
    assert judge.verdict(PID, b'{"prediction": 1, "score": 0.5}') is None
    assert judge.stats.passed == {"no_abstain": 1}

    state.current = live.Current(reviewed(response=response))
    answer = judge.verdict(PID, b'{"prediction": 1, "score": 0.5}')
    assert answer is not None
    assert answer.status == 503
    assert answer.body == b'{"why":"unsure"}'
    assert answer.headers == (
        (b"Content-Type", b"application/json"),
        (b"X-Foo", b"bar"),
        (b"X-Truthloop-Abstain", b"true"),
    )
    assert judge.verdict(PID, b'{"prediction": 1, "score": 0.9}') is None
    assert judge.verdict(PID, b"not json") is None
    assert (judge.stats.checked, judge.stats.abstained) == (2, {"band": 1})
    assert judge.stats.passed == {"no_abstain": 1, "not_json": 1}
    # A response naming its own Content-Type keeps it.
    typed = AbstainResponse(headers=(("content-type", "application/problem+json"),))
    state.current = live.Current(reviewed(response=typed))
    answer = judge.verdict(PID, b'{"prediction": 1, "score": 0.5}')
    assert answer is not None
    assert answer.headers[0] == (b"content-type", b"application/problem+json")
    assert len(answer.headers) == 2


def test_the_state_abstains_only_with_an_abstain_spec_and_the_fallback_released() -> None:
    assert not live.Current().abstaining
    assert not live.Current(churn_monitor()).abstaining
    assert live.Current(reviewed()).abstaining
    assert not live.Current(reviewed(), fallback_active=True).abstaining
    state = live.Live(live.Current(reviewed()))
    state.set_active(True)
    assert not state.current.abstaining
    state.set_active(False)
    assert state.current.abstaining


def test_a_failing_decision_sends_the_models_response_and_is_counted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    judge = Abstain(live.Live(live.Current(reviewed())))

    def broken(*args: object) -> bool:
        raise ValueError("broken")

    monkeypatch.setattr(review, "abstains", broken)
    for _ in range(3):
        assert judge.verdict(PID, b'{"prediction": 1, "score": 0.5}') is None
    assert judge.stats.passed == {"error": 3}
    assert len([r for r in caplog.records if "abstain decision failed" in r.message]) == 1
