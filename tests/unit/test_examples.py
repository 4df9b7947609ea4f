"""Every example monitor is one `truthloop validate` accepts, with rules that answer (and one
of them has a review queue with abstain, one segments with segment alerts)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.apiserver import CustomResource
from truthloop import cli
from truthloop.core import celrules, spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MONITORS = sorted(EXAMPLES.glob("*.yaml"))
CRD = CustomResource.load(EXAMPLES.parent / "crds" / "modelmonitor.yaml")


def test_there_is_an_example_for_every_task_and_a_batch() -> None:
    parsed = [spec.parse_monitor(yaml.safe_load(path.read_text())) for path in MONITORS]
    assert {monitor.spec.task for monitor in parsed} == {"binary", "multiclass", "regression"}
    assert any(monitor.spec.capture.batch is not None for monitor in parsed)
    reviewed = [m.spec.review for m in parsed if m.spec.review is not None]
    assert any(review.abstain is not None for review in reviewed)
    segmented = [m.spec for m in parsed if m.spec.segments]
    assert any(
        any(a.segment for a in spec_.alerts)
        and any(s.buckets for s in spec_.segments)
        and any(s.source.header for s in spec_.segments)
        for spec_ in segmented
    )


@pytest.mark.parametrize("path", MONITORS, ids=[path.name for path in MONITORS])
def test_truthloop_validate_accepts_it(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "-f", str(path)]) == 0
    out, err = capsys.readouterr()
    assert (out.startswith(f"{path}: ok ModelMonitor "), err) == (True, "")


@pytest.mark.parametrize("path", MONITORS, ids=[path.name for path in MONITORS])
def test_the_crd_takes_it(path: Path) -> None:
    assert CRD.admit(yaml.safe_load(path.read_text())) == []


FALLBACK_ANSWERS = {
    "monitor-churn.yaml": [
        ({"features": {"monthly_charges": 99.5}}, 1),
        ({"features": {"monthly_charges": 80}}, 1),  # an integer, as a client may send it
        ({"features": {"monthly_charges": 75.0}}, 0),
    ],
    "monitor-batch.yaml": [({"monthly_charges": 90.0}, 1), ({"monthly_charges": 30}, 0)],
    "monitor-multiclass.yaml": [
        ({"channel": "invoice-portal"}, "billing"),
        ({"channel": "login-page"}, "account"),
        ({"subject": "the app crashes"}, "technical"),
    ],
    "monitor-review.yaml": [
        ({"features": {"tenure": 36}}, 0),
        ({"features": {"tenure": 3}}, 1),
    ],
    "monitor-segments.yaml": [
        ({"features": {"tenure": 3, "monthly_charges": 99.5}}, 1),
        ({"features": {"tenure": 3, "monthly_charges": 40}}, 0),
        ({"features": {"tenure": 36, "monthly_charges": 99.5}}, 0),
    ],
    "monitor-regression.yaml": [
        ({"features": {"distance_km": 4}}, 22.0),
        ({"features": {"distance_km": 2.5}}, 17.5),
    ],
}


def test_every_example_has_its_fallback_table() -> None:
    assert sorted(FALLBACK_ANSWERS) == [path.name for path in MONITORS]


@pytest.mark.parametrize(
    ("name", "request_body", "answer"),
    [(name, body, answer) for name, cases in FALLBACK_ANSWERS.items() for body, answer in cases],
)
def test_its_fallback_answers_as_its_comments_say(
    name: str, request_body: dict[str, object], answer: object
) -> None:
    monitor = spec.parse_monitor(yaml.safe_load((EXAMPLES / name).read_text()))
    decision = celrules.compile_rules(monitor.spec.fallback.rules).evaluate(request_body, {})
    assert decision is not None
    assert decision.value == answer
    assert type(decision.value) is type(answer)
