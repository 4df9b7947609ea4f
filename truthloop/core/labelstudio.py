"""Label Studio's task JSON: review items out as tasks, a project's export back in as labels.

Teams already label in Label Studio, so the review queue speaks its format both ways.

Out (`tasks`): one task per leased item. Its `data` holds what the labeling config shows
(`$name`): the item's `prediction_id`, `monitor`, `model_version`, `ts` (RFC 3339), why it was
queued (`reason`), its inclusion probability `pi`, `abstained`, the `prediction` and `score`,
and the features flattened (a feature named like one of those is `feature_<name>`; features that
are not an object are `features`). Its `predictions` pre-annotate the model's answer: a choice
of the control `label` on the object `item` (classifiers: the class as text), or a number
(regression), so a reviewer confirms or corrects it.

In (`labels`): a project's JSON export, a list of tasks with their `annotations`. Each task
gives at most one label, its newest annotation not cancelled (`was_cancelled`: Label Studio's
skip): the first result of type `choices` (one choice), `number` or `textarea`, as the
`actual` of a review label of the task's `data.prediction_id`; a task whose annotations were
all cancelled is a `skip`; a task without annotations is left out, whatever it holds (a project
may have tasks of its own). The reviewer is the
annotator: `completed_by` as an object with an `email`, else its user id as
`label-studio-<id>`. Labels are not converted: a class label's text is what the monitor's
task reads (`"1"` is binary class 1), and a regression's text is read as a number.

Every bad task is named (`index`, the field in Label Studio's terms: `data.prediction_id`,
`annotations[2].result`), at most `records.MAX_ERRORS` of them; a review label the feedback
service refuses later is named the same way (`located`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import msgspec

from truthloop.core import metrics
from truthloop.core.records import ActualIn, ItemError, Problems
from truthloop.core.spec import format_time
from truthloop.core.tasks import Task
from truthloop.core.wire import Scalar

CONTROL = "label"
"""The labeling config's control the label is read from and the pre-annotation is for."""
OBJECT = "item"
"""The object tag that control labels."""
USER_PREFIX = "label-studio-"
"""A reviewer named by a Label Studio user id (`completed_by` without an email)."""
RESERVED = frozenset(
    {
        "prediction_id",
        "monitor",
        "model_version",
        "ts",
        "reason",
        "pi",
        "abstained",
        "prediction",
        "score",
        "features",
    }
)
"""The `data` keys a task always has; a feature of one of these names is `feature_<name>`."""


class Leased(Protocol):
    """A leased review item as a task shows it (the store's `ReviewItem` is one)."""

    @property
    def prediction_id(self) -> str: ...
    @property
    def model_version(self) -> str: ...
    @property
    def ts(self) -> float: ...
    @property
    def prediction(self) -> Scalar: ...
    @property
    def score(self) -> float | None: ...
    @property
    def features(self) -> Any: ...
    @property
    def reason(self) -> str: ...
    @property
    def pi(self) -> float: ...
    @property
    def abstained(self) -> bool: ...


def tasks(monitor: str, task: Task, items: Sequence[Leased]) -> list[dict[str, Any]]:
    """The items as Label Studio tasks (ids 1, 2, ... in order)."""
    return [_task(i, monitor, task, item) for i, item in enumerate(items, 1)]


def _task(number: int, monitor: str, task: Task, item: Leased) -> dict[str, Any]:
    data: dict[str, Any] = {
        "prediction_id": item.prediction_id,
        "monitor": monitor,
        "model_version": item.model_version,
        "ts": format_time(item.ts),
        "reason": item.reason,
        "pi": item.pi,
        "abstained": item.abstained,
        "prediction": item.prediction,
        "score": item.score,
    }
    features = item.features
    if isinstance(features, dict):
        for name, value in features.items():
            data[f"feature_{name}" if name in RESERVED else name] = value
    elif features is not None:
        data["features"] = features
    answer: dict[str, Any] = {"id": number, "data": data}
    result = _pre_annotation(task, item.prediction)
    if result is not None:
        prediction: dict[str, Any] = {"model_version": item.model_version, "result": [result]}
        if item.score is not None:
            prediction["score"] = item.score
        answer["predictions"] = [prediction]
    return answer


def _pre_annotation(task: Task, prediction: Scalar) -> dict[str, Any] | None:
    """The model's answer as a result of the `label` control, or None when it is no class
    (a binary probability without a score)."""
    base = {"from_name": CONTROL, "to_name": OBJECT}
    try:
        if task == "regression":
            if isinstance(prediction, bool) or not isinstance(prediction, int | float):
                return None
            return {**base, "type": "number", "value": {"number": prediction}}
        if task == "binary":
            choice = str(metrics.binary_class(prediction, "prediction"))
        else:
            choice = metrics.class_label(prediction)
    except metrics.LabelError:
        return None
    return {**base, "type": "choices", "value": {"choices": [choice]}}


# -- a project's export back in ----------------------------------------------------------------


class _Annotation(msgspec.Struct):
    completed_by: int | str | dict[str, Any] | None = None
    result: list[Any] = msgspec.field(default_factory=list)
    was_cancelled: bool = False


class _Task(msgspec.Struct):
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    annotations: list[Any] = msgspec.field(default_factory=list)


_TASKS = msgspec.json.Decoder(list[msgspec.Raw])
_TASK = msgspec.json.Decoder(_Task)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a review label came from: the task's index in the export and its annotation's
    (None: the task had only cancelled ones, the label is a skip)."""

    task: int
    annotation: int | None


@dataclass(frozen=True, slots=True)
class Labels:
    """A project's export read: the review labels in task order, where each came from, the
    tasks left out (no annotation yet), and every problem found."""

    actuals: tuple[ActualIn, ...]
    origins: tuple[Origin, ...]
    unannotated: int
    errors: tuple[ItemError, ...]
    omitted: int = 0


def labels(body: bytes, monitor: str, task: Task, max_tasks: int) -> Labels:
    """Read a Label Studio JSON export of `monitor`'s tasks (at most `max_tasks`). Raises
    `msgspec.DecodeError` for a body that is not JSON."""
    problems = Problems()
    try:
        raws = _TASKS.decode(body)
    except msgspec.ValidationError:
        problems.add(None, "body", "expected a JSON array of Label Studio tasks", "wrong_type")
        return Labels((), (), 0, tuple(problems.kept))
    if len(raws) > max_tasks:
        problems.add(None, "body", f"at most {max_tasks} tasks per request", "too_many_items")
        return Labels((), (), 0, tuple(problems.kept))
    actuals: list[ActualIn] = []
    origins: list[Origin] = []
    unannotated = 0
    for index, raw in enumerate(raws):
        read = _read_task(index, raw, monitor, task, problems)
        if read == "unannotated":
            unannotated += 1
        if not isinstance(read, tuple):
            continue
        actual, origin = read
        actuals.append(actual)
        origins.append(origin)
    return Labels(
        tuple(actuals), tuple(origins), unannotated, tuple(problems.kept), problems.omitted
    )


def _read_task(
    index: int, raw: msgspec.Raw, monitor: str, task: Task, problems: Problems
) -> tuple[ActualIn, Origin] | Literal["unannotated"] | None:
    """The review label of one task, `"unannotated"`, or None (its problems added)."""
    try:
        item = _TASK.decode(raw)
    except msgspec.ValidationError as e:
        problems.add(index, _field_of(e), str(e).split(" - at ")[0], "wrong_type")
        return None
    if not item.annotations:
        return "unannotated"  # whatever it holds: a project may have tasks of its own
    before = problems.count
    data = item.data
    prediction_id = data.get("prediction_id")
    if not isinstance(prediction_id, str) or not prediction_id:
        problems.add(
            index,
            "data.prediction_id",
            "expected the prediction id the task was exported with",
            "missing",
        )
    named = data.get("monitor", monitor)
    if named != monitor:
        problems.add(
            index, "data.monitor", f"the task is of monitor {named!r}, not {monitor}", "mismatch"
        )
    chosen: tuple[int, _Annotation] | None = None
    cancelled: tuple[int, _Annotation] | None = None
    for number, raw_annotation in enumerate(item.annotations):
        try:
            annotation = msgspec.convert(raw_annotation, _Annotation)
        except msgspec.ValidationError as e:
            where = f"annotations[{number}]"
            field = _field_of(e)
            problems.add(
                index,
                f"{where}.{field}" if field else where,
                str(e).split(" - at ")[0],
                "wrong_type",
            )
            return None
        if annotation.was_cancelled:
            cancelled = (number, annotation)
        else:
            chosen = (number, annotation)
    picked = chosen or cancelled
    assert picked is not None
    number, annotation = picked
    reviewer = _reviewer(index, number, annotation.completed_by, problems)
    fields: dict[str, Any] = {}
    if chosen is None:
        fields["decision"] = "skip"
    else:
        value = _value(index, number, annotation.result, task, problems)
        if value is not None:
            fields["actual"] = value
    if problems.count > before:
        return None
    actual = ActualIn(
        monitor, prediction_id=prediction_id, source="review", reviewer=reviewer, **fields
    )
    return actual, Origin(index, None if chosen is None else number)


def _field_of(error: msgspec.ValidationError) -> str:
    message = str(error)
    at = message.partition(" - at `$")[2].partition("`")[0]
    return at.lstrip(".")


def _reviewer(index: int, number: int, completed_by: Any, problems: Problems) -> str | None:
    """Who annotated: an email, else `label-studio-<user id>`."""
    if isinstance(completed_by, dict):
        email, user = completed_by.get("email"), completed_by.get("id")
        if isinstance(email, str) and email:
            return email
        completed_by = user
    if isinstance(completed_by, int) and not isinstance(completed_by, bool):
        return f"{USER_PREFIX}{completed_by}"
    if isinstance(completed_by, str) and completed_by:
        return completed_by
    problems.add(
        index,
        f"annotations[{number}].completed_by",
        "expected the annotator: a user id, or an object with an email",
        "missing",
    )
    return None


def _value(
    index: int, number: int, results: Sequence[Any], task: Task, problems: Problems
) -> Scalar | None:
    """The label of an annotation's results: the first choice, number or text."""
    field = f"annotations[{number}].result"
    for result in results:
        if not isinstance(result, Mapping) or not isinstance(result.get("value"), Mapping):
            continue
        kind, value = result.get("type"), result["value"]
        if kind == "choices":
            choices = value.get("choices")
            if not isinstance(choices, list) or len(choices) != 1:
                problems.add(index, field, "expected exactly one choice", "invalid")
                return None
            return _text(index, field, choices[0], task, problems)
        if kind == "number":
            number_ = value.get("number")
            if isinstance(number_, bool) or not isinstance(number_, int | float):
                problems.add(index, field, "expected a number", "wrong_type")
                return None
            return number_
        if kind == "textarea":
            texts = value.get("text")
            if not isinstance(texts, list) or len(texts) != 1:
                problems.add(index, field, "expected exactly one text", "invalid")
                return None
            return _text(index, field, texts[0], task, problems)
    problems.add(
        index, field, "no label: expected a result of type choices, number or textarea", "missing"
    )
    return None


def _text(index: int, field: str, text: Any, task: Task, problems: Problems) -> Scalar | None:
    """A chosen or typed label: text, read as a number for a regression."""
    if not isinstance(text, str):
        problems.add(index, field, "expected text", "wrong_type")
        return None
    if task != "regression":
        return text
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        problems.add(index, field, f"{text!r} is not a number", "unusable_label")
        return None
    return number


FIELDS = {"actual": "result", "vote": "result", "reviewer": "completed_by"}
"""A review label's fields refused by the feedback service, as an annotation's fields."""
DATA_FIELDS = {"prediction_id": "data.prediction_id", "monitor": "data.monitor"}


def located(error: ItemError, origins: Sequence[Origin]) -> ItemError:
    """An error about the `index`th review label, named by its task and annotation."""
    if error.index is None:
        return error
    origin = origins[error.index]
    field = DATA_FIELDS.get(error.field)
    if field is None:
        where = "annotations" if origin.annotation is None else f"annotations[{origin.annotation}]"
        own = FIELDS.get(error.field)
        field = f"{where}.{own}" if own else where
    return ItemError(origin.task, field, error.message, error.reason)
