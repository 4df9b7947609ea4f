"""Sketching a batch against its references: cells, data quality, outliers, which reference."""

from __future__ import annotations

import bisect
import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from tests.support.monitors import churn_monitor
from truthloop.core import plan, sketch
from truthloop.core.evaluation import evaluate, label_counters
from truthloop.core.profile import (
    CategoricalProfile,
    NumericProfile,
    Profile,
    Reference,
    category_text,
    cells,
)
from truthloop.core.records import PredictionRecord
from truthloop.core.spec import FeatureSpec, Monitor
from truthloop.core.windows import bucket_of

T0 = 1_767_225_600.0
EDGES = (0.0, 10.0, 20.0, 30.0)
AGE = NumericProfile("age", EDGES, (0, 0.3, 0.3, 0.4, 0), 15, 8, 0, 30, 100, 0)
PLAN = CategoricalProfile("plan", ("gold", "basic", "1"), (0.5, 0.3, 0.1, 0.1), ("silver",), 100, 0)
PREDICTION = CategoricalProfile("prediction", ("0", "1"), (0.5, 0.5, 0.0), (), 100, 0)
SCORE = NumericProfile("score", (0.0, 0.5, 1.0), (0, 0.5, 0.5, 0), 0.5, 0.3, 0, 1, 100, 0)
PROFILE = Profile(100, (AGE, PLAN, PREDICTION, SCORE))


@dataclass(frozen=True)
class Known:
    id: int
    monitor: Monitor
    references: Mapping[str, Reference] = field(default_factory=dict)


def reference(ref: int = 5, version: str = "", profile: Profile = PROFILE) -> Reference:
    return Reference(ref, version, T0, "upload", profile)


def known(*references: Reference, spec: Monitor | None = None) -> dict[str, Known]:
    return {"ml/churn": Known(7, spec or churn_monitor(), {r.version: r for r in references})}


def rec(
    i: int,
    features: Any,
    *,
    prediction: Any = 1,
    score: float | None = 0.7,
    version: str = "v1",
    served_by: str = "model",
    ts: float = T0,
) -> PredictionRecord:
    return PredictionRecord(
        "ml/churn", f"p{i}", served_by, version, ts, prediction, score=score, features=features
    )  # type: ignore[arg-type]


def counters(records: list[PredictionRecord], *refs: Reference) -> dict[str, float]:
    """Every sketch counter of the batch, summed over groups."""
    total: dict[str, float] = {}
    for group in sketch.sketch(records, known(*refs)).deltas().values():
        for k, v in group.items():
            total[k] = total.get(k, 0.0) + v
    return total


# -- the profile's rules --------------------------------------------------------------------------


def test_cells_follow_the_profile_rule_at_every_edge() -> None:
    edges = np.array(EDGES)
    values = np.array([-0.1, 0.0, 9.99, 10.0, 29.9, 30.0, 30.01])
    assert cells(edges, values).tolist() == [0, 1, 1, 2, 3, 3, 4]
    constant = np.array([3.0, 3.0])  # a constant reference: one interior cell for exactly c
    assert cells(constant, np.array([2.9, 3.0, 3.1])).tolist() == [0, 1, 2]


def test_category_text_makes_one_category_of_equal_scalars() -> None:
    assert [category_text(v) for v in ("a", 1, 1.0, "1", True, False, 2.5)] == [
        "a",
        "1",
        "1",
        "1",
        "true",
        "false",
        "2.5",
    ]


# -- cells and data quality -----------------------------------------------------------------------


def test_numeric_values_fall_in_cells_and_bad_ones_are_counted_apart() -> None:
    ages: list[Any] = [5, 10.0, 29.5, 30, -1, 31, None, "12", True, [1], float("nan")]
    records = [rec(i, {"age": a}) for i, a in enumerate(ages)]
    records.append(rec(99, {"other": 1}))  # the feature absent
    records.append(rec(98, None))  # no features at all
    got = counters(records, reference())
    age = {k.split(":", 2)[2]: v for k, v in got.items() if k.startswith("~5:age:")}
    assert age == {"0": 1, "1": 1, "2": 1, "3": 2, "4": 1, "oor": 2, "missing": 4, "wrong": 3}
    assert got["~5:@rows"] == len(records)


def test_categorical_values_map_to_categories_other_new_missing_and_wrong() -> None:
    plans: list[Any] = [
        "gold",
        "gold",
        "basic",
        1,
        1.0,
        "silver",
        "bronze",
        7,
        None,
        {"a": 1},
        True,
    ]
    got = counters([rec(i, {"plan": p}) for i, p in enumerate(plans)], reference())
    plan_counters = {k.split(":", 2)[2]: v for k, v in got.items() if k.startswith("~5:plan:")}
    # 0 gold, 1 basic, 2 "1", 3 other (silver was seen; bronze, 7 and true never were)
    assert plan_counters == {"0": 2, "1": 1, "2": 2, "3": 4, "new": 3, "missing": 1, "wrong": 1}


def test_the_prediction_and_score_are_sketched_from_the_record() -> None:
    records = [
        rec(0, {}, prediction=0, score=0.2),
        rec(1, {}, prediction=1, score=0.9),
        rec(2, {}, prediction=1, score=None),
        rec(3, {}, prediction=True, score=1.5),
        rec(4, {}, prediction=0.7, score=None),  # a probability: its class by the threshold
        rec(5, {}, prediction=0.7, score=0.7),  # with a score, no class
        rec(6, {}, prediction="maybe", score=None),
    ]
    got = counters(records[:4], reference())
    # a binary prediction is sketched by its class, as metrics reads it: true is class 1
    assert {k: v for k, v in got.items() if k.startswith("~5:prediction:")} == {
        "~5:prediction:0": 1,
        "~5:prediction:1": 3,
    }
    later = counters(records[4:], reference())
    assert {k: v for k, v in later.items() if k.startswith("~5:prediction:")} == {
        "~5:prediction:1": 1,
        "~5:prediction:2": 2,  # no class: another value, new to the reference
        "~5:prediction:new": 2,
    }
    # a batch of integer predictions, the usual one, is read as classes the same way
    ints = [
        rec(i, {}, prediction=p, score=s)
        for i, (p, s) in enumerate([(0, 0.1), (1, None), (2, None), (-1, 0.5)])
    ]
    mixed = [*ints, rec(9, {}, prediction="maybe", score=None)]
    only_ints = counters(ints, reference())
    assert {k: v for k, v in only_ints.items() if k.startswith("~5:prediction:")} == {
        "~5:prediction:0": 1,
        "~5:prediction:1": 1,
        "~5:prediction:2": 2,
        "~5:prediction:new": 2,
    }
    with_text = counters(mixed, reference())
    assert with_text["~5:prediction:2"] == only_ints["~5:prediction:2"] + 1
    assert with_text["~5:prediction:0"] == only_ints["~5:prediction:0"]
    assert {k: v for k, v in got.items() if k.startswith("~5:score:")} == {
        "~5:score:1": 1,
        "~5:score:2": 1,
        "~5:score:3": 1,
        "~5:score:oor": 1,
        "~5:score:missing": 1,
    }


def test_declared_features_are_read_by_their_pointer() -> None:
    base = churn_monitor()
    features = (
        FeatureSpec("age", "/person/age", "numeric"),
        FeatureSpec("plan", "/plan", "categorical"),
    )
    spec = dataclasses.replace(base, spec=dataclasses.replace(base.spec, features=features))
    records = [
        rec(0, {"person": {"age": 12}, "plan": "gold", "age": 99}),
        rec(1, {"person": [], "plan": "gold"}),
    ]
    ks = known(reference(), spec=spec)
    got = sketch.sketch(records, ks).deltas()[7, "v1", "model", bucket_of(T0)]
    assert (got["~5:age:2"], got["~5:age:missing"]) == (1, 1)
    assert "~5:age:oor" not in got
    assert got["~5:plan:0"] == 2


# -- outliers -------------------------------------------------------------------------------------


def test_the_outlier_score_is_the_share_of_features_outside_the_reference() -> None:
    records = [
        rec(0, {"age": 15, "plan": "gold"}),  # inside
        rec(1, {"age": 45, "plan": "gold"}),  # one of two out of range
        rec(2, {"age": -3, "plan": "bronze"}),  # both: out of range and new
        rec(3, {"age": None, "plan": "silver"}),  # missing and seen: data quality, not outliers
        rec(4, {"age": "x", "plan": ["gold"]}),  # wrong types: not outliers
        rec(5, {"age": 15, "plan": "gold"}, prediction=0, score=3.0),  # the score is no feature
    ]
    sketched = sketch.sketch(records, known(reference()))
    assert sketched.outliers == [0.0, 0.5, 1.0, 0.0, 0.0, 0.0]
    group = sketched.deltas()[7, "v1", "model", bucket_of(T0)]
    assert (group["~5:@rows"], group["~5:@outliers"]) == (6, 2)


# -- which reference ------------------------------------------------------------------------------


def test_a_record_is_sketched_against_its_versions_reference_else_the_default() -> None:
    default, own = reference(5, ""), reference(6, "v2")
    records = [rec(0, {"age": 5}, version="v1"), rec(1, {"age": 5}, version="v2")]
    deltas = sketch.sketch(records, known(default, own)).deltas()
    v1 = deltas[7, "v1", "model", bucket_of(T0)]
    v2 = deltas[7, "v2", "model", bucket_of(T0)]
    assert (v1["~5:age:1"], v2["~6:age:1"]) == (1, 1)
    assert not any(k.startswith("~6:") for k in v1)
    assert not any(k.startswith("~5:") for k in v2)

    only_v2 = sketch.sketch(records, known(own))
    assert only_v2.outliers == [None, 0.0]  # v1 has no reference: not sketched
    assert list(only_v2.deltas()) == [(7, "v2", "model", bucket_of(T0))]
    nothing = sketch.sketch(records, known())
    assert nothing.outliers == [None, None]
    assert nothing.deltas() == {}


def test_counters_go_to_the_records_minute_and_served_by() -> None:
    records = [
        rec(0, {"age": 5}, ts=T0),
        rec(1, {"age": 5}, ts=T0 + 59.9),
        rec(2, {"age": 5}, ts=T0 + 60),
        rec(3, {"age": 5}, ts=T0, served_by="fallback"),
    ]
    deltas = sketch.sketch(records, known(reference())).deltas()
    rows = {group: c["~5:@rows"] for group, c in deltas.items()}
    minute = bucket_of(T0)
    assert rows == {
        (7, "v1", "model", minute): 2,
        (7, "v1", "model", minute + 1): 1,
        (7, "v1", "fallback", minute): 1,
    }


# -- duplicates and the plan ----------------------------------------------------------------------


def test_only_the_stored_records_are_counted() -> None:
    records = [rec(i, {"age": 5 + i, "plan": "gold"}) for i in range(6)]
    sketched = sketch.sketch(records, known(reference()))
    group = (7, "v1", "model", bucket_of(T0))
    assert sketched.deltas([1, 4])[group]["~5:@rows"] == 2
    assert sketched.deltas([1, 4])[group]["~5:age:1"] == 2  # 6 and 9
    assert sketched.deltas([]) == {}
    stored = [0, 2, 5]
    result = plan.plan_arrivals(
        [records[i] for i in stored], known(reference()), {}, T0, sketched, stored
    )
    assert result.deltas[group]["~5:@rows"] == 3
    assert result.deltas[group]["@predictions"] == 3
    assert result.deltas[group]["~5:plan:0"] == 3


def test_metrics_ignore_the_sketch_counters() -> None:
    counts = {"tp": 3.0, "fp": 1.0, "tn": 4.0, "fn": 2.0, "@predictions": 10.0}
    sketches = {"~5:age:1": 7.0, "~5:@rows": 10.0, "~5:plan:new": 2.0}
    assert label_counters({**counts, **sketches}) == {"tp": 3, "fp": 1, "tn": 4, "fn": 2}
    for task in ("binary", "multiclass", "regression"):
        assert evaluate(task, {**counts, **sketches}) == evaluate(task, counts)


# -- against a record-by-record reading of the rules ----------------------------------------------


def naive(records: list[PredictionRecord], ref: Reference) -> dict[str, float]:
    """The counters as the module docstrings state them, one record and one column at a time."""
    out: dict[str, float] = {}

    def bump(name: str) -> None:
        out[name] = out.get(name, 0.0) + 1

    for r in records:
        bump(f"~{ref.id}:@rows")
        outlying = 0
        for column in ref.profile.columns:
            name = column.name
            if name == "prediction":
                value = binary_class(r.prediction, r.score)
            elif name == "score":
                value = r.score
            else:
                value = r.features.get(name) if isinstance(r.features, dict) else None
            prefix = f"~{ref.id}:{name}:"
            if isinstance(column, NumericProfile):
                if value is None or (isinstance(value, float) and value != value):
                    bump(prefix + "missing")
                elif isinstance(value, bool) or not isinstance(value, int | float):
                    bump(prefix + "wrong")
                else:
                    cell = bisect.bisect_right(column.edges, value)
                    if value == column.edges[-1]:
                        cell = len(column.edges) - 1
                    bump(prefix + str(cell))
                    if cell in (0, len(column.edges)):
                        bump(prefix + "oor")
                        outlying += name not in ("prediction", "score")
            else:
                if value is None:
                    bump(prefix + "missing")
                elif isinstance(value, list | dict):
                    bump(prefix + "wrong")
                else:
                    text = category_text(value)
                    if text in column.categories:
                        bump(prefix + str(column.categories.index(text)))
                    else:
                        bump(prefix + str(len(column.categories)))
                        if text not in column.seen:
                            bump(prefix + "new")
                            outlying += name not in ("prediction", "score")
        if outlying:
            bump(f"~{ref.id}:@outliers")
    return out


def binary_class(prediction: Any, score: Any, threshold: float = 0.5) -> Any:
    """A binary prediction's class as text, as metrics reads it, or the value if it is none."""
    if isinstance(prediction, bool):
        return "1" if prediction else "0"
    if isinstance(prediction, str) and prediction.strip().lower() in ("0", "1", "false", "true"):
        return "1" if prediction.strip().lower() in ("1", "true") else "0"
    if isinstance(prediction, int | float) and prediction in (0, 1):
        return str(int(prediction))
    if isinstance(prediction, int | float) and score is None and 0 <= prediction <= 1:
        return "1" if prediction >= threshold else "0"
    return prediction


@pytest.mark.parametrize("seed", range(5))
def test_random_batches_count_as_the_rules_say(seed: int) -> None:
    rng = random.Random(seed)
    pool: list[Any] = [None, "x", True, [1], {}, 1, 2.5, "1", "gold", "silver", "basic", "ruby"]

    def value(numeric: bool) -> Any:
        if numeric and rng.random() < 0.7:
            return rng.choice([rng.uniform(-5, 35), rng.randint(-5, 35), 0.0, 10, 30.0])
        return rng.choice(pool)

    records = []
    for i in range(rng.randint(1, 400)):
        features: Any = {"age": value(True), "plan": value(False)}
        if rng.random() < 0.1:
            del features["age"]
        if rng.random() < 0.05:
            features = rng.choice([None, [1, 2], "text"])
        records.append(
            rec(
                i,
                features,
                prediction=rng.choice([0, 1, True, "1", " TRUE", "cat", 0.25, 0.75, 1.5]),
                score=rng.choice([None, rng.uniform(-0.5, 1.5)]),
            )
        )
    ref = reference()
    got = {k: v for k, v in counters(records, ref).items() if v}
    assert got == naive(records, ref)


def test_compiled_references_are_kept_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sketch, "_LAYOUTS", type(sketch._LAYOUTS)())
    monkeypatch.setattr(sketch, "MAX_LAYOUTS", 2)
    records = [rec(0, {"age": 5, "plan": "gold"})]
    for ref in (11, 12, 13, 11):
        got = counters(records, reference(ref))
        assert got[f"~{ref}:age:1"] == 1
        assert len(sketch._LAYOUTS) <= 2
    assert [key[0] for key in sketch._LAYOUTS] == [13, 11]


def test_another_store_s_reference_of_the_same_id_is_sketched_by_its_own_profile() -> None:
    """A reference id names one profile within one store; a process may open several (a test
    run does), each numbering from 1: the compiled reference is not taken for another's."""
    records = [rec(0, {"age": 5, "plan": "gold"})]
    assert counters(records, reference(1))["~1:plan:0"] == 1
    other = CategoricalProfile("plan", ("basic", "gold"), (0.5, 0.5, 0.0), (), 100, 0)
    swapped = Profile(100, (AGE, other, PREDICTION, SCORE))
    assert counters(records, reference(1, profile=swapped))["~1:plan:1"] == 1
