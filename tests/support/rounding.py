"""How far statistics computed from running sums may honestly be from two-pass ones."""

from __future__ import annotations

import math
import sys

import numpy as np
from scipy import stats

EPS = sys.float_info.epsilon


def t_bounds_rounding(confidence: float, x: np.ndarray) -> float:
    """How far a t-interval's bounds from Σx and Σx² may be from exact ones.

    Σx² − (Σx)²/n cancels, with an error up to ~2n·ε·Σx², so the half-width t·√(var/n) moves by
    at most t·√(2ε·Σx²/(n − 1)); doubled for safety, plus 1e-9 of the values' magnitude.
    """
    n = len(x)
    t = stats.t.ppf(0.5 + confidence / 2, n - 1)
    return 1e-9 * float(np.abs(x).max()) + t * math.sqrt(4 * EPS * float((x * x).sum()) / (n - 1))
