"""Every example monitor is one `truthloop validate` accepts, with rules that answer (and one
of them has a review queue with abstain, one segments with segment alerts); every model server's
protocol has one, whose header comment shows an exchange its capture extracts to the records the
comment says; and docs/protocols.md's tables name exactly the protocols the spec has."""

from __future__ import annotations

import re
from dataclasses import asdict, replace
from pathlib import Path

import msgspec
import pytest
import yaml

from tests.support import example_exchange
from tests.support.apiserver import CustomResource
from truthloop import cli
from truthloop.core import celrules, extract, protocols, respond, spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MONITORS = sorted(EXAMPLES.glob("*.yaml"))
CRD = CustomResource.load(EXAMPLES.parent / "crds" / "modelmonitor.yaml")
PROTOCOLS_DOC = EXAMPLES.parent / "docs" / "protocols.md"


def _protocol(path: Path) -> str:
    return str(yaml.safe_load(path.read_text())["spec"]["capture"].get("protocol", "custom"))


PRESET_EXAMPLES = [path for path in MONITORS if _protocol(path) != "custom"]


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
    assert f"truthloop validate -f examples/{path.name}" in path.read_text()  # as its comment says
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
    # the protocols' examples: `request` is one row of the request, as the protocol reads it
    "monitor-open-inference-v2.yaml": [
        ({"tenure": 3, "monthly_charges": 99.5, "contract": "month-to-month"}, 1),
        ({"tenure": 3, "monthly_charges": 99.5, "contract": "one-year"}, 0),
        ({"tenure": 41, "monthly_charges": 35.2, "contract": "month-to-month"}, 0),
    ],
    "monitor-open-inference-v2-triton.yaml": [
        ({"float_input": [1820.0, 3.0, 0.0]}, 1),
        ({"float_input": [1820.0, 3.0, 1.0]}, 0),
        ({"float_input": [12.9, 14.0, 0.0]}, 0),
    ],
    "monitor-open-inference-v2-kserve.yaml": [
        ({"input-0": [480.0, 40.0, 6.0]}, "premium"),
        ({"input-0": [150.0, 3.0, 0.0]}, "plus"),
        ({"input-0": [12.5, 3.0, 0.0]}, "basic"),
    ],
    "monitor-kserve-v1.yaml": [
        ([52000.0, 0.41, 7, 0], 0.9),
        ([128000.0, 0.12, 15, 2], 0.9),
        ([128000.0, 0.12, 15, 0], 0.1),
    ],
    "monitor-tfserving.yaml": [
        ({"distance_km": 5, "duration_min": 10.0, "pickup_hour": 8, "passengers": 1}, 14.0),
        ({"distance_km": 10, "duration_min": 20, "pickup_hour": 23, "passengers": 3}, 25.0),
    ],
    "monitor-seldon-v1.yaml": [
        ({"claim_amount": 8400.0, "policy_age_days": 45, "prior_claims": 2}, 0.9),
        ({"claim_amount": 8400.0, "policy_age_days": 1900, "prior_claims": 2}, 0.1),
    ],
    "monitor-mlflow.yaml": [
        ({"ticket_id": "T-1", "plan": "enterprise", "sentiment": 0.4}, "high"),
        ({"ticket_id": "T-2", "plan": "free", "sentiment": -0.62}, "medium"),
        ({"ticket_id": "T-3", "plan": "free", "sentiment": 0.1}, "low"),
    ],
    "monitor-torchserve.yaml": [
        ({"text": "You absolute Idiot.", "lang": "en"}, 0.9),
        ({"text": "Idiotic idea, but fine.", "lang": "en"}, 0.1),
    ],
}


def test_every_example_has_its_fallback_table() -> None:
    assert sorted(FALLBACK_ANSWERS) == [path.name for path in MONITORS]


@pytest.mark.parametrize(
    ("name", "request_body", "answer"),
    [(name, body, answer) for name, cases in FALLBACK_ANSWERS.items() for body, answer in cases],
)
def test_its_fallback_answers_as_its_comments_say(
    name: str, request_body: object, answer: object
) -> None:
    monitor = spec.parse_monitor(yaml.safe_load((EXAMPLES / name).read_text()))
    decision = celrules.compile_rules(monitor.spec.fallback.rules).evaluate(request_body, {})
    assert decision is not None
    assert decision.value == answer
    assert type(decision.value) is type(answer)


def test_there_is_an_example_for_every_protocol_named_after_it() -> None:
    assert {_protocol(path) for path in MONITORS} == set(spec.PROTOCOLS)
    for protocol in set(spec.PROTOCOLS) - {"custom"}:  # custom is every other example's
        assert _protocol(EXAMPLES / f"monitor-{protocol}.yaml") == protocol


def test_the_protocols_tables_name_exactly_the_spec_protocols() -> None:
    tables = _protocol_columns(PROTOCOLS_DOC.read_text())
    assert len(tables) == 2  # which preset for which server; what a row is
    for names in tables:
        assert sorted(set(names)) == sorted(spec.PROTOCOLS), names


def _protocol_columns(text: str) -> list[list[str]]:
    """The names in each markdown table's `protocol` column, row by row."""
    tables: list[list[str]] = []
    column = None
    for line in text.splitlines():
        if not line.startswith("|"):
            column = None
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if column is None and "`protocol`" in cells:
            column = cells.index("`protocol`")
            tables.append([])
        elif column is not None and not set(line) <= set("|- "):
            tables[-1] += re.findall(r"`([a-z0-9-]+)`", cells[column])
    return tables


@pytest.mark.parametrize("path", PRESET_EXAMPLES, ids=[path.name for path in PRESET_EXAMPLES])
def test_its_exchange_extracts_to_the_records_its_comment_shows(path: Path) -> None:
    shown = example_exchange.exchange(path.read_text())
    assert shown is not None, f"{path.name} shows no exchange in its header comment"
    monitor = spec.parse_monitor(yaml.safe_load(path.read_text()))
    found = extract.extract(
        monitor.spec.capture,
        shown.headers,
        extract.decode(shown.request),
        extract.decode(shown.response),
        monitor.spec.segments,
    )
    assert (found.error, found.detail) == (None, None)
    shown_fields = ("entity_id", "prediction", "score", "features")
    records = [
        {"row": row.index, **{field: asdict(row)[field] for field in shown_fields}}
        for row in found.rows
    ]
    assert records == shown.records


@pytest.mark.parametrize("path", PRESET_EXAMPLES, ids=[path.name for path in PRESET_EXAMPLES])
def test_its_fallback_answers_its_exchange_so_that_its_capture_reads_the_rules_back(
    path: Path,
) -> None:
    """As the sidecar does: the rules on each row of the shown request, the answer in the
    protocol's shape, and that answer captured with the monitor's spec (less the score: the rules
    give none)."""
    shown = example_exchange.exchange(path.read_text())
    assert shown is not None
    monitor = spec.parse_monitor(yaml.safe_load(path.read_text()))
    capture = monitor.spec.capture
    request = extract.decode(shown.request)
    rows = protocols.request_rows(capture, request)
    assert not isinstance(rows, protocols.RowsError)
    rules = celrules.compile_rules(monitor.spec.fallback.rules)
    predictions = []
    for row in [request] if rows is None else rows:
        decision = rules.evaluate(row, {})
        assert decision is not None
        predictions.append(decision.value)
    target = shown.method_path.removeprefix("POST ")
    answer = msgspec.json.encode(respond.answer(capture, predictions, request, target))
    found = extract.extract(
        replace(capture, score=None), shown.headers, request, extract.decode(answer)
    )
    assert (found.error, found.detail) == (None, None)
    assert [row.prediction for row in found.rows] == predictions
