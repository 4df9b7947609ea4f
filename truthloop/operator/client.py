"""The feedback service as the operator uses it: register, read, follow and delete monitors,
and register namespace tokens.

Errors carry what to do next, as kopf's `TemporaryError`/`PermanentError` do:

- `Unavailable` (also a `ConnectionError`): no connection, a timeout, a 5xx or 429. The same call
  may work later; `delay` is the service's Retry-After when it gave one.
- `Rejected` (also a `ValueError`): a 4xx the same request would get again — a spec the service
  refuses, a missing or wrong token, a task change — with the service's `details` as
  `field: message` lines; also a 2xx whose body is not the shape the call expects (`core.wire`).
- `NotRegistered` (a `Rejected`, also a `LookupError`): the service does not know the monitor
  (it was never registered, or was deleted); registering it again is the cure.

Every request has a timeout (`FeedbackSettings.timeout`, plus the wait of a long-poll).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, TypeVar

import aiohttp
import msgspec

from truthloop.core import wire
from truthloop.operator.settings import FeedbackSettings

T = TypeVar("T")


class FeedbackError(Exception):
    """Something the feedback service did not do; the subclass says whether to try again."""


class Unavailable(FeedbackError, ConnectionError):
    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class Rejected(FeedbackError, ValueError):
    def __init__(self, message: str, status: int, details: tuple[str, ...] = ()) -> None:
        super().__init__(message + (": " + "; ".join(details) if details else ""))
        self.status = status
        self.details = details


class NotRegistered(Rejected, LookupError):
    pass


class FeedbackClient:
    """One aiohttp session to the service; use as an async context manager."""

    def __init__(self, settings: FeedbackSettings) -> None:
        self.settings = settings
        self.base = settings.url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> FeedbackClient:
        headers = {"Authorization": f"Bearer {self.settings.token}"} if self.settings.token else {}
        self._session = aiohttp.ClientSession(headers=headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def register(self, body: Mapping[str, Any]) -> wire.MonitorView:
        """PUT the ModelMonitor (identity, generation and spec only)."""
        meta = body.get("metadata") or {}
        sent = {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata": {
                key: meta[key] for key in ("name", "namespace", "generation") if key in meta
            },
            "spec": body.get("spec"),
        }
        path = _path(meta["namespace"], meta["name"])
        return await self._call("PUT", path, wire.MonitorView, json=sent)

    async def view(self, key: str) -> wire.MonitorView:
        """The registered monitor with the service's `status` (phase, window, metrics...)."""
        return await self._call("GET", _path(*key.split("/", 1)), wire.MonitorView)

    async def state(self, key: str, since: int | None, wait: float) -> wire.MonitorState:
        """The monitor's state once its `version` differs from `since`, or after `wait` s."""
        params = {"wait": f"{wait:g}"}
        if since is not None:
            params["since"] = str(since)
        path = _path(*key.split("/", 1)) + "/state"
        return await self._call("GET", path, wire.MonitorState, params=params, extra=wait)

    async def delete(self, key: str) -> None:
        """Forget the monitor; one that is already gone counts as deleted."""
        with contextlib.suppress(NotRegistered):
            await self._call(
                "DELETE", _path(*key.split("/", 1)), object, budget=self.settings.delete_timeout
            )

    async def register_token(self, namespace: str, sha256: str) -> None:
        """Let the namespace's token (by its SHA-256) capture and send feedback for the
        namespace's monitors, in place of the one it had."""
        path = f"/v1/tokens/{namespace}"
        await self._call("PUT", path, object, json={"sha256": sha256})

    async def keys(self) -> list[str]:
        """`namespace/name` of every monitor the service has registered."""
        listing = await self._call("GET", "/v1/monitors", wire.MonitorList)
        return [f"{item.metadata.namespace}/{item.metadata.name}" for item in listing.items]

    async def _call(
        self,
        method: str,
        path: str,
        answer: type[T],
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        extra: float = 0.0,
        budget: float | None = None,
    ) -> T:
        """The 2xx answer decoded as `answer`, else the error it means."""
        if self._session is None:
            raise RuntimeError("FeedbackClient is used outside `async with`")
        limit = aiohttp.ClientTimeout(total=(budget or self.settings.timeout) + extra)
        url = self.base + path
        try:
            async with self._session.request(
                method, url, json=json, params=params, timeout=limit
            ) as response:
                raw = await response.read()
                if response.status < 300:
                    return _decode(method, path, response.status, raw, answer)
                try:
                    body = msgspec.json.decode(raw)
                except msgspec.DecodeError:
                    body = None
                raise _error(method, path, response, body)
        except FeedbackError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise Unavailable(f"{method} {url}: {type(e).__name__}: {e}".rstrip(": ")) from e


def _error(method: str, path: str, response: aiohttp.ClientResponse, body: Any) -> FeedbackError:
    status = response.status
    said = body.get("error") if isinstance(body, dict) else None
    message = f"{method} {path}: {status} {said or response.reason or ''}".rstrip()
    if status >= 500 or status == 429:
        retry = response.headers.get("Retry-After", "")
        return Unavailable(message, float(retry) if retry.isdigit() else None)
    details: tuple[str, ...] = ()
    if isinstance(body, dict) and isinstance(body.get("details"), list):
        details = tuple(
            f"{d.get('field')}: {d.get('message')}" if d.get("field") else str(d.get("message"))
            for d in body["details"]
            if isinstance(d, dict)
        )
    if status == 404:
        return NotRegistered(message, status, details)
    return Rejected(message, status, details)


def _decode(method: str, path: str, status: int, raw: bytes, answer: type[T]) -> T:
    try:
        return msgspec.json.decode(raw, type=answer)
    except msgspec.DecodeError as e:  # a ValidationError too
        message = f"{method} {path}: the answer is not what the call expects: {e}"
        raise Rejected(message, status) from e


def _path(namespace: str, name: str) -> str:
    return f"/v1/monitors/{namespace}/{name}"
