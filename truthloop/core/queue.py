"""The review queue: what a reviewer's label or decision does to a queued item.

A record `core.review.select` queued is an item of its monitor's queue until it is `reviewed`
(a reviewer labeled it), closed as `unsure` (the third reviewer unsure of it) or `expired` (its
record's attribution window passed). A reviewer leases open items for a while (the stores'
`lease_review`: abstained and explored items first, then the oldest); `skip` and `unsure` hand a
leased item back, and it is never offered to that reviewer again (`passed`). A label for an item
not leased, or already labeled, is taken as any relabel is (`core.join`); a label without a
reviewer (ground truth arriving) keeps a reviewed record reviewed (`core.join.still_reviewed`).

Pure, so both stores do the same: they read the items a request's review actuals name, and
`core.plan.plan_actuals` answers each (`refusal`, `answer`) and counts the outcomes per reviewer
in the lifetime totals (`total_key`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from truthloop.core.join import Row
from truthloop.core.records import Actual, Decision, ItemError, Vote
from truthloop.core.wire import Scalar

State = Literal["open", "reviewed", "unsure", "expired"]
Outcome = Literal["labeled", "skip", "unsure"]

MAX_VOTES = 10
"""An item keeps its newest votes up to this many (a relabel adds one)."""
UNSURE_CLOSES = 3
"""Distinct reviewers unsure of an item that close it as `unsure`."""
FIRST = ("abstain", "explore")
"""The reasons leased before the others: what the model answered "I don't know" to."""
REVIEWED_BY = "model"
"""The served_by of the records selection queues (the model's own answers)."""


class ReviewVote(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """One reviewer's answer on an item: a label (`value` or `vote`) or `decision: unsure`."""

    reviewer: str
    at: float
    value: Scalar | None = None
    vote: Vote | None = None
    decision: Decision | None = None


class Item(msgspec.Struct, frozen=True, gc=False):
    """A queued item as an answer changes it; `ref` is the store's handle for it."""

    ref: int
    state: State = "open"
    lease_until: float | None = None
    leased_to: str | None = None
    passed: tuple[str, ...] = ()
    """Reviewers who skipped it or were unsure: not offered to them again."""
    votes: tuple[ReviewVote, ...] = ()


decode_votes = msgspec.json.Decoder(tuple[ReviewVote, ...]).decode


def total_key(outcome: Outcome, reviewer: str) -> str:
    """A reviewer's lifetime count of one outcome, `@review/<outcome>/<reviewer>` (no `:`, so
    the totals keep it)."""
    return f"@review/{outcome}/{reviewer}"


def outcome(actual: Actual) -> Outcome:
    return "labeled" if actual.decision is None else actual.decision


def refusal(index: int, actual: Actual, rows: Sequence[Row], item: Item | None) -> ItemError | None:
    """Why a reviewer's actual `index` cannot be taken: it names no model record of its
    monitor (`rows`: the records its prediction id names), or decides on one not waiting in
    the queue (never queued, or closed)."""
    if actual.prediction_id is None or not any(r.served_by == REVIEWED_BY for r in rows):
        return ItemError(
            index,
            "prediction_id",
            f"no prediction {actual.prediction_id} in monitor {actual.monitor}",
            "unknown_prediction",
        )
    if actual.decision is not None and (item is None or item.state != "open"):
        return ItemError(
            index,
            "prediction_id",
            f"prediction {actual.prediction_id} of monitor {actual.monitor}"
            " is not queued for review",
            "not_queued",
        )
    return None


def answer(item: Item, actual: Actual, now: float) -> Item:
    """The item after a reviewer's label (reviewed, its lease cleared) or decision on an open
    item (handed back, the reviewer passed; `unsure` is a vote, and the `UNSURE_CLOSES`th
    reviewer unsure closes it)."""
    reviewer = actual.reviewer
    assert reviewer is not None
    vote = ReviewVote(reviewer, now, actual.value, actual.vote, actual.decision)
    if actual.decision is None:
        return msgspec.structs.replace(
            item, state="reviewed", lease_until=None, leased_to=None, votes=_add(item.votes, vote)
        )
    passed = item.passed if reviewer in item.passed else (*item.passed, reviewer)
    votes, state = item.votes, item.state
    if actual.decision == "unsure":
        votes = _add(votes, vote)
        unsure = {v.reviewer for v in votes if v.decision == "unsure"}
        if len(unsure) >= UNSURE_CLOSES:
            state = "unsure"
    released = item.leased_to in (None, reviewer)
    return msgspec.structs.replace(
        item,
        state=state,
        lease_until=None if released else item.lease_until,
        leased_to=None if released else item.leased_to,
        passed=passed,
        votes=votes,
    )


def _add(votes: tuple[ReviewVote, ...], vote: ReviewVote) -> tuple[ReviewVote, ...]:
    return (*votes, vote)[-MAX_VOTES:]
