"""A real Kubernetes control plane for the tests, in controller-runtime's envtest convention.

`KUBEBUILDER_ASSETS` names a directory holding `etcd`, `kube-apiserver`, `kube-controller-manager`
and `kubectl` (and optionally `helm`): what `setup-envtest use 1.36 -p path` prints, plus the
controller manager (so Deployments make pods). A `ControlPlane` starts the three servers on
127.0.0.1 (free ports), with RBAC, the admission webhooks, a service-account signing key and an
admin client certificate, all made here in a temp directory that `stop` removes. There is no
kubelet: pods are created (also by the controller manager's ReplicaSet controller) and stay
Pending, which is all an admission webhook needs.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.k8s_tools import ensure_tool
from tests.support.ports import free_port
from tests.support.waiting import eventually

ASSETS = "KUBEBUILDER_ASSETS"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
HOW = (
    f"set {ASSETS} to a directory holding {', '.join(BINARIES)} (and optionally helm) of "
    "Kubernetes 1.36, e.g. the one `setup-envtest use 1.36 -p path` prints "
    "(sigs.k8s.io/controller-runtime/tools/setup-envtest) with kube-controller-manager added"
)
CRD = Path(__file__).resolve().parents[2] / "crds" / "modelmonitor.yaml"
START_WITHIN = 60.0
"""Seconds etcd and the apiserver get to become ready (a loaded 2-core machine needs ~10)."""


def assets() -> Path | None:
    """The binaries' directory, or None when it is not set."""
    found = os.environ.get(ASSETS)
    return Path(found) if found else None


def missing(folder: Path) -> list[str]:
    """The required binaries `folder` lacks, so a wrong setting fails saying what is wrong."""
    return [b for b in BINARIES if not os.access(folder / b, os.X_OK)]


class ControlPlane:
    """etcd, kube-apiserver and kube-controller-manager, started together, stopped together."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.root = Path(tempfile.mkdtemp(prefix="truthloop-envtest-"))
        self.server = f"https://127.0.0.1:{free_port()}"
        self.kubeconfig = self.root / "admin.kubeconfig"
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._tools: dict[str, Path] = {}

    @classmethod
    def start(cls, binaries: Path) -> ControlPlane:
        """Up and ready (its /readyz says ok), or stopped again and an error with the log."""
        plane = cls(binaries)
        try:
            plane._start()
        except BaseException:
            plane.stop()
            raise
        return plane

    def _start(self) -> None:
        pki = self.root / "pki"
        _make_pki(pki)
        _write_kubeconfig(self.kubeconfig, self.server, pki, "admin")
        kcm = self.root / "kcm.kubeconfig"
        _write_kubeconfig(kcm, self.server, pki, "kcm")
        etcd = f"http://127.0.0.1:{free_port()}"
        peer = f"http://127.0.0.1:{free_port()}"
        self._spawn(
            "etcd",
            "--name=envtest",
            f"--data-dir={self.root / 'etcd'}",
            f"--listen-client-urls={etcd}",
            f"--advertise-client-urls={etcd}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=envtest={peer}",
            "--unsafe-no-fsync",
        )
        self._wait_ready("etcd", f"{etcd}/health", None)
        issuer = "https://kubernetes.default.svc.cluster.local"
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers={etcd}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.server.rpartition(':')[2]}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=Node,RBAC",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--kubelet-client-certificate={pki / 'admin.crt'}",
            f"--kubelet-client-key={pki / 'admin.key'}",
            f"--service-account-issuer={issuer}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--api-audiences={issuer}",
            "--allow-privileged=true",
            "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
            "--disable-admission-plugins=DefaultStorageClass",
            "--enable-priority-and-fairness=false",
        )
        self._wait_ready("kube-apiserver", f"{self.server}/readyz", _client_context(pki, "admin"))
        self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={kcm}",
            f"--authentication-kubeconfig={kcm}",
            f"--authorization-kubeconfig={kcm}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            "--leader-elect=false",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=true",
            "--cluster-name=envtest",
            # the controllers that need nodes or a cloud have neither here
            "--controllers=*,-node-ipam-controller,-node-lifecycle-controller,"
            "-cloud-node-lifecycle-controller,-service-lb-controller,-node-route-controller",
        )

    def _spawn(self, binary: str, *args: str) -> None:
        with (self.root / f"{binary}.log").open("wb") as log:
            process = subprocess.Popen(
                [str(self.binaries / binary), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._processes.append((binary, process))

    def _wait_ready(self, binary: str, url: str, context: ssl.SSLContext | None) -> None:
        process = dict(self._processes)[binary]

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{binary} exited {process.returncode}:\n{self.log(binary)}")
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as answer:
                    return bool(answer.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        asyncio.run(eventually(ready, f"{binary} ready at {url}", within=START_WITHIN))

    def log(self, binary: str, tail: int = 40) -> str:
        """The last lines a server wrote, for a failure message."""
        path = self.root / f"{binary}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(lines[-tail:])

    def tool(self, name: str) -> Path:
        """`kubectl` or `helm`: the assets directory's, else one from tests.support.k8s_tools."""
        if name not in self._tools:
            local = self.binaries / name
            self._tools[name] = local if os.access(local, os.X_OK) else ensure_tool(name)
        return self._tools[name]

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        as_user: str | None = None,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl ARGS` as the admin (or impersonating `as_user`); with `check`, a failure
        raises an AssertionError carrying kubectl's stderr, the part a test needs to see."""
        command = [str(self.tool("kubectl")), f"--kubeconfig={kubeconfig or self.kubeconfig}"]
        if as_user is not None:
            command.append(f"--as={as_user}")
        done = subprocess.run(
            [*command, *args], input=input, capture_output=True, text=True, check=False, timeout=60
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{done.stderr}")
        return done

    def apply(
        self, *objects: dict[str, Any], check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl apply` of these objects (client-side, as most users and tools apply)."""
        manifest = yaml.safe_dump_all(objects)
        return self.kubectl("apply", "-f", "-", input=manifest, check=check)

    def get(self, *args: str) -> dict[str, Any]:
        """`kubectl get ARGS -o json`, parsed."""
        found: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return found

    def table(self, *args: str) -> list[dict[str, str]]:
        """`kubectl get ARGS` as printed, one dict per row by column header ("" where the
        column is empty: kubectl leaves the space blank, so the header's offsets split it)."""
        header, *rows = self.kubectl("get", *args).stdout.splitlines()
        starts = [m.start() for m in re.finditer(r"\S+", header)]
        bounds = list(zip(starts, [*starts[1:], None], strict=True))
        names = [header[a:b].strip() for a, b in bounds]
        return [
            {n: row[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)} for row in rows
        ]

    def token_for(self, namespace: str, service_account: str) -> str:
        """A bound token of a real ServiceAccount: requests made with it are that account's,
        authorized by RBAC as in a cluster (impersonation would skip authentication)."""
        done = self.kubectl("create", "token", service_account, "-n", namespace, "--duration=2h")
        return done.stdout.strip()

    def kubeconfig_for(self, namespace: str, service_account: str, path: Path) -> Path:
        """A kubeconfig at `path` that authenticates as that ServiceAccount."""
        token = self.token_for(namespace, service_account)
        _write_kubeconfig(path, self.server, self.root / "pki", service_account, token=token)
        return path

    def stop(self) -> None:
        """Every server killed (the controller manager first, etcd last) and the temp dir gone:
        no process and no private key outlives the session."""
        for _, process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._processes.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def _make_pki(folder: Path) -> None:
    """A CA; the apiserver's serving certificate; client certificates for the admin
    (system:masters) and the controller manager; the service-account signing key pair."""
    folder.mkdir(parents=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "envtest-ca")])
    ca = (
        _builder(ca_name, ca_name, ca_key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write(folder / "ca.crt", ca.public_bytes(serialization.Encoding.PEM))
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        x509.DNSName("localhost"),
        *(
            x509.DNSName("kubernetes" + suffix)
            for suffix in ("", ".default", ".default.svc", ".default.svc.cluster.local")
        ),
    ]
    leaves = {
        "apiserver": ("kube-apiserver", None, ExtendedKeyUsageOID.SERVER_AUTH),
        "admin": ("admin", "system:masters", ExtendedKeyUsageOID.CLIENT_AUTH),
        "kcm": ("system:kube-controller-manager", None, ExtendedKeyUsageOID.CLIENT_AUTH),
    }
    for file, (common, group, usage) in leaves.items():
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
        if group:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, group))
        builder = _builder(x509.Name(attributes), ca_name, key, now).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        )
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write(folder / f"{file}.crt", cert.public_bytes(serialization.Encoding.PEM))
        _write(folder / f"{file}.key", _private(key))
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(folder / "sa.key", _private(signer))
    public = signer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write(folder / "sa.pub", public)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _private(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)
    path.write_bytes(data)


def _client_context(pki: Path, user: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(pki / f"{user}.crt", pki / f"{user}.key")
    return context


def _write_kubeconfig(
    path: Path, server: str, pki: Path, user: str, *, token: str | None = None
) -> None:
    """A kubeconfig for `user`: the client certificate made for it, or a bearer token."""
    credentials = (
        {"token": token}
        if token is not None
        else {
            "client-certificate": str(pki / f"{user}.crt"),
            "client-key": str(pki / f"{user}.key"),
        }
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "envtest",
                "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": user}}],
        "current-context": "envtest",
    }
    _write(path, yaml.safe_dump(config).encode())
