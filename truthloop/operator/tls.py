"""The webhook server's certificate: kept in a Secret or read from files, and its CA published.

Two sources (docs/operator.md):
- self-managed (default): the CA and serving certificate live in the Secret
  `WebhookSettings.cert_secret` in the operator's namespace. At start the operator reads it,
  renews what is missing, wrong or expiring (`certs.renew`) and writes it back, so restarts and
  replicas reuse one CA. The CA goes into the `caBundle` of every webhook of the Mutating- and
  ValidatingWebhookConfiguration named `WebhookSettings.configuration` (JSON patches guarded by
  `test` ops; only webhooks whose caBundle differs are touched).
- `--cert-dir` (cert-manager): tls.crt and tls.key (and ca.crt, published the same way when
  present) are read from the directory and re-read when they change.

`refresh()` runs daily (self-managed) or every minute (files); the server's SSLContext is reloaded
in place, so new connections get the new certificate without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import shutil
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path

from truthloop.operator import certs
from truthloop.operator.kube import Conflict, Kube, KubeError, NotFound
from truthloop.operator.settings import Settings

log = logging.getLogger("truthloop.operator.tls")

CONFIGURATIONS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


class Tls:
    def __init__(self, settings: Settings, kube: Kube, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.kube = kube
        self.clock = clock
        self.bundle: certs.Bundle | None = None
        self._context: ssl.SSLContext | None = None
        self._ready = asyncio.Event()
        self._stamp: tuple[float, ...] = ()
        self._made: Path | None = None
        """The temp dir this instance made for the files (no work_dir), removed by `close`."""

    @property
    def interval(self) -> float:
        return 60.0 if self.settings.webhook.cert_dir else 86400.0

    async def context(self) -> ssl.SSLContext | None:
        """The server's context once ready; None in insecure mode (plain HTTP)."""
        if self.settings.webhook.insecure:
            return None
        await self._ready.wait()
        return self._context

    async def refresh(self) -> None:
        """Load or renew the certificate, (re)load it into the context, publish a changed CA."""
        if self.settings.webhook.insecure:
            return
        bundle = self._read_files() if self.settings.webhook.cert_dir else await self._secret()
        if bundle is None or bundle == self.bundle:
            return
        folder = self._folder()
        cert, key = folder / "tls.crt", folder / "tls.key"
        cert.write_bytes(bundle.cert)
        key.touch(mode=0o600)
        key.write_bytes(bundle.key)
        if self._context is None:
            self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert, key)
        previous, self.bundle = self.bundle, bundle
        self._ready.set()
        if bundle.ca and (previous is None or previous.ca != bundle.ca):
            await self.publish(bundle.ca)

    def close(self) -> None:
        """Remove the temp dir made for the files: no private key stays on disk after a stop.
        The loaded context keeps serving; a later `refresh` that writes makes a new dir."""
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)
            self._made = None

    def _folder(self) -> Path:
        work_dir = self.settings.webhook.work_dir
        if work_dir:
            folder = Path(work_dir)
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        if self._made is None:
            self._made = Path(tempfile.mkdtemp(prefix="truthloop-webhook-"))
        return self._made

    async def publish(self, ca: bytes) -> None:
        """Set `caBundle` in the operator's webhook configurations; problems are logged."""
        encoded = base64.b64encode(ca).decode()
        name = self.settings.webhook.configuration
        for kind in CONFIGURATIONS:
            try:
                found = await self.kube.get_webhook_configuration(kind, name)
                ops = []
                for i, hook in enumerate(found.get("webhooks") or []):
                    if (hook.get("clientConfig") or {}).get("caBundle") != encoded:
                        ops.append(
                            {"op": "test", "path": f"/webhooks/{i}/name", "value": hook.get("name")}
                        )
                        ops.append(
                            {
                                "op": "add",
                                "path": f"/webhooks/{i}/clientConfig/caBundle",
                                "value": encoded,
                            }
                        )
                if ops:
                    await self.kube.patch_webhook_configuration(kind, name, ops)
                    log.info("caBundle set in %s %s", kind, name)
            except NotFound:
                log.warning("%s %s does not exist: its caBundle is not set", kind, name)
            except KubeError as e:
                log.error("cannot set the caBundle of %s %s: %s", kind, name, e)

    def _read_files(self) -> certs.Bundle | None:
        folder = Path(self.settings.webhook.cert_dir or ".")
        paths = [folder / n for n in ("tls.crt", "tls.key", "ca.crt")]
        if not (paths[0].exists() and paths[1].exists()):
            raise FileNotFoundError(f"--cert-dir {folder}: tls.crt and tls.key are required")
        stamp = tuple(p.stat().st_mtime if p.exists() else 0.0 for p in paths)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        cert, key, ca = (p.read_bytes() if p.exists() else b"" for p in paths)
        return certs.Bundle(ca=ca, cert=cert, key=key)

    async def _secret(self) -> certs.Bundle:
        web = self.settings.webhook
        namespace, name = self.settings.operator_namespace, web.cert_secret
        now = datetime.datetime.fromtimestamp(self.clock(), datetime.UTC)
        names = certs.server_names(web.service, namespace, web.host)
        try:
            found = await self.kube.get_secret(namespace, name)
        except NotFound:
            found = None
        kept = _bundle(found) if found is not None else None
        fresh = certs.renew(kept, names, now)
        if fresh is None and kept is not None:
            return kept
        assert fresh is not None
        data = {k: base64.b64encode(v).decode() for k, v in fresh.secret_data().items()}
        if found is None:
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {"app.kubernetes.io/managed-by": "truthloop-operator"},
                },
                "type": "kubernetes.io/tls",
                "data": data,
            }
            try:
                await self.kube.create_secret(namespace, secret)
            except Conflict:  # another replica made one first: use theirs
                return await self._secret()
        else:
            await self.kube.patch_secret(namespace, name, {"data": data})
        log.info("webhook certificate for %s issued", ", ".join(names))
        return fresh


def _bundle(secret: dict[str, object]) -> certs.Bundle | None:
    data = secret.get("data")
    if not isinstance(data, dict):
        return None
    try:
        decoded = {k: base64.b64decode(v) for k, v in data.items() if isinstance(v, str)}
    except ValueError:
        return None
    return certs.Bundle.from_secret_data(decoded)
