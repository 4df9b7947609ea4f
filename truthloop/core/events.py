"""What `truthloop run` tells its user while it serves: a line for each thing that happens.

The shell samples what the parts show (the monitor's state, the sidecar's counters, whether the
model accepts connections) into an `Observed`, and `lines(before, after, now, throttle)` says in
words what changed between two samples. A change of state (the phase, the fallback engaged or
released, the inputs drifting from the reference or back, the model unreachable or back) is told
each time; a counter that grows (model errors,
capture errors, records the service refused) once per reason per `throttle.interval`, with the
count so far, so a failure repeated thousands of times a minute stays one line a minute.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from truthloop.core.throttle import Throttle
from truthloop.core.wire import DriftSummary

COUNTED = {
    "model_errors": "model error",
    "capture_errors": "capture error",
    "records_rejected": "record refused by the feedback service",
}
"""The sidecar's counters told as they grow (their `truthloop_sidecar_*_total` names) → what
one of them is, in words."""


@dataclass(frozen=True, slots=True)
class Observed:
    """One sample of what the parts show; None where it is not known (yet)."""

    phase: str | None = None
    fallback: bool | None = None
    fallback_reason: str | None = None
    model_up: bool | None = None
    drift: DriftSummary | None = None
    """The state's drift summary."""
    counts: Mapping[tuple[str, str], float] = field(default_factory=dict)
    """(a COUNTED counter, its reason) → its value."""


def lines(before: Observed, after: Observed, now: float, throttle: Throttle) -> list[str]:
    """What to print for the step from `before` to `after`, seen at `now` (seconds)."""
    said = []
    if after.phase is not None and after.phase != before.phase:
        said.append(f"phase {after.phase}" + (f" (was {before.phase})" if before.phase else ""))
    if after.fallback and not before.fallback:
        reason = f" ({after.fallback_reason})" if after.fallback_reason else ""
        said.append(f"fallback engaged{reason}: the rules answer (X-Served-By: fallback)")
    elif before.fallback and after.fallback is False:
        said.append("fallback released: the model answers again")
    said.extend(_drift(before.drift, after.drift))
    if after.model_up is False and before.model_up is not False:
        said.append("the model does not accept connections: requests through the sidecar get 502")
    elif after.model_up and before.model_up is False:
        said.append("the model accepts connections again")
    for (counter, reason), value in sorted(after.counts.items()):
        if (
            value > before.counts.get((counter, reason), 0)
            and throttle.allow(f"{counter}:{reason}", now) is not None
        ):
            said.append(f"{COUNTED[counter]} {reason}: {value:.0f} so far")
    return said


def _drift(before: DriftSummary | None, after: DriftSummary | None) -> list[str]:
    """Dataset drift as it starts (or its drifted features change) and as it ends."""
    if after is None or after.status != "ok":
        return []
    was = before is not None and before.status == "ok" and before.drifted
    if after.drifted and (not was or before is None or before.features != after.features):
        share = f"{after.share:.2g}" if after.share is not None else "?"
        named = ", ".join(after.features)
        return [
            f"inputs drifted from the reference: {named} ({len(after.features)} of "
            f"{after.profiled} features, share {share}; GET .../drift tells how)"
        ]
    if was and not after.drifted:
        return ["inputs back in line with the reference"]
    return []
