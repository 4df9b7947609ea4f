"""Recorded exchanges (recorded/*.json): a request as a client of a model server sends it and the
answer a real server gave, each with the capture spec that reads it and the rows that capture must
find, so the protocols are checked in the main tier even where the servers cannot be installed.

An exchange's fields: `server` (who answered: a server tests/servers starts, or `docs` for one
copied from a server's documentation, `source` saying where), `protocol` (spec.capture.protocol),
`capture` (the rest of spec.capture), `method`, `path`, `headers`, `request`, `response`, and
`rows`: per row its `entity_id`, `prediction`, `score` and `features` as captured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

RECORDED = Path(__file__).parent / "recorded"


def load(name: str) -> dict[str, Any]:
    exchange: dict[str, Any] = json.loads((RECORDED / f"{name}.json").read_text())
    return exchange


def names(server: str | None = None) -> list[str]:
    """The recorded exchanges' names, those answered by `server` only when given."""
    found = sorted(path.stem for path in RECORDED.glob("*.json"))
    return [name for name in found if server is None or load(name)["server"] == server]


def capture(exchange: dict[str, Any]) -> dict[str, Any]:
    """The exchange's spec.capture object."""
    return {"protocol": exchange["protocol"], **exchange["capture"]}


async def replay(url: str, exchange: dict[str, Any]) -> tuple[int, Any]:
    """(status, JSON body) of the exchange's request sent to the server at `url`."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            exchange["method"],
            url + exchange["path"],
            json=exchange["request"],
            headers=exchange["headers"],
        ) as response,
    ):
        return response.status, await response.json(content_type=None)


def rounded(value: Any, digits: int = 9) -> Any:
    """`value` with every float rounded: answers compared across runs, not last bits."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, list):
        return [rounded(item, digits) for item in value]
    if isinstance(value, dict):
        return {key: rounded(item, digits) for key, item in value.items()}
    return value
