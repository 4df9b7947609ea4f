"""`truthloop feedback` flags: settings from flags and environment, clear messages for bad ones."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from truthloop.feedback import cli
from truthloop.feedback import settings as feedback_settings


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(), "run the feedback service")
    return parser.parse_args(["feedback", *argv])


def test_flags_become_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRUTHLOOP_TOKEN", raising=False)
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    host, port, settings = cli.settings_from(
        parse(
            "--listen",
            "0.0.0.0:9000",
            "--store",
            "sqlite:///x.db",
            "--token-file",
            str(token),
            "--retention",
            "7d",
            "--idle-timeout",
            "2m",
            "--max-reference",
            "4096",
            "--max-event",
            "2048",
            "--max-waiting-events",
            "50",
            "--event-window",
            "90s",
        )
    )
    assert (host, port) == ("0.0.0.0", 9000)
    assert settings.token == "s3cret"
    assert settings.store == "sqlite:///x.db"
    assert settings.engine.retention == settings.limits.max_age == 7 * 86400
    assert settings.http.idle_timeout == 120
    assert settings.http.max_reference_bytes == 4096
    assert settings.cloudevents == feedback_settings.CloudEventSettings(2048, 50, 90.0)


def test_the_token_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUTHLOOP_TOKEN", "from-env")
    assert cli.settings_from(parse())[2].token == "from-env"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--listen", "localhost"], "--listen"),
        (["--retention", "a while"], "--retention"),
        (["--idle-timeout", "soon"], "--idle-timeout"),
        (["--idle-timeout", "0s"], "--idle-timeout"),
        (["--token-file", "/nonexistent/token"], "--token-file"),
        (["--max-body", "10"], "--max-body"),
        (["--max-reference", "10"], "--max-reference"),
        (["--max-event", "10"], "--max-event"),
        (["--max-waiting-events", "0"], "--max-waiting-events"),
        (["--event-window", "0s"], "--event-window"),
    ],
)
def test_bad_flags_say_which(argv: list[str], message: str) -> None:
    with pytest.raises(cli.UsageError, match=message):
        cli.settings_from(parse(*argv))


def test_a_bad_store_url_exits_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(parse("--store", "mysql://db/x")) == 2
    assert "unsupported store" in capsys.readouterr().err


def test_settings_made_without_a_store_keep_the_default_one() -> None:
    assert feedback_settings.make().store == feedback_settings.Settings().store
