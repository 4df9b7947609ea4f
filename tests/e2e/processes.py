"""Commands run as real processes: their output read line by line with deadlines, and the
processes they may have left behind found in /proc."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path


class Command:
    """`truthloop ARGS...` in its own session (its process group is its pid), stdout read by a
    thread so a test can wait for a line with a deadline."""

    def __init__(self, args: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "truthloop", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        """Standard error, drained as it comes so the process never blocks on it."""
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._drain_errors, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _drain_errors(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.errors.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, within: float) -> re.Match[str]:
        """The first line (from here on) that matches `pattern`; fails at the deadline or EOF."""
        deadline = time.monotonic() + within
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {pattern!r} within {within}s; got:\n" + "\n".join(self.lines)
                ) from None
            if line is None:
                raise AssertionError(
                    f"output ended before a line matching {pattern!r}:\n"
                    + "\n".join(self.lines)
                    + "\nstderr:\n"
                    + "\n".join(self.errors)
                )
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def finish(self, within: float) -> int:
        """The exit status, once the process has exited and its output is read."""
        status = self.process.wait(timeout=within)
        for reader in self._readers:
            reader.join(timeout=within)
        while (line := self._queue.get_nowait()) is not None:
            self.lines.append(line)
        return status

    def close(self) -> None:
        """After the test: a process still running (the test failed) is killed with its whole
        group, and the pipes are closed."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait()
        for reader in self._readers:
            reader.join()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def group_members(pgid: int) -> list[int]:
    """Live processes in process group `pgid` (zombies are not running)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def children(pid: int) -> list[int]:
    """The live child processes of `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found
