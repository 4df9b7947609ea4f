"""Human review: which records a person looks at, with a known probability, and what their
labels say about the whole window (the model-assisted, augmented inverse-probability estimate).

Selection. Each model record of a monitor with `spec.review` gets
- its predicted correctness f (`correctness`): binary, the calibrated probability of the positive
  class (`core.calibration`, the default reference's; the raw score without one) when it
  predicted 1, one minus it when it predicted 0; multiclass, the predicted class's calibrated
  probability; regression, 0 (no per-record loss is predicted: the estimate is then plain
  Horvitz-Thompson);
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
`Design.status`.

Counters (per minute bucket, keys `@review:<sum>:<part>`; they hold `:` so neither lifetime
totals nor the metric counters read them). A part is the stratum a record's residual is summed
in: binary, its predicted class (`1`, `0`); multiclass, `all`; regression, each loss (`ae`,
`e`, `se`). At ingest (`Selected.deltas`): `n` records, `f` the sum of f, `sel` the records
queued; and, once per record, `@review:g` (sum of g), `@review:band` and `@review:out` (records in
the band, outliers), which the design reads. When a review label lands (`contribution`, through
`core.join`), with l the labeled record's value (1 if right, 0 if wrong; a loss for
regression): `rev` 1, `r` (l - f) / pi, `a` ((l - f) / pi)^2, `b` (l - f)^2 / pi.

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

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

import msgspec
import numpy as np
import numpy.typing as npt

from truthloop.core.metrics import REVIEWED_NAMES as REVIEWED_NAMES
from truthloop.core.profile import Reference
from truthloop.core.records import PredictionRecord
from truthloop.core.spec import AbstainSpec, Monitor, ReviewSpec
from truthloop.core.tasks import Task
from truthloop.core.wire import Scalar

PREFIX = "@review:"
Floats = npt.NDArray[np.float64]

GroupKey = tuple[int, str, str, int]
"""(monitor id, model version, served_by, minute bucket), as `core.join` names it (which imports
this module: it adds `contribution` when a review label lands)."""

Reason = Literal["random", "borderline", "abstain", "explore", "outlier"]
"""Why a record was queued (shown to the reviewer; the estimate reads pi alone)."""

DesignStatus = Literal["ok", "no_traffic", "over_budget", "under_traffic"]
"""`over_budget`: the abstain band (and outliers) alone take more than the budget;
`under_traffic`: even queuing every record would not fill it."""


def key(sum_: str, part: str) -> str:
    """A review counter's key, `@review:<sum>:<part>`."""
    return f"{PREFIX}{sum_}:{part}"


def is_counter(key: str) -> bool:
    """Whether `key` is a review counter."""
    return key.startswith(PREFIX)


def draw(monitor: str, seed: int, prediction_id: str) -> float:
    """A uniform number in [0, 1) fixed by the monitor's key, the seed and the prediction id."""
    raise NotImplementedError


def in_band(abstain: AbstainSpec | None, score: float | None) -> bool:
    """Whether a record with this score is in the abstain band (always answered "I don't
    know" by the sidecar, reviewed with pi = 1)."""
    raise NotImplementedError


def abstains(monitor: str, review: ReviewSpec, prediction_id: str, score: float | None) -> bool:
    """Whether the sidecar answers "I don't know" for this record: in the band, or explored
    (`draw < explore`). False without `review.abstain`."""
    raise NotImplementedError


class Traffic(msgspec.Struct, frozen=True):
    """What the design is fitted to: the recent model records per day, their mean uncertainty
    g, and how many of them a day fell in the abstain band and were outliers."""

    per_day: float
    mean_g: float
    band_per_day: float = 0.0
    outliers_per_day: float = 0.0


def traffic(counters: Mapping[str, float], minutes: float) -> Traffic:
    """The traffic of a window of `minutes` from its summed counters (model records, every
    version: `@predictions`, `@review:g`, `@review:band`, `@review:out`)."""
    raise NotImplementedError


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
    """The design that meets `review.budget` (per day, or per `window` seconds) at `seen`."""
    raise NotImplementedError


def initial(review: ReviewSpec, window: float) -> Design:
    """The design before any traffic was seen: as if one record a second arrived."""
    raise NotImplementedError


def correctness(
    task: Task,
    prediction: Scalar,
    score: float | None,
    scores: Mapping[str, float] | None,
    threshold: float,
    reference: Reference | None,
) -> tuple[str, float] | None:
    """A record's part and predicted correctness f (see the module's docstring); None for a
    record the task cannot read (no class), which is never queued."""
    raise NotImplementedError


def inclusion(design: Design, f: float, *, in_band: bool, outlier: bool) -> tuple[float, Reason]:
    """A record's inclusion probability pi and the reason it would be queued."""
    raise NotImplementedError


class Mark(msgspec.Struct, frozen=True, gc=False):
    """What is stored with a queued record: its inclusion probability, predicted correctness,
    part and reason; a review label's residual is computed from it (`contribution`)."""

    pi: float
    f: float
    part: str
    reason: Reason


class Known(Protocol):
    """A registered monitor as selection needs it (the store's `Registered` is one)."""

    @property
    def id(self) -> int: ...

    @property
    def monitor(self) -> Monitor: ...

    @property
    def references(self) -> Mapping[str, Reference]: ...


class Selected:
    """The selection of one ingest batch (`select`): per record its `Mark` when queued."""

    __slots__ = ("_deltas", "marks")

    def __init__(
        self, marks: list[Mark | None], deltas: list[tuple[GroupKey, dict[str, float]] | None]
    ) -> None:
        self.marks = marks
        """Per record of the batch: its mark when queued, else None."""
        self._deltas = deltas

    def deltas(self, stored: Sequence[int] | None = None) -> dict[GroupKey, dict[str, float]]:
        """The ingest counters of the records at positions `stored` (None: all)."""
        raise NotImplementedError

    def queued(self, stored: Sequence[int] | None = None) -> list[tuple[int, Mark]]:
        """(position, mark) of the records at `stored` that are queued."""
        raise NotImplementedError


def select(
    records: Sequence[PredictionRecord],
    known: Mapping[str, Known],
    designs: Mapping[int, Design],
    outliers: Sequence[float | None],
) -> Selected:
    """Select the model records of monitors with `spec.review` (`designs` by monitor id; a
    monitor without one uses `initial`); `outliers` are the records' outlier scores
    (`core.sketch`, > 0: an outlier). Other records get no mark and no counters."""
    raise NotImplementedError


def contribution(
    mark: Mark, task: Task, prediction: Scalar, right: bool | None, value: Scalar | None
) -> dict[str, float]:
    """The counters a review label adds to its record's bucket: `right` (classifiers) or the
    labeled `value` (regression, with `prediction`) against the mark's f and pi."""
    raise NotImplementedError


class Reviewed(msgspec.Struct, frozen=True):
    """A metric estimated from the reviewed labels, with its interval and the reviewed `n`."""

    value: float | None
    lower: float | None = None
    upper: float | None = None
    n: int = 0


def estimate(
    task: Task, counters: Mapping[str, float], confidence: float = 0.95
) -> dict[str, Reviewed]:
    """Each metric `REVIEWED_NAMES[task]` of a window's summed counters; `{}` when the window
    holds no review counter, a metric with `value` None when nothing was reviewed."""
    raise NotImplementedError


def aipw(
    values: Floats, f: Floats, pi: Floats, reviewed: npt.NDArray[np.bool_], confidence: float = 0.95
) -> Reviewed:
    """The model-assisted mean of `values` over all records, from the `reviewed` ones: the same
    estimator as `estimate` on raw arrays (tests hold the two equal, and compare it with
    `horvitz_thompson`)."""
    raise NotImplementedError


def horvitz_thompson(
    values: Floats, pi: Floats, reviewed: npt.NDArray[np.bool_], confidence: float = 0.95
) -> Reviewed:
    """The plain inverse-probability mean (f = 0), for comparison."""
    raise NotImplementedError


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
    """Answer a planning question from the traffic and the current accuracy estimate."""
    raise NotImplementedError
