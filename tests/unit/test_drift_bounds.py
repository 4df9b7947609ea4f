"""The binned statistics of core/drift.py against scipy's exact ones on the raw values.

Each test draws a reference and a window of raw values, profiles and sketches them with the cell
rule of core.profile (tests/support/drift_data.py), and holds the statistic computed from the
sketch to the bound core/drift.py's docstring states against the statistic on the raw values.
"""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial import distance

from tests.support.drift_data import (
    categorical_profile,
    numeric_cells,
    numeric_profile,
)
from truthloop.core import drift

EPS = 1e-9
JS_EPS = 1e-7
"""A Jensen-Shannon distance is the square root of a sum: rounding of 1e-15 in it is 3e-8."""


def _scipy_js(p: np.ndarray, q: np.ndarray) -> float:
    """scipy's distance, 0 where its divergence rounds below 0 (it takes the root of that)."""
    with np.errstate(invalid="ignore"):
        return float(np.nan_to_num(distance.jensenshannon(p, q)))


# Values with ties (small integers), spread ones, and a mixture; a window may sit beyond the range.
_value = st.one_of(
    st.integers(-5, 5).map(float),
    st.floats(-1000, 1000, allow_nan=False, allow_infinity=False),
)
_values = st.lists(_value, min_size=2, max_size=300).map(lambda v: np.asarray(v, dtype=float))


def _binned(
    ref: np.ndarray, cur: np.ndarray
) -> tuple[drift.NumericProfile, np.ndarray, np.ndarray, np.ndarray]:
    """The profile of `ref`, its proportions p, the window's counts and proportions q."""
    profile = numeric_profile("x", ref)
    edges = np.asarray(profile.edges)
    counts = np.bincount(numeric_cells(edges, cur), minlength=len(edges) + 1).astype(float)
    return profile, drift.proportions(profile), counts, counts / counts.sum()


@settings(max_examples=300, deadline=None)
@given(_values, _values)
def test_binned_ks_is_below_the_exact_one_by_at_most_the_largest_cell(
    ref: np.ndarray, cur: np.ndarray
) -> None:
    """KS_binned <= KS_exact <= KS_binned + max_j max(p_j, q_j), so p_binned >= p_exact."""
    _profile, p, _counts, q = _binned(ref, cur)
    binned = drift.ks(p, q)
    exact = float(stats.ks_2samp(ref, cur, method="asymp").statistic)
    assert binned <= exact + EPS
    assert exact <= binned + max(p.max(), q.max()) + EPS
    n, m = len(ref), len(cur)
    assert drift.ks_p_value(binned, n, m) >= drift.ks_p_value(exact, n, m) - EPS


@settings(max_examples=300, deadline=None)
@given(_values, _values)
def test_binned_wasserstein_is_the_exact_one_within_the_bins_widths(
    ref: np.ndarray, cur: np.ndarray
) -> None:
    """|W_binned - (W_exact - T)| <= sum_j w_j max(p_j, q_j), T the window's distance beyond
    the reference's range."""
    profile, p, _counts, q = _binned(ref, cur)
    edges = np.asarray(profile.edges)
    binned = drift.wasserstein(edges, p, q)
    exact = float(stats.wasserstein_distance(ref, cur))
    beyond = float(
        np.mean(np.maximum(edges[0] - cur, 0.0)) + np.mean(np.maximum(cur - edges[-1], 0.0))
    )
    interior = np.maximum(p, q)[1 : len(edges)]
    slack = float(np.sum(np.diff(edges) * interior))
    scale = max(1.0, float(np.abs(np.concatenate([ref, cur])).max()))
    assert abs(binned - (exact - beyond)) <= slack + EPS * scale


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=20, max_size=300), st.floats(-0.5, 0.5))
def test_binned_wasserstein_tracks_a_shift_inside_the_range(
    values: list[float], shift: float
) -> None:
    """A window inside the range: no beyond-range term, the bound alone."""
    ref = np.asarray([*values, -2.0, 2.0])
    cur = np.clip(np.asarray(values) + shift, -2.0, 2.0)
    profile, p, _counts, q = _binned(ref, cur)
    edges = np.asarray(profile.edges)
    exact = float(stats.wasserstein_distance(ref, cur))
    slack = float(np.sum(np.diff(edges) * np.maximum(p, q)[1 : len(edges)]))
    assert abs(drift.wasserstein(edges, p, q) - exact) <= slack + EPS


def _refine(edges: np.ndarray) -> np.ndarray:
    """Each interior bin split at its middle: a finer binning of the same values."""
    fine = np.unique(np.concatenate([edges, (edges[:-1] + edges[1:]) / 2]))
    return fine if len(fine) > 1 else edges  # a constant's (c, c) stays


def _proportions(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    counts = np.bincount(numeric_cells(edges, values), minlength=len(edges) + 1)
    return counts / counts.sum()


@settings(max_examples=300, deadline=None)
@given(_values, _values)
def test_binned_jensenshannon_and_psi_are_at_most_those_of_a_finer_binning(
    ref: np.ndarray, cur: np.ndarray
) -> None:
    """Merging cells never increases an f-divergence; JS is scipy's on the same cells."""
    profile, p, _counts, q = _binned(ref, cur)
    binned = drift.jensenshannon(p, q)
    assert abs(binned - _scipy_js(p, q)) <= JS_EPS
    fine = _refine(np.asarray(profile.edges))
    pf, qf = _proportions(fine, ref), _proportions(fine, cur)
    assert binned <= _scipy_js(pf, qf) + JS_EPS
    if np.all(pf > 0) and np.all(qf > 0) and np.all(p > 0) and np.all(q > 0):
        assert drift.psi(p, q) <= float(np.sum((pf - qf) * np.log(pf / qf))) + EPS


_category = st.integers(0, 80).map(str)


@settings(max_examples=200, deadline=None)
@given(st.lists(_category, min_size=1, max_size=400), st.lists(_category, min_size=1, max_size=400))
def test_categorical_jensenshannon_is_exact_up_to_the_other_cell(
    ref: list[str], cur: list[str]
) -> None:
    """JS on the cells equals JS on the raw values when every value has its own cell (at most
    MAX_CATEGORIES in the reference, none new), and is below it otherwise."""
    profile = categorical_profile("c", ref)
    index = {c: i for i, c in enumerate(profile.categories)}
    counts = np.bincount([index.get(v, len(index)) for v in cur], minlength=len(index) + 1).astype(
        float
    )
    p, q = drift.proportions(profile), counts / counts.sum()
    binned = drift.jensenshannon(p, q)
    keys = sorted(set(ref) | set(cur))
    rc, cc = Counter(ref), Counter(cur)
    pe = np.array([rc[k] / len(ref) for k in keys])
    qe = np.array([cc[k] / len(cur) for k in keys])
    exact = _scipy_js(pe, qe)
    assert binned <= exact + JS_EPS
    if len(set(ref)) == len(profile.categories) and set(cur) <= set(ref):
        assert abs(binned - exact) <= JS_EPS


@settings(max_examples=200, deadline=None)
@given(st.lists(_category, min_size=1, max_size=400), st.lists(_category, min_size=1, max_size=400))
def test_chisquare_is_scipys_where_the_reference_has_every_cell(
    ref: list[str], cur: list[str]
) -> None:
    profile = categorical_profile("c", ref)
    index = {c: i for i, c in enumerate(profile.categories)}
    counts = np.bincount([index.get(v, len(index)) for v in cur], minlength=len(index) + 1).astype(
        float
    )
    p = drift.proportions(profile)
    statistic, p_value = drift.chisquare(p, counts, len(ref))
    assert statistic >= 0
    assert 0 <= p_value <= 1
    keep = (p > 0) | (counts > 0)
    if np.all(p[keep] > 0) and keep.sum() >= 2:
        expected = stats.chisquare(counts[keep], p[keep] / p[keep].sum() * counts.sum())
        assert abs(statistic - float(expected.statistic)) <= 1e-6 * max(1.0, statistic)
        assert abs(p_value - float(expected.pvalue)) <= 1e-9


@settings(max_examples=300, deadline=None)
@given(_values, _values)
def test_binned_ks_is_the_raw_cdfs_gap_at_the_edges(ref: np.ndarray, cur: np.ndarray) -> None:
    """The binned CDFs are the raw ones at each edge (mass below it; at the last, up to it)."""
    profile, p, _counts, q = _binned(ref, cur)
    edges = np.asarray(profile.edges)

    def below(values: np.ndarray) -> np.ndarray:
        cdf = np.searchsorted(np.sort(values), edges, side="left") / len(values)
        cdf[-1] = np.mean(values <= edges[-1])
        return cdf

    gaps = np.abs(below(ref) - below(cur))
    overflow = abs(float(np.mean(ref > edges[-1]) - np.mean(cur > edges[-1])))
    assert abs(drift.ks(p, q) - max(float(gaps.max()), overflow)) <= EPS


SUB = 400
"""Points per interior bin that stand for its uniform mass in scipy's weighted Wasserstein."""


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.01, 10), min_size=1, max_size=25),
    st.data(),
)
def test_binned_wasserstein_is_exact_for_mass_uniform_within_bins(
    widths: list[float], data: st.DataObject
) -> None:
    """W between the binned distributions is scipy's W between them, each interior bin's mass
    spread uniformly (SUB points), the under/overflow mass on the first/last edge."""
    edges = np.concatenate([[-3.0], -3.0 + np.cumsum(widths)])
    cells = len(edges) + 1
    weights = st.lists(st.floats(0, 1), min_size=cells, max_size=cells)
    p_raw, q_raw = np.asarray(data.draw(weights)), np.asarray(data.draw(weights))
    if p_raw.sum() == 0 or q_raw.sum() == 0:
        return
    p, q = p_raw / p_raw.sum(), q_raw / q_raw.sum()
    offsets = (np.arange(SUB) + 0.5) / SUB
    points = np.concatenate(
        [
            [edges[0]],
            *(a + (b - a) * offsets for a, b in itertools.pairwise(edges)),
            [edges[-1]],
        ]
    )

    def spread(w: np.ndarray) -> np.ndarray:
        return np.concatenate([[w[0]], np.repeat(w[1:-1] / SUB, SUB), [w[-1]]])

    exact = float(stats.wasserstein_distance(points, points, spread(p), spread(q)))
    # Each point stands for its 1/SUB of a bin: moving mass by at most w/(2 SUB), twice.
    assert abs(drift.wasserstein(edges, p, q) - exact) <= max(widths) / SUB + EPS
