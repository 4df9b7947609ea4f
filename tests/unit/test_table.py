"""Reference tables read from CSV, NDJSON and Parquet: the cells typed one way whatever the format
or the path (numpy's fast reader or cell by cell), and every problem named by line and column."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from truthloop.core import table
from truthloop.core.table import Table, TableError


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def cells(t: Table, name: str) -> list[Any]:
    """A column's cells as Python values: a float, the other value, or None when missing."""
    column = t.columns[name]
    out: list[Any] = []
    for i, number in enumerate(column.numbers.tolist()):
        other = None if column.others is None else column.others[i]
        out.append(other if other is not None else (None if math.isnan(number) else number))
    return out


CSV = (
    b"age,city,prediction,score\n"
    b"31,Paris,1,0.9\n"
    b',"Saint-Denis, 93",0,0.2\n'
    b'NaN,"say ""hi""",1,\n'
    b"4.5e1, 7 ,true,1\n"
)


def test_csv_cells_are_numbers_text_or_missing() -> None:
    t = table.read([CSV], "csv")
    assert t.names == ("age", "city", "prediction", "score")
    assert t.rows == 4
    assert t.lines.tolist() == [2, 3, 4, 5]
    assert cells(t, "age") == [31.0, None, None, 45.0]
    assert cells(t, "city") == ["Paris", "Saint-Denis, 93", 'say "hi"', 7.0]
    assert cells(t, "prediction") == [1.0, 0.0, 1.0, "true"]
    assert cells(t, "score") == [0.9, 0.2, None, 1.0]


@given(st.integers(min_value=1, max_value=len(CSV)))
def test_csv_chunks_can_split_anywhere(size: int) -> None:
    whole = table.read([CSV], "csv")
    split = table.read(pieces(CSV, size), "csv")
    for name in whole.names:
        assert cells(split, name) == cells(whole, name)
    assert split.lines.tolist() == whole.lines.tolist()


def test_a_byte_order_mark_crlf_and_blank_lines() -> None:
    t = table.read([b"\xef\xbb\xbfx,y\r\n1,a\r\n\r\n2,b\r\n"], "csv")
    assert t.names == ("x", "y")
    assert cells(t, "x") == [1.0, 2.0]
    assert t.lines.tolist() == [2, 4]


def test_a_quoted_field_over_lines_keeps_the_line_numbers() -> None:
    t = table.read([b'x,note\n1,"two\nlines"\n2,ok\n'], "csv")
    assert cells(t, "note") == ["two\nlines", "ok"]
    assert t.lines.tolist() == [2, 4]


def test_underscores_and_infinities_are_not_numbers_as_written() -> None:
    t = table.read([b"x\n1_000\ninf\n-Infinity\n0x10\n"], "csv")
    assert cells(t, "x") == ["1_000", None, None, "0x10"]


def big_csv(
    rows: int, *, text_at: int | None = None, empty_at: int | None = None, quoted: bool = False
) -> bytes:
    out = io.StringIO()
    out.write("n,c,prediction\r\n" if quoted else "n,c,prediction\n")
    for i in range(rows):
        n = "" if i == empty_at else ("oops" if i == text_at else f"{i * 0.5}")
        if quoted:  # as R's write.csv and Excel write them: text quoted, CRLF
            out.write(f'{n},"{"abc"[i % 3]}, ""{i % 5}""",{i % 2}\r\n')
        else:
            out.write(f"{n},{'abc'[i % 3]},{i % 2}\n")
    return out.getvalue().encode()


@pytest.mark.parametrize(
    ("text_at", "empty_at", "quoted"),
    [
        (None, None, False),
        (None, 50_000, False),
        (50_000, None, False),
        (3, 50_001, False),
        (None, None, True),
        (50_000, 7, True),
    ],
)
def test_the_fast_path_and_the_cell_by_cell_path_agree(
    monkeypatch: pytest.MonkeyPatch, text_at: int | None, empty_at: int | None, quoted: bool
) -> None:
    data = big_csv(60_000, text_at=text_at, empty_at=empty_at, quoted=quoted)
    monkeypatch.setattr(table, "BLOCK", 1 << 14)
    taken: list[bool] = []
    fast_path = table._Csv._fast

    def spy(self: Any, text: str) -> bool:
        taken.append(fast_path(self, text))
        return taken[-1]

    monkeypatch.setattr(table._Csv, "_fast", spy)
    fast = table.read(pieces(data, 10_000), "csv")
    assert sum(taken) >= len(taken) - 2  # only the blocks with the odd cells go cell by cell
    if quoted:
        assert fast.columns["c"].others is not None
        assert fast.columns["c"].others[4].endswith(', "4"')
    monkeypatch.setattr(table._Csv, "_fast", lambda self, text: False)
    slow = table.read(pieces(data, 10_000), "csv")
    for name in ("n", "c", "prediction"):
        a, b = fast.columns[name], slow.columns[name]
        assert np.array_equal(a.numbers, b.numbers, equal_nan=True), name
        assert (a.others is None) == (b.others is None), name
        if a.others is not None and b.others is not None:
            assert a.others.tolist() == b.others.tolist(), name
    assert fast.lines.tolist() == slow.lines.tolist() == list(range(2, 60_002))
    column = fast.columns["n"]
    if text_at is not None:
        assert column.others is not None
        assert column.others[text_at] == "oops"
    if empty_at is not None:
        assert math.isnan(column.numbers[empty_at])


def test_rows_of_the_wrong_width_are_named_by_line() -> None:
    with pytest.raises(TableError) as e:
        table.read([b"a,b\n1,2\n3\n4,5,6\n7,8\n"], "csv")
    assert e.value.details == (
        "line 3: 1 cells, the header has 2",
        "line 4: 3 cells, the header has 2",
    )
    assert e.value.count == 2


def test_problems_are_bounded_and_counted() -> None:
    data = b"a,b\n" + b"1\n" * 500
    with pytest.raises(TableError) as e:
        table.read([data], "csv")
    assert len(e.value.details) == table.MAX_DETAILS
    assert e.value.count == 500
    assert str(e.value).endswith(f"and {500 - table.MAX_DETAILS} more")


def test_a_bad_header() -> None:
    with pytest.raises(TableError) as e:
        table.read([b"a,,a\n1,2,3\n"], "csv")
    assert e.value.details == (
        "line 1, column 2: a column without a name",
        'line 1, column 3: "a" again',
    )
    with pytest.raises(TableError, match="empty"):
        table.read([b""], "csv")


def test_not_utf8_names_the_line() -> None:
    with pytest.raises(TableError, match="line 3: not UTF-8"):
        table.read([b"a\n1\n\xff\n"], "csv")


def test_an_unclosed_quote_is_refused() -> None:
    with pytest.raises(TableError) as e:
        table.read([b'a,b\n1,2\n1,"open\n3,4\n'], "csv")
    assert e.value.details == ("line 3: a quote that is never closed (or a lone one in a cell)",)


def test_quotes_read_as_pythons_csv_reads_them() -> None:
    t = table.read([b'a,b\n"x"y,1\n5" screen,"2"\n"",3\n6" screen,4\n'], "csv")
    assert cells(t, "a") == ["xy", '5" screen', None, '6" screen']
    assert cells(t, "b") == [1.0, 2.0, 3.0, 4.0]


CELL = st.one_of(
    st.sampled_from(["", "nan", "1", "-2.5", "1e3", " 7 ", "1_0", "inf", "x", "a,b", 'q"q', "\n"]),
    st.text(alphabet='ab1.,"\n -', max_size=6),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(CELL, CELL, CELL), min_size=1, max_size=60),
    st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
    st.sampled_from(["\n", "\r\n"]),
    st.integers(min_value=8, max_value=200),
)
def test_any_csv_reads_the_same_by_either_path(
    rows: list[tuple[str, str, str]], quoting: int, end: str, block: int
) -> None:
    out = io.StringIO()
    writer = csv.writer(out, quoting=quoting, lineterminator=end)
    writer.writerow(["a", "b", "c"])
    writer.writerows(rows)
    data = out.getvalue().encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(table, "BLOCK", block)
        fast = table.read(pieces(data, 50), "csv")
        patch.setattr(table._Csv, "_fast", lambda self, text: False)
        slow = table.read(pieces(data, 50), "csv")
    assert fast.lines.tolist() == slow.lines.tolist()
    for name in ("a", "b", "c"):
        assert cells(fast, name) == cells(slow, name), name


NDJSON = b"""{"age": 31, "city": "Paris", "prediction": 1}
{"age": null, "city": 7, "prediction": true, "extra": "x"}

{"city": "Lyon", "prediction": 0, "age": 2.5}
"""


def test_ndjson_rows_are_objects_and_absent_keys_are_missing() -> None:
    t = table.read(pieces(NDJSON, 7), "ndjson")
    assert t.names == ("age", "city", "prediction", "extra")
    assert t.lines.tolist() == [1, 2, 4]
    assert cells(t, "age") == [31.0, None, 2.5]
    assert cells(t, "city") == ["Paris", 7.0, "Lyon"]
    assert cells(t, "prediction") == [1.0, True, 0.0]
    assert cells(t, "extra") == [None, "x", None]


def test_ndjson_problems_name_line_and_column() -> None:
    data = b'{"a": 1}\n[1]\n{"a": [1]}\n{"a": \n{"b": {"c": 1}}\n'
    with pytest.raises(TableError) as e:
        table.read([data], "ndjson")
    details = e.value.details
    assert details[0] == "line 2: expected a JSON object, got an array"
    assert details[1] == 'line 3, column "a": expected a number, string or boolean, got an array'
    assert details[2].startswith("line 4: not JSON")
    assert details[3] == 'line 5, column "b": expected a number, string or boolean, got an object'


@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["a", "b", "c"]),
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(-(10**6), 10**6),
                st.floats(allow_nan=False, allow_infinity=False),
                st.text(max_size=5),
            ),
        ),
        max_size=8,
    ),
    st.integers(min_value=1, max_value=64),
)
def test_ndjson_reads_what_was_written(rows: list[dict[str, Any]], size: int) -> None:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    t = table.read(pieces(data, size), "ndjson")
    assert t.rows == len(rows)
    for name in t.names:
        expected = []
        for r in rows:
            v = r.get(name)
            expected.append(
                float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
            )
        assert cells(t, name) == expected


def test_an_unknown_format() -> None:
    with pytest.raises(TableError, match="unknown format"):
        table.read([b""], "xlsx")  # type: ignore[arg-type]


def test_parquet_without_pyarrow_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # pyarrow is optional for users and installed for the tests: hide it to take the other path.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert not table.parquet_available()
    with pytest.raises(TableError, match="pip install pyarrow"):
        table.read([b"PAR1"], "parquet")


def test_parquet_columns_read_as_the_other_formats() -> None:
    if not table.parquet_available():
        pytest.skip("pyarrow is not installed: pip install -e '.[test]' installs it")
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(
        pa.table(
            {
                "age": pa.array([31, None, 45], pa.int64()),
                "city": pa.array(["Paris", None, "Lyon"]),
                "flag": pa.array([True, False, None]),
                "score": pa.array([0.5, float("nan"), 1.0]),
                "code": pa.array([1, 2, 1]).dictionary_encode(),
                "ts": pa.array([0, 1, 2], pa.timestamp("s", tz="UTC")),
                "nothing": pa.nulls(3),
            }
        ),
        sink,
    )
    t = table.read(pieces(sink.getvalue(), 100), "parquet")
    assert t.names == ("age", "city", "flag", "score", "code", "ts", "nothing")
    assert cells(t, "code") == [1.0, 2.0, 1.0]
    assert cells(t, "ts")[0].startswith("1970-01-01")
    assert cells(t, "nothing") == [None, None, None]
    assert cells(t, "age") == [31.0, None, 45.0]
    assert cells(t, "city") == ["Paris", None, "Lyon"]
    assert cells(t, "flag") == [True, False, None]
    assert cells(t, "score") == [0.5, None, 1.0]
    assert t.lines.tolist() == [1, 2, 3]
    nested = io.BytesIO()
    pq.write_table(pa.table({"l": pa.array([[1], [2]])}), nested)
    with pytest.raises(TableError, match='column "l"'):
        table.read([nested.getvalue()], "parquet")
    with pytest.raises(TableError, match="not a Parquet file"):
        table.read([b"nope"], "parquet")


def test_ndjson_blocks_keep_columns_that_appear_late_and_numbers_that_overflow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(table, "BLOCK", 64)
    rows = [{"a": i} for i in range(30)] + [{"a": 1, "late": "x"}, {"big": 10**400, "a": None}]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode() + b"null\n"
    with pytest.raises(TableError) as e:
        table.read(pieces(data, 10), "ndjson")
    assert e.value.details == ("line 33: expected a JSON object, got null",)
    t = table.read(pieces(data[: -len(b"null\n")], 10), "ndjson")
    assert t.names == ("a", "late", "big")
    assert cells(t, "late") == [None] * 30 + ["x", None]
    assert cells(t, "big") == [None] * 32
    assert cells(t, "a")[-3:] == [29.0, 1.0, None]


def test_ndjson_lists_of_one_length_are_refused_not_taken_for_a_dimension() -> None:
    data = b'{"emb": [0.1, 0.2], "a": 1}\n{"emb": [0.3, 0.4], "a": 2}\n'
    with pytest.raises(TableError) as e:
        table.read([data], "ndjson")
    assert e.value.details == (
        'line 1, column "emb": expected a number, string or boolean, got an array',
        'line 2, column "emb": expected a number, string or boolean, got an array',
    )


def test_captured_values_become_a_column_whatever_they_hold() -> None:
    column = table.values([1, 2.5, None, 10**400, float("inf"), "x", True, [1, 2], {"a": 1}])
    assert column.numbers[:2].tolist() == [1.0, 2.5]
    assert np.isnan(column.numbers[2:]).all()
    assert column.others is not None
    assert column.others.tolist() == [None] * 5 + ["x", True, None, None]
    lists = table.values([[1, 2], [3, 4]])
    assert lists.others is None
    assert np.isnan(lists.numbers).all()
    assert table.values([10**400, 3]).numbers.tolist()[1] == 3.0
