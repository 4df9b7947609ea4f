"""core.backtest: the replay of planted degradations, stepping only where inputs change against
every minute, the sweep's scores, Pareto front and planted optimum, and suggested thresholds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.monitors import churn_monitor
from truthloop.core import backtest, sweep
from truthloop.core.spec import MonitorSpec, SpecError
from truthloop.core.windows import BucketRange

START = 29_000_000
"""An epoch minute (2025) the synthetic histories start at."""

LABELED = 20
"""Labeled predictions a minute."""


def monitor(**spec: Any) -> MonitorSpec:
    """ml/churn with a 5-minute window, minSamples 50, one accuracy alert engaging the fallback;
    keyword arguments replace spec fields."""
    fields: dict[str, Any] = {
        "metrics": {"window": "5m", "minSamples": 50},
        "alerts": [{"name": "accuracy-low", "metric": "accuracy", "below": 0.8, "for": "2m"}],
        "fallback": {"recoverAfter": "3m", "rules": [{"prediction": "0"}]},
        **spec,
    }
    return churn_monitor(**fields).spec


def history(accuracy: Sequence[float], predictions: int = 25) -> backtest.Minutes:
    """Minute counters from START with each minute's accuracy over LABELED labels (exact
    counts: round(accuracy * LABELED) right), `predictions` predictions a minute."""
    minutes = {}
    for i, acc in enumerate(accuracy):
        right = round(acc * LABELED)
        counters = {
            "@predictions": float(predictions),
            "tp": float(right // 2),
            "tn": float(right - right // 2),
            "fp": float((LABELED - right) // 2),
            "fn": float(LABELED - right - (LABELED - right) // 2),
        }
        minutes[START + i] = {("v1", "model"): {k: v for k, v in counters.items() if v}}
    return minutes


def replayed(spec: MonitorSpec, accuracy: Sequence[float]) -> tuple[backtest.Inputs, Any]:
    span = BucketRange(START + 4, START + len(accuracy))
    found = backtest.inputs(spec, history(accuracy), span)
    return found, backtest.replay("ml/churn", spec, found)


def test_the_replay_finds_a_planted_degradation_once() -> None:
    accuracy = [0.9] * 200 + [0.5] * 60 + [0.9] * 200
    found, result = replayed(monitor(), accuracy)
    (episode,) = result.episodes
    (alert,) = result.alerts
    assert len(alert.firing) == 1
    assert alert.pendings == 1
    # window 5m: 0.82 after one bad minute, 0.74 after two (pending), firing 2m later
    assert episode.period.start == backtest.tick(found.span, 200 - 4 + 1 + 2)
    assert not episode.period.open
    assert episode.metrics["accuracy"].during is not None
    assert episode.metrics["accuracy"].during.value == pytest.approx(
        (0.5 * 59 + 0.9 * (episode.predictions / 25 - 59)) / (episode.predictions / 25), abs=0.05
    )
    assert result.fallback_share == pytest.approx(episode.predictions / (25 * len(found.span)))
    kinds = [t.kind for t in result.transitions]
    assert kinds.count("fallback_engaged") == kinds.count("fallback_disengaged") == 1
    assert result.engagements_per_day == pytest.approx(1 / (len(found.span) / 1440))


def test_an_episode_still_on_at_the_end_is_open() -> None:
    _, result = replayed(monitor(), [0.9] * 30 + [0.5] * 30)
    (episode,) = result.episodes
    assert episode.period.open
    assert episode.period.end == result.period.end
    assert episode.metrics["accuracy"].after is None


def test_drift_alerts_are_named_unread() -> None:
    spec = monitor(
        alerts=[
            {"name": "accuracy-low", "metric": "accuracy", "below": 0.8},
            {"name": "drifted", "metric": "drift_share", "above": 0.5},
        ]
    )
    _, result = replayed(spec, [0.9] * 20)
    assert result.unread == ("drifted",)


runs = st.lists(
    st.tuples(
        st.sampled_from([float("nan"), 0.5, 0.75, 0.85, 0.95]),
        st.sampled_from([0, 10, 60]),
        st.integers(1, 12),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(
    runs=runs,
    second=runs,
    below=st.sampled_from([0.7, 0.8, 0.9]),
    for_=st.sampled_from(["0s", "1m", "90s", "5m"]),
    other_for=st.sampled_from(["0s", "2m"]),
    recover=st.sampled_from(["0s", "30s", "1m", "150s", "10m"]),
    engage_both=st.booleans(),
)
def test_stepping_at_changes_makes_every_minutes_transitions(
    runs: list[tuple[float, int, int]],
    second: list[tuple[float, int, int]],
    below: float,
    for_: str,
    other_for: str,
    recover: str,
    engage_both: bool,
) -> None:
    """Stepping only at input changes and deadlines gives exactly the transitions of stepping
    every minute, on runs of constant inputs (what makes the shortcut pay)."""
    spec = monitor(
        alerts=[
            {"name": "a", "metric": "accuracy", "below": below, "for": for_},
            {"name": "b", "metric": "f1", "below": 0.8, "for": other_for},
        ],
        fallback={
            "recoverAfter": recover,
            "engageOn": ["a", "b"] if engage_both else ["a"],
            "rules": [{"prediction": "0"}],
        },
    )
    a_values, a_samples = expand(runs)
    b_values, b_samples = expand(second)
    n = min(len(a_values), len(b_values))
    found = backtest.Inputs(
        spec=spec,
        span=BucketRange(START, START + n),
        values={"accuracy": a_values[:n], "f1": b_values[:n]},
        samples={"accuracy": a_samples[:n], "f1": b_samples[:n]},
        lower={},
        upper={},
        predictions=np.zeros(n, np.int64),
        model={},
    )
    assert backtest.step_at_changes(spec, found) == backtest.step_every_minute(spec, found)


def expand(runs: list[tuple[float, int, int]]) -> tuple[Any, Any]:
    values = np.concatenate([np.full(k, v) for v, _, k in runs])
    samples = np.concatenate([np.full(k, s, np.int64) for _, s, k in runs])
    return values, samples


def test_the_sweep_finds_the_planted_optimum() -> None:
    """Healthy 0.9 with a two-minute blip to 0.6 every 100 minutes (its windows: 0.84 and 0.78,
    too few labels to tell from 0.8) and one real degradation to 0.5. A threshold above 0.78
    engages on every blip (false engagements); the best candidate catches the degradation at
    once with none: `for: 0s`, below at most 0.78 and above the window's 0.66 three minutes in
    (the earliest it is known degraded)."""
    accuracy = [0.9] * 1000
    for blip in range(50, 1000, 100):
        accuracy[blip : blip + 2] = [0.6, 0.6]
    accuracy[600:700] = [0.5] * 100
    spec = monitor()
    found, _ = replayed(spec, accuracy)
    sweeps = sweep.parse(
        ["alerts[accuracy-low].below=0.60:0.89:0.01", "alerts[accuracy-low].for=0s,2m,10m"], spec
    )
    result = backtest.backtest("ml/churn", spec, found, sweeps)
    assert result.sweep is not None
    candidates = result.sweep.candidates
    assert len(candidates) == 30 * 3
    below, wait = "alerts[accuracy-low].below", "alerts[accuracy-low].for"
    eager = next(c for c in candidates if c.values == {below: 0.85, wait: 0.0})
    assert eager.score.false_engagements == 9  # every blip outside the degradation
    assert all(c.score.degradations == 1 for c in candidates)
    best = min(
        candidates,
        key=lambda c: (
            c.score.false_engagements,
            c.score.degradations - c.score.detected,
            c.score.mean_delay,
            c.score.fallback_seconds,
        ),
    )
    assert best.pareto
    assert best.values[wait] == 0.0
    assert 0.66 < best.values[below] <= 0.78
    assert best.score.false_engagements == 0
    assert best.score.mean_delay == 0.0
    assert sum(c.pareto for c in candidates) < len(candidates)


def test_pareto_keeps_the_undominated() -> None:
    def made(false: int, delay: float | None, seconds: float) -> backtest.Score:
        return backtest.Score(false, 1, 0 if delay is None else 1, delay, seconds)

    scores = [
        made(0, 60, 100),
        made(1, 0, 100),
        made(1, 60, 100),
        made(0, 60, 100),
        made(0, None, 0),
    ]
    assert backtest.pareto(scores) == [True, True, False, True, True]


def test_suggest_proposes_the_healthy_windows_low_percentile() -> None:
    rng = np.random.default_rng(7)
    accuracy = list(np.clip(rng.normal(0.9, 0.05, 2000), 0, 1))
    spec = monitor()
    found, _ = replayed(spec, accuracy)
    (suggested,) = backtest.suggest(spec, found)
    assert suggested.alert == "accuracy-low"
    assert suggested.field == "below"
    healthy = found.values["accuracy"]
    assert suggested.value == pytest.approx(np.quantile(healthy, 0.01), abs=1e-4)
    assert "percentile" in suggested.why
    assert "now 0.8" in suggested.why


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alerts[nope].below=0.7", "alerts[nope]: no alert of that name"),
        ("alerts[accuracy-low].above=0.7", "has below, not above"),
        ("alerts[accuracy-low].metric=0.7", "not metric"),
        ("alerts[accuracy-low].below=0.9:0.7:0.01", "ends (0.7) before it starts"),
        ("alerts[accuracy-low].below=0.7:0.9:0", "step 0 is not positive"),
        ("alerts[accuracy-low].below=x", "'x' is not a number"),
        ("alerts[accuracy-low].for=5", "expected"),
        ("alerts[accuracy-low].for=8d", "longer than 7d"),
        ("fallback.mode=auto", "recoverAfter, not mode"),
        ("below=0.7", "expected alerts[NAME]"),
        ("alerts[accuracy-low].below", "expected PATH=VALUES"),
        ("alerts[accuracy-low].below=0:1:0.0001", "at most 1000"),
    ],
)
def test_a_bad_sweep_is_refused_naming_the_part(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        sweep.parse(["fallback.recoverAfter=1m", text], monitor())
    (error,) = caught.value.errors
    assert error.path == "sweep[1]"
    assert message in error.message


def test_a_grid_beyond_the_bound_is_refused() -> None:
    texts = ["alerts[accuracy-low].below=0:0.99:0.01", "alerts[accuracy-low].for=0s:10m:30s"]
    with pytest.raises(SpecError, match="2100 candidates, at most 1000"):
        sweep.parse(texts, monitor())


def test_the_grid_varies_the_last_sweep_fastest_and_applies_each_field() -> None:
    spec = monitor()
    sweeps = sweep.parse(
        ["alerts[accuracy-low].below=0.7,0.8", "fallback.recoverAfter=0s:2m:1m"], spec
    )
    grid = sweep.grid(sweeps)
    assert [tuple(c.values()) for c in grid] == [
        (0.7, 0.0), (0.7, 60.0), (0.7, 120.0), (0.8, 0.0), (0.8, 60.0), (0.8, 120.0)
    ]  # fmt: skip
    applied = sweep.apply(spec, sweeps, grid[2])
    assert applied.alerts[0].below == 0.7
    assert applied.fallback.recover_after == 120.0
    assert sweep.grid(()) == [{}]


def test_a_candidate_scores_as_its_whole_spec() -> None:
    """A candidate is stepped with its engaging alerts only: its score is that of the whole
    spec stepped every minute, whatever the other alerts do."""
    rng = np.random.default_rng(11)
    accuracy = list(np.clip(rng.normal(0.85, 0.08, 600), 0, 1))
    accuracy[300:360] = [0.5] * 60
    spec = monitor(
        alerts=[
            {"name": "accuracy-low", "metric": "accuracy", "below": 0.8, "for": "2m"},
            {"name": "f1-wobbly", "metric": "f1", "below": 0.85, "for": "0s"},
        ],
        fallback={
            "engageOn": ["accuracy-low"],
            "recoverAfter": "3m",
            "rules": [{"prediction": "0"}],
        },
    )
    found, _ = replayed(spec, accuracy)
    sweeps = sweep.parse(
        ["alerts[accuracy-low].below=0.7,0.8,0.85", "fallback.recoverAfter=0s,5m"], spec
    )
    goal = backtest.target(spec, sweeps)
    assert goal is not None
    swept = backtest.run_sweep("ml/churn", spec, found, sweeps, goal)
    for candidate in swept.candidates:
        whole = sweep.apply(spec, sweeps, candidate.values)
        stepped = backtest.step_every_minute(whole, found)
        replayed_ = backtest.result("ml/churn", whole, found, stepped, around=False)
        assert candidate.score == backtest.score(found, replayed_, goal)
    assert len({c.score for c in swept.candidates}) > 1


def test_bounded_lists_the_first_and_counts_the_rest() -> None:
    accuracy = ([0.9] * 20 + [0.5] * 20) * 6
    spec = monitor()
    _, result = replayed(spec, accuracy)
    assert len(result.episodes) == 6
    cut = backtest.bounded(result, 2)
    assert cut.episodes == result.episodes[:2]
    assert cut.episodes_omitted == 4
    assert cut.transitions == result.transitions[:2]
    assert cut.transitions_omitted == len(result.transitions) - 2
    assert cut.alerts[0].firing_omitted == len(result.alerts[0].firing) - 2
    assert cut.fallback_seconds == result.fallback_seconds
    assert backtest.bounded(result) == result


def test_a_sweep_without_an_alert_on_a_model_metric_is_refused() -> None:
    spec = monitor(alerts=[{"name": "drifted", "metric": "drift_share", "above": 0.5}])
    found, _ = replayed(spec, [0.9] * 20)
    sweeps = sweep.parse(["alerts[drifted].above=0.4,0.6"], spec)
    with pytest.raises(SpecError, match="no alert on a model metric"):
        backtest.backtest("ml/churn", spec, found, sweeps)
