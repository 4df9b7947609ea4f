"""Webhook TLS material: a CA and a serving certificate, made and checked with `cryptography`.

kopf's own generator needs oscrypto, which fails against OpenSSL 3, so the operator makes its own:
an ECDSA P-256 CA (ten years) and a serving certificate for the webhook Service's DNS names signed
by it (one year). `Bundle` is the PEM triple plus the CA's key, kept in a Secret so that a restart
reuses it; `renew` keeps a still-good CA and re-issues only what needs it, so the caBundle in the
webhook configurations changes only when the CA does. Time is passed in; nothing here does I/O.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
CERT_DAYS = 365
RENEW_BEFORE = datetime.timedelta(days=30)
"""A certificate (or CA) expiring sooner than this is replaced."""


@dataclass(frozen=True, slots=True)
class Bundle:
    ca: bytes
    """The CA certificate (PEM): the webhook configurations' caBundle."""
    cert: bytes
    """The serving certificate (PEM)."""
    key: bytes
    """The serving certificate's private key (PEM, PKCS#8)."""
    ca_key: bytes | None = None
    """The CA's private key (PEM); None for certificates brought from outside (cert-manager)."""

    def secret_data(self) -> dict[str, bytes]:
        """The Secret's keys: a `kubernetes.io/tls` Secret plus `ca.crt` and `ca.key`."""
        data = {"tls.crt": self.cert, "tls.key": self.key, "ca.crt": self.ca}
        if self.ca_key is not None:
            data["ca.key"] = self.ca_key
        return data

    @classmethod
    def from_secret_data(cls, data: Mapping[str, bytes]) -> Bundle | None:
        """The bundle kept in a Secret (values already base64-decoded), or None if incomplete."""
        if not all(data.get(k) for k in ("tls.crt", "tls.key", "ca.crt")):
            return None
        return cls(data["ca.crt"], data["tls.crt"], data["tls.key"], data.get("ca.key") or None)


def dns_names(service: str, namespace: str) -> tuple[str, ...]:
    """The names the apiserver may use for the webhook Service."""
    base = f"{service}.{namespace}"
    return (service, base, f"{base}.svc", f"{base}.svc.cluster.local")


def server_names(service: str, namespace: str, host: str) -> tuple[str, ...]:
    """The Service's names, and the address the server listens on when it is one address (not
    0.0.0.0 or ::): a webhook configuration may then name it in a `url` (an operator outside the
    cluster, or a test), and the apiserver checks that address against the certificate."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return dns_names(service, namespace)
    extra = () if address.is_unspecified else (str(address),)
    return dns_names(service, namespace) + extra


def renew(bundle: Bundle | None, names: Sequence[str], now: datetime.datetime) -> Bundle | None:
    """A bundle that serves `names` for a while yet, or None if `bundle` already does.

    The CA is kept while it is valid past `RENEW_BEFORE` and its key is known; otherwise a new
    CA is made (and the caBundle must be patched).
    """
    if bundle is not None and usable(bundle, names, now):
        return None
    ca_cert = ca_key = None
    if bundle is not None and bundle.ca_key is not None:
        try:
            ca_cert = x509.load_pem_x509_certificate(bundle.ca)
            ca_key = serialization.load_pem_private_key(bundle.ca_key, password=None)
        except ValueError:
            ca_cert = ca_key = None
    if (
        ca_cert is None
        or not isinstance(ca_key, ec.EllipticCurvePrivateKey)
        or ca_cert.not_valid_after_utc - RENEW_BEFORE <= now
    ):
        ca_cert, ca_key = _ca(now)
    return _issue(ca_cert, ca_key, names, now)


def usable(bundle: Bundle, names: Sequence[str], now: datetime.datetime) -> bool:
    """The certificate and its CA are valid past `RENEW_BEFORE`, it covers `names`, it was issued
    by the CA, and the key is the certificate's."""
    try:
        ca = x509.load_pem_x509_certificate(bundle.ca)
        cert = x509.load_pem_x509_certificate(bundle.cert)
        key = serialization.load_pem_private_key(bundle.key, password=None)
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    covered = {*sans.get_values_for_type(x509.DNSName)} | {
        str(a) for a in sans.get_values_for_type(x509.IPAddress)
    }
    same_key = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return (
        same_key
        and set(names) <= covered
        and cert.not_valid_before_utc <= now
        and now < cert.not_valid_after_utc - RENEW_BEFORE
        and now < ca.not_valid_after_utc - RENEW_BEFORE
    )


def _ca(now: datetime.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "truthloop webhook CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: Sequence[str],
    now: datetime.datetime,
) -> Bundle:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + datetime.timedelta(days=CERT_DAYS), ca.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Bundle(
        ca=ca.public_bytes(pem),
        cert=cert.public_bytes(pem),
        key=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        ca_key=ca_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def _general_name(name: str) -> x509.GeneralName:
    """An IP address SAN for an address (a client checks an address against those), else DNS."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)
