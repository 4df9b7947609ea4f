"""The fallback's answers from the rules, and the state a spec snapshot starts the sidecar in."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

from tests.support.churn_model import monitor
from truthloop.sidecar import live
from truthloop.sidecar.fallback import Fallback

RULES = [
    {"when": 'headers["x-tier"] == "gold"', "prediction": "0"},
    {"when": "request.features.tenure < 6", "prediction": "1"},
    {"prediction": "request.features.default"},
]


def fallback(**spec: Any) -> Fallback:
    body = monitor(fallback={"mode": "engaged", "rules": RULES}, **spec)
    return Fallback(live.Live(live.initial(body)))


def answer(
    fb: Fallback,
    body: Any,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    path: str = "/predict",
) -> Any:
    response = fb.respond(path, headers, msgspec.json.encode(body))
    assert response is not None
    assert response.status == 200
    assert response.headers == ((b"content-type", b"application/json"),)
    return msgspec.json.decode(response.body)


def test_the_first_rule_that_holds_answers_at_the_prediction_pointer() -> None:
    fb = fallback()
    assert answer(fb, {"features": {"tenure": 3}}) == {"prediction": 1}
    assert answer(fb, {"features": {"tenure": 30, "default": 0}}) == {"prediction": 0}
    gold = ((b"X-Tier", b"gold"),)
    assert answer(fb, {"features": {"tenure": 3}}, gold) == {"prediction": 0}
    assert fb.stats.answered == 3


def test_a_batch_is_answered_row_by_row_in_the_spec_s_shape() -> None:
    fb = fallback(
        capture={
            "prediction": {"pointer": "/label"},
            "batch": {"instances": "/instances", "predictions": "/predictions"},
        }
    )
    rows = [{"features": {"tenure": t, "default": 0}} for t in (1, 10, 5)]
    assert answer(fb, {"instances": rows}) == {
        "predictions": [{"label": 1}, {"label": 0}, {"label": 1}]
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not_json"),
        (b"{nope", "not_json"),
        (b'{"features": {"tenure": 30}}', "no_rule"),  # the last rule reads a missing field
        (b'{"rows": []}', "no_rule"),
    ],
)
def test_what_the_rules_cannot_answer_goes_to_the_model(body: bytes, reason: str) -> None:
    fb = fallback()
    assert fb.respond("/predict", (), body) is None
    assert fb.stats.passed == {reason: 1}


def test_one_row_without_an_answer_sends_the_whole_batch_to_the_model() -> None:
    fb = fallback(
        capture={
            "prediction": {"pointer": ""},
            "batch": {"instances": "/instances", "predictions": "/predictions"},
        }
    )
    rows = [{"features": {"tenure": 1}}, {"features": {"tenure": 10}}]
    assert fb.respond("/predict", (), msgspec.json.encode({"instances": rows})) is None
    assert fb.respond("/predict", (), b'{"instances": {"not": "an array"}}') is None
    assert fb.stats.passed == {"no_rule": 1, "no_rows": 1}


def test_without_a_spec_nothing_is_answered() -> None:
    fb = Fallback(live.Live(live.Current()))
    assert fb.respond("/predict", (), b"{}") is None
    assert fb.stats.passed == {"no_spec": 1}


@pytest.mark.parametrize(
    ("mode", "reported", "active"),
    [
        ("engaged", None, True),
        ("disengaged", True, False),
        ("auto", True, True),
        ("auto", False, False),
        ("auto", None, False),
    ],
)
def test_a_snapshot_starts_engaged_by_its_mode_or_by_its_status(
    mode: str, reported: bool | None, active: bool
) -> None:
    body = monitor(fallback={"mode": mode, "rules": RULES})
    if reported is not None:
        body["status"] = {"fallback": {"active": reported}}
    assert live.initial(body).fallback_active is active


def test_a_spec_that_does_not_parse_is_refused_with_a_reason() -> None:
    body = copy.deepcopy(monitor(task="astrology"))
    with pytest.raises(live.LoadError) as caught:
        live.load(body)
    assert caught.value.reason == "invalid_spec"
    assert "spec.task" in str(caught.value)


def test_a_spec_accepted_before_durations_were_bounded_still_loads() -> None:
    """A running pod's snapshot keeps working after an upgrade bounded `for` to 7d."""
    body = copy.deepcopy(monitor())
    body["spec"]["fallback"]["recoverAfter"] = "30d"
    assert live.load(body).monitor.spec.fallback.recover_after == 30 * 86400


def test_a_spec_under_a_monitor_key_is_read_too() -> None:
    loaded = live.load({"monitor": monitor()})
    assert loaded.monitor.key == "ml/churn"


V2_RULES = [{"prediction": "request.predict[0] < 6.0 ? 1 : 0"}]


def v2_fallback(**capture: Any) -> Fallback:
    body = monitor(
        capture={"protocol": "open-inference-v2", **capture},
        fallback={"mode": "engaged", "rules": V2_RULES},
    )
    return Fallback(live.Live(live.initial(body)))


def v2_request(*tenures: float) -> dict[str, Any]:
    data = [x for t in tenures for x in (t, 1.0)]
    shape = [len(tenures), 2]
    return {
        "id": "q1",
        "inputs": [{"name": "predict", "shape": shape, "datatype": "FP64", "data": data}],
    }


def test_a_v2_batch_is_answered_row_by_row_as_an_inference_response() -> None:
    fb = v2_fallback()
    got = answer(fb, v2_request(1.0, 10.0, 5.0), path="/v2/models/churn/versions/2/infer")
    assert got == {
        "model_name": "churn",
        "model_version": "2",
        "id": "q1",
        "parameters": {},
        "outputs": [{"name": "predict", "shape": [3, 1], "datatype": "INT64", "data": [1, 0, 1]}],
    }
    assert fb.stats.answered == 1


def test_v2_requests_the_rules_cannot_answer_go_to_the_model() -> None:
    fb = v2_fallback()
    body = msgspec.json.encode(v2_request(1.0))
    assert fb.respond("/v2/models/churn/ready", (), body) is None
    assert fb.respond("/v2/models/churn/infer", (), b'{"inputs": "none"}') is None
    missing = {"inputs": [{"name": "other", "shape": [1], "datatype": "FP64", "data": [1.0]}]}
    assert fb.respond("/v2/models/churn/infer", (), msgspec.json.encode(missing)) is None
    assert fb.stats.passed == {"not_inference": 1, "no_rows": 1, "no_rule": 1}


def test_rows_whose_predictions_a_tensor_cannot_hold_together_go_to_the_model() -> None:
    body = monitor(
        capture={"protocol": "open-inference-v2"},
        fallback={
            "mode": "engaged",
            "rules": [
                {"when": "request.predict[0] < 6.0", "prediction": "'churn'"},
                {"prediction": "0"},
            ],
        },
    )
    fb = Fallback(live.Live(live.initial(body)))
    assert (
        fb.respond("/v2/models/churn/infer", (), msgspec.json.encode(v2_request(1.0, 9.0))) is None
    )
    assert fb.stats.passed == {"unbuildable": 1}


def test_a_kserve_v1_batch_is_answered_with_a_predictions_array() -> None:
    fb = fallback(capture={"protocol": "kserve-v1"})
    rows = [{"features": {"tenure": t, "default": 0}} for t in (1, 10)]
    assert answer(fb, {"instances": rows}, path="/v1/models/churn:predict") == {
        "predictions": [1, 0]
    }
