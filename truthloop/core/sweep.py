"""A backtest's sweeps: `alerts[accuracy-low].below=0.70:0.90:0.01`, `alerts[x].for=0s,5m,30m`,
`fallback.recoverAfter=5m,10m` parsed, checked against the spec, and their grid of candidates.

A sweep sets one field: an alert's `below` or `above` (the one the alert has: a sweep does not
turn a lower bound into an upper one), its `for`, or the fallback's `recoverAfter`. Its values
are a list (`a,b,c`) or a range (`first:last:step`, both ends included when the steps reach the
last, `0.70:0.90:0.01` is 21 values); durations are written as in the spec (`5m`), ranges of
them too (`0s:30m:5m`). The grid is the product of the sweeps, the last varying fastest, at most
`MAX_CANDIDATES`. Every problem is a `FieldError` whose path names the sweep (`sweep[1]`) and
whose message names the part that is wrong.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from truthloop.core.spec import (
    MAX_HOLD,
    FieldError,
    MonitorSpec,
    SpecError,
    parse_duration,
)

MAX_CANDIDATES = 1_000
"""The most candidates a sweep's grid may hold (each is a replay)."""

MAX_VALUES = 1_000
"""The most values one sweep may try."""

Field = Literal["below", "above", "for", "recoverAfter"]

_PATH = re.compile(r"alerts\[(?P<alert>[^\]]+)\]\.(?P<field>[A-Za-z]+)|fallback\.(?P<fb>[A-Za-z]+)")


@dataclass(frozen=True, slots=True)
class Sweep:
    """One sweep: the field it sets (`path` as written, `alerts[accuracy-low].below`) and the
    values it tries, in order (durations in seconds)."""

    path: str
    alert: str | None
    field: Field
    values: tuple[float, ...]


def parse(texts: Sequence[str], spec: MonitorSpec, where: str = "sweep") -> tuple[Sweep, ...]:
    """Every sweep of `texts` checked against `spec`; raises SpecError with every problem (each
    at `where[i]`: `sweep[1]`, a request's `sweeps[1]`), or when the grid would exceed
    `MAX_CANDIDATES`."""
    sweeps, errors = [], []
    for i, text in enumerate(texts):
        try:
            sweeps.append(_parse_one(text, spec))
        except ValueError as e:
            errors.append(FieldError(f"{where}[{i}]", str(e)))
    seen: dict[str, int] = {}
    for i, found in enumerate(sweeps):
        if seen.setdefault(found.path, i) != i:
            errors.append(FieldError(f"{where}[{i}]", f"{found.path} is swept twice"))
    if errors:
        raise SpecError(errors)
    count = math.prod(len(s.values) for s in sweeps)
    if count > MAX_CANDIDATES:
        raise SpecError(
            [
                FieldError(
                    "sweep", f"{count} candidates, at most {MAX_CANDIDATES}: sweep fewer values"
                )
            ]
        )
    return tuple(sweeps)


def grid(sweeps: Sequence[Sweep]) -> list[dict[str, float]]:
    """Every candidate: each sweep's path → its value, the last sweep varying fastest (no
    sweeps: the one candidate that changes nothing)."""
    return [
        {s.path: v for s, v in zip(sweeps, values, strict=True)}
        for values in itertools.product(*(s.values for s in sweeps))
    ]


def apply(spec: MonitorSpec, sweeps: Sequence[Sweep], values: Mapping[str, float]) -> MonitorSpec:
    """`spec` with a candidate's values set."""
    alerts = list(spec.alerts)
    fallback = spec.fallback
    for found in sweeps:
        value = values[found.path]
        if found.alert is None:
            fallback = replace(fallback, recover_after=value)
            continue
        i = next(j for j, a in enumerate(alerts) if a.name == found.alert)
        if found.field == "for":
            alerts[i] = replace(alerts[i], for_=value)
        elif found.field == "below":
            alerts[i] = replace(alerts[i], below=value)
        else:
            alerts[i] = replace(alerts[i], above=value)
    return replace(spec, alerts=tuple(alerts), fallback=fallback)


def _parse_one(text: str, spec: MonitorSpec) -> Sweep:
    path, sep, written = text.partition("=")
    path = path.strip()
    if not sep:
        raise ValueError(f"expected PATH=VALUES (alerts[NAME].below=0.7:0.9:0.01), got {text!r}")
    matched = _PATH.fullmatch(path)
    if matched is None:
        raise ValueError(
            f"{path!r}: expected alerts[NAME].below, .above or .for, or fallback.recoverAfter"
        )
    alert = matched["alert"]
    field = matched["field"] or matched["fb"]
    if alert is None:
        if field != "recoverAfter":
            raise ValueError(f"{path}: the fallback's swept field is recoverAfter, not {field}")
    else:
        named = {a.name: a for a in spec.alerts}
        if alert not in named:
            known = ", ".join(named) or "none"
            raise ValueError(f"alerts[{alert}]: no alert of that name (the spec's: {known})")
        if field not in ("below", "above", "for"):
            raise ValueError(f"{path}: a swept alert field is below, above or for, not {field}")
        if field in ("below", "above") and getattr(named[alert], field) is None:
            other = "above" if field == "below" else "below"
            raise ValueError(f"{path}: alert {alert} has {other}, not {field}")
    durations = field in ("for", "recoverAfter")
    values = _values(written.strip(), durations, path)
    return Sweep(path, alert, field, values)  # type: ignore[arg-type]


def _values(text: str, durations: bool, path: str) -> tuple[float, ...]:
    """A list `a,b,c` or a range `first:last:step` of numbers (or durations)."""

    def one(part: str) -> float:
        part = part.strip()
        if durations:
            try:
                seconds = parse_duration(part)
            except ValueError as e:
                raise ValueError(f"{path}={text}: {e}") from None
            if seconds > MAX_HOLD:
                raise ValueError(f"{path}={text}: {part} is longer than 7d")
            return seconds
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"{path}={text}: {part!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{path}={text}: {part!r} is not a finite number")
        return value

    if not text:
        raise ValueError(f"{path}=: no values")
    parts = text.split(":")
    if len(parts) == 1:
        found = tuple(one(p) for p in text.split(","))
    elif len(parts) == 3:
        first, last, step = (one(p) for p in parts)
        if step <= 0:
            raise ValueError(f"{path}={text}: the step {parts[2]} is not positive")
        if last < first:
            raise ValueError(f"{path}={text}: the range ends ({parts[1]}) before it starts")
        count = math.floor((last - first) / step + 1e-9) + 1
        if count > MAX_VALUES:
            raise ValueError(f"{path}={text}: {count} values, at most {MAX_VALUES}")
        found = tuple(round(first + k * step, 12) for k in range(count))
    else:
        raise ValueError(f"{path}={text}: expected a list (a,b,c) or a range (first:last:step)")
    if len(found) > MAX_VALUES:
        raise ValueError(f"{path}={text}: {len(found)} values, at most {MAX_VALUES}")
    return found
