"""The built-in UI's files as the feedback service serves them at /ui/: every file a page loads is
there (and in the package's data), within the size budget, revalidated by ETag, gzipped, with a
policy that lets the page load nothing from elsewhere. What the pages do is tests/browser's."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.feedback import FakeClock, Service, make_settings
from truthloop.feedback import ui

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 250 * 1024
"""Bytes of all the UI's files together (uncompressed)."""
LOADS = re.compile(r"""(?:src|href)="([^"#:]+)"|from '(\.[^']+)'|import '(\.[^']+)'""")


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    running = Service(make_settings(f"sqlite:///{tmp_path}/ui.db", FakeClock(), token="admin"))
    await running.start()
    yield running
    await running.stop()


def loaded_by(name: str, text: str) -> set[str]:
    """The files `name` (a path under /ui/) loads: its src/href and its module imports."""
    base = name.rpartition("/")[0]
    found = set()
    for match in LOADS.finditer(text):
        target = next(g for g in match.groups() if g)
        parts = [*base.split("/"), *target.split("/")] if base else target.split("/")
        path: list[str] = []
        for part in parts:
            if part == "..":
                path.pop()
            elif part not in (".", ""):
                path.append(part)
        found.add("/".join(path))
    return found


async def test_the_page_and_every_file_it_loads_are_served_without_a_token(
    service: Service,
) -> None:
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(service.base + "/ui", allow_redirects=False) as response:
            assert response.status == 308
            assert response.headers["Location"] == "/ui/"
        seen: dict[str, bytes] = {}
        todo = {"index.html"}
        while todo:
            name = todo.pop()
            path = "/ui/" if name == "index.html" else f"/ui/{name}"
            async with anonymous.get(service.base + path) as response:
                assert response.status == 200, name
                seen[name] = await response.read()
                policy = response.headers["Content-Security-Policy"]
            assert "default-src 'self'" in policy
            todo |= loaded_by(name, seen[name].decode()) - set(seen)
    assert {"app.js", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css", "style.css"} <= set(seen)
    assert {f"pages/{p}.js" for p in ("overview", "monitor", "drift", "review")} <= set(seen)
    assert set(seen) | {"vendor/LICENSE", "vendor/README.md"} == set(ui.load())


def test_all_the_files_fit_the_budget_and_ship_in_the_package() -> None:
    assets = ui.load()
    assert sum(len(a.body) for a in assets.values()) < BUDGET
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["truthloop"]
    for name in assets:
        assert any(fnmatch.fnmatch(f"ui/{name}", g) for g in globs), f"{name} is not package data"
    assert "1.6.32" in assets["vendor/README.md"].body.decode(), "the vendored uPlot's version"
    assert b"MIT License" in assets["vendor/LICENSE"].body


async def test_a_file_is_revalidated_by_its_etag_and_gzipped_for_who_accepts_it(
    service: Service,
) -> None:
    url = service.base + "/ui/vendor/uPlot.iife.min.js"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert response.headers["Cache-Control"] == "no-cache"
            assert response.content_type == "text/javascript"
            etag = response.headers["ETag"]
            zipped = len(await response.read())
        async with session.get(url, headers={"Accept-Encoding": "identity"}) as response:
            assert "Content-Encoding" not in response.headers
            assert zipped < len(await response.read()) / 2
        async with session.get(url, headers={"If-None-Match": etag}) as response:
            assert response.status == 304
            assert await response.read() == b""


async def test_a_path_that_is_no_file_of_the_ui_is_a_json_404(service: Service) -> None:
    for path in ("/ui/nope.js", "/ui/../pyproject.toml", "/ui/pages/"):
        status, body = await service.call("GET", path)
        assert status == 404, path
        assert body["details"][0]["reason"] == "http"
