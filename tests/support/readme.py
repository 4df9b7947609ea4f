"""README's sample of `truthloop demo`'s output, and the shape a printed line must have to be the
same line with other numbers (a run's numbers vary with timing; its words and columns do not)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_SAMPLE = re.compile(r"What `truthloop demo` shows[^`]*```text\n(.*?)\n```", re.S)


def demo_sample() -> list[str]:
    """The lines of README's sample block of the demo's output."""
    found = _SAMPLE.search(README.read_text())
    assert found is not None, "README has no sample of the demo's output"
    return found[1].splitlines()


_CHANGE = r"\d+:\d+ [A-Za-z]+"
_CHAIN = re.compile(rf"{_CHANGE}(?: → {_CHANGE})+")


def shape(line: str) -> re.Pattern[str]:
    """`line` with every number any number and every run of spaces any run of spaces (a longer
    number pads its column less), the reviewed estimate's `which holds` as `which misses` too, and
    a chain of phase changes (`00:00 Collecting → 00:56
    Healthy → ...`) as long as the run made it: a metric at its threshold may flap once more."""
    chain = _CHAIN.search(line)
    if chain is not None:
        head, tail = line[: chain.start()], line[chain.end() :]
        return re.compile(f"{shape(head).pattern}{_CHANGE}(?: → {_CHANGE})+{shape(tail).pattern}")
    parts = re.split(r"(\d+| +)", line)
    pattern = "".join(
        r"\d+" if part.isdigit() else " +" if part.isspace() else re.escape(part)
        for part in parts
        if part
    )
    # the reviewed estimate's 95% interval misses the labeled accuracy 1 run in 20 by design
    return re.compile(pattern.replace("which +holds", "which +(?:holds|misses)"))
