"""The admission webhook server: kopf's server protocol over aiohttp, strict about its input.

kopf runs the `@kopf.on.mutate`/`@kopf.on.validate` handlers (`handlers.py`); this server only
receives AdmissionReview requests and answers them. It checks a request's shape before kopf sees
it, so that no input can make it fail: a body that is not JSON, or not an AdmissionReview v1 with
what a review must carry, is answered 400 with the project's JSON error (`{"error", "details"}`),
and the apiserver then applies the webhook's failurePolicy (Ignore for pods: a pod is never
blocked). A path that names no webhook is 404; a review that takes longer than
`WebhookSettings.timeout` is 504; anything else going wrong is logged and answered 500. Every
request is counted by webhook and outcome.

Paths (the webhook configurations' `clientConfig.service.path`) are the kopf handler ids:
`/inject-pods` and `/validate-modelmonitors`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import kopf
from aiohttp import web

from truthloop.operator.metrics import Metrics
from truthloop.operator.settings import WebhookSettings

log = logging.getLogger("truthloop.operator.admission")

INJECT = "inject-pods"
VALIDATE = "validate-modelmonitors"

WEBHOOKS: Mapping[str, tuple[str, str, str]] = {
    INJECT: ("", "v1", "pods"),
    VALIDATE: ("truthloop.dev", "v1alpha1", "modelmonitors"),
}
"""Each webhook path and the (group, version, resource) it reviews."""

MAX_BODY = 8 * 1024 * 1024
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")

TlsSource = Callable[[], Awaitable[ssl.SSLContext | None]]
"""Waits until the serving certificate is ready; None means plain HTTP (tests only)."""


class AdmissionServer:
    """An object kopf accepts as `settings.admission.server`."""

    def __init__(self, settings: WebhookSettings, tls: TlsSource, metrics: Metrics) -> None:
        self.settings = settings
        self.tls = tls
        self.metrics = metrics

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        context = await self.tls()

        async def review(request: web.Request) -> web.Response:
            return await self._review(fn, request)

        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/{webhook}", review)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.settings.host, self.settings.port, ssl_context=context)
            await site.start()
            scheme = "http" if context is None else "https"
            log.info("admission webhooks at %s://%s:%s", scheme, *runner.addresses[0][:2])
            # kopf does not manage the configurations here (the chart does), so this client
            # config is informational only.
            yield kopf.WebhookClientConfig(url=f"{scheme}://{self.settings.service}")
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    async def _review(self, fn: kopf.WebhookFn, request: web.Request) -> web.Response:
        webhook = request.match_info["webhook"]
        if webhook not in WEBHOOKS:
            return self._answer(webhook, "unknown", 404, f"no webhook at /{webhook}", [])
        try:
            data = json.loads(await request.read())
        except ValueError as e:
            return self._answer(webhook, "malformed", 400, "the body is not JSON", [str(e)])
        problems = malformed(data, WEBHOOKS[webhook])
        if problems:
            return self._answer(webhook, "malformed", 400, "not an AdmissionReview", problems)
        review = _with_namespace(data)
        try:
            async with asyncio.timeout(self.settings.timeout):
                # kopf types a review as a TypedDict it does not export; `malformed` checked
                # the shape kopf reads.
                response = await fn(review, webhook=webhook, headers=dict(request.headers))  # type: ignore[arg-type]
        except TimeoutError:
            return self._answer(webhook, "timeout", 504, "the review took too long", [])
        except Exception:
            log.exception("admission review /%s failed", webhook)
            return self._answer(webhook, "error", 500, "the review failed", [])
        self.metrics.admissions.labels(webhook, "ok").inc()
        return web.json_response(response)

    def _answer(
        self, webhook: str, outcome: str, status: int, error: str, details: list[str]
    ) -> web.Response:
        self.metrics.admissions.labels(webhook if webhook in WEBHOOKS else "", outcome).inc()
        if outcome != "error":
            log.warning("admission /%s answered %d: %s %s", webhook, status, error, details)
        body = {"error": error, "details": [{"message": d} for d in details]}
        return web.json_response(body, status=status)


def malformed(data: Any, resource: tuple[str, str, str]) -> list[str]:
    """What is wrong with an AdmissionReview for `resource` (group, version, resource); [] if ok."""
    if not isinstance(data, dict):
        return ["the body is not a JSON object"]
    problems = []
    if data.get("kind") != "AdmissionReview":
        problems.append(f"kind: expected AdmissionReview, got {data.get('kind')!r}")
    if data.get("apiVersion") != "admission.k8s.io/v1":
        problems.append(f"apiVersion: expected admission.k8s.io/v1, got {data.get('apiVersion')!r}")
    request = data.get("request")
    if not isinstance(request, dict):
        return [*problems, "request: expected an object"]
    if not isinstance(request.get("uid"), str) or not request["uid"]:
        problems.append("request.uid: expected a non-empty string")
    if request.get("operation") not in OPERATIONS:
        problems.append(f"request.operation: expected one of {', '.join(OPERATIONS)}")
    if not isinstance(request.get("userInfo"), dict):
        problems.append("request.userInfo: expected an object")
    given = request.get("resource")
    if not isinstance(given, dict):
        problems.append("request.resource: expected an object")
    elif (given.get("group"), given.get("version"), given.get("resource")) != resource:
        group, version, plural = resource
        problems.append(f"request.resource: this webhook reviews {group}/{version} {plural}")
    operation = request.get("operation")
    wanted = ("oldObject",) if operation == "DELETE" else ("object",)
    for key in wanted:
        if not isinstance(request.get(key), dict):
            problems.append(f"request.{key}: expected an object")
    if "namespace" in request and not isinstance(request["namespace"], str):
        problems.append("request.namespace: expected a string")
    return problems


def _with_namespace(data: dict[str, Any]) -> dict[str, Any]:
    """The review with `request.namespace` copied into objects that lack one (pods being created
    from a manifest without a namespace), so handlers read it where they read everything else."""
    request = data["request"]
    namespace = request.get("namespace")
    if not namespace:
        return data
    fixed = dict(request)
    for key in ("object", "oldObject"):
        obj = request.get(key)
        if isinstance(obj, dict):
            meta = obj.get("metadata")
            if not isinstance(meta, dict):
                meta = {}
            if not meta.get("namespace"):
                fixed[key] = {**obj, "metadata": {**meta, "namespace": namespace}}
    return {**data, "request": fixed}
