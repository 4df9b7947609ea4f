"""The feedback service's review pieces that need no service: the queue's status, the design's
basis, the accuracy a plan reads, the reviewers Prometheus names, and `truthloop plan-review`'s
flags and answer."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from tests.support.feedback import monitor_body
from truthloop import plan_review
from truthloop.core import metrics, review
from truthloop.core.evaluation import Evaluated
from truthloop.core.spec import parse_monitor
from truthloop.feedback.engine import current_accuracy, design_basis, review_status
from truthloop.feedback.exporter import MAX_REVIEWERS, reviews_by
from truthloop.feedback.store.interface import QueueStats
from truthloop.flags import UsageError

DESIGN = review.Design(uniform=0.1, expected_per_day=480.0, budget_per_day=500.0)


def queue(expired: int) -> QueueStats:
    return QueueStats(depth=3, leased=1, oldest=10.0, expired=expired)


def test_the_queue_is_behind_when_items_expired_unreviewed_unless_the_design_says_worse() -> None:
    assert review_status(DESIGN, None) == ("ok", None)
    assert review_status(DESIGN, queue(0)) == ("ok", None)
    status, message = review_status(DESIGN, queue(7))
    assert status == "behind"
    assert message is not None
    assert "7 queued items expired" in message
    assert "480 a day" in message
    short = review.Design(uniform=1.0, status="under_traffic", message="only 120 records a day")
    assert review_status(short, queue(7)) == ("under_traffic", "only 120 records a day")


def test_the_design_is_fitted_again_for_a_new_review_spec_or_window_only() -> None:
    def basis(**spec: Any) -> str:
        body = monitor_body(**{"review": {"budget": 500}, **spec})
        return design_basis(parse_monitor(body).spec)

    same = basis()
    assert basis(alerts=[]) == same
    assert basis(review={"budget": 600}) != same
    assert basis(metrics={"window": "2h", "minSamples": 5}) != same


def test_a_plan_reads_the_reviewed_accuracy_else_the_realized_else_the_estimate() -> None:
    def window(realized: float | None, estimated: float | None, reviewed: float | None) -> Any:
        return Evaluated(
            100,
            10,
            {"accuracy": metrics.Estimate(realized)},
            {} if estimated is None else {"accuracy": metrics.Estimate(estimated)},
            {} if reviewed is None else {"accuracy": review.Reviewed(reviewed, n=5)},
        )

    assert current_accuracy(window(0.9, 0.8, 0.7)) == (0.7, "reviewed")
    assert current_accuracy(window(0.9, 0.8, None)) == (0.9, "realized")
    assert current_accuracy(window(None, 0.8, None)) == (0.8, "estimated")
    assert current_accuracy(window(None, None, None)) == (0.5, "assumed")
    assert current_accuracy(None) == (0.5, "assumed")


def test_prometheus_names_the_busiest_reviewers_and_sums_the_others() -> None:
    totals = {f"@review/reviewed/r{i:03}": float(i + 1) for i in range(MAX_REVIEWERS + 10)}
    totals |= {"@review/skip/r000": 100.0, "@review/unsure/r001": 2.0, "@actuals_matched": 9.0}
    shown = reviews_by(totals)
    reviewers = {reviewer for reviewer, _ in shown}
    assert len(reviewers) == MAX_REVIEWERS + 1
    assert "other" in reviewers
    assert "r000" in reviewers, "100 skips make r000 one of the busiest"
    assert {"r001", "r002"}.isdisjoint(reviewers)
    assert shown["r000", "skip"] == 100.0
    assert shown["other", "unsure"] == 2.0
    assert sum(v for (_, o), v in shown.items() if o == "reviewed") == sum(
        v for k, v in totals.items() if k.startswith("@review/reviewed/")
    )
    assert reviews_by({"@review/reviewed/a/b": 1.0}) == {("a/b", "reviewed"): 1.0}


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    plan_review.add_parser(parser.add_subparsers(), "plan")
    return parser.parse_args(["plan-review", *argv])


def test_the_flags_become_the_plan_s_query() -> None:
    url, params = plan_review.query_from(
        args("--monitor", "ml/churn", "--half-width", "0.02", "--detect", "0.05",
             "--within", "24h", "--feedback-url", "http://feedback:8081/")
    )  # fmt: skip
    assert url == "http://feedback:8081/v1/monitors/ml/churn/review/plan"
    assert params == {"halfWidth": "0.02", "detect": "0.05", "within": "24h"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--monitor", "churn", "--budget", "5"], "--monitor 'churn': expected NAMESPACE/NAME"),
        (["--monitor", "ml/churn"], "give --half-width, --detect with --within, or --budget"),
        (["--monitor", "ml/churn", "--half-width", "two"], "--half-width 'two'"),
        (["--monitor", "ml/churn", "--detect", "0.05"], "--detect needs --within"),
        (["--monitor", "ml/churn", "--within", "1d"], "--within goes with --detect or --budget"),
        (["--monitor", "ml/churn", "--budget", "5", "--within", "soon"], "--within 'soon'"),
    ],
)
def test_a_bad_flag_is_named(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as e:
        plan_review.query_from(args(*argv))
    assert str(e.value).startswith(message)


def test_the_answer_reads_as_sentences() -> None:
    answer = {
        "monitor": "ml/churn",
        "window": 3600.0,
        "traffic": {"per_day": 24000.0, "mean_g": 0.3},
        "accuracy": {"value": 0.9123, "source": "reviewed"},
        "plan": {"per_day": 24000.0, "unit_variance": 0.08, "for_half_width": 1234.4,
                 "for_detection": 310.2, "needed": 1234.4},
    }  # fmt: skip
    text = plan_review.summary(answer, {"halfWidth": "0.02", "detect": "0.05", "within": "24h"})
    assert text.splitlines() == [
        "ml/churn: 24,000 records a day (the last day's), accuracy 0.912 (reviewed)",
        "  ±0.02 over the 1h window: 1,234 reviews a day",
        "  a drop of 0.05 detected within 24h: 310 reviews a day",
        "  needed: 1,234 reviews a day (5.1% of the records)",
    ]
    bought = {**answer, "plan": {"per_day": 24000.0, "unit_variance": 0.08, "half_width": 0.0312,
                                 "detectable": 0.041}}  # fmt: skip
    text = plan_review.summary(bought, {"budget": "500", "within": "24h"})
    assert text.splitlines()[1:] == [
        "  500 reviews a day give ±0.0312 over the 1h window",
        "  and detect a drop of 0.041 within 24h",
    ]


def test_a_refusal_is_one_line_naming_the_flag() -> None:
    body = {"error": "bad", "details": [{"field": "halfWidth", "message": "expected a half-width"}]}
    assert (
        plan_review.refusal("ml/churn", 400, body)
        == "ml/churn: --half-width: expected a half-width"
    )
    assert plan_review.refusal("ml/x", 404, {"error": "no monitor ml/x"}) == "ml/x: no monitor ml/x"
    assert plan_review.refusal("ml/x", 502, "<html>bad\ngateway</html>").endswith(
        "502: <html>bad gateway</html>"
    )
