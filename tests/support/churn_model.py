"""The churn model the sidecar's tests run behind, and the ModelMonitor that fits it.

`Model` answers `{"user_id", "prediction", "score"}` per request, or per row for
`{"instances": [...]}`, echoing the entity, so a test can check what was captured; `MONITOR`
captures exactly those fields and falls back to rules on the same feature.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

MONITOR: dict[str, Any] = {
    "apiVersion": "truthloop.dev/v1alpha1",
    "kind": "ModelMonitor",
    "metadata": {"name": "churn", "namespace": "ml", "generation": 1},
    "spec": {
        "selector": {"matchLabels": {"app": "churn"}},
        "model": {"name": "churn"},
        "task": "binary",
        "capture": {
            "entityId": {"pointer": "/user_id"},
            "prediction": {"pointer": "/prediction"},
            "score": {"pointer": "/score"},
            "features": {"pointer": "/features"},
        },
        "fallback": {
            "mode": "auto",
            "rules": [
                {"when": "request.features.tenure < 6", "prediction": "1"},
                {"prediction": "0"},
            ],
        },
    },
}


def monitor(**spec: Any) -> dict[str, Any]:
    """A copy of MONITOR with top-level spec fields replaced."""
    body = copy.deepcopy(MONITOR)
    body["spec"].update(spec)
    return body


class Model:
    """A model server: `prediction` is 1 when `features.tenure` < 6, the score follows tenure."""

    def __init__(self) -> None:
        self.calls = 0
        self.gzip = False
        """Answer gzipped, as MLServer does a client that accepts it."""
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/predict", self._predict)
        app.router.add_get("/status/{code}", self._status)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @staticmethod
    def answer(row: dict[str, Any]) -> dict[str, Any]:
        tenure = row["features"]["tenure"]
        return {
            "user_id": row.get("user_id"),
            "prediction": 1 if tenure < 6 else 0,
            "score": round(1 / (1 + tenure), 6),
        }

    async def _predict(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.json()
        if "instances" in body:
            response = web.json_response(
                {"predictions": [self.answer(r) for r in body["instances"]]}
            )
        else:
            response = web.json_response(self.answer(body))
        if self.gzip:
            response.enable_compression(web.ContentCoding.gzip)
        return response

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "nope"}, status=int(request.match_info["code"]))
