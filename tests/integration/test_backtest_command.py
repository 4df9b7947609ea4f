"""`truthloop backtest` on each store, through the service (--feedback-url) and on the store
itself (--store): the same answer, a readable table, JSON, and errors in one line naming the
file and line or the flag."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_feedback_backtest import MINUTES, SPEC, live
from tests.support.feedback import T0, FakeClock, Service, monitor_body
from truthloop import cli

pytest_plugins = ["tests.support.feedback_fixtures"]


async def command(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, ["backtest", *argv])


@pytest.fixture
async def lived(start_service: Any, clock: FakeClock) -> Service:
    service = await start_service()
    await service.put_monitor(monitor_body(**SPEC))
    await live(service, clock)
    return service


def written(tmp_path: Path, **spec: Any) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(monitor_body(**{**SPEC, **spec}), sort_keys=False))
    return path


async def test_the_service_and_the_store_answer_alike(
    lived: Service, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = written(tmp_path)
    period = ["--from", str(T0), "--to", str(T0 + 60 * MINUTES)]
    sweep = ["--sweep", "alerts[accuracy-low].below=0.5:0.8:0.1", "--suggest"]
    assert (
        await command("-f", str(path), "--feedback-url", lived.base, *period, *sweep, "--json") == 0
    )
    served = json.loads(capsys.readouterr().out)
    assert await command("-f", str(path), "--store", store_url, *period, *sweep, "--json") == 0
    assert json.loads(capsys.readouterr().out) == served
    assert len(served["result"]["episodes"]) == 1
    assert len(served["sweep"]["candidates"]) == 4
    html = tmp_path / "backtest.html"
    assert (
        await command("-f", str(path), "--store", store_url, *period, *sweep, "--html", str(html))
        == 0
    )
    out = capsys.readouterr().out
    assert "fallback: 1 episode (24.00 a day)" in out
    assert "Fallback episodes" in out
    assert "Alerts" in out
    assert "alerts[acc" in out  # the sweep's column (folded), not read as markup
    assert "Rules against the model in the episodes: " in out
    assert "left out:" not in out  # the rule reads nothing: every labeled record is compared
    assert html.read_text().startswith("<!DOCTYPE html>")
    assert 'id="rules"' in html.read_text()


async def test_errors_name_the_file_and_line_or_the_flag(
    lived: Service, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = written(tmp_path, alerts=[{"name": "a", "metric": "accuracy", "below": "low"}])
    line = next(i for i, text in enumerate(bad.read_text().splitlines(), 1) if "below" in text)
    assert await command("-f", str(bad), "--store", store_url) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"truthloop backtest: {bad}:{line}: spec.alerts[0].below:")
    assert "\n" not in err
    good = written(tmp_path)
    for where in (["--store", store_url], ["--feedback-url", lived.base]):
        assert await command("-f", str(good), *where, "--sweep", "alerts[nope].for=0s") == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("truthloop backtest: --sweep 'alerts[nope].for=0s': alerts[nope]:")
        assert await command("-f", str(good), *where, "--from", "someday") == 2
        assert capsys.readouterr().err.startswith("truthloop backtest: --from: expected")
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(monitor_body(name="other", **SPEC)))
    assert await command("-f", str(other), "--store", store_url) == 2
    assert "no monitor ml/other in the store (it holds: ml/churn)" in capsys.readouterr().err
    assert await command("-f", str(other), "--feedback-url", lived.base) == 1
    assert "ml/other: monitor: ml/other is not registered" in capsys.readouterr().err
    assert await command("-f", str(tmp_path / "none.yaml"), "--store", store_url) == 2
    assert "none.yaml: cannot read" in capsys.readouterr().err
