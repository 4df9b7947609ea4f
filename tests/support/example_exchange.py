"""The exchange an example monitor's header comment shows: a request, the server's response and
the records the monitor makes of them, so a test can extract the one and compare the other.

The comment's paragraphs (separated by a bare `#`) are read in order: one opening with
`POST <path>` (then `Name: value` header lines, then the body: JSON, or `<...>` for bytes that are
not JSON), one opening with the status (`200 OK`, then the response body) and one opening with
`Records`, then one JSON object per record (a line starting with `{` opens the next one).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_HEADER = re.compile(r"([A-Za-z][A-Za-z0-9-]*): (.+)")


@dataclass(frozen=True)
class Exchange:
    method_path: str
    headers: tuple[tuple[str, str], ...]
    request: bytes
    response: bytes
    records: list[dict[str, Any]]


def comment(text: str) -> list[str]:
    """The leading comment block's lines, without their `# `."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return lines


def paragraphs(lines: list[str]) -> list[list[str]]:
    found: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            found[-1].append(line)
        elif found[-1]:
            found.append([])
    return [p for p in found if p]


def exchange(text: str) -> Exchange | None:
    """The exchange in an example's header comment; None when it shows none."""
    parts = paragraphs(comment(text))
    requests = [p for p in parts if p[0].startswith("POST ")]
    if not requests:
        return None
    (request,) = requests
    after = parts[parts.index(request) + 1 :]
    response, records = after[0], after[1]
    assert re.fullmatch(r"\d{3} .+", response[0]), response[0]
    assert records[0].startswith("Records"), records[0]
    headers = []
    rest = request[1:]
    while rest and (match := _HEADER.fullmatch(rest[0])):
        headers.append((match[1], match[2]))
        rest = rest[1:]
    return Exchange(
        request[0],
        tuple(headers),
        _body(rest),
        _body(response[1:]),
        [json.loads(record) for record in _objects(records[1:])],
    )


def _body(lines: list[str]) -> bytes:
    text = "\n".join(lines).strip()
    if text.startswith("<") and text.endswith(">"):
        return text.encode()  # stands for bytes that are not JSON (an image)
    json.loads(text)  # a typo in the comment fails here, naming it
    return text.encode()


def _objects(lines: list[str]) -> list[str]:
    found: list[str] = []
    for line in lines:
        if line.startswith("{"):
            found.append(line)
        else:
            found[-1] += "\n" + line
    return found
