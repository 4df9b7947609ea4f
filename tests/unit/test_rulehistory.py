"""The fallback's rules on history: the request rebuilt from the captured features answers as the
request did, what was not captured is counted, and the comparison agrees with a recount."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from truthloop.core import celreads, intervals, pointer, rulehistory
from truthloop.core.celreads import Read
from truthloop.core.celrules import compile_rules
from truthloop.core.join import Label
from truthloop.core.rulehistory import Skipped, Tally
from truthloop.core.spec import MonitorSpec, parse_spec

CHURN = Path(__file__).parents[2] / "examples" / "monitor-churn.yaml"
RULES = [
    {"when": "double(request.features.monthly_charges) > 75.0", "prediction": "1"},
    {"prediction": "0"},
]


def spec(
    rules: list[dict[str, str]] = RULES,
    features: str | None = "/features",
    task: str = "binary",
    **more: Any,
) -> MonitorSpec:
    obj = yaml.safe_load(CHURN.read_text())["spec"]
    obj["fallback"]["rules"] = rules
    obj["task"] = task
    if task != "binary":
        del obj["threshold"], obj["capture"]["score"]
        obj["alerts"] = [{"name": "mae-high", "metric": "mae", "above": 5.0}]
        obj["fallback"]["engageOn"] = ["mae-high"]
    if features is None:
        del obj["capture"]["features"]
    else:
        obj["capture"]["features"] = {"pointer": features}
    obj.update(more)
    return parse_spec(obj)


@dataclass(frozen=True)
class Stored:
    """A stored record as the dataset read gives it (the fields `rulehistory.Record` reads)."""

    prediction: Any
    features: Any
    label: Label | None
    score: float | None = None
    served_by: str = "model"
    prediction_id: str = ""


def test_reads_are_the_static_paths_from_request_and_headers() -> None:
    assert celreads.reads("double(request.features.monthly_charges) > 75.0") == (
        Read("request", ("features", "monthly_charges")),
    )
    assert celreads.reads('request["a b"][0].c == headers["x-tier"]') == (
        Read("request", ("a b", 0, "c")),
        Read("headers", ("x-tier",)),
    )
    # As far as the path is static: a computed index reads all of what it indexes.
    assert celreads.reads("request.items[request.i] > size(request)") == (
        Read("request", ("items",)),
        Read("request", ("i",)),
        Read("request", ()),
    )
    assert celreads.reads("request.items.exists(x, x.price > 3.0)") == (
        Read("request", ("items",)),
    )
    assert celreads.reads("1") == ()
    assert str(Read("request", ("a", 0, "b"))) == "request.a[0].b"


@pytest.mark.parametrize(
    ("rules", "features", "blocked"),
    [
        (RULES, "/features", None),
        (RULES, "", None),
        ([{"prediction": "0"}], None, None),
        (
            [{"when": 'headers["x-tier"] == "gold"', "prediction": "0"}, {"prediction": "1"}],
            "/features",
            (0, "reads_header", "rules[0].when reads headers.x-tier: headers are not captured"),
        ),
        (
            [*RULES[:1], {"when": "request.user.age > 30", "prediction": "1"}, RULES[1]],
            "/features",
            (
                1,
                "not_captured",
                "rules[1].when reads request.user.age: only the features at /features are captured",
            ),
        ),
        (
            [{"prediction": "request.features.plan == 'year' ? 0 : 1"}],
            "/features/tenure",
            (
                0,
                "not_captured",
                "rules[0].prediction reads request.features.plan: only the features at "
                "/features/tenure are captured",
            ),
        ),
        (
            RULES,
            None,
            (
                0,
                "not_captured",
                "rules[0].when reads request.features.monthly_charges: no features are captured",
            ),
        ),
    ],
)
def test_the_first_rule_reading_what_was_not_captured_blocks(
    rules: list[dict[str, str]], features: str | None, blocked: tuple[int, str, str] | None
) -> None:
    found = rulehistory.judge(spec(rules, features)).blocked
    assert (found and (found.index, found.reason, found.detail)) == blocked


BODIES = st.recursive(
    st.none() | st.booleans() | st.integers(-100, 100) | st.floats(-200, 200) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)
FEATURES = st.fixed_dictionaries(
    {},
    optional={
        "monthly_charges": st.floats(0, 150) | st.integers(0, 150) | st.text(max_size=2),
        "tenure": st.integers(0, 60),
        "plan": st.sampled_from(["month-to-month", "year"]),
    },
)
PROBING = [
    {"when": "double(request.features.monthly_charges) > 75.0", "prediction": "1"},
    {"when": 'request.features.plan == "year" && request.features.tenure > 24', "prediction": "0"},
    {"when": "has(request.features.tenure)", "prediction": "request.features.tenure % 2"},
    {"prediction": "0"},
]


PROBED = spec(PROBING)
PROBED_JUDGE = rulehistory.judge(PROBED)
PROBED_RULES = compile_rules(PROBED.fallback.rules)


@given(features=FEATURES, rest=st.dictionaries(st.text(max_size=3), BODIES, max_size=3))
def test_the_rebuilt_request_answers_as_the_request_did(
    features: dict[str, Any], rest: dict[str, Any]
) -> None:
    """What the sidecar answered to a body, the rules answer to the body's captured features."""
    body = {**rest, "features": features}
    captured = pointer.resolve(body, "/features")
    rebuilt = PROBED_JUDGE.request(captured)
    assert PROBED_JUDGE.rules.evaluate(rebuilt, {}) == PROBED_RULES.evaluate(body, {})


def test_an_index_token_rebuilds_an_array() -> None:
    rules = [{"when": "request.instances[1].x > 2", "prediction": "1"}, {"prediction": "0"}]
    judge = rulehistory.judge(spec(rules, "/instances/1"))
    assert judge.blocked is None
    assert judge.request({"x": 3}) == {"instances": [None, {"x": 3}]}
    assert judge.rules.evaluate(judge.request({"x": 3}), {}).value == 1  # type: ignore[union-attr]
    # Another element of the array was not captured.
    other = [{"when": "request.instances[0].x > 2", "prediction": "1"}, {"prediction": "0"}]
    assert rulehistory.judge(spec(other, "/instances/1")).blocked is not None


def test_beyond_the_most_judged_the_rules_judge_a_uniform_sample() -> None:
    judge = rulehistory.judge(spec())
    plain = [{"when": "request.features.tenure < 3", "prediction": "1"}, {"prediction": "0"}]
    closures = rulehistory.judge(spec(plain))
    assert judge.rules.uses_cel_runner == (True, False)  # double() runs on cel-python
    assert rulehistory.sample_rate(judge, rulehistory.MAX_JUDGED_CEL) == 1.0
    assert rulehistory.sample_rate(judge, 4 * rulehistory.MAX_JUDGED_CEL) == 0.25
    assert rulehistory.sample_rate(closures, 4 * rulehistory.MAX_JUDGED_CEL) == 1.0
    records = [
        dataclasses.replace(r, prediction_id=f"p{i}") for i, r in enumerate(history(4000, 2))
    ]
    tally = Tally(judge, 0.25)
    tally.add(records)
    again = Tally(judge, 0.25)
    again.add(records)
    found = rulehistory.result(tally, spec())
    assert found.sample == 0.25
    assert found.records == found.compared + found.sampled_out == 4000
    assert 900 < found.compared < 1100
    assert rulehistory.result(again, spec()) == found  # the same records, drawn by their IDs


def history(n: int, seed: int) -> list[Stored]:
    """Labeled binary records: the model right ~80% of the time, the label leaning on charges."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        charges = round(rng.uniform(20, 120), 1)
        actual = int(rng.random() < (0.8 if charges > 75 else 0.15))
        predicted = actual if rng.random() < 0.8 else 1 - actual
        score = rng.uniform(0.5, 1) if predicted else rng.uniform(0, 0.5)
        out.append(Stored(predicted, {"monthly_charges": charges}, Label(actual), score))
    return out


def test_rules_against_the_model_agree_with_a_recount() -> None:
    """Row by row: the rules' answer written out in Python, right answers counted for both, and
    each side's accuracy with its Wilson interval, the difference with Newcombe's."""
    records = history(3000, seed=7)
    extra = [
        Stored(1, {"monthly_charges": 99.0}, Label(1), 0.9, served_by="fallback"),
        Stored(1, {"monthly_charges": 99.0}, Label(vote="up"), 0.9),
        Stored(0, {"monthly_charges": 30.0}, Label(vote="down"), 0.1),
    ]
    tally = Tally(rulehistory.judge(spec()))
    chunks = records[:1000], [*records[1000:2000], *extra], records[2000:]
    for chunk in chunks:
        tally.add(chunk)
    found = rulehistory.result(tally, spec())

    model_right = sum(r.prediction == r.label.value for r in records)  # type: ignore[union-attr]
    rules_right = sum(
        (1 if r.features["monthly_charges"] > 75 else 0) == r.label.value  # type: ignore[union-attr]
        for r in records
    )
    high = sum(r.features["monthly_charges"] > 75 for r in records)
    n = len(records)
    z = intervals.z_score(0.95)
    assert (found.records, found.compared, found.no_rule) == (n + 3, n, 0)
    assert found.by_rule == (high, n - high)
    assert found.skipped == (
        Skipped("live_fallback", 1, rulehistory.SKIP_REASONS["live_fallback"]),
        Skipped("vote_only", 2, rulehistory.SKIP_REASONS["vote_only"]),
    )
    assert found.metric == "accuracy"
    model, rules = found.model["accuracy"], found.rules["accuracy"]
    assert model.value == pytest.approx(model_right / n)
    assert rules.value == pytest.approx(rules_right / n)
    assert (model.lower, model.upper) == pytest.approx(intervals.wilson(model_right, n, z))
    assert (rules.lower, rules.upper) == pytest.approx(intervals.wilson(rules_right, n, z))
    difference = found.difference
    assert difference is not None
    assert difference.difference == pytest.approx((rules_right - model_right) / n)
    assert (difference.lower, difference.upper) == pytest.approx(
        intervals.mover_difference(
            model_right / n,
            intervals.wilson(model_right, n, z),
            rules_right / n,
            intervals.wilson(rules_right, n, z),
        )
    )
    shown = msgspec.json.decode(msgspec.json.encode(found))
    assert shown["model"]["accuracy"]["value"] == pytest.approx(model_right / n)
    assert shown["differences"]["accuracy"]["verdict"] == difference.verdict


def test_a_regression_compares_the_mean_absolute_error() -> None:
    rng = random.Random(3)
    records = [
        Stored(x + rng.gauss(0, 2), {"x": x}, Label(x + rng.gauss(0, 1)))
        for x in (rng.uniform(0, 50) for _ in range(500))
    ]
    rules = [{"prediction": "double(request.features.x)"}]
    tally = Tally(rulehistory.judge(spec(rules, task="regression")))
    tally.add(records)
    found = rulehistory.result(tally, spec(rules, task="regression"))
    assert found.metric == "mae"
    n = len(records)
    model_errors = [abs(r.prediction - r.label.value) for r in records]  # type: ignore[union-attr, operator]
    rules_errors = [abs(r.features["x"] - r.label.value) for r in records]  # type: ignore[union-attr, operator]
    assert found.model["mae"].value == pytest.approx(sum(model_errors) / n)
    assert found.rules["mae"].value == pytest.approx(sum(rules_errors) / n)
    assert found.difference is not None
    assert found.difference.verdict == "better"


def test_records_past_a_blocking_rule_are_counted_with_its_reason() -> None:
    rules = [
        {"when": "request.features.tenure < 3", "prediction": "1"},
        {"when": 'headers["x-tier"] == "gold"', "prediction": "0"},
        {"prediction": "0"},
    ]
    records = [Stored(1, {"tenure": t}, Label(t % 2)) for t in range(10)]
    tally = Tally(rulehistory.judge(spec(rules)))
    tally.add(records)
    found = rulehistory.result(tally, spec(rules))
    assert (found.compared, found.no_rule, found.by_rule) == (3, 0, (3, 0, 0))
    assert found.skipped == (
        Skipped("reads_header", 7, "rules[1].when reads headers.x-tier: headers are not captured"),
    )


def test_no_rule_answering_and_an_answer_the_task_refuses_are_counted() -> None:
    rules = [
        {"when": "request.features.tenure < 3", "prediction": '"maybe"'},
        {"when": "request.features.tenure < 6", "prediction": "1"},
        {"prediction": "request.features.plan"},  # an error where there is none
    ]
    records = [Stored(1, {"tenure": t}, Label(1)) for t in range(10)]
    tally = Tally(rulehistory.judge(spec(rules)))
    tally.add(records)
    found = rulehistory.result(tally, spec(rules))
    assert (found.compared, found.no_rule, found.by_rule) == (3, 4, (0, 3, 0))
    assert [(s.reason, s.records) for s in found.skipped] == [("invalid_answer", 3)]


def test_a_protocol_s_flattened_row_is_told_back_for_the_rules() -> None:
    """A preset keeps a v2 row's vectors as `<input>.<i>` features; the rules read the row."""
    rules = [{"when": "request.predict[0] > 5.0 && request.plan == 'pro'", "prediction": "1"},
             {"prediction": "0"}]  # fmt: skip
    judge = rulehistory.judge(spec(rules, None, capture={"protocol": "open-inference-v2"}))
    assert judge.blocked is None
    stored = {"predict.0": 6.5, "predict.1": 1.0, "plan": "pro"}
    assert judge.request(stored) == {"predict": [6.5, 1.0], "plan": "pro"}
    assert judge.rules.evaluate(judge.request(stored), {}).value == 1  # type: ignore[union-attr]
    by_position = [{"when": "request[1] > 2.0", "prediction": "1"}, {"prediction": "0"}]
    listed = rulehistory.judge(spec(by_position, None, capture={"protocol": "kserve-v1"}))
    decision = listed.rules.evaluate(listed.request({"0": 1.0, "1": 3.0}), {})
    assert decision is not None
    assert decision.value == 1
