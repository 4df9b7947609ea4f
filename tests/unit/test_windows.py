"""Bucket and window arithmetic: windows are sums of minute buckets, rollups cover them exactly."""

from hypothesis import given, settings
from hypothesis import strategies as st

from truthloop.core import windows
from truthloop.core.windows import LEVEL_MINUTES, BucketRange


def test_buckets_are_epoch_minutes() -> None:
    assert windows.bucket_of(0) == 0
    assert windows.bucket_of(59.999) == 0
    assert windows.bucket_of(60) == 1
    assert windows.bucket_of(-0.5) == -1
    assert windows.bucket_start(3) == 180.0


def test_a_window_ends_with_the_bucket_holding_now() -> None:
    span = windows.window(now=3600 + 30, seconds=3600)
    assert span == BucketRange(1, 61)
    assert len(span) == 60
    assert windows.window(now=125, seconds=1) == BucketRange(2, 3)


def test_a_window_that_is_no_whole_number_of_minutes_takes_every_minute_it_touches() -> None:
    assert len(windows.window(now=3600, seconds=90)) == 2  # 1m30s: two buckets, not one
    assert len(windows.window(now=3600, seconds=61)) == 2
    assert len(windows.window(now=3600, seconds=120)) == 2


def test_decompose_uses_days_hours_then_minutes() -> None:
    thirty_days = windows.window(now=100 * 86400 + 37 * 60 + 5, seconds=30 * 86400)
    pieces = windows.decompose(thirty_days)
    assert {p.level for p in pieces} == {"minute", "hour", "day"}
    assert len(pieces) <= 5
    rows = sum(p.end - p.start for p in pieces)
    assert rows < 30 + 2 * 24 + 2 * 60


@settings(max_examples=300, deadline=None)
@given(st.integers(-(10**7), 10**7), st.integers(0, 80_000))
def test_decompose_covers_exactly_the_range(start: int, length: int) -> None:
    span = BucketRange(start, start + length)
    covered: list[int] = []
    for piece in windows.decompose(span):
        unit = LEVEL_MINUTES[piece.level]
        assert piece.start < piece.end
        for bucket in range(piece.start, piece.end):
            covered.extend(range(bucket * unit, (bucket + 1) * unit))
    assert sorted(covered) == list(range(span.start, span.end))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**7), st.integers(1, 5000), st.sampled_from([1, 5, 60, 120, 1440, 2880]))
def test_steps_are_aligned_and_cover_the_window(start: int, length: int, width: int) -> None:
    span = BucketRange(start, start + length)
    steps = windows.steps(span, width)
    assert steps.start % width == 0
    assert steps.start <= span.start < steps.start + width
    assert steps.start + steps.count * steps.width >= span.end
    assert steps.index(span.end - 1) == steps.count - 1
    assert steps.width % LEVEL_MINUTES[steps.level] == 0


def test_a_nice_step_is_the_smallest_of_the_ladder_that_keeps_to_the_points() -> None:
    day = 86400.0
    assert windows.nice_step(30 * day, 800) == 60  # 54 minutes a point -> 1h
    assert windows.nice_step(day, 100) == 15  # 14.4 -> 15m
    assert windows.nice_step(3600.0, 60) == 1
    assert windows.nice_step(3600.0, 10_000) == 1  # never below a minute
    assert windows.nice_step(day, 1) == 1440
    assert windows.nice_step(30 * day, 2) == 3 * 10080  # beyond the ladder: whole weeks


@given(
    st.integers(60, 90 * 86400),
    st.integers(1, 10_000),
    st.integers(0, 10**7),
)
def test_a_nice_step_draws_the_window_in_at_most_one_point_more_than_asked(
    seconds: int, points: int, now: int
) -> None:
    width = windows.nice_step(seconds, points)
    assert width in windows.NICE_STEPS or width % windows.NICE_STEPS[-1] == 0
    assert windows.steps(windows.window(now, seconds), width).count <= points + 1
    smaller = [w for w in windows.NICE_STEPS if w < width]
    assert not smaller or smaller[-1] * points < seconds / 60
