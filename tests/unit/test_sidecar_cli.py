"""`truthloop sidecar --help` says which flags must be given: each flag the sidecar refuses to
start without is marked required in its help."""

from __future__ import annotations

import argparse
import os

import pytest

from truthloop.flags import UsageError
from truthloop.sidecar import cli as sidecar_cli

REQUIRED = {"--feedback-url": "http://fb:8081", "--monitor": "ml/churn", "--spool-dir": "spool"}


@pytest.fixture
def parser(monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The sidecar's parser, its defaults not taken from this process's TRUTHLOOP_* variables."""
    for variable in [v for v in os.environ if v.startswith("TRUTHLOOP_")]:
        monkeypatch.delenv(variable)
    commands = argparse.ArgumentParser().add_subparsers()
    sidecar_cli.add_parser(commands, "run the capture proxy")
    return commands.choices["sidecar"]


def test_every_flag_the_sidecar_cannot_start_without_is_marked_required_in_its_help(
    parser: argparse.ArgumentParser,
) -> None:
    sidecar_cli.settings_from(parser.parse_args([a for f in REQUIRED.items() for a in f]))
    for flag in REQUIRED:
        given = [a for f, v in REQUIRED.items() if f != flag for a in (f, v)]
        with pytest.raises(UsageError, match=f"^{flag} is required$"):
            sidecar_cli.settings_from(parser.parse_args(given))
    helps = {a.option_strings[0]: a.help or "" for a in parser._actions if a.option_strings}
    marked = {flag for flag, text in helps.items() if "required" in text}
    assert marked == set(REQUIRED)
