"""A short demo run in this process, kept running: its summary is what the metrics API answers
when asked from outside, the URLs it offers answer, and service time slows to the wall clock's."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import shlex
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from truthloop.examples import churn_model

from tests.support.waiting import eventually
from truthloop import cli as truthloop_cli
from truthloop.demo import cli
from truthloop.demo.scenario import Scenario
from truthloop.demo.timelapse import TimeLapse
from truthloop.demo.view import PlainView

ROOT = Path(__file__).resolve().parents[2]


def triple(entry: dict[str, Any] | None) -> list[float] | None:
    """An API estimate as the result line writes it: an undefined one (no labeled predictions,
    e.g. a fallback that never answered) is null, not a triple of nulls."""
    if not entry or entry["value"] is None:
        return None
    return [entry["value"], entry["lower"], entry["upper"]]


def figures(part: dict[str, Any], whole: bool = False) -> dict[str, Any]:
    """A metrics-API part as the result line writes it; `whole`: with the accuracy estimated
    from the scores and from the reviews (the model's over the run)."""
    out: dict[str, Any] = {
        "samples": part["samples"],
        "labeled": part["labeled"],
        "accuracy": triple(part["metrics"].get("accuracy")),
    }
    if whole:
        reviewed = part["reviewed"].get("accuracy")
        out.update(
            estimated=triple(part["estimated"].get("accuracy")),
            reviewed=triple(reviewed),
            reviews=reviewed["n"] if reviewed else 0,
        )
    return out


async def test_a_run_kept_running_serves_what_its_summary_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.StringIO()
    clock = TimeLapse(20)
    stop = asyncio.Event()
    run = cli.Run(
        Scenario(duration=3),
        cli.Options(seed=1, keep_running=True, plain=True),
        clock,
        PlainView(out, clock.wall_elapsed),
        stop,
    )
    task = asyncio.create_task(run.run(tmp_path))
    try:

        async def explored() -> str | None:
            assert not task.done(), out.getvalue()
            return out.getvalue() if "\n  predict " in out.getvalue() else None

        text = await eventually(explored, within=30)
        assert clock.speed == 1.0
        feedback_url = re.search(r"^  feedback  (\S+)  SQLite in ", text, re.M)[1]  # type: ignore[index]
        result = json.loads(re.search(r"^result (.*)$", text, re.M)[1])  # type: ignore[index]
        urls = dict(re.findall(r"^  (\w[\w ]*?)\s+curl -si? '?([^' ]+)", text, re.M))

        assert result["model"]["samples"] == result["requests"] > 50
        async with aiohttp.ClientSession() as session:
            base = f"{feedback_url}/v1/monitors/default/churn/metrics"
            async with session.get(base, params={"window": result["window"]}) as response:
                overall = await response.json()
            assert figures(overall["served_by"]["model"], whole=True) == result["model"]
            # the reviewer labeled what it leased, as many as the reviewed estimate counts
            assert result["reviews"]["labeled"] == result["model"]["reviews"] > 0
            assert figures(overall["served_by"]["fallback"]) == result["fallback"]

            # The reference the demo uploaded carries scores and actuals, so it is calibrated and
            # the window's accuracy is estimated from the model's scores with no label; the view
            # showed that estimate, marked as one, and the result line says what it is read
            # against (the default run's story: tests/e2e/test_demo.py).
            reference_url = f"{feedback_url}/v1/monitors/default/churn/reference"
            async with session.get(reference_url) as response:
                profile = (await response.json())["profile"]
            assert profile["calibration"] is not None
            async with session.get(base) as response:
                window = await response.json()
            estimated = window["served_by"]["model"]["estimated"]["accuracy"]
            assert estimated["lower"] <= estimated["value"] <= estimated["upper"]
            assert re.search(r"^\d\d:\d\d  [A-Z]\w+ .*  ≈0\.\d\d  ", text, re.M), text
            assert (result["estimate"]["threshold"], result["estimate"]["min_samples"]) == (0.8, 20)

            names = (
                "metrics API",
                "state",
                "drift",
                "dataset",
                "outliers",
                "reviewed",
                "review queue",
                "segment",
                "versions",
                "compare",
                "Prometheus",
            )
            for name in (*names, "sidecar"):
                async with session.get(urls[name]) as response:
                    assert response.status == 200, name
                    body = await response.text()
                if name == "dataset":
                    rows = body.splitlines()[1:]
                    assert len(rows) == result["model"]["labeled"] + result["fallback"]["labeled"]
                if name == "reviewed":  # the rows the reviewer labeled, each with its pi
                    table = list(csv.DictReader(io.StringIO(body)))
                    assert len(table) == result["model"]["reviews"]
                    assert {row["reviewer"] for row in table} == {"demo-reviewer"}
                    assert all(0 < float(row["pi"]) <= 1 for row in table)
                if name == "outliers":  # the broken meter's labeled records, scored as outliers
                    table = list(csv.DictReader(io.StringIO(body)))
                    assert table
                    assert all(float(row["outlier"]) > 0 for row in table)
                    assert {row["features"].count('"monthly_charges":0.0') for row in table} == {1}
                if name == "segment":  # the summary's ranges of tenure, as the API ranks them
                    found = json.loads(body)["segment"]
                    assert [v["value"] for v in found["values"]] == [
                        v["name"] for v in result["segment"]["values"]
                    ]
                    assert [v["labeled"] for v in found["values"]] == [
                        v["labeled"] for v in result["segment"]["values"]
                    ]
                if name == "versions":  # v1 and the canary's v2, every model record one's
                    found = json.loads(body)["versions"]
                    assert {v["version"] for v in found} == {"v1", "v2"}
                    assert sum(v["samples"] for v in found) == result["model"]["samples"]
                if name == "compare":  # what the summary says of v2 against v1
                    assert json.loads(body)["metrics"]["accuracy"] == result["compare"]["accuracy"]
                if name == "drift":  # every record measured against the uploaded reference
                    report = json.loads(body)["drift"]
                    assert report["status"] == "ok"
                    assert report["reference"]["rows"] == churn_model.TRAINING_SIZE
                    assert report["samples"] == result["model"]["samples"]
                    assert report["samples"] + result["fallback"]["samples"] >= result["requests"]
            # the backtest the summary ends with, asked again with the command it offers
            assert result["backtest"]["predictions"] <= result["model"]["samples"]
            command = re.search(r"^  backtest +truthloop (backtest .*)$", text, re.M)[1]  # type: ignore[index]
            argv = shlex.split(command)
            argv[argv.index("-f") + 1] = str(ROOT / argv[argv.index("-f") + 1])
            argv[argv.index("--html") + 1] = str(tmp_path / "backtest.html")
            assert await asyncio.to_thread(truthloop_cli.main, [*argv, "--json"]) == 0
            asked = json.loads(capsys.readouterr().out)
            assert asked["result"]["monitor"] == "default/churn"
            assert asked["result"]["predictions"] >= result["backtest"]["predictions"]
            assert (tmp_path / "backtest.html").read_text().startswith("<!DOCTYPE html>")
            predict = shlex.split(text.splitlines()[-1].split("predict", 1)[1])
            async with session.post(
                predict[2],
                data=predict[predict.index("-d") + 1],
                headers=dict([predict[predict.index("-H") + 1].split(": ")]),
            ) as response:
                assert response.status == 200
                assert "X-Prediction-ID" in response.headers
    finally:
        stop.set()
        assert await task == 0
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(feedback_url + "/healthz"):
                pass
