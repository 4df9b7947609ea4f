"""The review queue's answers: what a reviewer's label or decision does to an item, and which
reviewers' actuals are refused."""

from __future__ import annotations

from truthloop.core import queue
from truthloop.core.join import Row
from truthloop.core.records import Actual, ItemError

LEASED = queue.Item(7, "open", lease_until=1600.0, leased_to="ann")


def actual(reviewer: str = "ann", value: int | None = 1, decision: str | None = None) -> Actual:
    return Actual(
        "ml/churn",
        1000.0,
        prediction_id="p",
        value=None if decision else value,
        reviewer=reviewer,
        decision=decision,  # type: ignore[arg-type]
    )


def row(served_by: str = "model") -> Row:
    return Row(1, "p", served_by, "v1", 900.0, 1)


def test_a_label_closes_the_item_as_reviewed_with_its_vote_and_no_lease() -> None:
    done = queue.answer(LEASED, actual("bob", 0), 1000.0)
    assert done == queue.Item(7, "reviewed", votes=(queue.ReviewVote("bob", 1000.0, value=0),))
    again = queue.answer(done, actual("cy", 1), 1001.0)  # a relabel is one more vote
    assert [(v.reviewer, v.value) for v in again.votes] == [("bob", 0), ("cy", 1)]


def test_a_skip_hands_the_item_back_and_passes_the_reviewer_without_a_vote() -> None:
    skipped = queue.answer(LEASED, actual(decision="skip"), 1000.0)
    assert skipped == queue.Item(7, "open", passed=("ann",))
    # another reviewer's skip leaves ann's lease alone
    assert queue.answer(LEASED, actual("bob", decision="skip"), 1000.0) == queue.Item(
        7, "open", 1600.0, "ann", passed=("bob",)
    )


def test_the_third_reviewer_unsure_closes_the_item_and_one_reviewer_counts_once() -> None:
    item = LEASED
    for reviewer in ("ann", "ann", "bob"):
        item = queue.answer(item, actual(reviewer, decision="unsure"), 1000.0)
    assert (item.state, item.passed, len(item.votes)) == ("open", ("ann", "bob"), 3)
    item = queue.answer(item, actual("cy", decision="unsure"), 1000.0)
    assert item.state == "unsure"
    assert {v.decision for v in item.votes} == {"unsure"}


def test_an_item_keeps_its_newest_votes() -> None:
    item = queue.Item(1)
    for i in range(queue.MAX_VOTES + 3):
        item = queue.answer(item, actual(f"r{i}"), float(i))
    assert [v.reviewer for v in item.votes] == [f"r{i}" for i in range(3, queue.MAX_VOTES + 3)]


def test_a_reviewers_actual_names_a_model_record_and_a_decision_an_open_item() -> None:
    assert queue.refusal(0, actual(), [row()], None) is None  # a label needs no item
    assert queue.refusal(2, actual(), [row("fallback")], None) == ItemError(
        2, "prediction_id", "no prediction p in monitor ml/churn", "unknown_prediction"
    )
    assert queue.refusal(0, actual(), [], LEASED) is not None
    skip = actual(decision="skip")
    assert queue.refusal(0, skip, [row()], LEASED) is None
    for item in (None, queue.Item(7, "reviewed"), queue.Item(7, "expired")):
        refused = queue.refusal(3, skip, [row()], item)
        assert refused is not None
        assert (refused.index, refused.field, refused.reason) == (3, "prediction_id", "not_queued")


def test_outcomes_count_per_reviewer_in_a_lifetime_key() -> None:
    assert queue.total_key(queue.outcome(actual()), "ann") == "@review/labeled/ann"
    assert queue.total_key(queue.outcome(actual(decision="unsure")), "b") == "@review/unsure/b"
