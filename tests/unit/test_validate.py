"""`truthloop validate -f FILE...`: one line per monitor, or every error at its YAML line."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from truthloop import cli

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
apiVersion: truthloop.dev/v1alpha1
kind: ModelMonitor
metadata: {name: churn, namespace: ml}
spec:
  selector: {matchLabels: {app: churn-model}}
  model: {name: churn}
  capture: {prediction: {pointer: /prediction}}
"""

BAD = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: churn-model}
---
apiVersion: truthloop.dev/v1alpha1
kind: ModelMonitor
metadata:
  name: churn
spec:
  selector: {matchLabels: {app: churn-model}}
  model: {}
  capture:
    prediction: {pointer: prediction}
  alerts:
    - name: acc-low
      metric: accuracy
      below: high
  fallback:
    rules:
      - when: 'request.x <'
        prediction: '1'
      - {prediction: '0'}
---
"""


def validate(capsys: pytest.CaptureFixture[str], *files: Path | str) -> tuple[int, str, str]:
    argv = ["validate"]
    for name in files:
        argv += ["-f", str(name)]
    status = cli.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_example_monitor_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    example = ROOT / "examples" / "monitor-churn.yaml"
    assert validate(capsys, example) == (0, f"{example}: ok ModelMonitor default/churn\n", "")


def test_several_files_and_documents(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    one = write(tmp_path, "one.yaml", GOOD)
    two = write(tmp_path, "two.yaml", "---\n" + GOOD.replace("churn", "fraud") + "---\n\n---\n")
    status, out, err = validate(capsys, one, two)
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        f"{one}: ok ModelMonitor ml/churn",
        f"{two}: ok ModelMonitor ml/fraud",
    ]


def test_every_error_at_its_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", BAD)
    status, out, err = validate(capsys, bad)
    assert status == 1
    assert out == f"{bad}:1: skipped Deployment churn-model (not a ModelMonitor)\n"
    assert err.splitlines() == [
        f"{bad}:11: spec.model.name: required",
        f"{bad}:13: spec.capture.prediction.pointer: not a JSON pointer (RFC 6901): "
        "'prediction': a JSON pointer is empty or starts with '/'",
        f'{bad}:17: spec.alerts[0].below: expected a number, got "high"',
        *[line for line in err.splitlines() if line.startswith(f"{bad}:20: ")],
    ]
    assert err.splitlines()[-1].startswith(f"{bad}:20: spec.fallback.rules[0].when: column 11: ")


def test_a_good_file_is_reported_beside_a_bad_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = write(tmp_path, "good.yaml", GOOD)
    bad = write(tmp_path, "bad.yaml", GOOD.replace("{app: churn-model}", "{}"))
    status, out, err = validate(capsys, good, bad)
    assert status == 1
    assert out == f"{good}: ok ModelMonitor ml/churn\n"
    assert err == (
        f"{bad}:5: spec.selector: must select pods: give matchLabels or matchExpressions"
        " (an empty selector would select every pod in the namespace)\n"
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "a: [1\n",
            "2: while parsing a flow sequence: expected ',' or ']', but got '<stream end>'",
        ),
        ("kind: ModelMonitor\nkind: ModelMonitor\n", "2: duplicate key 'kind' (first on line 1)"),
        ("", " no ModelMonitor in this file"),
        ("apiVersion: v1\nkind: ConfigMap\n", " no ModelMonitor in this file"),
        ("- 1\n- 2\n", "1: expected a ModelMonitor object, got a list"),
        ("apiVersion: truthloop.dev/v1alpha1\nkind: ModelMonitr\n", "2: kind: expected"),
        ("kind: ModelMonitor\nmetadata: {name: a}\n", "1: apiVersion: required"),
    ],
)
def test_files_that_are_not_monitors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, error: str
) -> None:
    path = write(tmp_path, "m.yaml", text)
    status, _, err = validate(capsys, path)
    assert status == 1
    assert err.startswith(f"{path}:{error}")


def test_the_same_monitor_twice(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, "m.yaml", GOOD + "---\n" + GOOD)
    status, out, err = validate(capsys, path)
    assert status == 1
    assert out == f"{path}: ok ModelMonitor ml/churn\n"
    assert err == f"{path}:11: metadata.name: ModelMonitor ml/churn is also defined at {path}:3\n"


def test_unreadable_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", GOOD)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"kind: \xff\n")
    missing = tmp_path / "missing.yaml"
    status, out, err = validate(capsys, missing, good, binary, tmp_path)
    assert status == 2
    assert out == f"{good}: ok ModelMonitor ml/churn\n"
    assert err.splitlines() == [
        f"{missing}: cannot read: No such file or directory",
        f"{binary}: not UTF-8 text (byte 6)",
        f"{tmp_path}: cannot read: Is a directory",
    ]


def test_standard_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(GOOD))
    assert validate(capsys, "-") == (0, "<stdin>: ok ModelMonitor ml/churn\n", "")


def test_a_file_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main(["validate"])
    assert raised.value.code == 2
    assert "-f/--filename" in capsys.readouterr().err
