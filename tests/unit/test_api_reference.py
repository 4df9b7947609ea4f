"""docs/api.md, the feedback service's API reference, cannot drift from the service: it lists
exactly the routes the app registers, each with a curl example of that route and its answer, and
exactly the error reasons the service can answer (`records.Reason`, which the type checker holds
every reason in the code to). The project's docs stand alone: none points at a design file the
repository does not have."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from tests.support.feedback import FakeClock, make_settings
from truthloop.core.records import Reason
from truthloop.feedback import app as feedback_app

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "api.md"
HEADING = re.compile(r"^### (GET|HEAD|POST|PUT|PATCH|DELETE) (/\S*)$", re.M)
REASON_ROW = re.compile(r"^\| `([a-z_]+)` \| [0-9, ]+ \|", re.M)
CURL_URL = re.compile(r"localhost:8081(/[^\s'\"?]*)")


def sections(text: str) -> dict[tuple[str, str], str]:
    """(method, route) of each `### METHOD /route` heading → the text up to the next heading."""
    found = list(HEADING.finditer(text))
    ends = [m.start() for m in found[1:]] + [len(text)]
    out: dict[tuple[str, str], str] = {}
    for match, end in zip(found, ends, strict=True):
        body = text[match.end() : end]
        body = body[: m.start()] if (m := re.search(r"^##? ", body, re.M)) else body
        assert (match[1], match[2]) not in out, f"{match[0]} is listed twice"
        out[match[1], match[2]] = body
    return out


def pattern(route: str) -> re.Pattern[str]:
    """A route like `/v1/monitors/{namespace}/{name}` as a regex of its paths."""
    return re.compile(
        "".join(
            "[^/]+" if p.startswith("{") else re.escape(p) for p in re.split(r"(\{[^}]+\})", route)
        )
    )


@pytest.fixture
def routes(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, route pattern) of every route the feedback app registers."""
    app = feedback_app.build(make_settings(f"sqlite:///{tmp_path}/api.db", FakeClock()))
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }


def test_the_reference_lists_exactly_the_routes_the_app_registers(
    routes: set[tuple[str, str]],
) -> None:
    gets = {route for method, route in routes if method == "GET"}
    assert {route for method, route in routes if method == "HEAD"} == gets, (
        "the reference says every GET also answers HEAD"
    )
    served = {(method, route) for method, route in routes if method != "HEAD"}
    assert set(sections(REFERENCE.read_text())) == served


def test_each_endpoint_has_a_curl_example_of_it_and_an_answer() -> None:
    for (method, route), body in sections(REFERENCE.read_text()).items():
        commands = re.findall(r"```sh\n(.*?)```", body, re.S)
        assert commands, f"{method} {route}: no example"
        curls = [c for c in commands if "curl " in c]
        methods = [m[1] if (m := re.search(r"-X (\w+)", c)) else "GET" for c in curls]
        assert method in methods, f"{method} {route}: no curl example with that method"
        paths = [m[1] for c in curls for m in CURL_URL.finditer(c)]
        assert any(pattern(route).fullmatch(p) for p in paths), f"{method} {route}: {paths}"
        assert re.search(r"```(json|text)\n.+?```", body, re.S), f"{method} {route}: no answer"


def test_the_reference_lists_exactly_the_error_reasons_the_service_answers() -> None:
    text = REFERENCE.read_text()
    table = text[text.index("### Error reasons") :]
    documented = REASON_ROW.findall(table[: table.index("\n## ")])
    assert len(documented) == len(set(documented)), "a reason is listed twice"
    assert set(documented) == set(typing.get_args(Reason))


def test_the_docs_stand_alone() -> None:
    """No page of the project's docs, code or tests points at a design document users do not
    have; the README links the API reference."""
    pages = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("truthloop/**/*.py")]
    pages += ROOT.glob("tests/**/*.py")
    design = "DESIGN" + ".md"  # not spelled out, so this file does not name it either
    assert [p.relative_to(ROOT) for p in pages if design in p.read_text()] == []
    assert "docs/api.md" in (ROOT / "README.md").read_text()
