"""README's two commands are the ones CI runs: a newcomer and CI do the same thing."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _commands(text: str) -> list[str]:
    return re.findall(r"```sh\n(.+?)\n```", text, flags=re.S)


def test_readme_gives_the_demo_and_the_test_command() -> None:
    commands = _commands((ROOT / "README.md").read_text())
    assert commands[0] == "pip install . && truthloop demo"
    assert commands[1].endswith("pytest")


def test_ci_runs_readmes_test_command_verbatim() -> None:
    test_command = _commands((ROOT / "README.md").read_text())[1]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines
    assert ci_lines[-1] == test_command, "the test command must be the last thing CI runs"
    assert "set -euo pipefail" in ci_lines
