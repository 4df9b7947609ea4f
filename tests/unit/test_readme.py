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


def test_a_sample_line_matches_the_same_line_with_other_numbers_and_phase_flaps() -> None:
    from tests.support import readme

    sample = readme.shape("  phases    00:00 Collecting → 00:56 Healthy → 09:10 Healthy")
    flapped = "  phases    00:00 Collecting → 00:55 Healthy → 03:47 Degraded → 03:49 Healthy"
    assert sample.fullmatch(flapped)
    assert not sample.fullmatch("  phases    00:00 Collecting")
    assert not sample.fullmatch("  phase     00:00 Collecting → 00:55 Healthy")
    row = readme.shape("01:20  churn   Healthy   0.95 [0.83–0.99]")
    assert row.fullmatch("11:26  churn   Healthy    0.9 [0.81–0.97]")
    assert not row.fullmatch("11:26  churn   Degraded  0.9 [0.81–0.97]")


def test_a_closing_verdict_matches_any_verdict() -> None:
    from tests.support import readme

    sample = readme.shape("            rules    accuracy 0.73, rules − model +0.053, better")
    assert sample.fullmatch("            rules    accuracy 0.7, rules − model -0.01, worse")
    assert sample.fullmatch("            rules    accuracy 0.7, rules − model +0.0, can't tell yet")
    assert not sample.fullmatch("            rules    accuracy 0.7, rules − model +0.0, maybe")


def test_a_counted_noun_matches_in_the_singular_and_the_plural() -> None:
    from tests.support import readme

    line = "01:08  event  outliers: 6.0% of the last 2m's records (9 records) lie outside"
    sample = readme.shape(line)
    assert sample.fullmatch(line.replace("(9 records)", "(1 record)"))
    assert sample.fullmatch(line.replace("(9 records)", "(12 records)"))
    assert readme.shape("(1 record) lie").fullmatch("(9 records) lie")
    # only the noun right after a number; other words stay as they are
    assert not sample.fullmatch(line.replace("last 2m's records", "last 2m's record"))
    assert not sample.fullmatch(line.replace("(9 records)", "(9 recorded)"))
    assert not sample.fullmatch(line.replace("(9 records)", "(9 cases)"))
    assert readme.shape("at 0.95 [0.83–0.99]").fullmatch("at 0.9 [0.81–0.97]")
