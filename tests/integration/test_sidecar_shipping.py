"""The shipper against a real HTTP server on 127.0.0.1: batches, outages, refusals, the spool."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest

from tests.support.fake_feedback import PREDICTIONS, FakeFeedback, Hang
from tests.support.waiting import eventually
from truthloop.sidecar.backoff import BackoffSettings
from truthloop.sidecar.shipper import Shipper, ShipperSettings
from truthloop.sidecar.spool import footprint


def record(i: int) -> bytes:
    return msgspec.json.encode(
        {
            "prediction_id": f"p{i:06d}",
            "monitor": "ml/churn",
            "model_version": "v1",
            "entity_id": f"u{i}",
            "ts": 1.0e9 + i,
            "prediction": i % 2,
            "served_by": "model",
        }
    )


@pytest.fixture
async def feedback() -> AsyncIterator[FakeFeedback]:
    async with FakeFeedback(token="s3cret") as service:
        yield service


@pytest.fixture
def settings(feedback: FakeFeedback, tmp_path: Path) -> ShipperSettings:
    return ShipperSettings(
        feedback_url=feedback.url,
        spool_dir=tmp_path / "spool",
        token="s3cret",
        batch_records=500,
        post_records=500,
        linger=0.02,
        timeout=0.5,
        backoff=BackoffSettings(base=0.02, cap=0.1),
    )


async def test_records_arrive_in_batches_with_the_bearer_token(
    settings: ShipperSettings, feedback: FakeFeedback
) -> None:
    shipper = Shipper(settings)
    shipper.start()
    for i in range(2000):
        shipper.submit(record(i))
    await eventually(lambda: len(feedback.records) == 2000, "2000 records")
    await shipper.close(1.0)
    assert feedback.order == [f"p{i:06d}" for i in range(2000)]
    assert feedback.resent == 0
    assert feedback.posts >= 4  # batch_records=500
    assert set(feedback.auth) == {"Bearer s3cret"}
    assert shipper.stats.shipped == 2000
    assert not shipper.stats.dropped


async def test_an_outage_spools_and_everything_arrives_once_in_order(
    settings: ShipperSettings, feedback: FakeFeedback
) -> None:
    shipper = Shipper(settings)
    shipper.start()
    for i in range(1000):
        shipper.submit(record(i))
    await eventually(lambda: len(feedback.records) == 1000)
    await feedback.stop()
    for i in range(1000, 3000):
        shipper.submit(record(i))
    await eventually(lambda: shipper.spool.records == 2000, "the outage's records spooled")
    assert shipper.buffer.bytes == 0
    assert shipper.down
    await feedback.start()
    for i in range(3000, 4000):
        shipper.submit(record(i))
    await eventually(lambda: len(feedback.records) == 4000, "every record after the outage")
    await shipper.close(1.0)
    assert feedback.resent == 0
    assert feedback.order == [f"p{i:06d}" for i in range(4000)]
    assert shipper.spool.records == 0
    assert list(settings.spool_dir.iterdir()) == []
    assert shipper.stats.retried > 0
    assert not shipper.stats.dropped


async def test_items_the_service_refuses_are_dropped_and_the_rest_delivered(
    settings: ShipperSettings, feedback: FakeFeedback
) -> None:
    feedback.reject = lambda item: "unusable_label" if item["entity_id"].endswith("7") else None
    shipper = Shipper(settings)
    shipper.start()
    for i in range(100):
        shipper.submit(record(i))
    await eventually(lambda: len(feedback.records) == 90)
    await shipper.close(1.0)
    assert not any(pid.endswith("7") for pid in feedback.ids())
    assert shipper.stats.dropped == {"rejected": 10}
    assert shipper.stats.rejected == {"unusable_label": 10}
    assert shipper.stats.shipped == 90


async def test_records_of_a_monitor_not_registered_yet_are_kept_until_it_is(
    settings: ShipperSettings, feedback: FakeFeedback
) -> None:
    registered = False

    def refuse(item: dict[str, object]) -> str | None:
        if str(item["entity_id"]).endswith("7"):
            return "unusable_label"
        return None if registered else "unknown_monitor"

    feedback.reject = refuse
    shipper = Shipper(settings)
    shipper.start()
    for i in range(100):
        shipper.submit(record(i))
    await eventually(lambda: feedback.posts >= 3, "three refused attempts")
    assert not feedback.records
    registered = True
    await eventually(lambda: len(feedback.records) == 90, "the 90 usable records")
    await shipper.close(1.0)
    assert shipper.stats.dropped == {"rejected": 10}
    assert shipper.stats.rejected == {"unusable_label": 10}
    assert shipper.stats.retried >= 90


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_refused_capture_is_kept_retried_and_reported_until_accepted(
    settings: ShipperSettings,
    feedback: FakeFeedback,
    status: int,
) -> None:
    feedback.status_override = status
    shipper = Shipper(replace(settings, monitor="ml/churn"))
    shipper.start()
    for i in range(10):
        shipper.submit(record(i))
    await eventually(lambda: feedback.posts >= 3, "three refused attempts")
    assert shipper.refused is not None
    assert shipper.refused.status == status
    assert shipper.refused.reason == {401: "unauthorized", 403: "forbidden"}.get(
        status, f"http_{status}"
    )
    assert not shipper.stats.dropped
    feedback.status_override = None
    await eventually(lambda: len(feedback.records) == 10, "the refused records delivered")
    await shipper.close(1.0)
    assert shipper.refused is None
    assert not shipper.stats.dropped
    assert {seen.monitor for seen in feedback.calls("POST", PREDICTIONS)} == {"ml/churn"}


async def test_a_rotated_token_is_reread_from_its_file_and_nothing_is_lost(
    settings: ShipperSettings,
    feedback: FakeFeedback,
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old-token\n")
    shipper = Shipper(replace(settings, token="old-token", token_file=token_file))
    shipper.start()
    for i in range(100):
        shipper.submit(record(i))
    await eventually(lambda: shipper.refused is not None, "capture refused")
    await eventually(lambda: shipper.spool.records == 100, "the refused records spooled")
    token_file.write_text("s3cret\n")  # the Secret rotated, its volume updated
    await eventually(lambda: len(feedback.records) == 100, "every record, with the new token")
    await shipper.close(1.0)
    assert feedback.auth[-1] == "Bearer s3cret"
    assert not shipper.stats.dropped
    assert shipper.refused is None


async def test_a_batch_too_large_for_the_service_is_split_until_it_fits(
    settings: ShipperSettings, feedback: FakeFeedback
) -> None:
    feedback.max_records = 60
    shipper = Shipper(settings)
    shipper.start()
    for i in range(500):
        shipper.submit(record(i))
    await eventually(lambda: len(feedback.records) == 500, "every record, in smaller batches")
    await shipper.close(1.0)
    assert feedback.order == [f"p{i:06d}" for i in range(500)]
    assert not shipper.stats.dropped


async def test_a_record_the_service_refuses_whole_is_found_by_splitting_and_dropped_alone(
    settings: ShipperSettings, feedback: FakeFeedback
) -> None:
    feedback.refuse_whole = lambda item: item["entity_id"] == "u123"
    feedback.max_records = 1000
    shipper = Shipper(settings)
    shipper.start()
    for i in range(500):
        shipper.submit(record(i))
    await eventually(lambda: len(feedback.records) == 499, "all records but the poison one")
    await shipper.close(1.0)
    assert "p000123" not in feedback.ids()
    assert shipper.stats.dropped == {"rejected": 1}
    assert shipper.stats.rejected == {"poison": 1}


async def test_a_single_record_too_large_for_the_service_is_dropped_and_counted(
    settings: ShipperSettings, feedback: FakeFeedback
) -> None:
    feedback.max_records = 0
    shipper = Shipper(settings)
    shipper.start()
    for i in range(3):
        shipper.submit(record(i))
    await eventually(lambda: shipper.stats.dropped["rejected"] == 3)
    await shipper.close(1.0)
    assert shipper.stats.rejected == {"too_large": 3}
    assert shipper.spool.records == 0


async def test_server_errors_are_retried_until_accepted(
    settings: ShipperSettings, feedback: FakeFeedback
) -> None:
    feedback.status_override = 503
    shipper = Shipper(settings)
    shipper.start()
    for i in range(10):
        shipper.submit(record(i))
    await eventually(lambda: feedback.posts >= 3, "three attempts")
    feedback.status_override = None
    await eventually(lambda: len(feedback.records) == 10)
    await shipper.close(1.0)
    assert shipper.stats.retried >= 20
    assert not shipper.stats.dropped


async def test_a_full_queue_refuses_records_and_counts_them(settings: ShipperSettings) -> None:
    one = len(record(0)) + 1
    shipper = Shipper(replace(settings, queue_bytes=10 * one))
    for i in range(15):  # not started: nothing drains the queue
        shipper.submit(record(i))
    assert shipper.buffer.bytes == 10 * one
    assert shipper.stats.dropped == {"queue_full": 5}


async def test_a_service_that_never_answers_fills_the_spool_not_memory(
    settings: ShipperSettings,
) -> None:
    hang = Hang()
    await hang.start()
    one = len(record(0)) + 1
    bound = 400 * one
    shipper = Shipper(replace(settings, feedback_url=hang.url, queue_bytes=bound))
    shipper.start()
    peak = 0
    for i in range(5000):
        shipper.submit(record(i))
        peak = max(peak, shipper.buffer.bytes)
        if i % 100 == 99:
            await eventually(lambda: shipper.buffer.bytes < bound // 2 + 100 * one)
    await eventually(lambda: shipper.spool.records + len(shipper.buffer) >= 4500, "spooling")
    assert peak <= bound
    assert shipper.stats.dropped["queue_full"] == 0
    await shipper.close(1.0)
    await hang.stop()
    assert shipper.spool.records == 5000


async def test_close_spools_what_the_absent_service_did_not_take_and_a_restart_sends_it(
    settings: ShipperSettings, feedback: FakeFeedback
) -> None:
    await feedback.stop()
    shipper = Shipper(settings)
    shipper.start()
    for i in range(5000):
        shipper.submit(record(i))
    await shipper.close(2.0)
    assert shipper.spool.records == 5000
    assert sum(int(p.name.split("-")[1].split(".")[0]) for p in settings.spool_dir.iterdir()) == (
        5000
    )
    shipper.submit(record(9999))
    assert shipper.stats.dropped == {"closed": 1}

    await feedback.start()
    again = Shipper(settings)
    again.start()
    await eventually(lambda: len(feedback.records) == 5000, "the spool replayed")
    await again.close(1.0)
    assert feedback.order == [f"p{i:06d}" for i in range(5000)]
    assert feedback.resent == 0


async def test_a_full_spool_drops_its_oldest_batches_and_counts_them(
    settings: ShipperSettings, feedback: FakeFeedback
) -> None:
    await feedback.stop()
    bound = 10 * footprint(100 * (len(record(0)) + 1))  # ten batches of 100 records, on disk
    shipper = Shipper(replace(settings, spool_bytes=bound, batch_records=100, post_records=100))
    shipper.start()
    for i in range(3000):
        shipper.submit(record(i))
    await shipper.close(2.0)
    kept = shipper.spool.records
    assert 900 <= kept <= 1000  # whole batches of up to 100 records
    assert shipper.stats.dropped == {"spool_full": 3000 - kept}
    assert shipper.spool.bytes <= bound
    on_disk = sum(footprint(p.stat().st_size) for p in settings.spool_dir.iterdir())
    assert on_disk == shipper.spool.bytes

    await feedback.start()
    again = Shipper(settings)
    again.start()
    await eventually(lambda: len(feedback.records) == kept)
    await again.close(1.0)
    assert feedback.order == [f"p{i:06d}" for i in range(3000 - kept, 3000)]


async def test_a_burst_after_an_outage_that_ended_while_idle_arrives_whole(
    settings: ShipperSettings, feedback: FakeFeedback
) -> None:
    """The spiller decided to spill during the outage and waits for records; the service comes
    back while no traffic flows; the next burst, spooled by that spiller, must still arrive."""
    shipper = Shipper(settings)
    shipper.start()
    await feedback.stop()
    for i in range(500):
        shipper.submit(record(i))
    await eventually(lambda: shipper.spool.records == 500, "the outage's records spooled")
    await feedback.start()
    await eventually(lambda: len(feedback.records) == 500, "the spool replayed")
    await eventually(lambda: not shipper.down, "the service counted as up")
    for burst in range(10):  # smaller than a batch: the spiller and the sender both linger
        for i in range(1000 + burst * 50, 1050 + burst * 50):
            shipper.submit(record(i))
        await eventually(lambda: not len(shipper.buffer), "the burst taken")
    await eventually(
        lambda: len(feedback.records) == 1000 or bool(shipper.stats.dropped), "every record"
    )
    await shipper.close(1.0)
    assert not shipper.stats.dropped
    assert len(feedback.records) == 1000
    assert list(settings.spool_dir.iterdir()) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB filesystem of its own (tmpfs), so the disk fills before the spool's bound."""
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            "mounting a 2 MiB tmpfs needs root (CI runs as root): "
            + mounted.stderr.decode(errors="replace").strip()
        )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


async def test_a_full_disk_drops_the_oldest_batches_not_the_newest_and_logs_little(
    settings: ShipperSettings,
    feedback: FakeFeedback,
    small_disk: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await feedback.stop()
    spool = small_disk / "spool"
    shipper = Shipper(replace(settings, spool_dir=spool, spool_bytes=1 << 30))
    shipper.start()
    total = 30_000  # about 5 MiB of records for a 2 MiB disk
    for i in range(total):
        shipper.submit(record(i))
        if i % 1000 == 999:
            await eventually(lambda: not len(shipper.buffer), "the records spooled")
    await shipper.close(5.0)
    kept = shipper.spool.records
    assert 0 < kept < total
    assert shipper.stats.dropped == {"spool_full": total - kept}
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) <= 3, [r.getMessage() for r in errors]

    await feedback.start()
    again = Shipper(replace(settings, spool_dir=spool))
    again.start()
    await eventually(lambda: len(feedback.records) == kept, "the spool replayed")
    await again.close(1.0)
    assert feedback.order == [f"p{i:06d}" for i in range(total - kept, total)]


async def test_a_batch_on_disk_the_index_does_not_know_is_adopted_while_running(
    settings: ShipperSettings, feedback: FakeFeedback
) -> None:
    shipper = Shipper(replace(settings, adopt_interval=0.0))
    shipper.start()
    orphan = b"".join(record(i) + b"\n" for i in range(20))
    (settings.spool_dir / f"{0:016d}-20.ndjson").write_bytes(orphan)
    for i in range(20, 30):  # traffic turns the sender's loop, which looks for orphans
        shipper.submit(record(i))
    await eventually(lambda: len(feedback.records) == 30, "the orphan's records and the rest")
    await shipper.close(1.0)
    assert list(settings.spool_dir.iterdir()) == []
    assert not shipper.stats.dropped


@contextlib.asynccontextmanager
async def slow_disk() -> AsyncIterator[None]:
    """The disk stalls until the block ends: the spool's file work (in the loop's default
    executor) queues behind more stalled jobs than the executor has threads."""
    loop = asyncio.get_running_loop()
    release = threading.Event()
    stalled = [loop.run_in_executor(None, release.wait) for _ in range(64)]
    try:
        yield
    finally:
        release.set()
        await asyncio.gather(*stalled)


async def test_a_batch_spilled_while_the_sender_waits_for_records_is_sent_without_more_traffic(
    settings: ShipperSettings, feedback: FakeFeedback
) -> None:
    """Past the high-water mark the sender POSTs one batch while the spiller spools the next; the
    disk is slow, so the sender, back from its POSTs, finds the spool empty and waits for
    records. The spooled batch must still be sent though no record comes to wake the sender."""
    bound = sum(len(record(i)) + 1 for i in range(300))  # three batches, past the high water
    shipper = Shipper(replace(settings, queue_bytes=bound, batch_records=100, post_records=100))
    shipper.start()
    async with slow_disk():
        for i in range(300):
            shipper.submit(record(i))
        await eventually(lambda: len(feedback.records) == 200, "the batches not spilled")
        assert not len(shipper.buffer)
        assert shipper.spool.records == 0  # the third batch is still being written
    await eventually(lambda: len(feedback.records) == 300, "the spilled batch")
    await shipper.close(1.0)
    assert not shipper.stats.dropped
    assert feedback.resent == 0


async def test_a_token_that_cannot_be_a_header_is_no_token_until_the_file_is_fixed(
    settings: ShipperSettings, feedback: FakeFeedback, tmp_path: Path
) -> None:
    """A line break inside the token file would split the request's head: such a token is not
    sent, the service refuses, and the file is reread until it holds a usable token."""
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\r\nX-Injected: 1\n")
    shipper = Shipper(
        replace(settings, token=token_file.read_text().strip(), token_file=token_file)
    )
    shipper.start()
    for i in range(10):
        shipper.submit(record(i))
    await eventually(lambda: shipper.refused is not None, "capture refused")
    assert set(feedback.auth) == {None}
    token_file.write_text("s3cret\n")
    await eventually(lambda: len(feedback.records) == 10, "the records, with the fixed token")
    await shipper.close(1.0)
    assert not shipper.stats.dropped
