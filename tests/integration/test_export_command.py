"""`truthloop export` and `truthloop review export|import` as processes against a real feedback
service: the dataset streamed to CSV, JSON lines or Parquet with the review filters, Label
Studio files both ways, and every failure one line with its exit status, no traceback."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.commands import on_a_terminal, run
from tests.support.feedback import FakeClock, Service, ServiceFactory, monitor_body, record
from truthloop.core import dataset

pytest_plugins = ["tests.support.feedback_fixtures"]

ADMIN = "admin-s3cret"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """The commands do the same whatever the service stores in: SQLite only (the API's own
    tests run on both stores)."""
    return f"sqlite://{tmp_path}/feedback.db"


@pytest.fixture
async def labeled(start_service: ServiceFactory, clock: FakeClock) -> Service:
    """A monitor whose queue takes every record: 30 records, p0..p9 labeled by reviewers (p0,
    p2, ... wrong), p10..p19 by plain actuals (all right), p20..p29 unlabeled."""
    service = await start_service(token=ADMIN)
    await service.put_monitor(monitor_body(review={"budget": 100000}))
    await service.predictions(
        [record(f"p{i}", 1, ts=clock() - 30, score=0.9, features={"n": i}) for i in range(30)]
    )
    review = {"monitor": "ml/churn", "source": "review", "reviewer": "ana"}
    await service.feedback(
        *[{**review, "prediction_id": f"p{i}", "actual": i % 2} for i in range(10)],
        *[{"monitor": "ml/churn", "prediction_id": f"p{i}", "actual": 1} for i in range(10, 20)],
    )
    return service


async def test_an_export_writes_the_records_the_filters_keep(
    labeled: Service, tmp_path: Path
) -> None:
    out = tmp_path / "wrong.csv"
    args = ("--monitor", "ml/churn", "--feedback-url", labeled.base)
    status, printed, err = await run("export", *args, "-o", str(out), "--reviewed", "--wrong")
    assert (status, err) == (0, "")
    assert printed == f"{out}: 5 rows of ml/churn\n"
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["prediction_id"] for r in rows] == ["p0", "p2", "p4", "p6", "p8"]
    assert list(rows[0]) == list(dataset.NAMES)
    assert (rows[0]["source"], rows[0]["reviewer"], rows[0]["weight"]) == ("review", "ana", "1.0")
    assert not (tmp_path / "wrong.csv.part").exists()

    lines = tmp_path / "all.jsonl"
    status, printed, _ = await run("export", *args, "-o", str(lines), "--window", "1h")
    assert status == 0
    parsed = [json.loads(line) for line in lines.read_text().splitlines()]
    assert len(parsed) == 20  # labeled records only
    assert {r["source"] for r in parsed} == {"review", "actual"}


async def test_a_parquet_export_is_typed_by_column(labeled: Service, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "reviewed.parquet"
    status, printed, err = await run(
        "export", "--monitor", "ml/churn", "--feedback-url", labeled.base, "-o", str(out),
        "--reviewed",
    )  # fmt: skip
    assert (status, err) == (0, ""), err
    assert printed == f"{out}: 10 rows of ml/churn\n"
    table = pq.read_table(out)
    assert table.column_names == list(dataset.NAMES)
    assert str(table.schema.field("actual").type) == "string"
    assert str(table.schema.field("weight").type) == "double"
    columns = table.to_pydict()
    assert columns["prediction_id"][:3] == ["p0", "p1", "p2"]
    assert columns["actual"][:2] == ["0", "1"]
    assert columns["correct"][:2] == [False, True]
    assert set(columns["weight"]) == {1.0}
    assert json.loads(columns["features"][3]) == {"n": 3}
    assert json.loads(columns["votes"][0])[0]["reviewer"] == "ana"


async def test_the_export_shows_its_progress_on_a_terminal(
    labeled: Service, tmp_path: Path
) -> None:
    status, out, shown = await on_a_terminal(
        "export", "--monitor", "ml/churn", "--feedback-url", labeled.base,
        "-o", str(tmp_path / "out.csv"),
    )  # fmt: skip
    assert status == 0, shown.decode(errors="replace")
    assert "20 rows" in out
    assert b"exporting ml/churn" in shown, shown[-500:]


@pytest.mark.parametrize(
    ("flags", "status", "expected"),
    [
        (["--monitor", "ml/nope"], 1, "export: ml/nope: monitor: ml/nope is not registered"),
        (["--from", "yesterday"], 1, "export: ml/churn: from: expected an RFC 3339"),
        (["--window", "1h", "--to", "5"], 1, "ml/churn: window: give a window ending now"),
        (["--monitor", "churn"], 2, "export: --monitor 'churn': expected NAMESPACE/NAME"),
        (["-o", "out.xlsx"], 2, "out.xlsx: cannot tell the format from its extension"),
        (["-o", "missing/out.csv"], 2, "missing/out.csv: No such file or directory"),
        (["--feedback-url", "http://127.0.0.1:1"], 1, "cannot reach the feedback service"),
    ],
)
async def test_a_failed_export_is_one_line_and_leaves_no_file(
    labeled: Service, tmp_path: Path, flags: list[str], status: int, expected: str
) -> None:
    """(A flag given again wins over the first.)"""
    args = ["--monitor", "ml/churn", "--feedback-url", labeled.base, "-o", "out.csv", *flags]
    code, _, err = await run("export", *args, cwd=tmp_path)
    assert code == status, err
    assert err.startswith("truthloop export: "), err
    assert expected in err, err
    assert len(err.splitlines()) == 1
    assert left_in(tmp_path) == []


def left_in(directory: Path) -> list[str]:
    """What an export left in `directory` (the store's files aside)."""
    return sorted(p.name for p in directory.glob("out*"))


async def test_review_files_go_to_label_studio_and_come_back(
    start_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    service = await start_service(token=ADMIN)
    await service.put_monitor(monitor_body(review={"budget": 100000}))
    await service.predictions([record(f"p{i}", 1, ts=clock() - 30, score=0.9) for i in range(4)])
    tasks = tmp_path / "tasks.json"
    args = ("--monitor", "ml/churn", "--feedback-url", service.base)
    token = {"TRUTHLOOP_TOKEN": ADMIN}
    status, _, err = await run("review", "export", *args, "-o", str(tasks))
    assert (status, err.strip()) == (
        1,
        "truthloop review: ml/churn: Authorization: missing or wrong bearer token",
    )
    status, printed, err = await run(
        "review", "export", *args, "-o", str(tasks), "--limit", "3", env=token
    )
    assert (status, err) == (0, "")
    assert printed == f"{tasks}: 3 tasks of ml/churn leased to label-studio\n"
    exported: list[dict[str, Any]] = json.loads(tasks.read_text())
    choice = {"from_name": "label", "to_name": "item", "type": "choices"}
    for number, task in enumerate(exported):
        task["annotations"] = [
            {"completed_by": {"id": 2, "email": "bo@example.com"},
             "result": [{**choice, "value": {"choices": [str(number % 2)]}}]}
        ]  # fmt: skip
    exported[2]["annotations"] = []
    back = tmp_path / "project.json"
    back.write_text(json.dumps([*exported, {"data": {"prediction_id": "ghost"}, "annotations": [
        {"completed_by": 2, "result": [{**choice, "value": {"choices": ["1"]}}]}]}]))  # fmt: skip
    status, _, err = await run("review", "import", *args, "-f", str(back), env=token)
    assert status == 1
    assert err == (
        f"truthloop review: {back}: task 3: data.prediction_id:"
        " no prediction ghost in monitor ml/churn\n"
    )
    back.write_text(json.dumps(exported))
    status, printed, err = await run("review", "import", *args, "-f", str(back), env=token)
    assert (status, err) == (0, "")
    assert printed == (
        f"{back}: 2 labels and 0 skips of ml/churn; 1 tasks not annotated yet left out\n"
    )
    body = await service.ok("GET", "/v1/monitors/ml/churn/dataset?reviewed=true")
    rows = [json.loads(line) for line in body.splitlines()]
    assert [(r["prediction_id"], r["reviewer"], r["actual"]) for r in rows] == [
        ("p0", "bo@example.com", "0"),
        ("p1", "bo@example.com", "1"),
    ]
    status, _, err = await run("review", "import", *args, "-f", "nope.json", env=token)
    assert (status, err) == (2, "truthloop review: nope.json: No such file or directory\n")
