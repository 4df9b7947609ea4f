"""`truthloop run`: the monitor file checked as `truthloop validate` checks it, bad flags named,
and the curl lines it prints shaped by the monitor's spec."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from truthloop import cli
from truthloop.core import spec
from truthloop.flags import UsageError
from truthloop.local import run
from truthloop.local.stack import Stack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STACK = Stack(
    monitor="default/churn",
    proxy_url="http://127.0.0.1:8080",
    feedback_url="http://127.0.0.1:8081",
    admin_url="http://127.0.0.1:9090",
    store="sqlite:////tmp/x/feedback.db",
)


def churn(**capture: object) -> spec.Monitor:
    body = yaml.safe_load((EXAMPLES / "monitor-churn.yaml").read_text())
    body["spec"]["capture"].update(capture)
    body["spec"]["capture"] = {k: v for k, v in body["spec"]["capture"].items() if v is not None}
    return spec.parse_monitor(body)


def test_loads_the_one_monitor_of_a_file() -> None:
    body = run.load_monitor(str(EXAMPLES / "monitor-regression.yaml"))
    assert spec.parse_monitor(body).key == "logistics/delivery-eta"


def test_every_problem_is_named_at_its_line(tmp_path: Path) -> None:
    text = (EXAMPLES / "monitor-churn.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        text.replace("minSamples: 20", "minSamples: 0").replace("task: binary", "task: x")
    )
    with pytest.raises(UsageError) as raised:
        run.load_monitor(str(bad))
    assert str(raised.value).splitlines() == [
        f'{bad}:14: spec.task: expected one of: binary, multiclass, regression; got "x"',
        f"{bad}:24: spec.metrics.minSamples: must be at least 1, got 0",
    ]


def test_a_file_with_two_monitors_is_refused(tmp_path: Path) -> None:
    text = (EXAMPLES / "monitor-churn.yaml").read_text()
    two = tmp_path / "two.yaml"
    two.write_text(text + "---\n" + text.replace("name: churn  ", "name: other  "))
    with pytest.raises(UsageError, match="holds 2 ModelMonitors; truthloop run fronts one model"):
        run.load_monitor(str(two))


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^-f .*missing.yaml: cannot read: No such file"):
        run.load_monitor(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--model-url", "https://m:9000"],
            "truthloop run: --model-url 'https://m:9000': model: only http:// is supported",
        ),
        (["--model-url", "http://m:9000", "--listen", "nope"], "truthloop run: --listen 'nope'"),
        (
            ["--model-url", "http://m:9000", "--feedback-listen", ":99999"],
            "truthloop run: --feedback-listen ':99999': expected HOST:PORT",
        ),
    ],
)
def test_bad_flags_are_named_before_anything_starts(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(["run", "-f", str(EXAMPLES / "monitor-churn.yaml"), *argv])
    assert status == 2
    assert capsys.readouterr().err.startswith(message)


def test_a_bad_monitor_exits_2_with_its_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: truthloop.dev/v1alpha1\nkind: ModelMonitor\nmetadata: {name: x}\n")
    assert cli.main(["run", "-f", str(bad), "--model-url", "http://127.0.0.1:9"]) == 2
    assert capsys.readouterr().err == f"truthloop run: {bad}:1: spec: required\n"


def curl_lines(lines: list[str]) -> list[list[str]]:
    return [shlex.split(line) for line in lines if line.startswith("curl ")]


def test_instructions_for_an_entity_id_header() -> None:
    lines = run.instructions(STACK, churn(), temporary=True)
    assert lines[:5] == [
        "truthloop run: ModelMonitor default/churn (binary)",
        "  traffic   http://127.0.0.1:8080  the sidecar: same paths and bodies as the model",
        "  feedback  http://127.0.0.1:8081  actuals, metrics, datasets"
        " (sqlite:////tmp/x/feedback.db, removed at exit)",
        "  ui        http://127.0.0.1:8081/ui/  the dashboard: metrics over time, drift, review",
        "  admin     http://127.0.0.1:9090  the sidecar's /metrics, /healthz, /readyz",
    ]
    predict, feedback, metrics, state = curl_lines(lines)
    assert predict[:3] == ["curl", "-si", "http://127.0.0.1:8080/<path>"]
    assert "X-Entity-ID: customer-42" in predict
    assert feedback[2] == "http://127.0.0.1:8081/v1/feedback"
    assert json.loads(feedback[-1]) == {
        "monitor": "default/churn",
        "entity_id": "customer-42",
        "actual": 1,
    }
    assert metrics[-1] == "http://127.0.0.1:8081/v1/monitors/default/churn/metrics"
    assert state[-1] == "http://127.0.0.1:8081/v1/monitors/default/churn/state"
    assert lines[-1] == "Ctrl-C stops."


def test_instructions_for_an_entity_id_in_the_body_and_a_kept_store() -> None:
    lines = run.instructions(STACK, churn(entityId={"pointer": "/user_id"}), temporary=False)
    assert "(sqlite:////tmp/x/feedback.db)" in lines[2]
    assert "# (the entity ID is read from the request body at /user_id)" in lines
    predict = curl_lines(lines)[0]
    assert not any(part.startswith("X-Entity-ID") for part in predict)


def test_instructions_without_an_entity_id_join_by_prediction_id() -> None:
    multiclass = spec.parse_monitor(
        yaml.safe_load((EXAMPLES / "monitor-multiclass.yaml").read_text())
    )
    no_entity = churn(entityId=None)
    feedback = curl_lines(run.instructions(STACK, no_entity, temporary=True))[1]
    assert json.loads(feedback[-1]) == {
        "monitor": "default/churn",
        "prediction_id": "<X-Prediction-ID>",
        "actual": 1,
    }
    feedback = curl_lines(run.instructions(STACK, multiclass, temporary=True))[1]
    assert json.loads(feedback[-1])["actual"] == "<true class>"


def test_instructions_for_rows_name_a_row_s_prediction_id_and_the_entities_per_row() -> None:
    rows = churn(entityId=None, protocol="open-inference-v2", prediction=None, features=None)
    lines = run.instructions(STACK, rows, temporary=True)
    assert "# (<X-Prediction-ID>.0 is the request's first row, .1 its second, ...)" in lines
    assert json.loads(curl_lines(lines)[1][-1])["prediction_id"] == "<X-Prediction-ID>.0"
    per_row = churn(protocol="kserve-v1", entityId={"header": "X-Entity-IDs", "perRow": True})
    assert (
        "X-Entity-IDs: customer-42,customer-43"
        in curl_lines(run.instructions(STACK, per_row, temporary=True))[0]
    )
    in_rows = churn(protocol="mlflow", entityId={"pointer": "/id"})
    assert "# (the entity ID is read from each row at /id)" in run.instructions(
        STACK, in_rows, temporary=True
    )
