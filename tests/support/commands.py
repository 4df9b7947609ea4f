"""`truthloop` subcommands run as processes, as users run them: their output and exit status,
and what a terminal shows on standard error (a progress bar draws only on a terminal)."""

from __future__ import annotations

import asyncio
import os
import pty
import sys
from pathlib import Path


async def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `truthloop ARGS...` (`env` added to this one's)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "truthloop", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})}, cwd=cwd,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def on_a_terminal(*args: str, cwd: Path | None = None) -> tuple[int, str, bytes]:
    """(exit status, stdout, what standard error drew on a pseudo-terminal) of
    `truthloop ARGS...`."""
    leader, follower = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "truthloop", *args,
        stdout=asyncio.subprocess.PIPE, stderr=follower, cwd=cwd,
    )  # fmt: skip
    os.close(follower)
    shown = bytearray()

    def drain() -> None:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:
                return
            if not data:
                return
            shown.extend(data)

    reader = asyncio.get_running_loop().run_in_executor(None, drain)
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    await asyncio.wait_for(reader, 30)
    os.close(leader)
    assert process.returncode is not None
    return process.returncode, out.decode(), bytes(shown)
