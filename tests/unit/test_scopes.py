"""Which token may do what (`core.scopes`), without HTTP."""

from __future__ import annotations

import pytest

from truthloop.core import scopes
from truthloop.core.scopes import ADMIN, Scope

MONITOR = "/v1/monitors/{namespace}/{name}"
TEAM_A = Scope("team-a")


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("POST", "/v1/predictions"),
        ("POST", "/v1/feedback"),
        ("GET", MONITOR),
        ("GET", MONITOR + "/dataset"),
        ("HEAD", "/v1/monitors"),
    ],
)
def test_a_namespace_token_may_capture_send_feedback_and_read(method: str, route: str) -> None:
    assert scopes.route_refusal(TEAM_A, method, route) is None


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("PUT", MONITOR),
        ("DELETE", MONITOR),
        ("POST", MONITOR + "/fallback"),
        ("POST", "/v1/alertmanager"),
        ("PUT", "/v1/tokens/{namespace}"),
        ("POST", "/v1/unknown"),
    ],
)
def test_everything_else_needs_the_admin_token(method: str, route: str) -> None:
    refusal = scopes.route_refusal(TEAM_A, method, route)
    assert refusal is not None
    assert (refusal.field, refusal.reason) == ("Authorization", "admin_only")
    assert "team-a" in refusal.message
    assert route in refusal.message
    assert scopes.route_refusal(ADMIN, method, route) is None


def test_a_namespace_token_may_upload_a_reference_for_its_own_namespace_s_monitors_only() -> None:
    route = MONITOR + "/reference"
    assert scopes.route_refusal(TEAM_A, "POST", route, "team-a") is None
    refusal = scopes.route_refusal(TEAM_A, "POST", route, "team-b")
    assert refusal is not None
    assert (refusal.field, refusal.reason) == ("namespace", "wrong_namespace")
    assert "team-b is not namespace team-a" in refusal.message
    assert scopes.route_refusal(ADMIN, "POST", route, "team-b") is None


def test_items_of_other_namespaces_are_named_by_their_index_in_the_request() -> None:
    monitors = ["team-a/churn", "team-b/churn", "team-a/x", "team-ab/y"]
    found = scopes.foreign_items(TEAM_A, monitors, [0, 2, 3, 7])
    assert [(e.index, e.field, e.reason) for e in found] == [
        (2, "monitor", "wrong_namespace"),
        (7, "monitor", "wrong_namespace"),
    ]
    assert "team-b/churn is not in namespace team-a" in found[0].message
    assert scopes.foreign_items(ADMIN, monitors, [0, 1, 2, 3]) == []


def test_a_token_is_kept_as_its_sha256() -> None:
    assert scopes.digest("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("GET", MONITOR + "/review"),
        ("HEAD", MONITOR + "/review"),
        ("GET", MONITOR + "/review/export"),
        ("POST", MONITOR + "/review/import"),
    ],
)
def test_the_review_queue_needs_a_token_of_the_monitor_s_namespace(method: str, route: str) -> None:
    """Leasing changes the queue: even its reads need a token."""
    assert scopes.needs_token(method, route)
    assert scopes.route_refusal(TEAM_A, method, route, "team-a") is None
    refusal = scopes.route_refusal(TEAM_A, method, route, "team-b")
    assert refusal is not None
    assert (refusal.field, refusal.reason) == ("namespace", "wrong_namespace")
    assert scopes.route_refusal(ADMIN, method, route, "team-b") is None
    assert not scopes.needs_token("GET", MONITOR + "/dataset")
