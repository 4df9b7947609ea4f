"""What the engine refuses, answered at the HTTP boundary: each refusal's status and JSON body.
(The API tests hold most of them to the same answers over HTTP; the label refusal is hard to
reach through a request: the items' own checks refuse such actuals first.)"""

from __future__ import annotations

import pytest

from truthloop.core.records import ItemError
from truthloop.feedback import errors, refusals

ACTUAL = ItemError(2, "actual", "does not fit", "unusable_label")


@pytest.mark.parametrize(
    ("refusal", "status", "body"),
    [
        (
            refusals.UnknownMonitor("ml/x"),
            404,
            {
                "error": "no monitor ml/x is registered",
                "details": [
                    {
                        "index": None,
                        "field": "monitor",
                        "message": "ml/x is not registered",
                        "reason": "unknown_monitor",
                    }
                ],
            },
        ),
        (
            refusals.InvalidItems("labels", [ACTUAL]),
            400,
            {
                "error": "actuals that cannot label their predictions",
                "details": [ACTUAL.to_dict()],
            },
        ),
        (
            refusals.InvalidItems("records", [ACTUAL], omitted=3),
            400,
            {"error": "invalid capture records", "details": [ACTUAL.to_dict()], "truncated": 3},
        ),
        (
            refusals.InvalidItems("actuals", [ACTUAL]),
            400,
            {"error": "invalid actuals", "details": [ACTUAL.to_dict()]},
        ),
        (
            refusals.NotJson("truncated"),
            400,
            {
                "error": "request body is not valid JSON",
                "details": [
                    {
                        "index": None,
                        "field": "body",
                        "message": "truncated",
                        "reason": "invalid_json",
                    }
                ],
            },
        ),
        (
            refusals.SeriesTooLong(20, 10),
            400,
            {
                "error": "a series of 20 points is too long",
                "details": [
                    {
                        "index": None,
                        "field": "series",
                        "message": "at most 10 points",
                        "reason": "too_long",
                    }
                ],
            },
        ),
    ],
    ids=["unknown monitor", "labels", "records", "actuals", "not json", "series too long"],
)
def test_each_refusal_has_its_status_and_body(
    refusal: refusals.Refused, status: int, body: object
) -> None:
    answer = errors.refused(refusal)
    assert (answer.status, answer.body()) == (status, body)
