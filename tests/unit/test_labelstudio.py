"""Label Studio's task JSON: review items out as tasks, a project's export back in as labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from truthloop.core import labelstudio
from truthloop.core.labelstudio import Origin
from truthloop.core.records import ActualIn, ItemError
from truthloop.core.wire import Scalar

T0 = 1_767_225_600.0


@dataclass(frozen=True)
class Item:
    prediction_id: str
    prediction: Scalar
    score: float | None = 0.8
    features: Any = None
    model_version: str = "v1"
    ts: float = T0
    reason: str = "random"
    pi: float = 0.25
    abstained: bool = False


def test_an_item_becomes_a_task_with_its_features_flattened_and_the_model_answer() -> None:
    features = {"text": "great", "score": 3, "tenure": 7}
    [task] = labelstudio.tasks("ml/churn", "binary", [Item("p1", 1, 0.8, features)])
    assert task == {
        "id": 1,
        "data": {
            "prediction_id": "p1",
            "monitor": "ml/churn",
            "model_version": "v1",
            "ts": "2026-01-01T00:00:00Z",
            "reason": "random",
            "pi": 0.25,
            "abstained": False,
            "prediction": 1,
            "score": 0.8,
            "text": "great",
            "feature_score": 3,
            "tenure": 7,
        },
        "predictions": [
            {
                "model_version": "v1",
                "score": 0.8,
                "result": [
                    {
                        "from_name": "label",
                        "to_name": "item",
                        "type": "choices",
                        "value": {"choices": ["1"]},
                    }
                ],
            }
        ],
    }


def test_each_task_pre_annotates_in_its_own_terms() -> None:
    binary = labelstudio.tasks("ml/a", "binary", [Item("t", True), Item("p", 0.7, None)])
    assert binary[0]["predictions"][0]["result"][0]["value"] == {"choices": ["1"]}
    assert "predictions" not in binary[1]  # a probability without a score is no class
    assert binary[1]["id"] == 2
    [kinds] = labelstudio.tasks("ml/k", "multiclass", [Item("k", 3, None, [1, 2])])
    assert kinds["predictions"][0]["result"][0]["value"] == {"choices": ["3"]}
    assert "score" not in kinds["predictions"][0]
    assert kinds["data"]["features"] == [1, 2]
    [price] = labelstudio.tasks("ml/p", "regression", [Item("r", 12.5, None)])
    assert price["predictions"][0]["result"][0] == {
        "from_name": "label",
        "to_name": "item",
        "type": "number",
        "value": {"number": 12.5},
    }


def annotated(task: dict[str, Any], *annotations: dict[str, Any]) -> dict[str, Any]:
    """A task as Label Studio exports it once annotated."""
    return {**task, "annotations": list(annotations), "id": 900 + task.get("id", 0)}


def chose(label: str, by: Any = 7, **more: Any) -> dict[str, Any]:
    result = {"from_name": "label", "to_name": "item", "type": "choices"}
    return {"completed_by": by, "result": [{**result, "value": {"choices": [label]}}], **more}


def read(tasks: list[dict[str, Any]], task: str = "binary") -> labelstudio.Labels:
    return labelstudio.labels(msgspec.json.encode(tasks), "ml/churn", task, 100)


def test_an_export_comes_back_as_review_labels() -> None:
    out = labelstudio.tasks("ml/churn", "binary", [Item(f"p{i}", 1) for i in range(5)])
    back = read(
        [
            annotated(out[0], chose("0", {"id": 3, "email": "ana@example.com"})),
            annotated(out[1], chose("1", 9)),
            annotated(out[2], chose("1", 9, was_cancelled=True), chose("0", {"id": 4})),
            annotated(out[3], {"completed_by": 5, "result": [], "was_cancelled": True}),
            out[4],
            {"data": {"text": "a task of the project's own"}},
        ]
    )
    assert back.errors == ()
    review = {"monitor": "ml/churn", "source": "review"}
    assert back.actuals == (
        ActualIn(**review, prediction_id="p0", reviewer="ana@example.com", actual="0"),
        ActualIn(**review, prediction_id="p1", reviewer="label-studio-9", actual="1"),
        ActualIn(**review, prediction_id="p2", reviewer="label-studio-4", actual="0"),
        ActualIn(**review, prediction_id="p3", reviewer="label-studio-5", decision="skip"),
    )
    assert back.origins == (Origin(0, 0), Origin(1, 0), Origin(2, 1), Origin(3, None))
    assert back.unannotated == 2


def test_a_regression_label_is_a_number_or_text_read_as_one() -> None:
    [out] = labelstudio.tasks("ml/churn", "regression", [Item("r", 2.0)])
    number = {"type": "number", "value": {"number": 3}}
    text = {"type": "textarea", "value": {"text": ["4.5"]}}
    back = read(
        [
            annotated(out, {"completed_by": 1, "result": [{"type": "rating"}, number]}),
            annotated(
                {**out, "data": {**out["data"], "prediction_id": "s"}},
                {"completed_by": 1, "result": [text]},
            ),
        ],
        "regression",
    )
    assert [a.actual for a in back.actuals] == [3, 4.5]


def test_every_bad_task_is_named_by_index_and_field() -> None:
    [out] = labelstudio.tasks("ml/churn", "binary", [Item("p", 1)])
    other = {**out, "data": {**out["data"], "monitor": "ml/other"}}
    back = read(
        [
            annotated(out, chose("1")),
            annotated({"data": {}}, chose("1")),
            annotated(other, chose("1")),
            annotated(
                out, {**chose("1"), "result": [{"type": "choices", "value": {"choices": []}}]}
            ),
            annotated(out, {**chose("1"), "result": []}),
            annotated(out, chose("1", None)),
            {"data": out["data"], "annotations": "x"},
            annotated(out, {"completed_by": 1, "result": 3}),
            annotated(
                out, {**chose("1"), "result": [{"type": "number", "value": {"number": "x"}}]}
            ),
        ],
    )
    assert [(e.index, e.field, e.reason) for e in back.errors] == [
        (1, "data.prediction_id", "missing"),
        (2, "data.monitor", "mismatch"),
        (3, "annotations[0].result", "invalid"),
        (4, "annotations[0].result", "missing"),
        (5, "annotations[0].completed_by", "missing"),
        (6, "annotations", "wrong_type"),
        (7, "annotations[0].result", "wrong_type"),
        (8, "annotations[0].result", "wrong_type"),
    ]
    assert len(back.actuals) == 1


def test_the_body_is_an_array_of_bounded_length() -> None:
    assert [e.reason for e in read({"tasks": []}).errors] == ["wrong_type"]  # type: ignore[arg-type]
    many = labelstudio.labels(b"[" + b",".join([b"{}"] * 101) + b"]", "ml/churn", "binary", 100)
    assert [(e.field, e.reason) for e in many.errors] == [("body", "too_many_items")]
    with pytest.raises(msgspec.DecodeError):
        labelstudio.labels(b"[", "ml/churn", "binary", 100)


def test_a_refused_review_label_is_named_by_its_task_and_annotation() -> None:
    origins = (Origin(4, 2), Origin(6, None))
    located = [
        labelstudio.located(ItemError(i, field, "m", "invalid"), origins)
        for i, field in ((0, "actual"), (0, "reviewer"), (1, "prediction_id"), (1, "reviewer"))
    ]
    assert [(e.index, e.field) for e in located] == [
        (4, "annotations[2].result"),
        (4, "annotations[2].completed_by"),
        (6, "data.prediction_id"),
        (6, "annotations.completed_by"),
    ]
    whole = ItemError(None, "body", "m", "invalid")
    assert labelstudio.located(whole, origins) == whole
