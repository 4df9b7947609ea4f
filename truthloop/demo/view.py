"""Showing the demo: a live table (rich) on a terminal, lines otherwise.

Both views take the same calls: `lines` for text printed once (the header, the summary), `event`
for something that happened (a phase change, the world shifting), and `status` a few times a
second with what `kubectl get mm -w` would show. The live view redraws its table in place and
prints events above it; the plain view prints events at once and a row every `ROW_EVERY` wall
seconds, so a log or a test reads the same story.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from truthloop.demo.summary import clock
from truthloop.demo.watch import DriftReading, Reading

BLOCKS = "▁▂▃▄▅▆▇█"
ROW_EVERY = 2.0
"""Wall seconds between two rows of the plain view."""
TREND_POINTS = 48
LEGEND_WIDTH = 96
COLUMNS = (
    "PHASE",
    "MODEL ACC [LOW–UP]",
    "ESTIMATE",
    "REVIEWED [LOW–UP]",
    "REVIEWS",
    "FALLBACK",
    "LABELED",
    "BY-FALLBACK",
    "ABSTAINED",
    "DRIFTED",
    "OUTLIERS",
    "WORLD",
)
_WIDTHS = (14, 18, 8, 17, 7, 8, 7, 11, 9, 7, 8, 7)
PHASE_STYLE = {
    "Collecting": "cyan",
    "Healthy": "green",
    "Degraded": "yellow",
    "FallbackActive": "bold red",
}


def sparkline(values: Sequence[float | None], low: float = 0.5, high: float = 1.0) -> str:
    """One block character per value, `low` and below the lowest, `high` and above the highest;
    a space for a missing value."""
    span = high - low
    out = []
    for value in values:
        if value is None:
            out.append(" ")
            continue
        level = (min(max(value, low), high) - low) / span
        out.append(BLOCKS[min(int(level * len(BLOCKS)), len(BLOCKS) - 1)])
    return "".join(out)


def trend(history: Sequence[Reading], points: int = TREND_POINTS) -> str:
    """The model's window accuracy over the run, `points` characters at most (evenly spaced)."""
    if not history:
        return ""
    step = max(1, -(-len(history) // points))
    return sparkline([None if r.accuracy is None else r.accuracy.value for r in history[::step]])


@dataclass(frozen=True, slots=True)
class Status:
    """One refresh: what the table shows, `at` service seconds after the start."""

    at: float
    phase: str | None
    reading: Reading | None
    by_fallback: int
    drifted: bool
    """The story's truth: whether the world is drifted now."""
    trend: str
    drift: DriftReading | None = None
    """What the service measured: the last drift reading of the window."""
    abstained: int = 0
    """Answers "I don't know" since the start."""

    def cells(self) -> tuple[str, ...]:
        model = estimated = reviewed = fallback = "-"
        labeled = reviews = "0"
        reading = self.reading
        if reading is not None:
            labeled, reviews = str(reading.labeled), str(reading.reviews)
            if reading.accuracy is not None:
                model = reading.accuracy.text()
            if reading.estimated is not None:
                estimated = f"≈{reading.estimated.value:.2f}"
            if reading.reviewed is not None:
                reviewed = reading.reviewed.text()
            if reading.fallback is not None:
                fallback = f"{reading.fallback.value:.2f}"
        drifted = outliers = "-"
        if self.drift is not None:
            drifted = f"{len(self.drift.drifted)}/{self.drift.tested}"
            if self.drift.outlier_ratio is not None:
                outliers = f"{self.drift.outlier_ratio:.1%}"
        return (
            self.phase or "-",
            model,
            estimated,
            reviewed,
            reviews,
            fallback,
            labeled,
            str(self.by_fallback),
            str(self.abstained),
            drifted,
            outliers,
            "drifted" if self.drifted else "usual",
        )


def legend(window: str) -> list[str]:
    """What the columns count, for the header: all but BY-FALLBACK, ABSTAINED and WORLD are the
    `window`'s."""
    text = (
        f"MODEL ACC: the model's accuracy over the last {window} (the metrics window), its unseen"
        " shadow answers included while the fallback serves; ESTIMATE: that accuracy estimated"
        f" from the model's scores of all the {window}'s predictions, labeled or not (≈: an"
        " estimate, no label needed); REVIEWED: that accuracy estimated from the reviewer's"
        " labels of the items queued for review, each weighed by its known chance of being"
        f" queued, with REVIEWS, the reviewed predictions in those {window}; FALLBACK: the"
        f" accuracy of the fallback's answers over the same {window} (- when it gave none);"
        f" LABELED: the model's labeled predictions in those {window}; BY-FALLBACK: the"
        " fallback's answers since the start; ABSTAINED: the answers \"I don't know\" since the"
        f" start; DRIFTED: features whose values in those {window} left the reference's"
        " distribution, of those seen (no label needed); OUTLIERS: the share of those records"
        " with a value outside the reference; WORLD: the story's truth, usual or drifted"
    )
    lines = textwrap.wrap(text, width=LEGEND_WIDTH)
    return ["  columns   " + lines[0], *("            " + line for line in lines[1:])]


def row(cells: Sequence[str]) -> str:
    """Cells in fixed-width columns, as `kubectl get` lays them out."""
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, _WIDTHS, strict=True)).rstrip()


class View(Protocol):
    def lines(self, lines: Sequence[str]) -> None: ...
    def event(self, at: float, text: str) -> None: ...
    def status(self, status: Status) -> None: ...
    def close(self) -> None:
        """Stop any live display (idempotent); `lines` still prints after it."""
        ...


class PlainView:
    """Line output: events as they happen, a status row every `ROW_EVERY` wall seconds."""

    def __init__(self, out: TextIO, wall: Callable[[], float]) -> None:
        self._out = out
        self._wall = wall
        self._last_row: float | None = None
        self._headed = False

    def _print(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def lines(self, lines: Sequence[str]) -> None:
        for line in lines:
            self._print(line)

    def _head(self) -> None:
        if not self._headed:
            self._headed = True
            self._print("TIME   " + row(COLUMNS))

    def event(self, at: float, text: str) -> None:
        self._head()
        self._print(f"{clock(at)}  event  {text}")

    def status(self, status: Status) -> None:
        now = self._wall()
        if self._last_row is not None and now - self._last_row < ROW_EVERY:
            return
        self._last_row = now
        self._head()
        self._print(f"{clock(status.at)}  " + row(status.cells()))

    def close(self) -> None:
        """Nothing is held open."""


class LiveView:
    """A table redrawn in place (rich), events printed above it."""

    def __init__(self, console: Console, title: str) -> None:
        self._console = console
        self._title = title
        self._live = Live(Text(""), console=console, refresh_per_second=4, transient=False)
        self._live.start()

    def lines(self, lines: Sequence[str]) -> None:
        for line in lines:
            self._live.console.print(line, highlight=False, markup=False)

    def event(self, at: float, text: str) -> None:
        self._live.console.print(
            Text.assemble((clock(at), "dim"), "  ", (text, "bold")), highlight=False
        )

    def status(self, status: Status) -> None:
        table = Table(box=None, padding=(0, 2, 0, 0), header_style="bold")
        for column in COLUMNS:
            table.add_column(column, no_wrap=True)
        cells = list(status.cells())
        phase = Text(cells[0], style=PHASE_STYLE.get(cells[0], ""))
        table.add_row(phase, *cells[1:])
        heading = Text.assemble((self._title, "bold"), ("  service time ", "dim"), clock(status.at))
        spark = Text.assemble(("accuracy  ", "dim"), (status.trend, "magenta"))
        self._live.update(Group(heading, table, spark))

    def close(self) -> None:
        """Stop redrawing; the last table stays on screen and later lines print below it."""
        self._live.stop()
