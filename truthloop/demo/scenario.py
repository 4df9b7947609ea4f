"""The demo's story as data: how fast time runs, how much traffic, and when the world drifts.

Times are wall-clock seconds since the traffic started, except where a field says service time
(`label_delay`, `origin`, the offsets). The world drifts at about `drift_from` of the duration and
shifts back at about `drift_until`, each moved to a chosen second of a service-time minute: the
metrics window is a sum of 1-minute buckets, so it moves by whole minutes, and a shift placed just
after a bucket starts (the drift) or just before one ends (the way back) is carried across the
alert's threshold by one of those moves, rather than crawling across it with every label and
flapping there. With the demo monitor (window 2m, `for` 20s, `recoverAfter` 30s) at 20× and
labels 45s late, the estimate falls about two seconds after the drift, the fallback engages about
three seconds later, and the model is back about five seconds after the world is. The labels come
as late as that so that the estimate is seen falling before the drifted world's labels count (a
window still holds enough labels after moving a minute: 15s of them).

The drift comes in two steps. First newcomers arrive on whom the model is unsure
(`churn_model.sample_newcomer`) while churn still follows the usual world: a covariate shift, so
the model's calibrated scores foretell its accuracy and the service's estimate (CBPE) falls with
it before the labels come. At about `turn_from` a competitor undercuts expensive plans: churn
follows the price, the customers change again (`churn_model.sample_customer(drifted=True)`), and
the model, confidently wrong, fools the estimate (a concept shift, which no estimate from scores
sees); only the labels tell. Both steps move the inputs, measured as the predictions are captured,
while the truth waits for the labels: drift shows before accuracy falls.

Earlier, at about `burst_from` of the duration, a billing meter breaks for `burst_size`
customers: their `monthly_charges` arrive as `BROKEN_CHARGES`, below anything the reference holds.
Those are outliers, a few odd records, not a shift of the population: the outlier share rises,
drift does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MIN_DURATION = 30.0
MAX_DURATION = 90.0
BUCKET = 60.0
LABEL_DELAY = 45.0
"""Service seconds of one metrics bucket."""


@dataclass(frozen=True, slots=True)
class Shift:
    """The world changing at `at` (wall seconds since the start)."""

    at: float
    drifted: bool
    text: str


World = Literal["usual", "newcomers", "price"]
DRIFT_TEXT = (
    "the world drifts: newcomers the model is unsure of arrive (month-to-month, 1-2 years in,"
    " 1-2 support calls); churn still follows its usual causes"
)
TURN_TEXT = (
    "a competitor undercuts expensive plans: churn now follows the price, and newer, cheaper"
    " customers come"
)
BACK_TEXT = "the world shifts back: churn follows contract, tenure and support calls again"
BROKEN_CHARGES = 0.0
"""What the broken billing meter reports as `monthly_charges` (the usual world's are 20 to 120)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    duration: float = 40.0
    """Wall seconds of traffic."""
    speed: float = 20.0
    """Service seconds per wall second."""
    rate: float = 50.0
    """Requests per wall second."""
    label_delay: float = LABEL_DELAY
    """Service seconds from a prediction to its actual's arrival."""
    drift_from: float = 0.15
    """About this fraction of the duration, the world drifts..."""
    turn_from: float = 0.36
    """...about this fraction, churn turns to follow the price..."""
    drift_until: float = 0.55
    """...and about this fraction, it shifts back."""
    drift_offset: float = 25.0
    """Service seconds into a bucket at which the world drifts."""
    back_offset: float = 55.0
    """Service seconds into a bucket at which it shifts back."""
    origin: float = 0.0
    """Service time (epoch seconds) when the traffic starts: where the buckets' edges fall."""
    burst_from: float = 0.08
    """About this fraction of the duration, the billing meter breaks..."""
    burst_size: int = 12
    """...for this many customers in a row."""

    def check(self) -> None:
        """Raises ValueError naming what cannot be run."""
        if not MIN_DURATION <= self.duration <= MAX_DURATION:
            raise ValueError(
                f"duration: between {MIN_DURATION:g} and {MAX_DURATION:g} seconds"
                f" (the story needs {MIN_DURATION:g})"
            )

    @property
    def shifts(self) -> tuple[Shift, Shift]:
        return (
            Shift(self._aligned(self.drift_from, self.drift_offset), True, DRIFT_TEXT),
            Shift(self._aligned(self.drift_until, self.back_offset), False, BACK_TEXT),
        )

    def _aligned(self, fraction: float, offset: float) -> float:
        """Wall seconds to the first moment `offset` seconds into a bucket, from `fraction` on."""
        at = self.origin + self.duration * fraction * self.speed
        return (at + (offset - at) % BUCKET - self.origin) / self.speed

    @property
    def turn(self) -> Shift:
        """When churn turns to follow the price (the concept shift), within the drift."""
        return Shift(self._aligned(self.turn_from, self.drift_offset), True, TURN_TEXT)

    def world(self, elapsed: float) -> World:
        """The world `elapsed` wall seconds after the start."""
        if not self.drifted(elapsed):
            return "usual"
        return "price" if elapsed >= self.turn.at else "newcomers"

    @property
    def burst(self) -> float:
        """Wall seconds since the start at which the meter breaks."""
        return self.duration * self.burst_from

    @property
    def burst_text(self) -> str:
        return (
            f"a billing meter breaks: the next {self.burst_size} customers arrive with"
            f" monthly_charges {BROKEN_CHARGES} (outliers: odd records, not a shift)"
        )

    def drifted(self, elapsed: float) -> bool:
        """Whether the world is drifted `elapsed` wall seconds after the start."""
        start, end = self.shifts
        return start.at <= elapsed < end.at

    @property
    def requests(self) -> int:
        """Requests sent when the traffic never falls behind: one every 1/rate seconds from the
        start through `duration` (a stalled client skips some)."""
        return int(self.duration * self.rate) + 1

    @property
    def label_wait(self) -> float:
        """Wall seconds from a prediction to its actual."""
        return self.label_delay / self.speed
