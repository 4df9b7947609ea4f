"""Webhook TLS: a self-managed CA kept in a Secret and published as caBundle, reused on restart;
or certificates from a directory (cert-manager). Reviews are POSTed over real HTTPS."""

from __future__ import annotations

import base64
import datetime
import json
import ssl
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest

from tests.support.operator_harness import (
    TOKEN,
    OperatorThread,
    World,
    WorldFactory,
    settings,
)
from tests.support.ports import free_port
from tests.support.waiting import eventually
from truthloop.operator import certs
from truthloop.operator.settings import WebhookSettings

pytest_plugins = ["tests.support.operator_fixtures"]

SECRETS = kmock.resource("", "v1", "secrets")
NAMES = certs.dns_names("truthloop-operator", "truthloop")
KINDS = {
    "mutatingwebhookconfigurations": "MutatingWebhookConfiguration",
    "validatingwebhookconfigurations": "ValidatingWebhookConfiguration",
}
HOOKS = {
    "mutatingwebhookconfigurations": ["inject.truthloop.dev"],
    "validatingwebhookconfigurations": ["validate.truthloop.dev"],
}
REVIEW = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "u-1",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "ml",
        "operation": "CREATE",
        "userInfo": {"username": "tester"},
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
    },
}


async def configurations(world: World) -> None:
    """The chart's two webhook configurations, without a caBundle yet."""
    for plural, kind in KINDS.items():
        body = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": "truthloop"},
            "webhooks": [
                {
                    "name": name,
                    "clientConfig": {
                        "service": {"name": "truthloop-operator", "namespace": "truthloop"}
                    },
                    "failurePolicy": "Ignore",
                }
                for name in HOOKS[plural]
            ],
        }
        await world.create(body, f"/apis/admissionregistration.k8s.io/v1/{plural}")


def ca_bundles(world: World) -> list[str | None]:
    found = []
    for plural in KINDS:
        resource = kmock.resource("admissionregistration.k8s.io", "v1", plural)
        config = world.api.object(resource, None, "truthloop")
        found += [hook["clientConfig"].get("caBundle") for hook in config["webhooks"]]
    return found


async def review_over_https(port: int, ca: bytes) -> dict[str, Any]:
    context = ssl.create_default_context(cadata=ca.decode())
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"https://127.0.0.1:{port}/inject-pods",
            data=json.dumps(REVIEW),
            ssl=context,
            server_hostname="truthloop-operator.truthloop.svc",
        ) as response,
    ):
        assert response.status == 200
        return dict(await response.json())


def tls(tmp_path: Path, **fields: Any) -> WebhookSettings:
    return WebhookSettings(host="127.0.0.1", port=free_port(), work_dir=str(tmp_path), **fields)


async def test_a_self_managed_ca_is_kept_published_and_reused(
    start_world: WorldFactory, tmp_path: Path
) -> None:
    world = await start_world(webhook=tls(tmp_path / "one"))
    await configurations(world)
    secret = await eventually(
        lambda: (
            world.api.exists(SECRETS, "truthloop", "truthloop-webhook-cert")
            and world.api.object(SECRETS, "truthloop", "truthloop-webhook-cert")
        )
    )
    assert secret["type"] == "kubernetes.io/tls"
    ca = base64.b64decode(secret["data"]["ca.crt"])
    kept = certs.Bundle.from_secret_data(
        {k: base64.b64decode(v) for k, v in secret["data"].items()}
    )
    assert kept is not None
    assert certs.usable(kept, NAMES, datetime.datetime.now(datetime.UTC))
    # The configurations appeared after the operator started: the next refresh or restart
    # publishes the CA. A restart also proves the Secret is reused.
    assert world.operator is not None
    await world.operator.stop()
    writes = len(world.api.writes)
    webhook = tls(tmp_path / "two")
    world.operator = OperatorThread(settings(world.service.base, token=TOKEN, webhook=webhook))
    await world.operator.start(world.api)
    encoded = base64.b64encode(ca).decode()
    await eventually(lambda: ca_bundles(world) == [encoded, encoded], "caBundle published")
    secret_writes = [w for w in world.api.writes[writes:] if "/secrets" in w[1]]
    assert secret_writes == [], "the kept certificate is reused"
    answer = await review_over_https(webhook.port, ca)
    assert answer["response"]["allowed"] is True


async def test_certificates_from_a_directory(start_world: WorldFactory, tmp_path: Path) -> None:
    bundle = certs.renew(None, NAMES, datetime.datetime.now(datetime.UTC))
    assert bundle is not None
    folder = tmp_path / "certs"
    folder.mkdir()
    (folder / "tls.crt").write_bytes(bundle.cert)
    (folder / "tls.key").write_bytes(bundle.key)
    (folder / "ca.crt").write_bytes(bundle.ca)
    world = await start_world(webhook=tls(tmp_path / "work", cert_dir=str(folder)))
    assert world.operator is not None
    answer = await review_over_https(world.operator.settings.webhook.port, bundle.ca)
    assert answer["response"]["uid"] == "u-1"
    assert not world.api.exists(SECRETS, "truthloop", "truthloop-webhook-cert")


async def test_a_stopped_operator_leaves_no_certificate_or_key_on_disk(
    start_world: WorldFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    world = await start_world(webhook=WebhookSettings(host="127.0.0.1", port=free_port()))
    await eventually(lambda: list(temp.glob("truthloop-webhook-*/tls.key")), "the key written")
    assert world.operator is not None
    await world.operator.stop()
    assert list(temp.iterdir()) == []
