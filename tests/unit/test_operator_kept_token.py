"""Which token the operator keeps from a namespace's Secret, and when it mints a new one."""

from __future__ import annotations

import base64
from typing import Any

from truthloop.operator.monitors import ROTATE, kept_token

ADMIN = "a" * 48
OWN = "n" * 43


def secret(token: str | bytes, **annotations: str) -> dict[str, Any]:
    raw = token.encode() if isinstance(token, str) else token
    return {
        "metadata": {"annotations": annotations},
        "data": {"token": base64.b64encode(raw).decode()},
    }


def test_the_namespace_s_own_token_is_kept() -> None:
    assert kept_token(secret(OWN + "\n"), "token", ADMIN) == OWN


def test_a_missing_rotated_or_unusable_secret_gets_a_new_token() -> None:
    assert kept_token(None, "token", ADMIN) is None
    assert kept_token(secret(OWN, **{ROTATE: "now"}), "token", ADMIN) is None
    assert kept_token(secret("short"), "token", ADMIN) is None
    assert kept_token(secret(b"\xff" * 40), "token", ADMIN) is None
    assert kept_token({"data": {"token": "not base64!"}}, "token", ADMIN) is None
    assert kept_token({"data": {}}, "token", ADMIN) is None


def test_a_copy_of_the_admin_token_left_by_an_earlier_release_is_replaced() -> None:
    """Before namespace tokens, the operator copied the admin token into every namespace; kept
    as the namespace's token it would still open every namespace's monitors."""
    assert kept_token(secret(ADMIN), "token", ADMIN) is None
