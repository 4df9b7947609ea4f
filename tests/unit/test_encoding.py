"""Capture reads the JSON inside a gzipped or deflated body (MLServer gzips answers of 500 bytes
or more), within the size bound an uncompressed body has."""

from __future__ import annotations

import gzip
import zlib

import pytest

from truthloop.core import encoding

JSON = b'{"outputs": [{"name": "predict", "data": [' + b"0, 1, " * 200 + b"1]}]}"


def test_a_body_without_a_content_coding_is_read_as_it_is() -> None:
    assert encoding.decoded(JSON, [(b"Content-Type", b"application/json")], 1 << 20) is JSON
    assert encoding.decoded(JSON, [(b"Content-Encoding", b"identity")], 1 << 20) is JSON


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        (b"gzip", gzip.compress),
        (b"GZIP", gzip.compress),
        (b"x-gzip", gzip.compress),
        (b"deflate", zlib.compress),
        (b"deflate", lambda b: zlib.compress(b)[2:-4]),
    ],
)
def test_a_gzipped_or_deflated_body_is_inflated(coding: bytes, compress: object) -> None:
    body = compress(JSON)  # type: ignore[operator]
    assert encoding.decoded(body, [(b"content-encoding", coding)], 1 << 20) == JSON


def test_codings_applied_one_after_another_are_undone_last_first() -> None:
    twice = zlib.compress(gzip.compress(JSON))
    headers = [(b"Content-Encoding", b"gzip"), (b"Content-Encoding", b"identity, deflate")]
    assert encoding.decoded(twice, headers, 1 << 20) == JSON


def test_a_body_that_inflates_past_the_bound_is_not_inflated_further() -> None:
    bomb = gzip.compress(b" " * 10_000_000)
    assert len(bomb) < 20_000
    assert encoding.decoded(bomb, [(b"Content-Encoding", b"gzip")], 1 << 20) == "body_too_large"
    assert (
        encoding.decoded(gzip.compress(JSON), [(b"Content-Encoding", b"gzip")], len(JSON)) == JSON
    )


@pytest.mark.parametrize(
    ("body", "coding"),
    [(JSON, b"br"), (JSON, b"zstd"), (JSON, b"gzip"), (gzip.compress(JSON)[:-9], b"gzip")],
)
def test_a_coding_not_read_here_or_a_broken_stream_is_unreadable(
    body: bytes, coding: bytes
) -> None:
    assert encoding.decoded(body, [(b"Content-Encoding", coding)], 1 << 20) == "content_encoding"
