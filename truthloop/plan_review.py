"""`truthloop plan-review --monitor NS/NAME`: how many human reviews a day a monitor needs.

Asks the feedback service (`GET /v1/monitors/NS/NAME/review/plan`), which answers from the
monitor's traffic of the last day and its current accuracy (from the reviewed labels, else the
realized labels, else the estimate before labels):

  --half-width 0.02           reviews a day for the metrics window's accuracy to be known
                              within ±0.02 (95%)
  --detect 0.05 --within 24h  reviews a day to detect a drop of accuracy of 0.05 within 24h
  --budget 500                what 500 reviews a day buy: the half-width, and (with --within)
                              the smallest drop detected in time

Exit status: 0 answered, 1 the service refused or could not be reached, 2 a bad flag.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from typing import Any

from truthloop import flags, remote
from truthloop.core.spec import format_duration, parse_duration
from truthloop.flags import UsageError

TIMEOUT = 30.0
PARAMETERS = {"half_width": "halfWidth", "detect": "detect", "within": "within", "budget": "budget"}
"""Flag (as argparse names it) -> the endpoint's query parameter."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], text: str) -> None:
    parser = flags.command(subparsers, "plan-review", text, __doc__)
    remote.service_flags(parser, token=False)
    parser.add_argument(
        "--half-width", metavar="W", help="the accuracy's interval half-width to reach, e.g. 0.02"
    )
    parser.add_argument("--detect", metavar="DROP", help="a drop of accuracy to detect, e.g. 0.05")
    parser.add_argument("--within", metavar="DURATION", help="how soon to detect it, e.g. 24h")
    parser.add_argument("--budget", metavar="N", help="reviews a day you have: what they buy")
    parser.set_defaults(run=run)


def query_from(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The plan's URL and query parameters; a `UsageError` names the flag that cannot be used."""
    url = remote.monitor_url(args) + "/review/plan"
    params: dict[str, str] = {}
    for option, parameter in PARAMETERS.items():
        value = getattr(args, option)
        if value is None:
            continue
        flag = "--" + option.replace("_", "-")
        try:
            parse_duration(value) if option == "within" else float(value)
        except ValueError as e:
            raise UsageError(f"{flag} {value!r}: {e}") from None
        params[parameter] = value
    if not params:
        raise UsageError("give --half-width, --detect with --within, or --budget")
    if "detect" in params and "within" not in params:
        raise UsageError("--detect needs --within (how soon to detect the drop)")
    if "within" in params and "detect" not in params and "budget" not in params:
        raise UsageError("--within goes with --detect or --budget")
    return url, params


def run(args: argparse.Namespace) -> int:
    try:
        url, params = query_from(args)
    except UsageError as e:
        return remote.fail("plan-review", str(e), 2)
    try:
        status, answer = asyncio.run(remote.call("GET", url, None, TIMEOUT, params=params))
    except remote.Unreachable as e:
        return remote.fail("plan-review", e.said(), 1)
    if status != 200 or not isinstance(answer, dict):
        return remote.fail("plan-review", refusal(args.monitor, status, answer), 1)
    print(summary(answer, params))
    return 0


def refusal(monitor: str, status: int, answer: Any) -> str:
    """The service's refusal in one line (`remote.refused`), a query parameter named by the
    flag it came from."""
    if isinstance(answer, dict):
        named = {p: "--" + o.replace("_", "-") for o, p in PARAMETERS.items()}

        def flagged(d: Any) -> Any:
            field = d.get("field") if isinstance(d, dict) else None
            return {**d, "field": named[field]} if field in named else d

        answer = {**answer, "details": [flagged(d) for d in answer.get("details") or []]}
    return f"{monitor}: {remote.refused(status, answer)}"


def summary(answer: Mapping[str, Any], params: Mapping[str, str]) -> str:
    """The plan in a few lines people read."""
    traffic, plan = answer["traffic"], answer["plan"]
    accuracy = answer["accuracy"]
    window = format_duration(answer["window"])
    within = params.get("within")
    lines = [
        f"{answer['monitor']}: {_count(traffic['per_day'])} records a day (the last day's),"
        f" accuracy {accuracy['value']:.3g} ({accuracy['source']})"
    ]
    if plan.get("for_half_width") is not None:
        lines.append(
            f"  ±{params['halfWidth']} over the {window} window: {_reviews(plan['for_half_width'])}"
        )
    if plan.get("for_detection") is not None:
        lines.append(
            f"  a drop of {params['detect']} detected within {within}:"
            f" {_reviews(plan['for_detection'])}"
        )
    if plan.get("needed") is not None:
        share = plan["needed"] / traffic["per_day"] if traffic["per_day"] else None
        of = f" ({share:.1%} of the records)" if share is not None and share <= 1 else ""
        if share is not None and share > 1:
            of = " (more than the records: not reachable at this traffic)"
        lines.append(f"  needed: {_reviews(plan['needed'])}{of}")
    if plan.get("half_width") is not None:
        lines.append(
            f"  {_count(float(params['budget']))} reviews a day give ±{plan['half_width']:.3g}"
            f" over the {window} window"
        )
    if plan.get("detectable") is not None:
        lines.append(f"  and detect a drop of {plan['detectable']:.3g} within {within}")
    return "\n".join(lines)


def _count(n: float) -> str:
    return f"{n:,.0f}"


def _reviews(n: float) -> str:
    return f"{_count(n)} review{'' if round(n) == 1 else 's'} a day"
