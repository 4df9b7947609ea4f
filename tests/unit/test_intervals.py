"""Confidence intervals against published values, and scipy (a scikit-learn dependency)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from tests.support import rounding
from truthloop.core import intervals

Z95 = 1.959963984540054


def test_z_score_is_the_two_sided_normal_quantile() -> None:
    assert intervals.z_score(0.95) == pytest.approx(Z95, abs=1e-12)
    assert intervals.z_score(0.99) == pytest.approx(2.5758293035489, abs=1e-12)


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5, math.nan])
def test_a_confidence_outside_zero_one_is_refused(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        intervals.z_score(confidence)


@pytest.mark.parametrize(
    ("successes", "trials", "lower", "upper"),
    [  # Newcombe (1998), Statistics in Medicine 17:857, table II, method 3 (Wilson score)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombes_table(
    successes: int, trials: int, lower: float, upper: float
) -> None:
    lo, hi = intervals.wilson(successes, trials, Z95)
    assert lo == pytest.approx(lower, abs=5e-5)
    assert hi == pytest.approx(upper, abs=5e-5)


def test_wilson_does_not_collapse_at_the_edges() -> None:
    lo, hi = intervals.wilson(20, 20, Z95)
    assert lo < 1.0
    assert hi == 1.0


def test_hanley_mcneil_standard_error_is_exact_for_exponential_scores() -> None:
    """Its Q1, Q2 are exact for exponential scores: the spread of simulated AUCs must match.

    Unequal group sizes, so swapping the roles of positives and negatives (SE 0.055) would fail.
    """
    rng = np.random.default_rng(7)
    positives = rng.exponential(1.0, (4000, 15))
    negatives = rng.exponential(0.25, (4000, 60))  # P(positive > negative) = 4 / 5
    aucs = (positives[:, :, None] > negatives[:, None, :]).mean(axis=(1, 2))
    lo, hi = intervals.hanley_mcneil(0.8, 15, 60, Z95)
    assert (hi - lo) / (2 * Z95) == pytest.approx(float(aucs.std(ddof=1)), rel=0.05)


def test_hanley_mcneil_is_clipped_to_zero_one() -> None:
    assert intervals.hanley_mcneil(0.99, 3, 3, Z95)[1] == 1.0
    assert intervals.hanley_mcneil(1.0, 10, 10, Z95) == (1.0, 1.0)


def test_mover_mean_of_symmetric_intervals_adds_variances() -> None:
    lo, hi = intervals.mover_mean(0.5, (0.4, 0.6), 0.7, (0.6, 0.8))
    half = math.hypot(0.1, 0.1) / 2
    assert (lo, hi) == pytest.approx((0.6 - half, 0.6 + half))


def test_mover_mean_keeps_asymmetry() -> None:
    lo, hi = intervals.mover_mean(1.0, (0.8, 1.0), 1.0, (0.9, 1.0))
    assert hi == 1.0
    assert lo == pytest.approx(1.0 - math.hypot(0.2, 0.1) / 2)


PROBABILITIES = [0.55, 0.8, 0.9, 0.95, 0.975, 0.995, 0.9995, 0.99995]


@pytest.mark.parametrize("p", PROBABILITIES)
def test_t_quantile_is_within_1e9_of_scipys(p: float) -> None:
    dfs = [*range(1, 70), *range(70, intervals.T_EXACT_DF + 40, 7), 1000, 10**5]
    for df in dfs:
        exact = stats.t.ppf(p, df)
        assert abs(intervals.t_quantile(p, df) - exact) <= 1e-9 * max(1.0, abs(exact)), (p, df)
        assert intervals.t_quantile(1 - p, df) == pytest.approx(-intervals.t_quantile(p, df))


def test_t_quantile_matches_printed_tables() -> None:
    table = {1: 12.7062, 2: 4.3027, 3: 3.1824, 10: 2.2281, 30: 2.0423, 120: 1.9799}
    for df, value in table.items():
        assert intervals.t_quantile(0.975, df) == pytest.approx(value, abs=5e-5)


@pytest.mark.parametrize(("p", "df"), [(0.0, 3), (1.0, 3), (0.9, 0)])
def test_t_quantile_refuses_impossible_arguments(p: float, df: int) -> None:
    with pytest.raises(ValueError, match="t quantile"):
        intervals.t_quantile(p, df)


# Values whose squares are below the normal float range (|x| < ~1.5e-154) leave a sum of squares
# with too few digits to say anything: the sums a bucket stores cannot hold them either.
_squarable = st.floats(-1e3, 1e3, allow_subnormal=False).filter(lambda v: v == 0 or abs(v) > 1e-150)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(_squarable, min_size=2, max_size=80),
    st.sampled_from([0.8, 0.9, 0.95, 0.99]),
)
def test_t_mean_equals_scipys_t_interval(values: list[float], confidence: float) -> None:
    x = np.array(values)
    low, high = intervals.t_mean(
        np.array([x.sum()]), np.array([(x * x).sum()]), np.array([float(len(x))]), confidence
    )
    ours = float(low[0]), float(high[0])
    sd = float(x.std(ddof=1))
    if sd == 0:
        assert ours[0] == pytest.approx(ours[1])
        return
    lo, hi = stats.t.interval(confidence, len(x) - 1, loc=x.mean(), scale=sd / math.sqrt(len(x)))
    slack = rounding.t_bounds_rounding(confidence, x)
    assert ours[0] == pytest.approx(lo, abs=slack)
    assert ours[1] == pytest.approx(hi, abs=slack)


def test_t_mean_needs_two_values() -> None:
    low, high = intervals.t_mean(
        np.array([3.0, 0.0, 3.0]), np.array([9.0, 0.0, 5.0]), np.array([1.0, 0.0, 2.0]), 0.95
    )
    assert np.isnan(low[:2]).all()
    assert np.isnan(high[:2]).all()
    assert low[2] < 1.5 < high[2]
