"""`truthloop reference` as a process against a real feedback service: it streams the file, prints
what was stored, and says any refusal in one line naming the file (and its line), no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.commands import on_a_terminal, run
from tests.support.feedback import Service, ServiceFactory, monitor_body
from truthloop.core import scopes
from truthloop.reference import PROGRESS_FROM

pytest_plugins = ["tests.support.feedback_fixtures"]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """The command does the same whatever the service stores in: SQLite only (the API's own
    tests run on both stores)."""
    return f"sqlite://{tmp_path}/feedback.db"


GOOD = "tenure,plan,prediction\n" + "".join(
    f"{12 + (i % 7) * 0.5},{'basic' if i % 3 else 'pro'},{i % 2}\n" for i in range(300)
)


async def reference(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `truthloop reference ARGS...`."""
    return await run("reference", *args, env=env)


async def test_a_file_is_stored_and_its_summary_printed(service: Service, tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    train.write_text(GOOD)
    status, out, err = await reference(
        "-f", str(train), "--monitor", "ml/churn", "--version", "v1",
        "--feedback-url", service.base,
    )  # fmt: skip
    assert (status, err) == (0, ""), err
    assert out.startswith(f"{train}: stored reference ")
    assert "of ml/churn (version v1): 300 rows; tenure numeric, plan categorical" in out
    stored = await service.ok("GET", "/v1/monitors/ml/churn/reference?version=v1")
    assert (stored["version"], stored["profile"]["rows"]) == ("v1", 300)


async def test_ndjson_by_its_extension_and_warnings_printed(
    service: Service, tmp_path: Path
) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(f'{{"tenure": {i}, "fee": 5, "prediction": {i % 2}}}\n' for i in range(40))
    )
    status, out, err = await reference(
        "-f", str(data), "--monitor", "ml/churn", "--feedback-url", service.base
    )
    assert status == 0, err
    assert "(every version without its own): 40 rows" in out
    assert f"{data}: warning: " in out
    assert "fee" in out


async def test_a_bad_row_is_one_line_naming_the_file_and_the_line(
    service: Service, tmp_path: Path
) -> None:
    train = tmp_path / "train.csv"
    lines = GOOD.splitlines()
    train.write_text("\n".join([*lines[:4], "13.5,basic", *lines[4:]]) + "\n")
    status, out, err = await reference(
        "-f", str(train), "--monitor", "ml/churn", "--feedback-url", service.base
    )
    assert status == 1
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"truthloop reference: {train}: line 5")
    assert (await service.call("GET", "/v1/monitors/ml/churn/reference"))[0] == 404


async def test_what_cannot_be_sent_is_one_line_each(service: Service, tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    train.write_text(GOOD)
    odd = tmp_path / "train.xlsx"
    odd.write_text(GOOD)
    base = ["--feedback-url", service.base]
    cases = [
        ([ "-f", str(tmp_path / "missing.csv"), "--monitor", "ml/churn", *base], 2,
         "missing.csv: No such file or directory"),
        (["-f", str(odd), "--monitor", "ml/churn", *base], 2, "--format"),
        (["-f", str(train), "--monitor", "churn", *base], 2, "--monitor 'churn'"),
        (["-f", str(train), "--monitor", "ml/nope", *base], 1, "ml/nope is not registered"),
        (["-f", str(train), "--monitor", "ml/churn", "--feedback-url", "http://127.0.0.1:9"], 1,
         "cannot reach the feedback service at http://127.0.0.1:9"),
        (["-f", str(train), "--monitor", "ml/churn", "--feedback-url", "nowhere"], 2,
         "--feedback-url"),
    ]  # fmt: skip
    for args, expected, says in cases:
        status, _out, err = await reference(*args)
        assert status == expected, (args, err)
        assert len(err.splitlines()) == 1, err
        assert err.startswith("truthloop reference: "), err
        assert says in err, err
        assert "Traceback" not in err


async def test_the_token_comes_from_its_file_and_a_namespace_token_may_upload(
    start_service: ServiceFactory, tmp_path: Path
) -> None:
    service = await start_service(token="admin")
    await service.put_monitor(monitor_body())
    await service.ok("PUT", "/v1/tokens/ml", json={"sha256": scopes.digest("ml-token")})
    train = tmp_path / "train.csv"
    train.write_text(GOOD)
    token = tmp_path / "token"
    token.write_text("ml-token\n")
    args = ["-f", str(train), "--monitor", "ml/churn", "--feedback-url", service.base]
    status, _, err = await reference(*args, env={"TRUTHLOOP_TOKEN": ""})
    assert status == 1
    assert "writes need a bearer token" in err or "missing or wrong bearer token" in err
    status, out, err = await reference(*args, "--token-file", str(token))
    assert status == 0, err
    assert "stored reference" in out


async def test_a_big_file_shows_a_progress_bar_on_a_terminal(
    service: Service, tmp_path: Path
) -> None:
    train = tmp_path / "big.csv"
    row = "12.25,basic,1\n"
    with train.open("w") as f:
        f.write("tenure,plan,prediction\n")
        f.write(row * (PROGRESS_FROM // len(row) + 1))
    status, out, shown = await on_a_terminal(
        "reference", "-f", str(train), "--monitor", "ml/churn", "--feedback-url", service.base
    )
    assert status == 0, shown.decode(errors="replace")
    assert "stored reference" in out
    assert b"big.csv" in shown, shown[-500:]
    assert b"MB" in shown, shown[-500:]
