"""Webhook certificates: issued for the Service's names, kept while good, renewed before expiry."""

from __future__ import annotations

import datetime
from dataclasses import replace

from cryptography import x509

from truthloop.operator import certs

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
NAMES = certs.dns_names("truthloop-operator", "truthloop")


def test_the_names_of_the_webhook_service() -> None:
    assert NAMES == (
        "truthloop-operator",
        "truthloop-operator.truthloop",
        "truthloop-operator.truthloop.svc",
        "truthloop-operator.truthloop.svc.cluster.local",
    )


def test_a_server_on_one_address_is_named_by_it_too() -> None:
    assert certs.server_names("truthloop-operator", "truthloop", "0.0.0.0") == NAMES
    assert certs.server_names("truthloop-operator", "truthloop", "::") == NAMES
    assert certs.server_names("truthloop-operator", "truthloop", "my-host") == NAMES
    names = certs.server_names("truthloop-operator", "truthloop", "127.0.0.1")
    assert names == (*NAMES, "127.0.0.1")
    bundle = certs.renew(None, names, NOW)
    assert bundle is not None
    cert = x509.load_pem_x509_certificate(bundle.cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == list(NAMES)
    assert certs.usable(bundle, names, NOW)
    assert not certs.usable(certs.renew(None, NAMES, NOW) or bundle, names, NOW)


def test_a_new_bundle_serves_the_names_and_is_kept() -> None:
    bundle = certs.renew(None, NAMES, NOW)
    assert bundle is not None
    assert certs.usable(bundle, NAMES, NOW)
    cert = x509.load_pem_x509_certificate(bundle.cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == list(NAMES)
    ca = x509.load_pem_x509_certificate(bundle.ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert certs.renew(bundle, NAMES, NOW + datetime.timedelta(days=300)) is None
    kept = certs.Bundle.from_secret_data(bundle.secret_data())
    assert kept == bundle


def test_an_expiring_certificate_is_reissued_by_the_same_ca() -> None:
    bundle = certs.renew(None, NAMES, NOW)
    assert bundle is not None
    later = NOW + datetime.timedelta(days=340)
    fresh = certs.renew(bundle, NAMES, later)
    assert fresh is not None
    assert fresh.ca == bundle.ca
    assert fresh.cert != bundle.cert
    assert certs.usable(fresh, NAMES, later)


def test_other_names_a_foreign_key_or_a_lost_ca_key_mean_a_new_bundle() -> None:
    bundle = certs.renew(None, NAMES, NOW)
    other = certs.renew(None, NAMES, NOW)
    assert bundle is not None
    assert other is not None
    assert not certs.usable(bundle, (*NAMES, "truthloop-webhook.truthloop.svc"), NOW)
    assert not certs.usable(replace(bundle, key=other.key), NAMES, NOW)
    assert not certs.usable(replace(bundle, ca=other.ca), NAMES, NOW)
    assert not certs.usable(replace(bundle, cert=b"not a certificate"), NAMES, NOW)
    expired_ca = certs.renew(bundle, NAMES, NOW + datetime.timedelta(days=3650))
    assert expired_ca is not None
    assert expired_ca.ca != bundle.ca
    orphan = certs.renew(replace(bundle, ca_key=None, cert=b""), NAMES, NOW)
    assert orphan is not None
    assert orphan.ca != bundle.ca


def test_an_incomplete_secret_is_no_bundle() -> None:
    assert certs.Bundle.from_secret_data({"tls.crt": b"x", "tls.key": b""}) is None
