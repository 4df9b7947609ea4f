"""What `truthloop run` prints for a step between two samples: each change of state once, each
growing counter once per reason per interval with its count so far."""

from __future__ import annotations

from truthloop.core.events import Observed, lines
from truthloop.core.throttle import Throttle
from truthloop.core.wire import DriftSummary

START = Observed()


def test_nothing_changed_says_nothing() -> None:
    seen = Observed(
        phase="Healthy", fallback=False, model_up=True, counts={("model_errors", "x"): 2}
    )
    assert lines(seen, seen, 0.0, Throttle()) == []


def test_the_first_sample_tells_the_phase_and_an_unreachable_model_only() -> None:
    healthy = Observed(phase="Collecting", fallback=False, model_up=True)
    assert lines(START, healthy, 0.0, Throttle()) == ["phase Collecting"]
    down = Observed(phase="Collecting", fallback=False, model_up=False)
    assert lines(START, down, 0.0, Throttle()) == [
        "phase Collecting",
        "the model does not accept connections: requests through the sidecar get 502",
    ]


def test_the_fallback_engaged_and_released_with_the_phase() -> None:
    before = Observed(phase="Degraded", fallback=False, model_up=True)
    engaged = Observed(
        phase="FallbackActive", fallback=True, fallback_reason="accuracy-low", model_up=True
    )
    assert lines(before, engaged, 0.0, Throttle()) == [
        "phase FallbackActive (was Degraded)",
        "fallback engaged (accuracy-low): the rules answer (X-Served-By: fallback)",
    ]
    released = Observed(phase="Healthy", fallback=False, model_up=True)
    assert lines(engaged, released, 0.0, Throttle()) == [
        "phase Healthy (was FallbackActive)",
        "fallback released: the model answers again",
    ]


def test_the_model_back() -> None:
    down, up = Observed(model_up=False), Observed(model_up=True)
    assert lines(down, up, 0.0, Throttle()) == ["the model accepts connections again"]
    assert lines(Observed(model_up=None), up, 0.0, Throttle()) == []


def test_a_growing_counter_once_per_reason_per_interval() -> None:
    throttle = Throttle(interval=60.0)

    def step(before: dict[str, float], after: dict[str, float], now: float) -> list[str]:
        return lines(
            Observed(counts={("capture_errors", k): v for k, v in before.items()}),
            Observed(counts={("capture_errors", k): v for k, v in after.items()}),
            now,
            throttle,
        )

    assert step({}, {"not_json": 1}, 0.0) == ["capture error not_json: 1 so far"]
    assert step({"not_json": 1}, {"not_json": 5}, 30.0) == []  # within the minute
    assert step({"not_json": 5}, {"not_json": 5, "missing": 1}, 31.0) == [
        "capture error missing: 1 so far"  # another reason speaks for itself
    ]
    assert step({"not_json": 5}, {"not_json": 5}, 70.0) == []  # no growth, no line
    assert step({"not_json": 5}, {"not_json": 9}, 71.0) == ["capture error not_json: 9 so far"]


def test_drift_is_told_as_it_starts_changes_and_ends() -> None:
    def seen(*features: str, drifted: bool = True) -> Observed:
        share = len(features) / 4
        summary = DriftSummary(
            status="ok", drifted=drifted, share=share, threshold=0.5, features=features, profiled=4
        )
        return Observed(phase="Collecting", drift=summary)

    calm = seen("tenure", drifted=False)
    assert lines(seen(drifted=False), calm, 0.0, Throttle()) == []
    shifted = seen("tenure", "plan")
    assert lines(calm, shifted, 0.0, Throttle()) == [
        "inputs drifted from the reference: tenure, plan (2 of 4 features, share 0.5; "
        "GET .../drift tells how)"
    ]
    assert lines(shifted, shifted, 0.0, Throttle()) == []
    wider = seen("tenure", "plan", "region")
    assert lines(shifted, wider, 0.0, Throttle())[0].startswith(
        "inputs drifted from the reference: tenure, plan, region (3 of 4"
    )
    assert lines(wider, calm, 0.0, Throttle()) == ["inputs back in line with the reference"]
    no_reference = Observed(phase="Collecting", drift=DriftSummary())
    assert lines(START, no_reference, 0.0, Throttle()) == ["phase Collecting"]
