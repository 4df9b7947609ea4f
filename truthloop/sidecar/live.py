"""What the sidecar currently knows about its monitor: the spec, its compiled rules, the fallback.

`Current` is a value; `Live` holds the one reference to it that the follower swaps and the request
path reads (one event loop, so a swap is atomic). A spec is loaded by `load`, which refuses a
ModelMonitor that does not parse or whose rules do not compile, so a bad spec never replaces a
good one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from truthloop.core import rules
from truthloop.core.spec import Monitor, SpecError, parse_monitor


@dataclass(frozen=True, slots=True)
class Current:
    monitor: Monitor | None = None
    """The spec in force; None until one is known (nothing is captured then)."""
    rules: rules.RuleSet | None = None
    """The fallback rules compiled."""
    fallback_active: bool = False
    """True while the monitor's fallback is engaged: requests are answered by the rules."""
    abstaining: bool = field(init=False, default=False)
    """The spec has `review.abstain` and the fallback is not engaged: the model's responses are
    held for the abstain decision (derived; read per request, hence kept)."""

    def __post_init__(self) -> None:
        review = None if self.monitor is None else self.monitor.spec.review
        abstain = review is not None and review.abstain is not None
        object.__setattr__(self, "abstaining", abstain and not self.fallback_active)


@dataclass(frozen=True, slots=True)
class Loaded:
    monitor: Monitor
    rules: rules.RuleSet


class LoadError(ValueError):
    """A ModelMonitor that cannot be used; `reason` is the metric label, the message the detail."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def load(body: Any) -> Loaded:
    """Parse a ModelMonitor object and compile its fallback rules, or raise LoadError."""
    if isinstance(body, dict) and isinstance(body.get("monitor"), dict):
        body = body["monitor"]
    try:
        monitor = parse_monitor(body, bounded=False)
    except SpecError as e:
        raise LoadError("invalid_spec", str(e)) from e
    return Loaded(monitor, _compiled(monitor.spec.fallback.rules))


def _compiled(written: tuple[rules.FallbackRule, ...]) -> rules.RuleSet:
    """The rules compiled; CEL (cel-python, lark) is imported with the first spec that has
    rules, so a sidecar whose monitor has none never loads it."""
    if not written:
        return rules.NO_RULES
    from truthloop.core import celrules

    try:
        return celrules.compile_rules(written)
    except rules.RuleCompileError as e:
        raise LoadError("invalid_rules", f"spec.fallback.{e}") from e


def initial(body: Any) -> Current:
    """The state from a spec snapshot: engaged by its mode, or by the status it was taken with."""
    loaded = load(body)
    mode = loaded.monitor.spec.fallback.mode
    status = body.get("status") if isinstance(body, dict) else None
    fallback = status.get("fallback") if isinstance(status, dict) else None
    reported = isinstance(fallback, dict) and fallback.get("active") is True
    active = mode == "engaged" or (mode == "auto" and reported)
    return Current(loaded.monitor, loaded.rules, active)


class Live:
    """The current state, swapped whole."""

    __slots__ = ("current",)

    def __init__(self, current: Current) -> None:
        self.current = current

    def use(self, loaded: Loaded) -> None:
        self.current = replace(self.current, monitor=loaded.monitor, rules=loaded.rules)

    def set_active(self, active: bool) -> None:
        if active != self.current.fallback_active:
            self.current = replace(self.current, fallback_active=active)
