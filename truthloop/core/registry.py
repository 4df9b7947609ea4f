"""Registering a monitor: what a PUT makes of the monitor stored under its key (pure).

The store calls `register` inside the transaction that writes the monitor, with the row it holds
now, so every replica sharing the database gets the same answer whatever its memory says:

- a live monitor keeps its task: a PUT with another one is a `TaskChange` (its data would be
  read as the wrong kind of metrics);
- a monitor deleted within the grace period is revived by a PUT with its task, and replaced by a
  new one (its old data left to the purge) by a PUT with another;
- a PUT without `metadata.generation` gets the stored generation, plus one when the spec changed.

`Known` and `Referenced` are a registered monitor as the other pure steps read it, written once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from truthloop.core.profile import Reference
from truthloop.core.spec import Monitor
from truthloop.core.tasks import Task


class Known(Protocol):
    """A registered monitor as the pure ingest and label steps need it (plan, segment
    assignment; the store's `Registered` is one)."""

    @property
    def id(self) -> int: ...

    @property
    def monitor(self) -> Monitor: ...


class Referenced(Known, Protocol):
    """A registered monitor with its reference profiles by model version, as sketching and
    review selection need it (the store's `Registered` is one)."""

    @property
    def references(self) -> Mapping[str, Reference]: ...


class Stored(Protocol):
    """A monitor as stored (the store's `Registered` is one)."""

    @property
    def monitor(self) -> Monitor: ...

    @property
    def body(self) -> Mapping[str, Any]: ...

    @property
    def deleted(self) -> float | None: ...


class TaskChange(ValueError):
    """A live monitor cannot change its task."""

    def __init__(self, old: Task, new: Task) -> None:
        super().__init__(f"the monitor has {old} data; delete it before changing its task to {new}")
        self.old = old
        self.new = new


@dataclass(frozen=True, slots=True)
class Registration:
    """What to store: the monitor and its body (with the generation filled in)."""

    monitor: Monitor
    body: Mapping[str, Any]
    keeps: bool
    """Whether it takes over the stored monitor's row and data (else: a new one)."""
    created: bool
    """Whether no live monitor had the key (a revived one counts as created)."""


def register(previous: Stored | None, monitor: Monitor, body: Mapping[str, Any]) -> Registration:
    """The registration of `monitor` (as PUT in `body`) over `previous`; raises TaskChange."""
    live = previous is not None and previous.deleted is None
    if previous is not None and live and previous.monitor.spec.task != monitor.spec.task:
        raise TaskChange(previous.monitor.spec.task, monitor.spec.task)
    keeps = previous is not None and (live or previous.monitor.spec.task == monitor.spec.task)
    metadata = body.get("metadata") or {}
    if "generation" not in metadata:
        generation = 1
        if previous is not None and keeps:
            same = previous.body.get("spec") == body.get("spec")
            generation = previous.monitor.generation + (0 if same else 1)
        monitor = dataclasses.replace(monitor, generation=generation)
        body = {**body, "metadata": {**metadata, "generation": generation}}
    return Registration(monitor, body, keeps, created=not live)
