"""README's sample of `truthloop demo`'s output, and the shape a printed line must have to be the
same line with other numbers (a run's numbers vary with timing; its words and columns do not)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_SAMPLES = (
    re.compile(r"What `truthloop demo` shows[^`]*```text\n(.*?)\n```", re.S),
    re.compile(r"backtest's lines of another run:\n\n```text\n(.*?)\n```", re.S),
)
"""README's samples of the demo's output: the run, and the backtest it ends with."""


def demo_sample() -> list[str]:
    """The lines of README's sample blocks of the demo's output."""
    text = README.read_text()
    lines = []
    for sample in _SAMPLES:
        found = sample.search(text)
        assert found is not None, f"README has no sample of the demo's output ({sample.pattern})"
        lines += found[1].splitlines()
    return lines


_CHANGE = r"\d+:\d+ [A-Za-z]+"
_CHAIN = re.compile(rf"{_CHANGE}(?: → {_CHANGE})+")
_SIGNED = re.compile(r"[+-]?\d+")
_NUMBER = r"[+-]?\d+"
_VERDICT = "(?:better|worse|can't tell yet)"
_VERDICT_AT_END = re.compile(f", {_VERDICT}$")


_NOUN = re.compile(r"[a-z]{3,}")


def _counted(text: str) -> str:
    """`text` (what follows a number and its spaces) with its first word, when a lowercase word
    of three letters or more (a noun the number may count), in the singular or the plural by
    `s`: `records` and `record` both as `records?`."""
    word = _NOUN.match(text)
    if word is None:
        return re.escape(text)
    noun = word[0][:-1] if word[0].endswith("s") and not word[0].endswith("ss") else word[0]
    return f"{re.escape(noun)}s?{re.escape(text[word.end() :])}"


def shape(line: str) -> re.Pattern[str]:
    """`line` with every number any number (of either sign) and every run of spaces any run
    of spaces (a longer number pads its column less), the noun a number counts in the singular
    or the plural (`(9 records)` as `(1 record)` too), the reviewed estimate's `which holds` as
    `which misses` too, a chain of phase changes (`00:00 Collecting → 00:56 Healthy → ...`) as
    long as the run made it (a metric at its threshold may flap once more), and a comparison's
    closing verdict (`, better`) as any verdict: the backtest's rules against the model may tell
    either way, or not."""
    verdict = _VERDICT_AT_END.search(line)
    if verdict is not None:
        return re.compile(f"{shape(line[: verdict.start()]).pattern}, {_VERDICT}")
    chain = _CHAIN.search(line)
    if chain is not None:
        head, tail = line[: chain.start()], line[chain.end() :]
        return re.compile(f"{shape(head).pattern}{_CHANGE}(?: → {_CHANGE})+{shape(tail).pattern}")
    parts = [part for part in re.split(r"([+-]?\d+| +)", line) if part]
    pattern = "".join(
        _NUMBER
        if _SIGNED.fullmatch(part)
        else " +"
        if part.isspace()
        else _counted(part)
        if i >= 2 and parts[i - 1].isspace() and _SIGNED.fullmatch(parts[i - 2])
        else re.escape(part)
        for i, part in enumerate(parts)
    )
    # the reviewed estimate's 95% interval misses the labeled accuracy 1 run in 20 by design
    return re.compile(pattern.replace("which +holds", "which +(?:holds|misses)"))
