"""The sidecar's "I don't know": whether a model response is replaced by `spec.review.abstain`'s.

`decide` reads the response the way capture will (`extract.answer`: the capture spec's
prediction and score pointers) and asks `review.abstains` with the proxy's prediction ID: a
score in the band abstains (`band`), and a share `explore` of the others at random (`explore`),
decided by `review.draw` so that the store, deciding from the same ID, queues every explored
record. The score is the binary score, or the predicted class's score for a multiclass model.

Only a record that will be captured may abstain: one that `capture.sampleRate` leaves out is
answered by the model, since nobody would ever see it (and capture stays an unbiased sample).

Pure and total: what cannot be decided is a `Decision` with an `error` reason code (extract's,
`score_missing` for a predicted class without a score, `sampled_out`, `no_abstain`), and the
model's response goes out.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from truthloop.core import capture, extract, metrics, review
from truthloop.core.spec import Monitor
from truthloop.core.tasks import Task

Reason = Literal["band", "explore"]
REASONS: tuple[Reason, ...] = ("band", "explore")


class Decision(NamedTuple):
    """Abstain for `reason`, or not (None); `error` says why it could not be decided."""

    reason: Reason | None
    error: str | None = None


def decide(monitor: Monitor, prediction_id: str, response: Any) -> Decision:
    """Whether the sidecar abstains on this response (decoded JSON, or `extract.NOT_JSON`)."""
    spec = monitor.spec
    if spec.review is None or spec.review.abstain is None:
        return Decision(None, "no_abstain")
    if not capture.sampled(prediction_id, spec.capture.sample_rate):
        return Decision(None, "sampled_out")
    found = extract.answer(spec.capture, response)
    if found.error is not None:
        return Decision(None, found.error)
    row = found.rows[0]
    score = decision_score(spec.task, row.prediction, row.score)
    if isinstance(score, str):
        return Decision(None, score)
    if not review.abstains(monitor.key, spec.review, prediction_id, score):
        return Decision(None)
    return Decision("band" if review.in_band(spec.review.abstain, score) else "explore")


def decision_score(
    task: Task, prediction: Any, score: float | dict[str, float] | None
) -> float | str | None:
    """The score the band is read on: binary, the score; multiclass, the predicted class's score
    (None without a score pointer); a reason code (str) when the response's score cannot be."""
    if score is None:
        return None
    if isinstance(score, dict):
        if task != "multiclass":
            return "score_invalid"
        try:
            label = metrics.class_label(prediction)
        except metrics.LabelError:
            return "prediction_invalid"
        found = score.get(label)
        return "score_missing" if found is None else found
    return score if task == "binary" else "score_invalid"
