"""The feedback service as the client commands (`truthloop reference`, `export`, `review`) reach
it: the flags naming it and the token, the monitor flag, and its answers said in one line.

A command fails with one line on standard error and a status: 1 when the service refused or
could not be reached (`Unreachable`), 2 for a bad flag or file (`flags.UsageError`); never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import aiohttp

from truthloop import flags
from truthloop.flags import UsageError

DEFAULT_URL = "http://127.0.0.1:8081"


class Unreachable(Exception):
    """The service at `url` could not be reached, or the connection broke (`reason`)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(reason)
        self.url = url
        self.reason = reason

    def said(self) -> str:
        return f"cannot reach the feedback service at {self.url}: {self.reason}"


class Failed(Exception):
    """A command's failure: its one line and exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def service_flags(parser: argparse.ArgumentParser, *, token: bool = True) -> None:
    """`--monitor NS/NAME`, `--feedback-url` and (with `token`) `--token-file`, each with its
    variable."""
    flag = flags.env_flags(parser)
    parser.add_argument("--monitor", required=True, metavar="NS/NAME", help="the monitor")
    flag("--feedback-url", "TRUTHLOOP_FEEDBACK_URL", DEFAULT_URL, "the feedback service")
    if token:
        flag(
            "--token-file",
            "TRUTHLOOP_TOKEN_FILE",
            None,
            "file holding a token of the monitor's namespace (or set TRUTHLOOP_TOKEN)",
        )


def monitor_url(args: argparse.Namespace) -> str:
    """The monitor's URL at the service (`.../v1/monitors/NS/NAME`); a `UsageError` names the
    flag that cannot be used."""
    namespace, slash, name = args.monitor.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise UsageError(f"--monitor {args.monitor!r}: expected NAMESPACE/NAME")
    base = flags.get(args, "feedback-url", flags.base_url)
    return f"{base}/v1/monitors/{namespace}/{name}"


def headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def refused(status: int, answer: Any, what: str = "") -> str:
    """The service's refusal in one line: the first problem (`index` as `what` and its number,
    the field, the message) and how many more there were."""
    if not isinstance(answer, dict):
        text = " ".join(str(answer).split())[:200]
        return f"the service answered {status}: {text}"
    details = answer.get("details") or []
    first = details[0] if details and isinstance(details[0], dict) else {}
    more = len(details) - 1 + int(answer.get("truncated") or 0)
    parts = []
    if what and isinstance(first.get("index"), int):
        parts.append(f"{what} {first['index']}")
    if first.get("field"):
        parts.append(str(first["field"]))
    parts.append(str(first.get("message") or answer.get("error") or f"HTTP {status}"))
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
    return ": ".join(parts) + tail


def fail(command: str, message: str, status: int) -> int:
    print(f"truthloop {command}: {message}", file=sys.stderr)
    return status


async def call(
    method: str,
    url: str,
    token: str | None,
    seconds: float,
    *,
    params: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, Any]:
    """One request to the service, given `seconds` in all: (status, the decoded JSON answer or
    its text); `Unreachable` when it cannot be reached or the connection breaks."""
    sent = headers(token)
    if body is not None:
        sent["Content-Type"] = "application/json"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session,
            session.request(method, url, params=params, data=body, headers=sent) as response,
        ):
            text = await response.text()
    except (aiohttp.ClientConnectionError, TimeoutError) as e:
        raise Unreachable(url.split("/v1/", 1)[0], str(e) or type(e).__name__) from e
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text
