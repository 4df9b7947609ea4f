"""Human review: which records a person looks at, with a known probability, and what their
labels say about the whole window (the model-assisted, augmented inverse-probability estimate).

Selection. Each model record of a monitor with `spec.review` gets
- its predicted correctness f (`correctness`): binary, the calibrated probability of the positive
  class (`core.calibration`, the default reference's; the raw score without one) when it
  predicted 1, one minus it when it predicted 0; multiclass, the predicted class's calibrated
  probability (a classifier's record without any score: 0); regression, 0 (no per-record loss
  is predicted: the estimate is then plain Horvitz-Thompson);
- its uncertainty g = sqrt(f (1 - f));
- its inclusion probability pi (`inclusion`): 1 in the abstain band (every abstained item is
  reviewed); else max(min(1, uniform + borderline * g / mean_g), explore, outliers if it is
  an outlier), with the `Design` in force;
- a uniform draw U (`draw`) from the monitor, the seed and the prediction id: it is queued when
  U < pi. The sidecar abstains at random when U < explore, so an explored record is always
  queued. Every replica (and the sidecar) draws the same U, and with the same design (the
  leader's, kept in the monitor's state) decides the same.

The design (`design`) spreads the budget over the recent arrival rate: the abstain band and the
outlier stratum take what they take, the rest of the budget is split into the uniform and the
borderline share; a budget the traffic cannot fill, or that the band alone exceeds, is said in
`Design.status`. Before any traffic (`initial`) and without it, one record a second is assumed.

Counters (per minute bucket, keys `@review:<sum>:<part>`; they hold `:` so neither lifetime
totals nor the metric counters read them). A part is the stratum a record's residual is summed
in: binary, its predicted class (`1`, `0`); multiclass, `all`; regression, `loss`, whose
residual sums are kept per loss (`ae`, `e`, `se` in place of the part). At ingest
(`Selected.deltas`): `n` records, `f` the sum of f, `sel` the records queued; and, once per
record, `@review:g` (sum of g outside the band), `@review:band` and `@review:out` (records in
the band, outliers outside it), which the design reads (`traffic`). When a review label lands
(`contribution`, through `core.join`), with l the labeled record's value (1 if right, 0 if
wrong; a loss for regression): `rev` 1, `r` (l - f) / pi, `a` ((l - f) / pi)^2, `b` (l - f)^2 / pi.

Estimate (`estimate`). Per part, with rho = rev / sel the share of the queued items reviewed so
far (items skipped, expired or still waiting are missing at random within their part), the total
of l over the window is T = F + R / rho, with variance V = A / rho^2 - B / rho (the
Horvitz-Thompson variance of Poisson sampling at pi * rho, estimated from the reviewed items):
unbiased whatever f is; the better f predicts l, the smaller V. The metrics are functions of the
parts' totals: binary accuracy = (T1 + T0) / N and precision, recall, F1, specificity, balanced
accuracy of TP = T1, TN = T0 (FP = N1 - TP, FN = N0 - TN), their intervals by the delta method
(the parts are independent); multiclass accuracy; regression mae = T_ae / N, mean_error = T_e /
N, rmse = sqrt(T_se / N). Each `Reviewed` carries `n`, the reviewed records behind it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt

from truthloop.core import calibration, capture, intervals, metrics, segmented
from truthloop.core.calibration import BinaryCalibration, MulticlassCalibration
from truthloop.core.metrics import REVIEWED_NAMES as REVIEWED_NAMES
from truthloop.core.profile import Reference, reference_of
from truthloop.core.records import PredictionRecord
from truthloop.core.registry import Referenced
from truthloop.core.spec import AbstainSpec, ReviewSpec
from truthloop.core.tasks import Task
from truthloop.core.windows import BUCKET_SECONDS
from truthloop.core.wire import Scalar

PREFIX = "@review:"
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.intp]
Bools = npt.NDArray[np.bool_]

DAY = 86400.0

GroupKey = tuple[int, str, str, int]
"""(monitor id, model version, served_by, minute bucket), as `core.join` names it (which imports
this module: it adds `contribution` when a review label lands)."""

Reason = Literal["random", "borderline", "abstain", "explore", "outlier"]
"""Why a record was queued (shown to the reviewer; the estimate reads pi alone)."""
REASONS: tuple[Reason, ...] = ("abstain", "explore", "outlier", "random", "borderline")
"""In the order a queued record's reason is told (`inclusion`)."""

DesignStatus = Literal["ok", "no_traffic", "over_budget", "under_traffic"]
"""`over_budget`: the abstain band (and outliers) alone take more than the budget;
`under_traffic`: even queuing every record would not fill it."""

PARTS: Mapping[Task, tuple[str, ...]] = {
    "binary": ("0", "1"),
    "multiclass": ("all",),
    "regression": ("loss",),
}
"""Each task's parts (strata); a binary record's is its predicted class."""
LOSSES = ("ae", "e", "se")
"""A regression record's labeled losses, each summed as its own residual (`r:ae`, ...)."""
_ALL_PARTS = ("0", "1", "all", "loss")


def key(sum_: str, part: str) -> str:
    """A review counter's key, `@review:<sum>:<part>`."""
    return f"{PREFIX}{sum_}:{part}"


def is_counter(key: str) -> bool:
    """Whether `key` is a review counter."""
    return key.startswith(PREFIX)


G_KEY = f"{PREFIX}g"
"""The sum of g over the records outside the abstain band (the design's mean_g)."""
BAND_KEY = f"{PREFIX}band"
"""Records in the abstain band."""
OUT_KEY = f"{PREFIX}out"
"""Records outside the band flagged as outliers."""
_INGEST = tuple(tuple(key(s, p) for p in _ALL_PARTS) for s in ("n", "f", "sel"))


# -- the draw and the abstain band -------------------------------------------------------------


def draw(monitor: str, seed: int, prediction_id: str) -> float:
    """A uniform number in [0, 1) fixed by the monitor's key, the seed and the prediction id."""
    return float(draws(monitor, seed, (prediction_id,))[0])


def draws(monitor: str, seed: int, prediction_ids: Sequence[str]) -> Floats:
    """`draw` of many prediction ids at once."""
    return capture.uniforms(f"{seed}:{monitor}:", prediction_ids)


def in_band(abstain: AbstainSpec | None, score: float | None) -> bool:
    """Whether a record with this score is in the abstain band (always answered "I don't
    know" by the sidecar, reviewed with pi = 1)."""
    return abstain is not None and score is not None and abstain.low <= score <= abstain.high


def abstains(monitor: str, review: ReviewSpec, prediction_id: str, score: float | None) -> bool:
    """Whether the sidecar answers "I don't know" for this record: in the band, or explored
    (`draw < explore`). False without `review.abstain`."""
    abstain = review.abstain
    if abstain is None:
        return False
    if in_band(abstain, score):
        return True
    return abstain.explore > 0 and draw(monitor, review.seed, prediction_id) < abstain.explore


# -- the design --------------------------------------------------------------------------------


class Traffic(msgspec.Struct, frozen=True):
    """What the design is fitted to: the recent model records per day, their mean uncertainty
    g (outside the abstain band), and how many of them a day fell in the abstain band and were
    outliers (outside it)."""

    per_day: float
    mean_g: float
    band_per_day: float = 0.0
    outliers_per_day: float = 0.0


def traffic(counters: Mapping[str, float], minutes: float) -> Traffic:
    """The traffic of a window of `minutes` from its summed counters (model records, every
    version): the records selection read (`@review:n:<part>`), `@review:g`, `@review:band` and
    `@review:out`."""
    records = sum(counters.get(k, 0.0) for k in _INGEST[0])
    band = counters.get(BAND_KEY, 0.0)
    rest = records - band
    scale = 1440.0 / minutes if minutes > 0 else 0.0
    return Traffic(
        per_day=records * scale,
        mean_g=counters.get(G_KEY, 0.0) / rest if rest > 0 else 0.0,
        band_per_day=band * scale,
        outliers_per_day=counters.get(OUT_KEY, 0.0) * scale,
    )


class Design(msgspec.Struct, frozen=True, kw_only=True):
    """How records are selected now: pi = min(1, uniform + borderline * g / mean_g), raised to
    `explore` and (for an outlier) `outliers`; 1 in the abstain band."""

    uniform: float
    borderline: float = 0.0
    mean_g: float = 0.5
    explore: float = 0.0
    outliers: float = 0.0
    expected_per_day: float = 0.0
    """The items a day this design queues at the traffic it was fitted to."""
    budget_per_day: float = 0.0
    status: DesignStatus = "ok"
    message: str = ""
    computed: float = 0.0
    """When it was fitted (epoch seconds; 0 for `initial`)."""


def design(review: ReviewSpec, window: float, seen: Traffic, now: float) -> Design:
    """The design that meets `review.budget` (per day, or per `window` seconds) at `seen`: the
    abstain band, the outliers and the explored share take what they take (every band record,
    a share `outliers` of the outliers, `explore` of the rest); what is left of the budget is
    spread over the other records, `random` of it uniformly and `borderline` of it in
    proportion to g (so the expected count is the budget, up to the records whose pi reaches
    1)."""
    budget = review.budget if review.per == "day" else review.budget * DAY / window
    explore = review.abstain.explore if review.abstain is not None else 0.0
    if seen.per_day <= 0:
        return msgspec.structs.replace(
            initial(review, window),
            status="no_traffic",
            message="no model record was seen recently: records are selected as if one "
            "arrived a second",
            computed=now,
        )
    rest = max(seen.per_day - seen.band_per_day, 0.0)
    fixed = seen.band_per_day + review.outliers * seen.outliers_per_day + explore * rest
    left = budget - fixed
    rate = min(max(left, 0.0) / rest, 1.0) if rest > 0 else 0.0
    status: DesignStatus = "ok"
    message = ""
    if left < 0:
        status = "over_budget"
        message = (
            f"the abstain band, outliers and explored records take {fixed:.0f} items a day, "
            f"over the budget of {budget:.0f}: only they are queued"
        )
    elif left >= rest:
        status = "under_traffic"
        message = (
            f"{seen.per_day:.0f} records a day cannot fill a budget of {budget:.0f} items a "
            "day: every record is queued"
        )
    borderline = review.borderline * rate if seen.mean_g > 0 and status == "ok" else 0.0
    return Design(
        uniform=rate - borderline,
        borderline=borderline,
        mean_g=seen.mean_g if seen.mean_g > 0 else 0.5,
        explore=explore,
        outliers=review.outliers,
        expected_per_day=max(fixed, 0.0) + rate * rest,
        budget_per_day=budget,
        status=status,
        message=message,
        computed=now,
    )


def initial(review: ReviewSpec, window: float) -> Design:
    """The design before any traffic was seen: as if one record a second arrived (with g at
    its largest, 1/2, on average: the borderline share never takes more than its part)."""
    return design(review, window, Traffic(per_day=DAY, mean_g=0.5), 0.0)


# -- each record's f and pi --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Readings:
    """Per record: its part (an index of `_ALL_PARTS`, -1: unreadable, never queued), its f,
    and the score the abstain band reads (NaN: none)."""

    part: Ints
    f: Floats
    score: Floats


def correctness(
    task: Task,
    prediction: Scalar,
    score: float | None,
    scores: Mapping[str, float] | None,
    threshold: float,
    reference: Reference | None,
) -> tuple[str, float] | None:
    """A record's part and predicted correctness f (see the module's docstring); None for a
    record the task cannot read (no class), which is never queued. A classifier's record
    without any score has f = 0 (its residual is its label: Horvitz-Thompson for it)."""
    found = _read(task, [prediction], [score], [scores], threshold, reference)
    part = int(found.part[0])
    return None if part < 0 else (_ALL_PARTS[part], float(found.f[0]))


def _read(
    task: Task,
    predictions: Sequence[Scalar],
    scores: Sequence[float | None],
    class_scores: Sequence[Mapping[str, float] | None],
    threshold: float,
    reference: Reference | None,
) -> _Readings:
    """`correctness` of many records at once (and the score the band reads)."""
    found = reference.profile.calibration if reference is not None else None
    if task == "binary":
        return _read_binary(
            predictions, scores, threshold, found if isinstance(found, BinaryCalibration) else None
        )
    if task == "multiclass":
        return _read_multiclass(
            predictions,
            scores,
            class_scores,
            found if isinstance(found, MulticlassCalibration) else None,
        )
    readable = [metrics.check_prediction("regression", p) is None for p in predictions]
    n = len(predictions)
    part = np.where(np.array(readable, dtype=bool), _ALL_PARTS.index("loss"), -1)
    return _Readings(part.astype(np.intp), np.zeros(n), np.full(n, np.nan))


_CLASS_TYPES = frozenset({int, bool})


def _read_binary(
    predictions: Sequence[Scalar],
    scores: Sequence[float | None],
    threshold: float,
    found: BinaryCalibration | None,
) -> _Readings:
    n = len(predictions)
    if set(map(type, scores)) == {float} and set(map(type, predictions)) <= _CLASS_TYPES:
        predicted = np.array(predictions, dtype=np.intp).reshape(n)
        raw = np.array(scores, dtype=np.float64).reshape(n)
        usable = ((predicted == 0) | (predicted == 1)) & (raw >= 0.0) & (raw <= 1.0)
        predicted = np.where(usable, predicted, -1)
        raw = np.where(usable, raw, np.nan)
    else:
        predicted = np.full(n, -1, dtype=np.intp)
        raw = np.full(n, np.nan)
        for i, (prediction, score) in enumerate(zip(predictions, scores, strict=True)):
            try:
                c, s = metrics.binary_prediction(prediction, score, threshold)
            except metrics.LabelError:
                continue
            predicted[i] = c
            if s is not None:
                raw[i] = s
    scored = ~np.isnan(raw)
    p = np.where(scored, raw, 0.0)
    if found is not None:
        p = _table(found.curve)[calibration.bins(p)]
    f = np.where(scored, np.where(predicted == 1, p, 1.0 - p), 0.0)
    return _Readings(predicted, f, raw)


@lru_cache(maxsize=64)
def _table(curve: calibration.Curve) -> Floats:
    """A binary calibration's table, built once per curve (read only)."""
    return calibration.table(curve)


@lru_cache(maxsize=64)
def _tables(found: MulticlassCalibration) -> Floats:
    """A multiclass calibration's tables (classes x bins), built once (read only)."""
    return np.stack([calibration.table(c) for c in found.curves])


def _read_multiclass(
    predictions: Sequence[Scalar],
    scores: Sequence[float | None],
    class_scores: Sequence[Mapping[str, float] | None],
    found: MulticlassCalibration | None,
) -> _Readings:
    n = len(predictions)
    labels: list[str | None] = []
    for prediction in predictions:
        try:
            labels.append(metrics.class_label(prediction))
        except metrics.LabelError:
            labels.append(None)
    part = np.array([-1 if label is None else 0 for label in labels], dtype=np.intp).reshape(n)
    part = np.where(part == 0, _ALL_PARTS.index("all"), -1).astype(np.intp)
    top = np.array(
        [
            max(given.values()) if given else (np.nan if score is None else score)
            for given, score in zip(class_scores, scores, strict=True)
        ],
        dtype=np.float64,
    ).reshape(n)
    f = np.array(
        [
            given.get(label, 0.0) if given and label is not None else (score or 0.0)
            for given, score, label in zip(class_scores, scores, labels, strict=True)
        ],
        dtype=np.float64,
    ).reshape(n)
    rows = [i for i, given in enumerate(class_scores) if given]
    if found is not None and rows:
        classes = found.classes
        matrix = np.array(
            [[class_scores[i].get(c, 0.0) for c in classes] for i in rows],  # type: ignore[union-attr]
            dtype=np.float64,
        ).reshape(len(rows), len(classes))
        q = calibration.calibrate(_tables(found), matrix)
        index = {c: k for k, c in enumerate(classes)}
        for row, i in enumerate(rows):
            k = index.get(labels[i] or "")
            f[i] = 0.0 if k is None else q[row, k]
    return _Readings(part, np.clip(f, 0.0, 1.0), top)


def inclusion(
    design: Design, f: float, *, in_band: bool, outlier: bool, u: float = 0.0
) -> tuple[float, Reason]:
    """A record's inclusion probability pi and the reason it is queued when its draw is `u`
    (the first that applies: abstain (the band), explore (`u < explore`: the sidecar
    abstained), outlier (`u < outliers`), random (`u < uniform`), else borderline; the default
    `u` = 0 tells the first stratum that takes it)."""
    pi, reason = inclusions(
        design,
        np.array([f], dtype=np.float64),
        np.array([in_band]),
        np.array([outlier]),
        np.array([u], dtype=np.float64),
    )
    return float(pi[0]), REASONS[int(reason[0])]


def inclusions(
    design: Design, f: Floats, band: Bools, outlier: Bools, u: Floats | None = None
) -> tuple[Floats, Ints]:
    """`inclusion` of arrays of records: pi and the reasons' indices in `REASONS`."""
    g = np.sqrt(np.clip(f * (1.0 - f), 0.0, None))
    scale = design.borderline / design.mean_g if design.mean_g > 0 else 0.0
    pi = np.minimum(1.0, design.uniform + scale * g)
    pi = np.maximum(pi, design.explore)
    pi = np.where(outlier, np.maximum(pi, design.outliers), pi)
    pi = np.where(band, 1.0, pi)
    u = np.zeros(len(f)) if u is None else u
    reason = np.select(
        [band, u < design.explore, outlier & (u < design.outliers), u < design.uniform],
        [0, 1, 2, 3],
        4,
    ).astype(np.intp)
    return pi, reason


# -- selection at ingest -----------------------------------------------------------------------


class Mark(msgspec.Struct, frozen=True, gc=False):
    """What is stored with a queued record: its inclusion probability, predicted correctness,
    part and reason; a review label's residual is computed from it (`contribution`)."""

    pi: float
    f: float
    part: str
    reason: Reason


@dataclass(frozen=True, slots=True)
class _Considered:
    """The records a selection read (model records of monitors with `spec.review`, readable),
    one entry each: position in the batch, group (index of `groups`), part, f, g (0 in the
    band), in the band, an outlier outside it, queued."""

    groups: list[GroupKey]
    position: Ints
    group: Ints
    part: Ints
    f: Floats
    g: Floats
    band: Bools
    out: Bools
    sel: Bools


class Selected:
    """The selection of one ingest batch (`select`): per record its `Mark` when queued."""

    __slots__ = ("_considered", "_size", "marks")

    def __init__(self, marks: list[Mark | None], considered: _Considered | None = None) -> None:
        self.marks = marks
        """Per record of the batch: its mark when queued, else None."""
        self._size = len(marks)
        self._considered = considered

    def deltas(
        self,
        stored: Sequence[int] | None = None,
        assigned: segmented.Assigned | None = None,
    ) -> dict[GroupKey, dict[str, float]]:
        """The ingest counters of the records at positions `stored` (None: all), again under
        each record's segment prefixes of `assigned`."""
        c = self._considered
        out: dict[GroupKey, dict[str, float]] = {}
        if c is None or not len(c.position):
            return out
        keep: Any = slice(None)
        if stored is not None:
            wanted = np.zeros(self._size, dtype=bool)
            wanted[np.asarray(stored, dtype=np.intp)] = True
            keep = wanted[c.position]
        fanned = segmented.fan(assigned, c.position[keep], c.group[keep])
        take = fanned.take
        group, part = fanned.group, take(c.part[keep])
        n_groups, n_parts = len(c.groups) * fanned.width, len(_ALL_PARTS)
        cell = group * n_parts + part
        size = n_groups * n_parts
        per_part = np.stack(
            [
                np.bincount(cell, minlength=size),
                np.bincount(cell, weights=take(c.f[keep]), minlength=size),
                np.bincount(cell, weights=take(c.sel[keep]), minlength=size),
            ]
        ).reshape(3, n_groups, n_parts)
        per_group = np.stack(
            [
                np.bincount(group, weights=take(c.g[keep]), minlength=n_groups),
                np.bincount(group, weights=take(c.band[keep]), minlength=n_groups),
                np.bincount(group, weights=take(c.out[keep]), minlength=n_groups),
            ]
        )
        for g in np.flatnonzero(per_part.any(axis=(0, 2)) | per_group.any(axis=0)).tolist():
            plain, prefix = fanned.split(g)
            counters = out.setdefault(c.groups[plain], {})
            for s, keys in enumerate(_INGEST):
                for p, value in enumerate(per_part[s, g].tolist()):
                    if value:
                        counters[prefix + keys[p]] = value
            for k, value in zip((G_KEY, BAND_KEY, OUT_KEY), per_group[:, g].tolist(), strict=True):
                if value:
                    counters[prefix + k] = value
        return out

    def queued(self, stored: Sequence[int] | None = None) -> list[tuple[int, Mark]]:
        """(position, mark) of the records at `stored` that are queued."""
        marks = self.marks
        positions = range(self._size) if stored is None else stored
        return [(i, mark) for i in positions if (mark := marks[i]) is not None]


def select(
    records: Sequence[PredictionRecord],
    known: Mapping[str, Referenced],
    designs: Mapping[int, Design],
    outliers: Sequence[float | None],
) -> Selected:
    """Select the model records of monitors with `spec.review` (`designs` by monitor id; a
    monitor without one uses `initial`); `outliers` are the records' outlier scores
    (`core.sketch`, > 0: an outlier). Other records get no mark and no counters.

    A record the sidecar abstained on (`abstained`) but neither in the band by its score nor
    explored (the spec changed between the two) counts as in the band: the sidecar's band
    queued it whatever its draw."""
    marks: list[Mark | None] = [None] * len(records)
    slots: dict[tuple[str, str], list[int]] = {}
    for i, record in enumerate(records):
        if record.served_by == "model":
            slots.setdefault((record.monitor, record.model_version), []).append(i)
    groups: list[GroupKey] = []
    found: list[tuple[Ints, Ints, Ints, Floats, Floats, Bools, Bools, Bools]] = []
    for (name, version), indices in slots.items():
        registered = known.get(name)
        if registered is None or registered.monitor.spec.review is None:
            continue
        spec = registered.monitor.spec
        review = spec.review
        assert review is not None
        chosen = designs.get(registered.id) or initial(review, spec.metrics.window)
        batch = [records[i] for i in indices]
        read = _read(
            spec.task,
            [r.prediction for r in batch],
            [r.score for r in batch],
            [r.scores for r in batch],
            spec.threshold,
            reference_of(registered.references, version),
        )
        readable = read.part >= 0
        if not readable.any():
            continue
        at = np.flatnonzero(readable)
        position = np.asarray(indices, dtype=np.intp)[at]
        f, score, part = read.f[at], read.score[at], read.part[at]
        if len(at) < len(batch):
            batch = [batch[i] for i in at.tolist()]
        u = draws(name, review.seed, [r.prediction_id for r in batch])
        band = np.zeros(len(batch), dtype=bool)
        if review.abstain is not None:
            band = (score >= review.abstain.low) & (score <= review.abstain.high)
            abstained = np.fromiter((r.abstained for r in batch), bool, len(batch))
            band |= abstained & ~(u < chosen.explore)
        with np.errstate(invalid="ignore"):  # None is NaN, no outlier
            outlier = np.array([outliers[i] for i in position.tolist()], dtype=np.float64) > 0
        pi, reason = inclusions(chosen, f, band, outlier, u)
        sel = u < pi
        for i in np.flatnonzero(sel).tolist():
            marks[int(position[i])] = Mark(
                float(pi[i]), float(f[i]), _ALL_PARTS[part[i]], REASONS[reason[i]]
            )
        buckets = np.floor(np.array([r.ts for r in batch]) / BUCKET_SECONDS).astype(np.int64)
        unique, group = np.unique(buckets, return_inverse=True)
        offset = len(groups)
        groups += [(registered.id, version, "model", int(b)) for b in unique.tolist()]
        g = np.where(band, 0.0, np.sqrt(np.clip(f * (1.0 - f), 0.0, None)))
        found.append((position, group.reshape(-1) + offset, part, f, g, band, outlier & ~band, sel))
    if not found:
        return Selected(marks)
    columns = [np.concatenate(c) for c in zip(*found, strict=True)]
    return Selected(marks, _Considered(groups, *columns))


# -- a review label ----------------------------------------------------------------------------


def contribution(
    mark: Mark, task: Task, prediction: Scalar, right: bool | None, value: Scalar | None
) -> dict[str, float]:
    """The counters a review label adds to its record's bucket: `right` (classifiers) or the
    labeled `value` (regression, with `prediction`) against the mark's f and pi; `{}` when the
    label tells neither (a regression vote)."""
    if task == "regression":
        if value is None or isinstance(value, str | bool) or isinstance(prediction, str | bool):
            return {}
        e = float(prediction) - float(value)
        out = {key("rev", mark.part): 1.0}
        for name, loss in zip(LOSSES, (abs(e), e, e * e), strict=True):
            out.update(_residual(name, loss - mark.f, mark.pi))
        return out
    if right is None:
        return {}
    return {key("rev", mark.part): 1.0, **_residual(mark.part, float(right) - mark.f, mark.pi)}


def _residual(part: str, residual: float, pi: float) -> dict[str, float]:
    weighted = residual / pi
    return {
        key("r", part): weighted,
        key("a", part): weighted * weighted,
        key("b", part): residual * weighted,
    }


# -- the estimate ------------------------------------------------------------------------------


class Reviewed(msgspec.Struct, frozen=True):
    """A metric estimated from the reviewed labels, with its interval and the reviewed `n`."""

    value: float | None
    lower: float | None = None
    upper: float | None = None
    n: int = 0


def part_total(
    n: float, f: float, sel: float, rev: float, r: float, a: float, b: float
) -> tuple[float, float] | None:
    """A part's total of l and its variance from its sums (the module's docstring): `(0, 0)`
    for a part without records, None for one with records but none reviewed."""
    if n <= 0:
        return 0.0, 0.0
    if rev <= 0 or sel <= 0:
        return None
    rho = min(rev / sel, 1.0)
    return f + r / rho, max(a / (rho * rho) - b / rho, 0.0)


def _part(counters: Mapping[str, float], part: str, loss: str | None = None) -> tuple[float, ...]:
    """(records, total, variance, reviewed) of a part (`loss`: that loss's residuals); NaN
    total when the part has records but none reviewed."""
    get = counters.get
    n, rev = get(key("n", part), 0.0), get(key("rev", part), 0.0)
    at = loss or part
    found = part_total(
        n,
        get(key("f", part), 0.0),
        get(key("sel", part), 0.0),
        rev,
        get(key("r", at), 0.0),
        get(key("a", at), 0.0),
        get(key("b", at), 0.0),
    )
    return (n, math.nan, 0.0, rev) if found is None else (n, *found, rev)


def estimate(
    task: Task, counters: Mapping[str, float], confidence: float = 0.95
) -> dict[str, Reviewed]:
    """Each metric `REVIEWED_NAMES[task]` of a window's summed counters; `{}` when the window
    holds no review counter, a metric with `value` None when nothing was reviewed."""
    if not any(map(is_counter, counters)):
        return {}
    z = intervals.z_score(confidence)
    if task == "binary":
        n0, t0, v0, rev0 = _part(counters, "0")
        n1, t1, v1, rev1 = _part(counters, "1")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = metrics.binary_ratios(
                np.array([t1]), np.array([n0 - t0]), np.array([n1]), np.array([n0])
            )
            out = {}
            for name, (value, d_tp, d_fn) in ratios.items():
                half = z * math.sqrt(float(d_tp[0] ** 2 * v1 + d_fn[0] ** 2 * v0))
                reviewed = rev1 if name == "precision" else rev1 + rev0
                out[name] = _bounded(float(value[0]), half, reviewed, 0.0, 1.0)
        return out
    if task == "multiclass":
        n, t, v, rev = _part(counters, "all")
        return {"accuracy": _mean(t, v, n, rev, z, 0.0, 1.0)}
    n, ae, v_ae, rev = _part(counters, "loss", "ae")
    _, e, v_e, _ = _part(counters, "loss", "e")
    _, se, v_se, _ = _part(counters, "loss", "se")
    mse = _mean(se, v_se, n, rev, z, 0.0, math.inf)
    return {
        "mae": _mean(ae, v_ae, n, rev, z, 0.0, math.inf),
        "rmse": _root(mse),
        "mean_error": _mean(e, v_e, n, rev, z, -math.inf, math.inf),
    }


def _root(found: Reviewed) -> Reviewed:
    """The square root of a mean (RMSE from the mean squared error) and of its bounds."""
    value, lower, upper = (
        None if x is None else math.sqrt(x) for x in (found.value, found.lower, found.upper)
    )
    return Reviewed(value, lower, upper, found.n)


def _mean(t: float, v: float, n: float, rev: float, z: float, low: float, high: float) -> Reviewed:
    """The mean T / N with its interval, within [low, high]."""
    if n <= 0:
        return Reviewed(None)
    return _bounded(t / n, z * math.sqrt(v) / n, rev, low, high)


def _bounded(value: float, half: float, rev: float, low: float, high: float) -> Reviewed:
    if not math.isfinite(value):
        return Reviewed(None, n=round(rev))
    clipped = min(max(value, low), high)
    if not math.isfinite(half):
        return Reviewed(clipped, n=round(rev))
    return Reviewed(
        clipped,
        max(low, min(value - half, clipped)),
        min(high, max(value + half, clipped)),
        round(rev),
    )


def aipw(
    values: Floats, f: Floats, pi: Floats, reviewed: Bools, confidence: float = 0.95
) -> Reviewed:
    """The model-assisted mean of `values` over all records, from the `reviewed` ones: the same
    estimator as `estimate` on raw arrays (tests hold the two equal, and compare it with
    `horvitz_thompson`). Every queued record is taken as reviewed (rho = 1); the mean is not
    bounded."""
    n = len(values)
    residual = values[reviewed] - f[reviewed]
    weighted = residual / pi[reviewed]
    rev = float(len(residual))
    found = part_total(
        n,
        float(f.sum()),
        rev,
        rev,
        float(weighted.sum()),
        float(weighted @ weighted),
        float(residual @ weighted),
    )
    if found is None:
        return Reviewed(None)
    z = intervals.z_score(confidence)
    return _mean(*found, n, rev, z, -math.inf, math.inf)


def horvitz_thompson(
    values: Floats, pi: Floats, reviewed: Bools, confidence: float = 0.95
) -> Reviewed:
    """The plain inverse-probability mean (f = 0), for comparison."""
    return aipw(values, np.zeros(len(values)), pi, reviewed, confidence)


# -- planning ----------------------------------------------------------------------------------


class PlanAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """How many reviews a day a precision or a detection needs, or what a budget buys."""

    per_day: float
    """Records a day (the monitor's recent traffic)."""
    unit_variance: float
    """The variance one review contributes under the current design (`estimate`'s V * n / N^2)."""
    for_half_width: float | None = None
    """Reviews a day for the window's interval to be `half_width` wide (each side)."""
    for_detection: float | None = None
    """Reviews a day to detect a drop of `detect` within `within` (one-sided 5%, power 80%)."""
    needed: float | None = None
    """The larger of the two."""
    half_width: float | None = None
    """The half-width `budget` reviews a day give over the window."""
    detectable: float | None = None
    """The smallest drop `budget` reviews a day detect within `within`."""


DETECTION = NormalDist().inv_cdf(0.95) + NormalDist().inv_cdf(0.80)
"""z of a one-sided 5% test plus z of 80% power: a drop is detected when it is this many
standard errors of the estimate."""


def unit_variance(seen: Traffic, accuracy: float, random_share: float = 1.0) -> float:
    """An upper bound of the variance of the accuracy estimate times the reviews it rests on,
    under a design with this random share at `seen`, f calibrated: a record's residual variance
    is g^2 = f (1 - f); with a uniform pi the unit variance is E[g^2] (at most a (1 - a) and
    mean_g / 2), with pi in proportion to g it is mean_g^2, and a mix is at most the mix of the
    two (1 / pi is convex). The abstain band's records are known (pi = 1) and take their share
    of the window out of the variance."""
    a = min(max(accuracy, 0.0), 1.0)
    spread = a * (1.0 - a)
    g = seen.mean_g
    uniform = min(spread, g / 2) if g > 0 else spread
    borderline = g * g if g > 0 else spread
    rest = 1.0 - (seen.band_per_day / seen.per_day if seen.per_day > 0 else 0.0)
    return (random_share * uniform + (1.0 - random_share) * borderline) * rest * rest


def plan(
    seen: Traffic,
    window: float,
    *,
    accuracy: float,
    half_width: float | None = None,
    detect: float | None = None,
    within: float | None = None,
    budget: float | None = None,
    random_share: float = 1.0,
    confidence: float = 0.95,
) -> PlanAnswer:
    """Answer a planning question from the traffic and the current accuracy estimate: with
    unit variance u (`unit_variance`) and M records outside the band over a period, n reviews
    of the period give the accuracy a variance u (1/n - 1/M) (sampling without replacement), so
    a half-width h over the window needs n = 1 / (h^2 / (z^2 u) + 1/M), a drop d within
    `within` (the period, tested against the current value) n = 1 / ((d / 2.49)^2 / u + 1/M);
    reviews a day are n per period in a day plus the band's items. A `budget` a day answers
    the reverse."""
    u = unit_variance(seen, accuracy, random_share)
    rest = max(seen.per_day - seen.band_per_day, 0.0)
    z = intervals.z_score(confidence)
    answer: dict[str, float | None] = {}
    if half_width is not None and half_width > 0:
        answer["for_half_width"] = _needed(u, half_width / z, rest, window, seen.band_per_day)
    if detect is not None and detect > 0 and within is not None and within > 0:
        answer["for_detection"] = _needed(u, detect / DETECTION, rest, within, seen.band_per_day)
    asked = [v for v in answer.values() if v is not None]
    if asked:
        answer["needed"] = max(asked)
    if budget is not None:
        answer["half_width"] = _spread(u, budget, rest, window, seen.band_per_day, z)
        if within is not None and within > 0:
            answer["detectable"] = _spread(u, budget, rest, within, seen.band_per_day, DETECTION)
    return PlanAnswer(per_day=seen.per_day, unit_variance=u, **answer)


def _needed(u: float, sd: float, rest: float, period: float, band: float) -> float | None:
    """Reviews a day for the estimate over `period` seconds to have standard deviation `sd`."""
    records = rest * period / DAY
    if records <= 0:
        return None
    n = 1.0 / (sd * sd / u + 1.0 / records) if u > 0 else 0.0
    return n * DAY / period + band


def _spread(
    u: float, budget: float, rest: float, period: float, band: float, z: float
) -> float | None:
    """z standard deviations of the estimate over `period` with `budget` reviews a day."""
    records = rest * period / DAY
    n = min((budget - band) * period / DAY, records)
    if n <= 0 or records <= 0:
        return None
    return z * math.sqrt(max(u * (1.0 / n - 1.0 / records), 0.0))
