"""Metrics equal scikit-learn's on random data; bucket arithmetic equals recomputing from scratch.

scikit-learn is the oracle (a test dependency only). Where it warns or divides by zero, our own
definition (documented in `core.metrics`) is asserted instead of calling it.
"""

from __future__ import annotations

import math
import random
import re
import sys
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn import metrics as sk

from tests.support import rounding
from truthloop.core import intervals
from truthloop.core import metrics as m

SETTINGS = settings(max_examples=80, deadline=None)
TOL = 1e-9
EPS = sys.float_info.epsilon
Z95 = intervals.z_score(0.95)
TASKS = ("binary", "multiclass", "regression")


def close(ours: float | None, theirs: float, tol: float = TOL) -> None:
    """Equal within `tol`, relative to the larger magnitude, absolute near zero."""
    assert ours is not None
    assert math.isclose(ours, theirs, rel_tol=tol, abs_tol=tol), (ours, theirs)


def values(e: dict[str, m.Estimate]) -> dict[str, float | None]:
    """Flat, for pytest.approx: `accuracy`, `accuracy.lower`, `accuracy.upper`, ..."""
    flat: dict[str, float | None] = {}
    for name, estimate in e.items():
        flat[name] = estimate.value
        flat[f"{name}.lower"] = estimate.lower
        flat[f"{name}.upper"] = estimate.upper
    return flat


# ---------------------------------------------------------------- binary

BINARY_FORMS = {
    0: (0, False, "0", "false", " FALSE ", 0.0),
    1: (1, True, "1", "true", "True", 1.0),
}
"""Forms of a class; the last, a float, is one only as an actual (a float prediction is a score)."""
scores = st.one_of(
    st.integers(0, m.AUC_BINS - 1).map(lambda b: (b + 0.5) / m.AUC_BINS),  # bin centres
    st.sampled_from([0.0, 1.0, 0.5, 0.001, 0.999, 1e-300, 1 - 1e-16]),  # edges, clipped log loss
    st.floats(0, 1),
)
# (actual, predicted class, score or None, prediction given as the float score, form index)
binary_rows = st.lists(
    st.tuples(
        st.integers(0, 1), st.integers(0, 1), st.none() | scores, st.booleans(), st.integers()
    ),
    min_size=1,
    max_size=150,
)
thresholds = st.sampled_from([0.5, 0.3, 0.77, 0.0, 1.0])


def binary_observations(rows: Sequence[tuple], threshold: float) -> tuple[list, np.ndarray]:
    """Contributions of the rows in mixed label forms, and the predicted classes they imply."""
    contributions, predicted = [], []
    for y, p, s, as_float, form in rows:
        actual = BINARY_FORMS[y][form % 6]
        if s is not None and as_float:
            contributions.append(m.observe("binary", s, actual, threshold=threshold))
            predicted.append(int(s >= threshold))
        else:
            prediction = BINARY_FORMS[p][(form // 6) % 5]
            contributions.append(m.observe("binary", prediction, actual, score=s))
            predicted.append(p)
    return contributions, np.array(predicted)


def auc_bin(score: float) -> int:
    return min(int(score * m.AUC_BINS), m.AUC_BINS - 1)


@SETTINGS
@given(binary_rows, thresholds)
def test_binary_metrics_equal_scikit_learns(rows: list[tuple], threshold: float) -> None:
    contributions, p = binary_observations(rows, threshold)
    e = m.evaluate("binary", m.total(contributions))
    y = np.array([r[0] for r in rows])
    tp, fp, fn = int((y & p).sum()), int((p & (1 - y)).sum()), int((y & (1 - p)).sum())
    close(e["accuracy"].value, sk.accuracy_score(y, p))
    checks = [
        ("precision", tp + fp, lambda: sk.precision_score(y, p)),
        ("recall", tp + fn, lambda: sk.recall_score(y, p)),
        ("f1", tp + fp + fn, lambda: sk.f1_score(y, p)),
        ("specificity", int((y == 0).sum()), lambda: sk.recall_score(y, p, pos_label=0)),
        ("balanced_accuracy", int(0 < y.sum() < len(y)), lambda: sk.balanced_accuracy_score(y, p)),
    ]
    for name, denominator, theirs in checks:
        if denominator:
            close(e[name].value, theirs())
        else:  # scikit-learn warns and divides by zero here: ours is undefined
            assert e[name] == m.Estimate(None), name

    scored = [(r[0], r[2]) for r in rows if r[2] is not None]
    ys = np.array([yi for yi, _ in scored], dtype=int)
    s = np.array([si for _, si in scored])
    if scored:
        close(e["brier_score"].value, sk.brier_score_loss(ys, s, pos_label=1))
        close(e["log_loss"].value, sk.log_loss(ys, s, labels=[0, 1]))
    else:
        assert e["brier_score"].value is None
        assert e["log_loss"].value is None
    if 0 < ys.sum() < len(ys):
        binned = np.array([auc_bin(si) for si in s])
        close(e["roc_auc"].value, sk.roc_auc_score(ys, binned))
    else:
        assert e["roc_auc"].value is None


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 1), st.floats(0, 1)), min_size=2, max_size=150))
def test_auc_of_raw_scores_is_within_the_share_of_pairs_sharing_a_bin(rows: list) -> None:
    """Pairs in one bin count half a win, exactly 0, ½ or 1: each is off by at most ½."""
    y = np.array([r[0] for r in rows])
    s = np.array([r[1] for r in rows])
    c = m.total(m.observe("binary", int(yi), int(yi), score=float(si)) for yi, si in rows)
    auc = m.evaluate("binary", c)["roc_auc"].value
    if y.min() == y.max():
        assert auc is None
        return
    binned = np.array([auc_bin(si) for si in s])
    shared = sum(
        int(((binned == b) & (y == 1)).sum()) * int(((binned == b) & (y == 0)).sum())
        for b in set(binned.tolist())
    )
    bound = 0.5 * shared / (int(y.sum()) * int((1 - y).sum()))
    assert auc is not None
    assert abs(auc - sk.roc_auc_score(y, s)) <= bound + TOL


def test_a_score_falls_in_its_thousandth() -> None:
    assert m.observe("binary", 1, 1, score=0.0015)["pos:1"] == 1
    assert m.observe("binary", 1, 1, score=1.0)["pos:999"] == 1
    assert m.observe("binary", 1, 0, score=0.0)["neg:0"] == 1


def test_label_forms_for_binary() -> None:
    for y, forms in BINARY_FORMS.items():
        for form in forms[:-1]:
            assert m.observe("binary", form, 1) == {("tp" if y else "fn"): 1}, form
    assert m.observe("binary", 0.7, 0)["fp"] == 1  # a float prediction is a score
    assert m.observe("binary", 0.7, 0, threshold=0.8)["tn"] == 1
    assert m.observe("binary", 1.0, 1)["n_scored"] == 1  # 1.0 is a score of 1, not a class
    assert m.observe("binary", 1.0, 1, score=0.2) == m.observe("binary", 1, 1, score=0.2)


def test_log_loss_clips_like_scikit_learn() -> None:
    sure_and_wrong = m.observe("binary", 1, 0, score=1.0)
    assert sure_and_wrong["logloss"] == pytest.approx(-math.log(m.LOG_LOSS_EPS))
    assert m.LOG_LOSS_EPS == EPS
    close(sure_and_wrong["logloss"], sk.log_loss([0], [1.0], labels=[0, 1]))


# ---------------------------------------------------------------- multiclass

# (JSON scalar, the class it is): the documented normalisation, written out independently.
CLASSES = [
    (0, "0"),
    (1, "1"),
    (1.0, "1"),
    ("1", "1"),
    (-3, "-3"),
    (2.5, "2.5"),
    (True, "true"),
    ("true", "true"),
    (False, "false"),
    ("cat", "cat"),
    ("a|b", "a|b"),
    ("a%7Cb", "a%7Cb"),
    ("%", "%"),
    ("|", "|"),
    ("%25|%7C", "%25|%7C"),
    ("", ""),
    ("ü", "ü"),
    ('q"\\', 'q"\\'),
]
class_pairs = st.lists(
    st.tuples(st.sampled_from(CLASSES), st.sampled_from(CLASSES)), min_size=1, max_size=150
)


@SETTINGS
@given(class_pairs)
def test_multiclass_metrics_equal_scikit_learns(rows: list) -> None:
    e = m.evaluate("multiclass", m.total(m.observe("multiclass", p[0], a[0]) for a, p in rows))
    actual = [a[1] for a, _ in rows]
    predicted = [p[1] for _, p in rows]
    close(e["accuracy"].value, sk.accuracy_score(actual, predicted))
    for average in ("macro", "micro", "weighted"):
        for name, fn in (
            ("precision", sk.precision_score),
            ("recall", sk.recall_score),
            ("f1", sk.f1_score),
        ):
            # Ours is zero_division=0: a class never predicted has precision 0 in the averages.
            theirs = fn(actual, predicted, average=average, zero_division=0)
            close(e[f"{average}_{name}"].value, theirs)


def test_classes_compare_as_text() -> None:
    for raw, text in CLASSES:
        assert m.observe("multiclass", raw, text).get("correct") == 1, raw
    assert "correct" not in m.observe("multiclass", True, 1)
    assert "correct" not in m.observe("multiclass", 1.5, "1.50")


def test_a_never_predicted_class_counts_zero_precision_in_the_averages() -> None:
    c = m.total([m.observe("multiclass", "a", "a"), m.observe("multiclass", "a", "b")])
    e = m.evaluate("multiclass", c)
    assert e["macro_precision"].value == pytest.approx((0.5 + 0.0) / 2)
    assert e["macro_recall"].value == pytest.approx((1.0 + 0.0) / 2)
    assert e["weighted_precision"].value == pytest.approx(0.5 * 0.5 + 0.5 * 0.0)


# ---------------------------------------------------------------- regression

numbers = st.one_of(
    st.floats(-1e6, 1e6, allow_subnormal=False),
    st.integers(-1000, 1000),
    st.sampled_from([0, 0.0, 1e-18, -3e-17]),  # excluded from MAPE, or below scikit-learn's eps
)
well_spread = st.lists(st.tuples(numbers, numbers), min_size=1, max_size=150)
# Actuals far from zero with little spread: the cancellation R² from sums has to survive.
offset_rows = st.builds(
    lambda offset, rows: [(offset + p, offset + a) for p, a in rows],
    st.floats(-1e7, 1e7),
    st.lists(st.tuples(st.floats(-1, 1), st.floats(-1, 1)), min_size=2, max_size=150),
)


@SETTINGS
@given(well_spread | offset_rows)
@example([(0, 0), (0, 1.56e-158)])  # squares below the normal range: R² is undefined
def test_regression_metrics_equal_scikit_learns(rows: list) -> None:
    p = np.array([r[0] for r in rows], dtype=float)
    y = np.array([r[1] for r in rows], dtype=float)
    e = m.evaluate("regression", m.total(m.observe("regression", pi, yi) for pi, yi in rows))
    mae = sk.mean_absolute_error(y, p)
    close(e["mae"].value, mae)
    close(e["rmse"].value, sk.root_mean_squared_error(y, p))
    # A signed mean can cancel to ~0: its rounding is relative to the magnitudes summed.
    mean_error = e["mean_error"].value
    assert mean_error is not None
    assert abs(mean_error - float(np.mean(p - y))) <= TOL * mae
    nonzero = y != 0
    assert e["mape_excluded"].value == int((~nonzero).sum())
    if nonzero.any():
        close(e["mape"].value, sk.mean_absolute_percentage_error(y[nonzero], p[nonzero]))
    else:
        assert e["mape"].value is None
    _assert_r2(e["r2"].value, y, p)


def _assert_r2(ours: float | None, y: np.ndarray, p: np.ndarray) -> None:
    """R² from sums: Σy² − (Σy)²/n is off by ~2n·ε·Σy², so the error in R² is at most
    |1 − R²|·4n·ε·(1 + Σy²/SS_tot) (plus 1e-9): 1e-9 for spread actuals, and only as loose as
    the data's conditioning allows. Below the resolution it is undefined."""
    n = len(y)
    sy2 = float((y * y).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())  # two-pass, as scikit-learn
    rounding = 4 * n * EPS * sy2
    if ours is None:  # below the resolution, subnormal squares, or overflowing below zero
        if sy2 >= sys.float_info.min and ss_tot > m.R2_RESOLUTION * sy2 + rounding:
            assert math.isinf(float(((y - p) ** 2).sum()) / ss_tot)
        return
    assert ss_tot > m.R2_RESOLUTION * sy2 - rounding
    theirs = sk.r2_score(y, p)
    bound = TOL + abs(1 - theirs) * 4 * n * EPS * (1 + sy2 / ss_tot)
    assert abs(ours - theirs) <= bound, (ours, theirs, bound)


def test_r2_of_constant_actuals_is_undefined() -> None:
    c = m.total(m.observe("regression", p, 5.0) for p in (4.0, 5.0, 6.5))
    assert m.evaluate("regression", c)["r2"] == m.Estimate(None)
    timestamps = [(1.7e9 + i + 0.1, 1.7e9 + i) for i in range(3)]  # spread 1e-19 of the square
    c = m.total(m.observe("regression", p, y) for p, y in timestamps)
    assert m.evaluate("regression", c)["r2"].value is None
    tiny = 1.8105425067779426e-159  # its square is below the normal float range
    c = m.total(m.observe("regression", tiny, tiny) for _ in range(2))
    assert m.evaluate("regression", c)["r2"].value is None


def test_mape_divides_by_at_least_epsilon_like_scikit_learn() -> None:
    c = m.observe("regression", 1.0, 1e-300)
    assert m.evaluate("regression", c)["mape"].value == pytest.approx(1.0 / EPS)
    assert sk.mean_absolute_percentage_error([1e-300], [1.0]) == pytest.approx(1.0 / EPS)


@SETTINGS
@given(st.lists(st.tuples(numbers, numbers), min_size=2, max_size=80))
def test_regression_intervals_are_t_intervals_of_the_rows(rows: list) -> None:
    p = np.array([r[0] for r in rows], dtype=float)
    y = np.array([r[1] for r in rows], dtype=float)
    e = m.evaluate("regression", m.total(m.observe("regression", pi, yi) for pi, yi in rows))
    error = p - y
    for name, x, transform in (
        ("mean_error", error, None),
        ("mae", np.abs(error), None),
        ("rmse", error * error, np.sqrt),
    ):
        sd = float(x.std(ddof=1))
        if sd == 0:
            continue
        lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sd / math.sqrt(len(x)))
        slack = rounding.t_bounds_rounding(0.95, x)
        if transform is not None:
            lo, hi = transform(max(lo, 0.0)), transform(hi)
            slack = math.sqrt(slack)  # |√a − √b| ≤ √|a − b|
        assert e[name].lower == pytest.approx(lo, abs=slack), name
        assert e[name].upper == pytest.approx(hi, abs=slack), name


# ---------------------------------------------------------------- any task

VOTES = st.sampled_from(["up", "down", None])
POWERS_OF_TWO = [0, *(sign * 2**k for k in range(-3, 7) for sign in (1, -1))]


def rows_of(task: str, exact: bool) -> st.SearchStrategy[tuple]:
    """A task's rows: labeled, or voted on. `exact`: values whose float sums are exact (dyadic
    scores; errors in eighths and actuals powers of two, e⁴ summed below 2⁵³), so regrouped sums
    must agree to the bit; only log loss (a logarithm) still rounds."""
    if task == "binary":
        score = st.integers(0, 1024).map(lambda k: k / 1024) if exact else scores
        return st.tuples(st.integers(0, 1), st.integers(0, 1), st.none() | score, VOTES)
    if task == "multiclass":
        return st.tuples(st.sampled_from(CLASSES), st.sampled_from(CLASSES), VOTES)
    if exact:
        return st.tuples(st.integers(-200, 200), st.sampled_from(POWERS_OF_TWO), VOTES)
    return st.tuples(numbers, numbers, VOTES)


def contribution(task: str, row: tuple) -> dict[str, float]:
    """A labeled row, or a reviewer's vote on it."""
    if task == "binary":
        y, p, s, vote = row
        if vote:
            return m.observe_vote(task, p, vote == "up", score=s)
        return m.observe(task, p, y, score=s)
    if task == "multiclass":
        (a, _), (p, _), vote = row
        return m.observe_vote(task, p, vote == "up") if vote else m.observe(task, p, a)
    p, y, vote = row
    return m.observe_vote(task, p, vote == "up") if vote else m.observe(task, p, y)


def task_rows(*, exact: bool, min_size: int = 0) -> st.SearchStrategy[tuple[str, list]]:
    return st.sampled_from(TASKS).flatmap(
        lambda task: st.tuples(
            st.just(task), st.lists(rows_of(task, exact), min_size=min_size, max_size=90)
        )
    )


ROUNDED = ("logloss", "logloss_sq")


def assert_same(task: str, a: m.Counters, b: m.Counters, rows: Sequence[m.Counters]) -> None:
    """Equal aggregates: every counter but log loss's exactly (they are exact sums here), log
    loss's within the rounding of summing `rows` in any order; and so equal metrics."""
    assert a.keys() - set(ROUNDED) == b.keys() - set(ROUNDED)
    for key in a.keys() - set(ROUNDED):
        assert a[key] == b[key], key
    for key in ROUNDED:
        magnitude = sum(abs(r.get(key, 0)) for r in rows)
        assert abs(a.get(key, 0) - b.get(key, 0)) <= 4 * len(rows) * EPS * magnitude, key
    ours, theirs = values(m.evaluate(task, a)), values(m.evaluate(task, b))
    for key, value in ours.items():
        other = theirs[key]
        if key.startswith("log_loss."):  # a sum of squares' rounding, amplified by a square root
            assert (value is None) == (other is None)
        elif value is None or other is None:
            assert value is other, key
        else:
            assert math.isclose(value, other, rel_tol=TOL, abs_tol=TOL), (key, value, other)
    assert m.samples(a) == m.samples(b)


@SETTINGS
@given(task_rows(exact=True), st.data())
def test_buckets_add_and_subtract_like_recomputing(
    task_and_rows: tuple[str, list], data: st.DataObject
) -> None:
    task, rows = task_and_rows
    cut1 = data.draw(st.integers(0, len(rows)))
    cut2 = data.draw(st.integers(cut1, len(rows)))
    each = [contribution(task, r) for r in rows]
    a, b, c = m.total(each[:cut1]), m.total(each[cut1:cut2]), m.total(each[cut2:])
    whole = m.total(each)
    assert_same(task, m.total([a, b, c]), whole, each)
    assert_same(task, m.add(m.add(c, b), a), whole, each)
    assert_same(task, m.subtract(whole, c), m.add(a, b), each)
    assert_same(task, m.subtract(m.subtract(whole, a), b), c, each)
    # Taken out in another order, log loss's sums may leave a rounding residue, and only that.
    emptied = m.subtract(whole, m.total(reversed(each)))
    assert set(emptied) <= set(ROUNDED)
    for key, residue in emptied.items():
        assert abs(residue) <= 4 * len(each) * EPS * sum(abs(r.get(key, 0)) for r in each)
    assert m.samples(emptied) == 0
    assert values(m.evaluate(task, emptied)) == values(m.evaluate(task, {}))


@SETTINGS
@given(task_rows(exact=True, min_size=1), st.data())
def test_a_relabel_moves_aggregates_by_the_difference(
    task_and_rows: tuple[str, list], data: st.DataObject
) -> None:
    task, rows = task_and_rows
    i = data.draw(st.integers(0, len(rows) - 1))
    new_row = data.draw(rows_of(task, exact=True))
    each = [contribution(task, r) for r in rows]
    new, old = contribution(task, new_row), each[i]
    moved = m.add(m.total(each), m.subtract(new, old))
    fresh = [*each[:i], new, *each[i + 1 :]]
    assert_same(task, moved, m.total(fresh), [*each, new, old])


@SETTINGS
@given(task_rows(exact=False), st.sampled_from([0.5, 0.9, 0.95, 0.999]))
def test_estimates_are_none_or_finite_and_ordered(
    task_and_rows: tuple[str, list], confidence: float
) -> None:
    task, rows = task_and_rows
    e = m.evaluate(task, m.total(contribution(task, r) for r in rows), confidence=confidence)
    assert tuple(e) == (*m.METRIC_NAMES[task], *m.AUXILIARY_NAMES[task])
    for name, estimate in e.items():
        if estimate.value is None:
            assert estimate == m.Estimate(None), name
            continue
        assert math.isfinite(estimate.value), name
        assert (estimate.lower is None) == (estimate.upper is None), name
        if estimate.lower is not None and estimate.upper is not None:
            assert estimate.lower <= estimate.value <= estimate.upper, name


def test_nothing_observed_is_undefined() -> None:
    for task in TASKS:
        for name, estimate in m.evaluate(task, {}).items():
            if name == "mape_excluded":
                assert estimate == m.Estimate(0)
            else:
                assert estimate == m.Estimate(None), (task, name)
        assert m.samples({}) == 0


def test_a_single_row_has_values_but_no_t_bounds() -> None:
    e = m.evaluate("regression", m.observe("regression", 3.0, 2.0))
    assert e["mae"] == m.Estimate(1.0)
    assert e["rmse"] == m.Estimate(1.0)
    assert e["r2"].value is None
    b = m.evaluate("binary", m.observe("binary", 1, 1, score=0.8))
    assert b["brier_score"].value == pytest.approx(0.04)
    assert b["brier_score"].lower is None


def test_only_negatives() -> None:
    e = m.evaluate("binary", m.total([m.observe("binary", 0, 0, score=0.2)] * 3))
    assert e["recall"].value is None
    assert e["precision"].value is None
    assert e["f1"].value is None
    assert e["balanced_accuracy"].value is None
    assert e["roc_auc"].value is None
    assert e["accuracy"].value == 1.0
    assert e["specificity"].value == 1.0


def test_overflowed_sums_are_undefined_not_infinite() -> None:
    e = m.evaluate("regression", {"n": 2, "sae": math.inf, "se2": math.inf, "se4": math.inf})
    assert e["mae"].value is None
    assert e["rmse"].value is None


def test_unknown_task_and_bad_confidence_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown task"):
        m.evaluate("ranking", {})
    with pytest.raises(ValueError, match="unknown task"):
        m.observe("ranking", 1, 1)
    with pytest.raises(ValueError, match="confidence"):
        m.evaluate("binary", {}, confidence=1.0)


# ---------------------------------------------------------------- intervals of the metrics


def test_proportions_carry_wilson_intervals() -> None:
    e = m.evaluate("binary", {"tp": 40, "tn": 41, "fp": 100, "fn": 82})  # 81 of 263 right
    assert (e["accuracy"].lower, e["accuracy"].upper) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert (e["precision"].lower, e["precision"].upper) == pytest.approx(
        intervals.wilson(40, 140, Z95)
    )


def test_f1_interval_is_the_wilson_interval_of_jaccard_mapped() -> None:
    e = m.evaluate("binary", {"tp": 30, "fp": 5, "fn": 10, "tn": 55})
    lo, hi = intervals.wilson(30, 45, Z95)
    assert e["f1"].value == pytest.approx(60 / 75)
    assert (e["f1"].lower, e["f1"].upper) == pytest.approx((2 * lo / (1 + lo), 2 * hi / (1 + hi)))
    perfect = m.evaluate("binary", {"tp": 20, "tn": 5})["f1"]
    assert perfect.value == 1.0
    assert perfect.upper == 1.0
    assert perfect.lower is not None
    assert perfect.lower < 0.95  # not collapsed to a point at 1


@pytest.mark.parametrize("rates", [(0.3, 0.05, 0.1, 0.55), (0.08, 0.02, 0.02, 0.88)])
def test_f1_and_balanced_accuracy_intervals_cover_at_their_level(
    rates: tuple[float, float, float, float],
) -> None:
    """2,000 simulated confusion matrices of 150 rows: ~95% of the intervals hold the truth."""
    tp, fp, fn, tn = rates
    truth = {
        "f1": 2 * tp / (2 * tp + fp + fn),
        "balanced_accuracy": (tp / (tp + fn) + tn / (tn + fp)) / 2,
    }
    draws = np.random.default_rng(11).multinomial(150, rates, size=2000)
    held = dict.fromkeys(truth, 0)
    for cells in draws:
        e = m.evaluate("binary", dict(zip(("tp", "fp", "fn", "tn"), cells.tolist(), strict=True)))
        for name, value in truth.items():
            lower, upper = e[name].lower, e[name].upper
            held[name] += lower is not None and upper is not None and lower <= value <= upper
    for name, count in held.items():
        assert 0.93 <= count / len(draws) <= 0.975, (name, count)


def test_auc_carries_hanley_mcneil() -> None:
    rows = [(1, 0.9), (1, 0.8), (1, 0.35), (0, 0.4), (0, 0.2), (0, 0.1), (0, 0.05)]
    e = m.evaluate("binary", m.total(m.observe("binary", y, y, score=s) for y, s in rows))
    auc = e["roc_auc"]
    assert auc.value == pytest.approx(11 / 12)
    assert (auc.lower, auc.upper) == pytest.approx(intervals.hanley_mcneil(11 / 12, 3, 4, Z95))


def test_a_wider_confidence_gives_wider_intervals() -> None:
    c = {"tp": 30, "fp": 5, "fn": 10, "tn": 55}
    narrow, wide = m.evaluate("binary", c, confidence=0.8), m.evaluate("binary", c)
    for name in ("accuracy", "f1", "balanced_accuracy", "precision"):
        assert wide[name].lower < narrow[name].lower < narrow[name].upper < wide[name].upper


# ---------------------------------------------------------------- votes


def test_binary_votes_imply_the_label() -> None:
    assert m.observe_vote("binary", 1, True) == {"tp": 1, "votes": 1, "votes_up": 1}
    assert m.observe_vote("binary", 1, False) == {"fp": 1, "votes": 1}
    assert m.observe_vote("binary", 0.2, False)["fn"] == 1  # score 0.2 → class 0, wrong → 1
    down = m.observe_vote("binary", 0, False, score=0.3)
    assert down["pos:300"] == 1


def test_multiclass_down_votes_count_only_in_accuracy() -> None:
    c = m.total(
        [m.observe_vote("multiclass", "cat", True), m.observe_vote("multiclass", "cat", False)]
    )
    e = m.evaluate("multiclass", c)
    assert e["accuracy"].value == 0.5
    assert e["micro_precision"].value == 1.0
    assert e["macro_f1"].value == 1.0
    assert e["approval_rate"].value == 0.5
    assert (e["approval_rate"].lower, e["approval_rate"].upper) == pytest.approx(
        intervals.wilson(1, 2, Z95)
    )
    assert m.samples(c) == 2


def test_regression_votes_move_only_vote_counters() -> None:
    r = m.observe_vote("regression", 3.2, False)
    assert r == {"votes": 1}
    assert m.samples(r) == 0
    e = m.evaluate("regression", r)
    assert e["approval_rate"].value == 0.0
    assert e["mae"].value is None


# ---------------------------------------------------------------- refused input


@pytest.mark.parametrize(
    ("task", "prediction", "actual", "score", "named"),
    [
        ("binary", 1, "maybe", None, "'maybe'"),
        ("binary", 2, 1, None, "2"),
        ("binary", 1, None, None, "None"),
        ("binary", [1], 1, None, "[1]"),
        ("binary", 1, 1, 1.7, "1.7"),
        ("binary", 1, 1, -0.1, "-0.1"),
        ("binary", 1, 1, math.nan, "nan"),
        ("binary", 1, 1, True, "True"),
        ("binary", 1, 1, "0.5", "'0.5'"),
        ("binary", 1.5, 1, None, "1.5"),
        ("binary", math.inf, 1, None, "inf"),
        ("binary", 0.7, 1, 0.7, "0.7"),  # with a score, the prediction must be a class
        ("binary", 1, 1, 10**400, "1000"),
        ("multiclass", [1], 1, None, "[1]"),
        ("multiclass", 1, None, None, "None"),
        ("multiclass", 1, math.nan, None, "nan"),
        ("multiclass", {"a": 1}, 1, None, "{'a': 1}"),
        ("regression", "abc", 1.0, None, "'abc'"),
        ("regression", "1.5", 1.0, None, "'1.5'"),
        ("regression", 1.0, math.inf, None, "inf"),
        ("regression", 1.0, -math.nan, None, "nan"),
        ("regression", True, 1.0, None, "True"),
        ("regression", 1.0, 10**400, None, "1000"),
        ("regression", 2e50, 1.0, None, "2e+50"),
    ],
)
def test_unusable_labels_are_label_errors_naming_the_value(
    task: str, prediction: object, actual: object, score: object, named: str
) -> None:
    with pytest.raises(m.LabelError, match=re.escape(named)):
        m.observe(task, prediction, actual, score=score)  # type: ignore[arg-type]


def test_the_largest_regression_values_give_finite_contributions() -> None:
    c = m.observe("regression", m.REGRESSION_LIMIT, -m.REGRESSION_LIMIT)
    assert all(math.isfinite(v) for v in c.values())
    c = m.observe("regression", m.REGRESSION_LIMIT, 1e-300)
    assert all(math.isfinite(v) for v in c.values())


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(),
    st.floats(),
    st.text(max_size=4),
    st.sampled_from(["true", " False ", "1", "0.5", "maybe", "TRUE"]),
    st.lists(st.integers(), max_size=1),
)
VALID = {"binary": 1, "multiclass": "a", "regression": 1.0}


@SETTINGS
@given(st.sampled_from(TASKS), scalars)
def test_checks_agree_with_observe(task: str, value: object) -> None:
    assert (m.check_prediction(task, value) is None) == _accepted(task, value, VALID[task])  # type: ignore[arg-type]
    assert (m.check_actual(task, value) is None) == _accepted(task, VALID[task], value)  # type: ignore[arg-type]


def _accepted(task: str, prediction: object, actual: object) -> bool:
    try:
        m.observe(task, prediction, actual)
    except m.LabelError:
        return False
    return True


def verdict(task: str, prediction: object, actual: object, **options: float) -> bool | None:
    return m.tally({}, task, prediction, actual, **options)  # type: ignore[arg-type]


def test_tally_says_whether_the_prediction_was_right() -> None:
    assert verdict("binary", 0.8, "true") is True
    assert verdict("binary", 0.8, 1, threshold=0.9) is False
    assert verdict("binary", 1, 0, score=0.7) is False
    assert verdict("binary", 0, "false", score=0.2) is True
    assert verdict("multiclass", 1.0, "1") is True
    assert verdict("multiclass", "cat", "dog") is False
    assert verdict("regression", 1.0, 1.0) is None
    assert m.tally_vote({}, "regression", 2.5, False) is False


def test_tally_sums_what_observe_returns_and_refuses_before_touching_the_sum() -> None:
    rng = random.Random(5)
    cases = [
        ("binary", rng.randint(0, 1), rng.randint(0, 1), {"score": rng.random()})
        for _ in range(200)
    ]
    cases += [("binary", rng.random(), rng.randint(0, 1), {}) for _ in range(50)]
    cases += [("multiclass", rng.choice("abc"), rng.choice("abc"), {}) for _ in range(100)]
    cases += [
        ("regression", rng.uniform(-5, 5), rng.choice([0.0, 1.5, -2.0]), {}) for _ in range(100)
    ]
    for task in ("binary", "multiclass", "regression"):
        mine = [c for c in cases if c[0] == task]
        summed: dict[str, float] = {}
        for _, prediction, actual, options in mine:
            m.tally(summed, task, prediction, actual, **options)
        expected = m.total(m.observe(task, p, a, **o) for _, p, a, o in mine)
        assert summed == pytest.approx(expected)
        before = dict(summed)
        with pytest.raises(m.LabelError):
            m.tally(summed, task, "not a number" if task == "regression" else None, 1)
        assert summed == before
    votes: dict[str, float] = {}
    for up in (True, False, True):
        m.tally_vote(votes, "multiclass", "cat", up)
    assert votes == m.total(m.observe_vote("multiclass", "cat", up) for up in (True, False, True))
