"""POSTing batch bodies to one URL of the feedback service: a `client.Client` bound to that URL.

Its errors are the client's: `client.ClientError` (a `ConnectionError`), another `OSError`, or
`TimeoutError` past `timeout`.
"""

from __future__ import annotations

import urllib.parse

from truthloop.sidecar.client import Client, MiB


class Poster(Client):
    """POSTs bodies to `url` with `headers` (kept in `headers`, changed by the caller at will;
    values must be printable ASCII)."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        *,
        timeout: float,
        slice_bytes: int = 64 * 1024,
        max_answer_bytes: int = 1 * MiB,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        super().__init__(
            f"{parts.scheme}://{parts.netloc}",
            headers,
            timeout=timeout,
            slice_bytes=slice_bytes,
            max_answer_bytes=max_answer_bytes,
        )
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    async def post(self, body: bytes | bytearray) -> tuple[int, bytes]:
        """The service's status and answer body (at most `max_answer_bytes` of it)."""
        return await self.request("POST", self._target, body)
