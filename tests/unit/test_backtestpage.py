"""The backtest's HTML page: self-contained, escaped, the timeline drawing what the result holds."""

from __future__ import annotations

import dataclasses
import math
import re
from html.parser import HTMLParser

import pytest

from tests.unit import test_backtest, test_rulehistory
from truthloop.core import backtest, backtestpage, rulehistory, timeline
from truthloop.core.alerts import Transition
from truthloop.core.backtest import (
    AlertReplay,
    Around,
    Backtest,
    BacktestResult,
    Candidate,
    Episode,
    Figure,
    Period,
    Score,
    Suggestion,
    SweepResult,
)
from truthloop.core.join import Label
from truthloop.core.windows import BucketRange

DAY = 86400.0
START = 1_790_000_000.0 - 1_790_000_000.0 % 60


def result(monitor: str = "churn") -> BacktestResult:
    first = Period(START + 3600, START + 7200)
    last = Period(START + DAY - 600, START + DAY, open=True)
    figure = Figure(0.71, 0.65, 0.77, 240)
    return BacktestResult(
        monitor=monitor,
        period=Period(START, START + DAY),
        window=300.0,
        minutes=1440,
        predictions=10_000,
        transitions=(
            Transition("alert_firing", START + 3600, "accuracy-low", "accuracy 0.71 < 0.8"),
        ),
        alerts=(AlertReplay("accuracy-low", "accuracy", (first, last), 3),),
        episodes=(
            Episode(first, "accuracy-low fired", 500, {"accuracy": Around(figure, figure, None)}),
            Episode(last, "accuracy-low fired", 80),
        ),
        fallback_share=0.058,
        engagements_per_day=2.0,
    )


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(page: str) -> Collect:
    found = Collect()
    found.feed(page)
    return found


def test_the_page_loads_nothing_and_escapes_what_it_shows() -> None:
    page = backtestpage.render(Backtest(result('<script>alert("x")</script>')))
    found = parsed(page)
    assert "<script>alert(" not in page
    assert "content=\"default-src 'none'" in page
    for tag, attrs in found.tags:
        assert "src" not in attrs, tag
        assert not str(attrs.get("href", "")).startswith(("http", "//")), tag
    assert not re.search(r"https?://(?!www\.w3\.org)", page)


def test_the_timeline_draws_each_firing_period_and_episode() -> None:
    page = backtestpage.render(Backtest(result()))
    titles = re.findall(r"<rect class=\"(firing|engaged)\"[^>]*><title>([^<]*)</title>", page)
    assert [k for k, _ in titles] == ["firing", "firing", "engaged", "engaged"]
    assert titles[2][1].startswith("fallback engaged 2026-")
    assert titles[2][1].endswith(", 1h: accuracy-low fired")
    assert "to the end (still on), 10m" in titles[3][1]
    text = "".join(parsed(page).text)
    assert "2 episodes of fallback, engaged 1h10m (4.9% of the period)" in text
    assert "5.8% of the model's 10000 predictions" in text
    assert "0.71 [0.65, 0.77] n=240" in text


def test_a_line_is_drawn_with_its_threshold_and_gaps() -> None:
    times = [START + 60 * i for i in range(1440)]
    values = [math.nan if 100 <= i < 200 else 0.6 if i == 700 else 0.9 for i in range(1440)]
    line = timeline.thin("accuracy", times, values, threshold=0.8)
    assert len(line.times) <= timeline.MAX_POINTS
    assert min(v for v in line.values if v is not None) == 0.6  # a breach is never thinned away
    assert None in line.values
    page = backtestpage.render(Backtest(result(), lines=(line,)))
    assert page.count("<polyline") == 2  # the gap splits the line
    assert "accuracy: fires below 0.8" in page


def test_the_sweep_marks_its_pareto_front_and_tables_are_bounded() -> None:
    score = Score(1, 2, 2, 120.0, 3600.0)
    candidates = tuple(
        Candidate({"alerts[accuracy-low].below": 0.7 + i / 1000}, score, i % 2 == 0)
        for i in range(backtestpage.MAX_ROWS + 3)
    )
    backtest = Backtest(
        result(),
        SweepResult("accuracy", 0.8, candidates),
        (Suggestion("accuracy-low", "below", 0.74, "the 1st percentile of healthy windows"),),
    )
    page = backtestpage.render(backtest)
    sweep = page[page.index('id="sweep"') : page.index('id="suggest"')]
    assert sweep.count("<tr>") == backtestpage.MAX_ROWS + 1
    assert sweep.count("★") == backtestpage.MAX_ROWS // 2 + 1  # the legend's own star too
    assert "… and 3 more not shown." in sweep
    assert "alerts[accuracy-low].below=0.74" in page


def test_the_rules_against_the_model_with_what_was_left_out() -> None:
    spec = test_rulehistory.spec(
        [
            {"when": "request.features.tenure < 3", "prediction": "1"},
            {"when": 'headers["x-tier"] == "gold"', "prediction": "0"},
            {"prediction": "0"},
        ]
    )
    tally = rulehistory.Tally(rulehistory.judge(spec))
    tally.add([test_rulehistory.Stored(t % 2, {"tenure": t}, Label(1)) for t in range(10)])
    page = backtestpage.render(Backtest(result(), rules=rulehistory.result(tally, spec)))
    section = "".join(parsed(page[page.index('id="rules"') : page.index('id="alerts"')]).text)
    assert "3 of 10 labeled records judged on both sides (accuracy, 95% intervals)" in section
    assert "answers by rule: rules[0] 3, rules[1] 0, rules[2] 0" in section
    assert "7 reads_header: rules[1].when reads headers.x-tier: headers are not captured" in section
    assert "the rules did better" in section or "can't tell" in section


def test_a_replayed_backtest_carries_its_alerts_lines_to_the_page() -> None:
    accuracy = [0.9] * 200 + [0.5] * 60 + [0.9] * 200
    spec = test_backtest.monitor()
    span = BucketRange(test_backtest.START + 4, test_backtest.START + len(accuracy))
    found = backtest.backtest(
        "ml/churn", spec, backtest.inputs(spec, test_backtest.history(accuracy), span)
    )
    (line,) = found.lines
    assert (line.key, line.threshold, line.below) == ("accuracy", 0.8, True)
    assert line.times[-1] == backtest.tick(span, len(span) - 1)
    assert min(v for v in line.values if v is not None) == pytest.approx(0.5)
    page = backtestpage.render(found)
    assert "accuracy: fires below 0.8" in page
    assert page.count('<rect class="engaged"') == 1


def test_a_sample_of_the_records_is_said() -> None:
    spec = test_rulehistory.spec()
    tally = rulehistory.Tally(rulehistory.judge(spec), 0.5)
    tally.add(
        dataclasses.replace(r, prediction_id=f"p{i}")
        for i, r in enumerate(test_rulehistory.history(200, 3))
    )
    rules = rulehistory.result(tally, spec)
    page = backtestpage.render(Backtest(result(), rules=rules))
    assert (
        f"{rules.compared} of 200 labeled records judged on both sides (a uniform sample of 50.0%"
        f" drawn by prediction ID, {rules.sampled_out} left out)"
    ) in page


def test_what_the_answer_left_out_is_counted() -> None:
    cut = dataclasses.replace(result(), episodes_omitted=1500, transitions_omitted=3000)
    text = "".join(parsed(backtestpage.render(Backtest(cut))).text)
    assert "1502 episodes of fallback" in text
    assert "transitions: 3001" in text
    assert "… and 1500 later ones the answer leaves out." in text
