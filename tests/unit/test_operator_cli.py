"""`truthloop operator`: flags and TRUTHLOOP_* variables become settings; bad values name flags."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from truthloop import cli
from truthloop.operator.cli import UsageError, settings_from


def parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(["operator", *argv])


def test_defaults_serve_the_whole_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TRUTHLOOP_NAMESPACES", "TRUTHLOOP_TOKEN", "POD_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    settings = settings_from(parse("--feedback-url", "http://feedback:8080/"))
    assert settings.namespaces == ()
    assert settings.feedback.url == "http://feedback:8080"
    assert settings.feedback.token is None
    assert settings.sidecar.feedback_url == "http://feedback:8080"
    assert settings.native_sidecar is None
    assert settings.restart_existing is True
    assert settings.webhook.port == 9443
    assert settings.webhook.cert_dir is None
    assert (settings.admin_host, settings.admin_port) == ("0.0.0.0", 8090)
    assert settings.sidecar.requests == {"cpu": "50m", "memory": "64Mi"}
    assert settings.sidecar.limits == {"memory": "256Mi"}


def test_flags_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    monkeypatch.setenv("TRUTHLOOP_NAMESPACES", "ml,fraud")
    monkeypatch.setenv("TRUTHLOOP_SIDECAR_NATIVE", "false")
    monkeypatch.setenv("POD_NAMESPACE", "platform")
    settings = settings_from(
        parse(
            "--feedback-url", "http://127.0.0.1:8080",
            "--sidecar-feedback-url", "http://truthloop-feedback.platform.svc:8080",
            "--token-file", str(token),
            "--cert-dir", "/etc/webhook/certs",
            "--sidecar-cpu-limit", "500m",
            "--sidecar-token-secret", "",
            "--restart-existing", "false",
            "--status-interval", "2.5",
        )
    )  # fmt: skip
    assert settings.namespaces == ("ml", "fraud")
    assert settings.operator_namespace == "platform"
    assert settings.native_sidecar is False
    assert settings.feedback.token == "s3cret"
    assert settings.sidecar.feedback_url == "http://truthloop-feedback.platform.svc:8080"
    assert settings.sidecar.limits == {"cpu": "500m", "memory": "256Mi"}
    assert settings.sidecar.token_secret is None
    assert settings.webhook.cert_dir == "/etc/webhook/certs"
    assert settings.restart_existing is False
    assert settings.status.interval == 2.5
    assert settings_from(parse("--feedback-url", "http://f", "--namespace", "a")).namespaces == (
        "a",
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "--feedback-url is required"),
        (("--feedback-url", "feedback:8080"), "--feedback-url 'feedback:8080': expected http"),
        (("--feedback-url", "http://f", "--webhook-port", "99999"), "--webhook-port"),
        (("--feedback-url", "http://f", "--sidecar-native", "maybe"), "--sidecar-native"),
        (("--feedback-url", "http://f", "--restart-existing", "yes"), "--restart-existing"),
        (("--feedback-url", "http://f", "--status-interval", "0"), "--status-interval"),
        (("--feedback-url", "http://f", "--token-file", "/no/such/file"), "--token-file"),
        (("--feedback-url", "http://f", "--namespace", "ml-*"), "--namespace 'ml-\\*'"),
    ],
)
def test_bad_values_name_their_flag(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        settings_from(parse(*argv))


def test_a_usage_error_exits_2_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["operator", "--feedback-url", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("truthloop operator: --feedback-url 'nowhere'")
    assert "Traceback" not in err


def test_its_ports_are_free_beside_the_other_commands_run_locally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`truthloop feedback`, `sidecar` and `run` on one machine with the operator: no default
    HOST:PORT of theirs is one of the operator's."""
    for name in ("TRUTHLOOP_ADMIN", "TRUTHLOOP_LISTEN", "TRUTHLOOP_WEBHOOK_PORT"):
        monkeypatch.delenv(name, raising=False)
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    theirs = {
        int(str(action.default).rpartition(":")[2])
        for command in ("feedback", "sidecar", "run")
        for action in commands.choices[command]._actions
        if str(action.default).rpartition(":")[2].isdigit()
    }
    assert {8080, 8081, 9090} <= theirs
    settings = settings_from(parse("--feedback-url", "http://feedback:8080/"))
    assert {settings.admin_port, settings.webhook.port}.isdisjoint(theirs)
