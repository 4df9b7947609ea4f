"""The `truthloop feedback` command as a process: it stops by draining whenever it is told to."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path


def test_a_sigterm_as_soon_as_it_says_it_listens_stops_it_cleanly(tmp_path: Path) -> None:
    """The signal handlers are in place before the banner: a SIGTERM sent the moment the
    `listening on` line is read takes the clean stop (exit 0), not the signal's default."""
    process = subprocess.Popen(
        [sys.executable, "-m", "truthloop", "feedback", "--listen", "127.0.0.1:0",
         "--store", f"sqlite:///{tmp_path}/feedback.db"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert line.startswith("listening on http://127.0.0.1:"), line
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
