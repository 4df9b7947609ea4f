"""Reference tables: a data set read from CSV, NDJSON or Parquet into columns, for profiling.

`read(chunks, fmt)` takes the bytes as they arrive (an upload's body, a file read in blocks) and
returns a `Table`, or raises `TableError` whose `details` name the line and column of each
problem (at most `MAX_DETAILS`, with the count of all of them); nothing partial is returned.

Every column is held the same way, whatever the format (`Column`): the numbers as float64 (NaN
where the cell is not a number) and, only if the column has any, the other values (text, and for
NDJSON and Parquet booleans) as an object array. A cell is *missing* when it is neither: empty,
null, NaN or infinite. What a cell is, per format:

- CSV (RFC 4180: a header row of unique names, `"` quotes, `""` inside quotes, UTF-8, an optional
  byte order mark; quotes must pair up, while a quote inside a cell is read as Python's csv reads
  it): an empty cell or `NaN`/`nan` is missing; a cell that reads as a decimal
  number (Python's `float`, no `_`: `1`, `-2.5`, `1e-3`, ` 7 `) is a number; anything else is
  text, as written. Blank lines are skipped. Every row has as many cells as the header.
- NDJSON: one JSON object per line (blank lines skipped); its keys are columns, a key a row lacks
  is missing there. Numbers are numbers, strings and booleans other values, null is missing;
  arrays and objects are refused.
- Parquet (with `pyarrow`; the body is read whole, the format needs it): number columns are
  numbers, strings and booleans other values (dictionary-encoded ones as their values), times
  their ISO text, nulls missing; nested and binary types are refused. A row's "line" is its
  number, from 1.

The fast path for big CSVs parses blocks with numpy's C reader (which quotes as the csv module
does), typing each column as the first block typed it; a block it cannot take (a cell over two
lines, blank lines, empty cells next to quotes, a value the column's type does not take) is read
cell by cell with the same rules, so the result never depends on the path.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt

from truthloop.core import pointer

Format = Literal["csv", "ndjson", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "ndjson", "parquet")

MAX_DETAILS = 20
"""Problems a `TableError` lists; the rest are counted."""
MAX_COLUMNS = 1000
"""Columns a table may have (features are bounded further by the profile)."""
BLOCK = 4 << 20
"""Bytes parsed at a time: the memory of a read is the columns, not the text."""

Floats = npt.NDArray[np.float64]
Objects = npt.NDArray[np.object_]
Ints = npt.NDArray[np.int64]


class TableError(ValueError):
    """A data set that cannot be read; `details` name each problem's line and column (at most
    `MAX_DETAILS`), `count` is how many there were."""

    def __init__(self, details: Iterable[str], count: int | None = None) -> None:
        listed = tuple(details)
        self.details: tuple[str, ...] = listed[:MAX_DETAILS]
        self.count: int = max(count if count is not None else len(listed), len(self.details))
        more = self.count - len(self.details)
        summary = "; ".join(self.details) + (f"; and {more} more" if more > 0 else "")
        super().__init__(summary)


@dataclass(frozen=True, slots=True, eq=False)
class Column:
    """One column's cells: `numbers` (NaN where a cell is not a finite number) and `others`
    (the cells that are text or booleans; None elsewhere), itself None when there are none."""

    numbers: Floats
    others: Objects | None = None

    def present(self) -> npt.NDArray[np.bool_]:
        """Which cells hold a value (a number or another value)."""
        has = ~np.isnan(self.numbers)
        if self.others is not None:
            has |= not_none(self.others)
        return has


@dataclass(frozen=True, slots=True, eq=False)
class Table:
    """Columns of equal length, in the order the data set gave them; `lines[i]` is the line
    row `i` starts on (1-based: the header is line 1 of a CSV), for messages."""

    names: tuple[str, ...]
    columns: Mapping[str, Column]
    lines: Ints

    @property
    def rows(self) -> int:
        return len(self.lines)


class Problems:
    """Collects problems up to `MAX_DETAILS` and counts the rest (a table's and a profile's)."""

    __slots__ = ("count", "details")

    def __init__(self) -> None:
        self.details: list[str] = []
        self.count = 0

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.details) < MAX_DETAILS:
            self.details.append(text)

    def raise_any(self, error: type[TableError] = TableError) -> None:
        if self.count:
            raise error(self.details, self.count)


def read(chunks: Iterable[bytes], fmt: Format) -> Table:
    """The data set in `chunks` (its bytes in order, split anywhere) as a `Table`.

    Raises TableError naming every problem's line and column (bounded), or one saying the
    format is unknown or, for Parquet, that pyarrow is not installed.
    """
    if fmt == "csv":
        return _Csv().read(chunks)
    if fmt == "ndjson":
        return _ndjson(chunks)
    if fmt == "parquet":
        return _parquet(chunks)
    raise TableError([f"unknown format {fmt!r}; expected one of: {', '.join(FORMATS)}"])


def column_text(name: str) -> str:
    """A column's name as messages show it."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def show(value: object) -> str:
    """A cell's value as messages show it, short."""
    text = msgspec.json.encode(value).decode() if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:36] + "..." + text[-1]


def not_none(values: Objects) -> npt.NDArray[np.bool_]:
    """Which cells of an object array hold something (elementwise, in C)."""
    found: npt.NDArray[np.bool_] = values != None  # noqa: E711
    return found


# -- CSV -----------------------------------------------------------------------------------------

_MISSING_TEXT = frozenset(("", "NaN", "nan"))


def _cell(text: str) -> float | None:
    """A CSV cell as a number: NaN for missing, None for text."""
    if text in _MISSING_TEXT:
        return math.nan
    if "_" in text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else math.nan


def _typed(cells: list[str]) -> Column:
    """A CSV column's cells (text) typed by `_cell`."""
    try:
        numbers = np.array(cells, dtype=np.float64)
    except ValueError:
        pass
    else:
        if not any("_" in c for c in cells):
            numbers[~np.isfinite(numbers)] = np.nan
            return Column(numbers)
    # each distinct text is read once: text columns repeat their values
    read = {text: _cell(text) for text in set(cells)}
    texts = {text: value is None for text, value in read.items()}
    number = {text: math.nan if value is None else value for text, value in read.items()}
    numbers = np.fromiter(map(number.__getitem__, cells), dtype=np.float64, count=len(cells))
    others = np.array(cells, dtype=object)
    is_text = np.fromiter(map(texts.__getitem__, cells), dtype=bool, count=len(cells))
    any_other = bool(is_text.any())
    others[~is_text] = None
    return Column(numbers, others if any_other else None)


class _Csv:
    """Reads CSV block by block: a block ends at a line break outside quotes."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] | None = None
        self.numeric: tuple[bool, ...] = ()
        self.parts: list[list[Column]] = []
        self.lines: list[Ints] = []
        self.line = 0  # lines consumed so far
        self.last = 1  # the line the last row started on
        self.problems = Problems()

    def read(self, chunks: Iterable[bytes]) -> Table:
        quotes = 0
        for block in _blocks(chunks):
            quotes += block.count(b'"')
            try:
                text = block.decode("utf-8")
            except UnicodeDecodeError as e:
                line = self.line + block.count(b"\n", 0, e.start) + 1
                raise TableError([f"line {line}: not UTF-8 text"]) from None
            if self.names is None and text.startswith("\ufeff"):
                text = text[1:]
            self._block(text)
            self.problems.raise_any()
        if self.names is None:
            raise TableError(["no header row: the data set is empty"])
        if quotes % 2:
            raise TableError(
                [f"line {self.last}: a quote that is never closed (or a lone one in a cell)"]
            )
        columns = {
            name: concat([part[i] for part in self.parts]) for i, name in enumerate(self.names)
        }
        lines = np.concatenate(self.lines) if self.lines else np.empty(0, dtype=np.int64)
        return Table(self.names, columns, lines)

    def _block(self, text: str) -> None:
        if self.numeric and self._fast(text):
            return
        self._slow(text)

    def _fast(self, text: str) -> bool:
        """numpy's reader (which quotes as csv does) on a block of one row a line, with the
        column types of the first block; False when it cannot take the block."""
        quoted = '"' in text
        # CRLF ends lines; one row a line (checked below) means none was inside quotes
        text = text.replace("\r\n", "\n") if "\r" in text else text
        if "\r" in text or "\n\n" in text or text.startswith("\n"):
            return False
        assert self.names is not None
        body = text[:-1] if text.endswith("\n") else text
        if not body:
            return False
        # an empty cell reads as NaN, as `_cell` has it (not inside quotes: those go cell by cell)
        empty = ",," in body or ",\n" in body or "\n," in body or body[0] == "," or body[-1] == ","
        if empty and quoted:
            return False
        filled = _EMPTY_CELL.sub("nan", body) if empty else body
        dtype = [(f"c{i}", np.float64 if n else object) for i, n in enumerate(self.numeric)]
        try:
            parsed = np.loadtxt(
                io.StringIO(filled),
                dtype=dtype,
                delimiter=",",
                comments=None,
                quotechar='"',
                ndmin=1,
                encoding=None,
            )
        except ValueError:
            return False
        rows = len(parsed)
        if rows != body.count("\n") + 1:
            return False
        part: list[Column] = []
        for i, numeric in enumerate(self.numeric):
            values = parsed[f"c{i}"]
            if numeric:
                numbers = np.ascontiguousarray(values, dtype=np.float64)
                numbers[~np.isfinite(numbers)] = np.nan
                part.append(Column(numbers))
            else:
                part.append(_typed(values.tolist()))
        self.parts.append(part)
        self.lines.append(np.arange(self.line + 1, self.line + 1 + rows, dtype=np.int64))
        self.line += rows
        self.last = self.line
        return True

    def _slow(self, text: str) -> None:
        reader = csv.reader(io.StringIO(text, newline=""))
        rows: list[list[str]] = []
        starts: list[int] = []
        before = 0
        try:
            for row in reader:
                start = self.line + before + 1
                before = reader.line_num
                if not row or row == [""]:
                    continue
                if self.names is None:
                    self._header(row, start)
                    self.last = start
                    continue
                if len(row) != len(self.names):
                    self.problems.add(
                        f"line {start}: {len(row)} cells, the header has {len(self.names)}"
                    )
                    continue
                rows.append(row)
                starts.append(start)
                self.last = start
        except csv.Error as e:
            self.problems.add(f"line {self.line + reader.line_num}: {e}")
        self.line += text.count("\n")
        if self.problems.count or self.names is None:
            return
        columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in self.names]
        part = [_typed(cells) for cells in columns]
        if not self.numeric and rows:
            self.numeric = tuple(c.others is None for c in part)
        self.parts.append(part)
        self.lines.append(np.array(starts, dtype=np.int64))

    def _header(self, row: list[str], line: int) -> None:
        seen: set[str] = set()
        for index, name in enumerate(row, start=1):
            if not name:
                self.problems.add(f"line {line}, column {index}: a column without a name")
            elif name in seen:
                self.problems.add(f"line {line}, column {index}: {column_text(name)} again")
            seen.add(name)
        if len(row) > MAX_COLUMNS:
            self.problems.add(f"line {line}: {len(row)} columns, at most {MAX_COLUMNS}")
        self.names = tuple(row)


_EMPTY_CELL = re.compile(r"(?m)(?<![^,\n])(?=,|$)")


def _blocks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """`chunks` re-cut into blocks of about `BLOCK` bytes (one chunk or many) that end after a
    line break outside quotes (quotes pair up in RFC 4180, so an even count means outside). The
    search for a cut goes on where it stopped, so each byte is looked at about once."""
    buffer = bytearray()
    at = -1  # where the search for a cut goes on; -1: not begun
    odd = 0  # quotes in buffer[:at], mod 2
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= BLOCK:
            if at < 0:
                at = BLOCK - 1
                odd = buffer.count(b'"', 0, at) & 1
            cut = 0
            while not cut:
                line_break = buffer.find(b"\n", at)
                if line_break < 0:
                    odd ^= buffer.count(b'"', at) & 1
                    at = len(buffer)
                    break
                odd ^= buffer.count(b'"', at, line_break) & 1
                at = line_break + 1
                if not odd:
                    cut = at
            if not cut:
                break
            yield bytes(buffer[:cut])
            del buffer[:cut]
            at = -1
    if buffer:
        yield bytes(buffer)


def concat(parts: list[Column]) -> Column:
    """Columns one after the other."""
    if not parts:
        return Column(np.empty(0, dtype=np.float64))
    numbers = np.concatenate([p.numbers for p in parts]) if len(parts) > 1 else parts[0].numbers
    if all(p.others is None for p in parts):
        return Column(numbers)
    others = np.concatenate(
        [p.others if p.others is not None else np.full(len(p.numbers), None) for p in parts]
    )
    return Column(numbers, others)


def values(cells: Sequence[object]) -> Column:
    """A column of decoded JSON values (captured records): numbers, strings and booleans as a
    table holds them; null, NaN, infinities, numbers beyond float64, arrays and objects are
    missing. A column of numbers and nulls is converted in one numpy call."""
    kinds = set(map(type, cells))
    if kinds <= _NUMBERS:
        try:
            numbers = np.array(cells, dtype=np.float64)
        except OverflowError:  # an integer beyond float64: no number
            numbers = np.array([_finite(v) for v in cells], dtype=np.float64)
        numbers[~np.isfinite(numbers)] = np.nan
        return Column(numbers)
    numbers = np.array(
        [_finite(v) if type(v) is int or type(v) is float else math.nan for v in cells],
        dtype=np.float64,
    )
    if str not in kinds and bool not in kinds:
        return Column(numbers)
    # only text and booleans are kept: a list handed to numpy would become a dimension
    others = np.array([v if type(v) is str or type(v) is bool else None for v in cells], object)
    return Column(numbers, others)


# -- NDJSON --------------------------------------------------------------------------------------

_decode = msgspec.json.Decoder().decode


def _ndjson(chunks: Iterable[bytes]) -> Table:
    """Block by block: each block's lines decoded, then its columns taken out of the rows at C
    speed (one `dict.get` a cell); the rows are dropped before the next block."""
    problems = Problems()
    names: dict[str, None] = {}  # in the order they first appear
    parts: list[tuple[int, dict[str, Column]]] = []
    lines: list[Ints] = []
    line = 0
    for block in _line_blocks(chunks):
        numbered = [(line + i + 1, raw) for i, raw in enumerate(block.split(b"\n")) if raw.strip()]
        line += block.count(b"\n") + 1
        found: list[tuple[int, str]] = []  # the block's problems, put in line order
        rows: list[Any]
        try:
            rows = [_decode(raw) for _, raw in numbered]
        except msgspec.DecodeError:
            rows = []
            for at, raw in numbered:
                try:
                    rows.append(_decode(raw))
                except msgspec.DecodeError as e:
                    found.append((at, f"line {at}: not JSON: {e}"))
                    rows.append(None)
        if not all(type(row) is dict for row in rows):
            kept = []
            for (at, raw), row in zip(numbered, rows, strict=True):
                if type(row) is dict:
                    kept.append(((at, raw), row))
                elif row is not None or raw.strip() == b"null":
                    found.append(
                        (at, f"line {at}: expected a JSON object, got {pointer.describe(row)}")
                    )
            numbered = [n for n, _ in kept]
            rows = [row for _, row in kept]
        names.update(dict.fromkeys(itertools.chain.from_iterable(rows)))
        if len(names) > MAX_COLUMNS:
            problems.add(f"more than {MAX_COLUMNS} columns (keys) by line {line}")
            break
        at_lines = np.array([at for at, _ in numbered], dtype=np.int64)
        part = {}
        for name in names:
            part[name] = _json_column([row.get(name) for row in rows], name, at_lines, found)
        for _, text in sorted(found, key=lambda problem: problem[0]):
            problems.add(text)
        parts.append((len(rows), part))
        lines.append(at_lines)
    problems.raise_any()
    columns = {
        name: concat([p.get(name) or Column(np.full(n, np.nan)) for n, p in parts])
        for name in names
    }
    starts = np.concatenate(lines) if lines else np.empty(0, dtype=np.int64)
    return Table(tuple(names), columns, starts)


_NUMBERS = frozenset((int, float, type(None)))


def _json_column(
    cells: list[Any], name: str, lines: Ints, problems: list[tuple[int, str]]
) -> Column:
    """A column of decoded JSON values (None where absent or null): numbers, strings and
    booleans; an array or object is a problem named by line and column."""
    kinds = set(map(type, cells))
    if dict in kinds or list in kinds:
        for i, value in enumerate(cells):
            if type(value) is dict or type(value) is list:
                at = int(lines[i])
                problems.append(
                    (
                        at,
                        f"line {at}, column {column_text(name)}: expected a number, string or "
                        f"boolean, got {pointer.describe(value)}",
                    )
                )
    return values(cells)


def _finite(value: object) -> float:
    """A number as a finite float, else NaN (None, infinities, integers beyond float64)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return math.nan
    try:
        number = float(value)
    except OverflowError:
        return math.nan
    return number if math.isfinite(number) else math.nan


def _line_blocks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """`chunks` re-cut into blocks of whole lines (the last may lack its line break)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        if len(buffer) >= BLOCK:
            end = buffer.rfind(b"\n")
            if end >= 0:
                yield bytes(buffer[:end])
                del buffer[: end + 1]
    if buffer:
        yield bytes(buffer)


# -- Parquet -------------------------------------------------------------------------------------


def parquet_available() -> bool:
    """Whether Parquet can be read here (pyarrow is an optional dependency)."""
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _parquet(chunks: Iterable[bytes]) -> Table:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise TableError(["Parquet needs pyarrow: pip install pyarrow"]) from None
    body = b"".join(chunks)
    try:
        data = pq.read_table(pa.BufferReader(body))
    except (pa.ArrowException, OSError) as e:
        raise TableError([f"not a Parquet file: {e}"]) from None
    problems = Problems()
    columns: dict[str, Column] = {}
    names = tuple(str(n) for n in data.column_names)
    if len(names) != len(set(names)):
        problems.add("duplicate column names")
    if len(names) > MAX_COLUMNS:
        problems.add(f"{len(names)} columns, at most {MAX_COLUMNS}")
    problems.raise_any()
    for name, chunked in zip(names, data.columns, strict=True):
        kind = chunked.type
        try:
            if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
                numbers = np.asarray(
                    chunked.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
                ).copy()
                numbers[~np.isfinite(numbers)] = np.nan
                columns[name] = Column(numbers)
            elif pa.types.is_null(kind):
                columns[name] = Column(np.full(len(chunked), np.nan))
            elif pa.types.is_temporal(kind):  # a time, as its text (a ts column, a date)
                columns[name] = values(chunked.cast(pa.string()).to_pylist())
            elif (
                pa.types.is_string(kind)
                or pa.types.is_large_string(kind)
                or pa.types.is_boolean(kind)
                or pa.types.is_dictionary(kind)
            ):
                columns[name] = values(chunked.to_pylist())
            else:
                problems.add(
                    f"column {column_text(name)}: type {kind} is not a number, string or boolean"
                )
        except pa.ArrowException as e:
            problems.add(f"column {column_text(name)}: {e}")
    problems.raise_any()
    return Table(names, columns, np.arange(2, data.num_rows + 2, dtype=np.int64) - 1)
