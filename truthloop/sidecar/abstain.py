"""The abstain on the request path: the model's response, or "I don't know" in its place.

While the spec in force has `review.abstain` and the fallback is not engaged, the proxy holds the
model's (2xx JSON, bounded) responses and asks `verdict`, which decides with `core.abstain` and
answers `review.abstain.response` (its status, body and headers, with `Content-Type:
application/json` unless they name one, and `X-Truthloop-Abstain: true`; the proxy adds
`X-Prediction-ID`). The exchange is still captured as the model's, flagged `abstained`.

The decision (`core.abstain`, which reads `core.review` and so numpy) is imported with the first
response held, so a sidecar whose monitor never abstains does not load numpy (about 12 MiB of its
memory, measured on a started `truthloop sidecar`).

Fail-open: a response that cannot be decided is sent as the model made it, the reason counted in
`stats.passed` (`core.abstain`'s codes, `error` for an exception, logged once). `stats.checked`
counts the responses decided, `stats.abstained` those abstained, by reason (`band`, `explore`).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from truthloop.core import extract
from truthloop.core.spec import AbstainResponse, Monitor
from truthloop.sidecar.exchange import LocalResponse
from truthloop.sidecar.live import Live

if TYPE_CHECKING:
    from truthloop.core.abstain import Decision

log = logging.getLogger("truthloop.sidecar.abstain")

HEADER = (b"X-Truthloop-Abstain", b"true")
JSON = (b"Content-Type", b"application/json")


@dataclass(slots=True)
class AbstainStats:
    checked: int = 0
    abstained: collections.Counter[str] = field(default_factory=collections.Counter)
    passed: collections.Counter[str] = field(default_factory=collections.Counter)


class Abstain:
    """Decides on the model's responses with the spec in force in `live`."""

    __slots__ = ("_answer", "_decider", "_logged", "_response", "live", "stats")

    def __init__(self, live: Live) -> None:
        self.live = live
        self.stats = AbstainStats()
        self._logged = False
        self._response: AbstainResponse | None = None
        self._answer: LocalResponse | None = None
        self._decider: Callable[[Monitor, str, Any], Decision] | None = None
        """`core.abstain.decide`, once imported."""

    def verdict(self, prediction_id: str, body: bytes) -> LocalResponse | None:
        """The abstain response for the model's response `body`, or None to send it."""
        try:
            return self._decide(prediction_id, body)
        except Exception:
            self.stats.passed["error"] += 1
            if not self._logged:
                self._logged = True
                log.exception("the abstain decision failed (model answered; further only counted)")
            return None

    def _decide(self, prediction_id: str, body: bytes) -> LocalResponse | None:
        monitor = self.live.current.monitor
        if monitor is None:
            self.stats.passed["no_abstain"] += 1
            return None
        if self._decider is None:
            from truthloop.core.abstain import decide

            self._decider = decide
        decision = self._decider(monitor, prediction_id, extract.decode(body))
        if decision.error is not None:
            self.stats.passed[decision.error] += 1
            return None
        self.stats.checked += 1
        if decision.reason is None:
            return None
        self.stats.abstained[decision.reason] += 1
        review = monitor.spec.review
        assert review is not None
        assert review.abstain is not None
        return self._rendered(review.abstain.response)

    def _rendered(self, response: AbstainResponse) -> LocalResponse:
        """The response's wire form, made once per spec."""
        if response is not self._response or self._answer is None:
            fields = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
            if not any(name.lower() == b"content-type" for name, _ in fields):
                fields.insert(0, JSON)
            fields.append(HEADER)
            self._response = response
            self._answer = LocalResponse(response.status, tuple(fields), response.body.encode())
        return self._answer
