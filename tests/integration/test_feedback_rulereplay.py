"""The rules on a backtest's episodes read from a real store: only the episodes' labeled records,
across chunk boundaries, recounted row by row."""

from __future__ import annotations

import random

import pytest

from tests.support.feedback import T0, monitor_body
from truthloop.core import intervals
from truthloop.core.backtest import Period
from truthloop.core.records import Actual, PredictionRecord
from truthloop.core.spec import parse_monitor
from truthloop.feedback.rulereplay import rules_on_history
from truthloop.feedback.store.interface import Store

pytest_plugins = ["tests.support.feedback_fixtures"]

RULES = [
    {"when": "request.features.charges > 75.0", "prediction": "1"},
    {"prediction": "0"},
]


async def test_the_episodes_labeled_records_recounted(store: Store) -> None:
    body = monitor_body(
        capture={"prediction": {"pointer": "/prediction"}, "features": {"pointer": "/features"}},
        fallback={"recoverAfter": "2m", "rules": RULES},
    )
    monitor = parse_monitor(body)
    registered, _ = await store.put_monitor(monitor, body, T0)
    rng = random.Random(5)
    now = T0 + 7200
    rows = []
    for i in range(1200):
        charges = round(rng.uniform(20, 120), 1)
        actual = int(rng.random() < (0.8 if charges > 75 else 0.2))
        predicted = actual if rng.random() < 0.7 else 1 - actual
        record = PredictionRecord(
            "ml/churn", f"p{i}", "model", "v1", T0 + 6 * i, predicted,
            features={"charges": charges},
        )  # fmt: skip
        rows.append((record, actual))
    monitors = {"ml/churn": registered}
    await store.insert_predictions([r for r, _ in rows], monitors, now)
    labeled = [(r, a) for r, a in rows if int(r.prediction_id[1:]) % 10]  # 1 in 10 unlabeled
    await store.apply_actuals(
        [Actual("ml/churn", now, prediction_id=r.prediction_id, value=a) for r, a in labeled],
        monitors,
        now,
    )
    periods = [Period(T0 + 600, T0 + 1800), Period(T0 + 3000, T0 + 3600, open=True)]

    found = await rules_on_history(store, registered.id, monitor.spec, periods, chunk=97)

    assert found is not None
    inside = [(r, a) for r, a in labeled if any(p.start <= r.ts < p.end for p in periods)]
    n = len(inside)
    model_right = sum(r.prediction == a for r, a in inside)
    rules_right = sum((1 if r.features["charges"] > 75 else 0) == a for r, a in inside)
    z = intervals.z_score(0.95)
    assert (found.records, found.compared, found.skipped) == (n, n, ())
    model, rules = found.model["accuracy"], found.rules["accuracy"]
    assert model.value == pytest.approx(model_right / n)
    assert rules.value == pytest.approx(rules_right / n)
    assert (rules.lower, rules.upper) == pytest.approx(intervals.wilson(rules_right, n, z))


async def test_a_spec_without_rules_has_no_comparison(store: Store) -> None:
    body = monitor_body(fallback={"recoverAfter": "2m"})
    monitor = parse_monitor(body)
    registered, _ = await store.put_monitor(monitor, body, T0)
    periods = [Period(T0, T0 + 60)]
    assert await rules_on_history(store, registered.id, monitor.spec, periods) is None
