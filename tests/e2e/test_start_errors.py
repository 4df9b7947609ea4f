"""Commands that cannot start, run as real processes: each says why in one line on stderr and exits
2, with no traceback, no stray log line before it, and no directory left or created: a bad
`--store` (unreachable, an unknown scheme, a bare path, a file SQLite cannot open, a directory
that does not exist) and a port in use."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.processes import Command

ROOT = Path(__file__).resolve().parents[2]
MONITOR = str(ROOT / "examples" / "monitor-churn.yaml")
MODEL = "http://127.0.0.1:9"
"""Nothing needs to answer there: these commands stop before any request."""


@pytest.fixture
def taken() -> Iterator[int]:
    """A port something listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def refused(args: list[str], tmp: Path) -> str:
    """The one stderr line of `truthloop ARGS` exiting 2 (with TMPDIR in `tmp`, left empty)."""
    tmp.mkdir(exist_ok=True)
    command = Command(args, env={"TMPDIR": str(tmp)})
    try:
        status = command.finish(within=60)
    finally:
        command.close()
    assert (status, len(command.errors)) == (2, 1), "\n".join(command.errors)
    assert command.lines == []
    assert list(tmp.iterdir()) == []
    return command.errors[0]


def run_args(**flags: str) -> list[str]:
    chosen = {"listen": "127.0.0.1:0", "feedback-listen": "127.0.0.1:0", "admin": "127.0.0.1:0"}
    chosen.update({name.replace("_", "-"): value for name, value in flags.items()})
    args = ["run", "-f", MONITOR, "--model-url", MODEL]
    for name, value in chosen.items():
        args += [f"--{name}", value]
    return args


@pytest.mark.parametrize("flag", ["listen", "admin", "feedback_listen"])
def test_run_on_a_taken_port_says_only_that(flag: str, taken: int, tmp_path: Path) -> None:
    line = refused(run_args(**{flag: f"127.0.0.1:{taken}"}), tmp_path / "tmp")
    assert line.startswith("truthloop run: "), line
    assert f"127.0.0.1:{taken}" in line or f"'127.0.0.1', {taken}" in line, line
    assert "in use" in line, line


@pytest.mark.parametrize("flag", ["listen", "admin"])
def test_the_sidecar_on_a_taken_port_says_only_that(flag: str, taken: int, tmp_path: Path) -> None:
    ports = {"listen": "127.0.0.1:0", "admin": "127.0.0.1:0", flag: f"127.0.0.1:{taken}"}
    args = ["sidecar", "--model", MODEL, "--feedback-url", "http://127.0.0.1:9"]
    args += ["--monitor", "default/churn", "--spool-dir", str(tmp_path / "spool")]
    args += ["--listen", ports["listen"], "--admin", ports["admin"], "--log-level", "INFO"]
    line = refused(args, tmp_path / "tmp")
    assert line.startswith("truthloop sidecar: "), line
    assert "in use" in line, line


OPEN = "cannot open the store: "
STORES = {
    "unreachable": ("postgresql://nobody@127.0.0.1:1/x", OPEN + "the database is unavailable: "),
    "mysql": ("mysql://nobody@127.0.0.1/x", "unsupported store 'mysql': expected sqlite:///"),
    "bare path": ("{dir}/x.db", "store '{dir}/x.db' is not a URL: expected sqlite:///"),
    "a directory": ("sqlite://{dir}", OPEN + "{dir}: unable to open"),
    "under a file": ("sqlite://{dir}/file/x.db", OPEN + "{dir}/file/x.db: no directory {dir}/file"),
    "no such directory": ("sqlite://{dir}/no/x.db", OPEN + "{dir}/no/x.db: no directory {dir}/no"),
}


@pytest.fixture(params=list(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(a bad --store, what its error says), in a directory whose listing must not change."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "file").write_text("not a directory")
    url, says = STORES[request.param]
    yield url.format(dir=work), says.format(dir=work)
    assert sorted(p.name for p in work.iterdir()) == ["file"]


def test_run_with_a_bad_store_says_only_that(store: tuple[str, str], tmp_path: Path) -> None:
    url, says = store
    line = refused([*run_args(), "--store", url], tmp_path / "tmp")
    assert line.startswith(f"truthloop run: {says}"), line


def test_feedback_with_a_bad_store_says_only_that(store: tuple[str, str], tmp_path: Path) -> None:
    url, says = store
    line = refused(["feedback", "--listen", "127.0.0.1:0", "--store", url], tmp_path / "tmp")
    assert line.startswith(f"truthloop feedback: {says}"), line
