"""BENCHMARKS.md is shared: each benchmark owns one section between its own markers."""

from __future__ import annotations

from pathlib import Path

HEADER = """# Benchmarks

Measured side by side in one run on the machine named in each section; the scripts are in
`bench/` and rewrite their own section. They are not tests: numbers move with the machine.
"""


def write(path: Path, name: str, text: str) -> None:
    """Put `text` between `<!-- bench:NAME -->` markers in `path`, replacing what was there."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{text.rstrip()}\n{end}\n"
    current = path.read_text() if path.exists() else HEADER
    if start in current and end in current:
        head, rest = current.split(start, 1)
        current = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        current = current.rstrip("\n") + "\n\n" + block
    path.write_text(current)
