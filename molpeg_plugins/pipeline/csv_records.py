"""A CSV file as its original records: read and checked, written back byte for byte.

Every molpeg command that reads a CSV (``molpeg prune``, ``molpeg prune-source``, the
Chemprop plugin's invalid-row filter) reads it here, so that they agree on what a record is,
which values are missing and what is wrong with a file, and all of them write their kept rows
with :meth:`CsvRecords.write_subset`: the header and the chosen records exactly as read.

The standard :mod:`csv` module splits the text into records (a quoted field may span lines)
and their fields; each record keeps its original text, line ending included. Records are
numbered from 0 in file order, header excluded (``row 0`` is the first molecule); messages
also give the 1-based line of the file where the record starts.
"""

from __future__ import annotations

import array
import csv
import difflib
import gzip
import io
import json
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar, overload

import numpy as np

from molpeg_plugins.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")

WRITE_BLOCK = 65536
"""Records joined into one write by :meth:`CsvRecords.write_subset`."""

PHYSICAL_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
"""One physical line, its ending included (``\\n``, ``\\r\\n`` or a lone ``\\r``), as
``io.StringIO(text, newline="")`` iterates them."""


MISSING_TOKENS = frozenset({"", "nan", "NaN", "NA", "N/A", "n/a", "null", "NULL", "None"})
"""Cell texts (after stripping surrounding whitespace, case as written) that mean "no value".

These are the strings pandas reads as missing by default, hence what Chemprop and DeepChem
read as missing too: a label molpeg calls missing never reaches a framework as text.
"""

SMILES_COLUMN_NAMES = ("smiles", "smi", "canonical_smiles", "mol")
"""Column names (any case) taken as the SMILES column when none is given."""


def is_missing(value: str) -> bool:
    """Whether the cell text ``value`` means "no value" (see :data:`MISSING_TOKENS`)."""
    return value.strip() in MISSING_TOKENS


class LazySequence(Sequence[T]):
    """A read-only sequence whose items are made on access (``item(i)``), not stored.

    It compares equal to any sequence with the same items and a slice of it is a plain
    list, so it reads like the list it stands for without holding an object per item.
    """

    def __init__(self, length: int, item: Callable[[int], T]) -> None:
        self._length = length
        self._item = item

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self._item(i) for i in range(*index.indices(self._length))]
        i = operator.index(index)
        if i < 0:
            i += self._length
        if not 0 <= i < self._length:
            raise IndexError(f"index {index} out of range for {self._length} items")
        return self._item(i)

    def __iter__(self) -> Iterator[T]:
        return (self._item(i) for i in range(self._length))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(other) == self._length and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(repr(x) for x in self[:3])
        return f"[{shown}{', …' if self._length > 3 else ''}] ({self._length} items)"


@dataclass
class CsvRecords:
    """The records of a CSV file: each one's original text, first line and fields.

    The text of the data records is kept once, as one string (:attr:`text`), with each
    record's start and end in two integer arrays: a file of a million rows is held as a few
    arrays rather than a million strings and field lists. :attr:`records`, :attr:`lines`
    and :attr:`fields` read like lists and make their items on access.

    Attributes:
        path: the file read.
        header: the header record's original text, byte-order mark and line ending included
            (``""`` for a file read without a header).
        columns: the header's field names as written (``[]`` without a header).
        text: the file's text without its byte-order mark: the header, the records and any
            blank lines between them.
        starts, ends: ``int64`` offsets of each data record in :attr:`text`
            (``text[starts[i]:ends[i]]`` is record ``i``, line ending included).
        line_numbers: ``int64``, the 1-based line number where each data record starts.
        problems: per data record, why it cannot be used as one row (``""`` = fine): a
            stray quote that made several lines one record (:func:`quote_merge_problem`).
    """

    path: Path
    header: str
    columns: list[str]
    text: str
    starts: np.ndarray
    ends: np.ndarray
    line_numbers: np.ndarray
    problems: list[str]

    def __len__(self) -> int:
        return len(self.starts)

    def record(self, i: int) -> str:
        """Data record ``i``'s original text, line ending included."""
        return self.text[int(self.starts[i]) : int(self.ends[i])]

    def record_fields(self, i: int) -> list[str]:
        """Data record ``i``'s fields as the :mod:`csv` module splits them."""
        return next(csv.reader(io.StringIO(self.record(i), newline="")), [])

    @property
    def records(self) -> LazySequence[str]:
        """Each data record's original text, line ending included."""
        return LazySequence(len(self), self.record)

    @property
    def lines(self) -> LazySequence[int]:
        """The 1-based line number where each data record starts."""
        return LazySequence(len(self), lambda i: int(self.line_numbers[i]))

    @property
    def fields(self) -> LazySequence[list[str]]:
        """Each data record's fields (a short record has fewer than :attr:`columns`)."""
        return LazySequence(len(self), self.record_fields)

    @property
    def newline(self) -> str:
        """The file's line ending (``\\n``, ``\\r\\n`` or ``\\r``), read off the header."""
        first = self.header.removeprefix("\ufeff") or (self.record(0) if len(self) else "")
        return "\r\n" if first.endswith("\r\n") else "\r" if first.endswith("\r") else "\n"

    def column(self, name: str) -> list[str]:
        """The field of column ``name`` in every data record (``""`` where a record is short)."""
        pos = self.columns.index(name)
        return [f[pos] if pos < len(f) else "" for f in self.fields]

    @cached_property
    def values(self) -> dict[str, list[str]]:
        """Column name → its field in every data record (see :meth:`column`)."""
        return {name: self.column(name) for name in dict.fromkeys(self.columns)}

    def _covers_text(self) -> bool:
        """Whether the header and the records are :attr:`text` end to end (no blank line)."""
        return (
            len(self) > 0
            and int(self.starts[0]) == len(self.header.removeprefix("\ufeff"))
            and int(self.ends[-1]) == len(self.text)
            and bool(np.array_equal(self.starts[1:], self.ends[:-1]))
        )

    @cached_property
    def frame(self) -> pd.DataFrame:
        """Every column as text (pandas, ``dtype=str``, nothing converted to NaN).

        pandas renames a repeated header name ``y`` to ``y.1`` here (:attr:`columns` keeps
        the names as written) and fills the missing fields of a short record with ``""``.
        """
        import pandas as pd

        if self._covers_text():
            text = self.text
        else:
            text = self.header.removeprefix("\ufeff") + "".join(self.records)
        try:
            frame = pd.read_csv(
                io.BytesIO(text.encode("utf-8")),  # a StringIO holds 4 bytes a character
                header=0 if self.columns else None,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                skip_blank_lines=True,
                index_col=False,
            )
        except pd.errors.ParserError as exc:  # pragma: no cover - the csv pass accepted it
            raise DataError(f"{self.path}: malformed CSV ({exc}); check the quoting") from None
        if len(frame) != len(self):  # pragma: no cover - pandas and csv disagree
            raise DataError(f"{self.path}: pandas read {len(frame)} rows, the file has {len(self)}")
        return frame

    def write_subset(self, path: str | Path, rows: Sequence[int] | np.ndarray) -> None:
        """Atomically write the header and the data records ``rows``, in file order, exactly
        as read (a last record without a line ending gets the file's).

        The records are written in blocks of :data:`WRITE_BLOCK`; the file is never built
        whole in memory.
        """
        from molpeg_plugins.pipeline.atomic import atomic_write

        newline = self.newline
        order = np.sort(np.asarray(rows, dtype=np.int64))

        def write(handle: IO[str]) -> None:
            handle.write(self.header)
            if self.header.removeprefix("\ufeff") and not self.header.endswith(("\n", "\r")):
                handle.write(newline)
            for start in range(0, order.size, WRITE_BLOCK):
                parts = [self.record(i) for i in order[start : start + WRITE_BLOCK].tolist()]
                handle.write("".join(p if p.endswith(("\n", "\r")) else p + newline for p in parts))

        atomic_write(path, write, binary=False)


# --------------------------------------------------------------------------- reading


def read_text(path: Path) -> str:
    """The file's text; gzip is detected by its magic bytes, line endings are kept.

    Raises:
        ConfigError: no such file, or a folder.
        DataError: a broken gzip file, text that is not UTF-8, or a NUL byte (UTF-16/binary).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; give the path of a CSV file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give the path of a CSV file") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: broken gzip file ({exc}); re-compress it") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.start}); save the CSV as UTF-8"
        ) from None
    if "\x00" in text:  # UTF-16 without a byte-order mark, or binary data
        line = text[: text.index("\x00")].count("\n") + 1
        raise DataError(
            f"{path} line {line}: contains a NUL byte, so it is UTF-16 or binary rather than "
            "text; save the CSV as UTF-8"
        )
    return text


def read_records(
    path: str | Path, *, has_header: bool = True, exact_width: bool = False
) -> CsvRecords:
    """Read a CSV (plain or gzip, any line ending, optional byte-order mark) into records.

    Blank lines (empty or only whitespace) are not records. A record that holds more fields
    than the header is refused; a shorter one is kept (its missing fields read as empty).

    Args:
        path: the CSV file.
        has_header: whether the first record is the header.
        exact_width: refuse, instead of keeping, a record with fewer fields than the header
            or with a non-empty :attr:`CsvRecords.problems` (for commands that cannot skip
            rows).

    Raises:
        ConfigError: no such file (see :func:`read_text`).
        DataError: unreadable, empty or JSON file, malformed CSV, a quote never closed, a
            header without data rows, or a record of the wrong width; named by line.
    """
    path = Path(path)
    text = read_text(path)
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    body = text[len(bom) :]
    del text
    empty = DataError(
        f"{path}: the file is empty; expected a header row (e.g. 'smiles,label') "
        "and one molecule per row"
    )
    first_char = re.match(r"\s*(\S)", body)
    if first_char is None:
        raise empty
    if first_char.group(1) in ("[", "{") and _is_json(body):
        raise DataError(
            f"{path}: this is a JSON file, not a CSV; convert it first, e.g. with "
            "pandas.read_json(path).to_csv('data.csv', index=False)"
        )
    header, columns = "", []
    width: int | None = None
    starts, ends, lines = array.array("q"), array.array("q"), array.array("q")
    problems: list[str] = []
    refusal = ""  # why the first unusable record is refused, raised once the file is read
    last: tuple[str, int] | None = None  # text and line of the last record, header included
    for chunk, start, line, fields in _split_records(path, body):
        last = chunk, line
        if has_header and width is None:
            header, columns, width = chunk, fields, len(fields)
            continue
        if width is None:
            width = len(fields)
        row = len(starts)
        problem = quote_merge_problem(chunk, line, width) if _spans_lines(chunk) else ""
        starts.append(start)
        ends.append(start + len(chunk))
        lines.append(line)
        problems.append(problem)
        if not refusal:
            refusal = _width_refusal(path, row, line, len(fields), width, problem, exact_width)
    if last is None:
        raise empty
    last_text, last_line = last
    if ends_in_open_quote(last_text):
        end = last_line + _line_count(last_text) - 1
        raise DataError(
            f"{path} line {last_line}: a quoted field opened on line {last_line} is never "
            f"closed (it runs to the end of the file, line {end}); remove the stray '\"' or "
            "close the quote"
        )
    if not starts:
        raise DataError(f"{path}: the file has a header but no data rows; add molecules")
    if refusal:
        raise DataError(refusal)
    return CsvRecords(
        path=path,
        header=bom + header,
        columns=list(columns),
        text=body,
        starts=np.frombuffer(starts, dtype=np.int64),
        ends=np.frombuffer(ends, dtype=np.int64),
        line_numbers=np.frombuffer(lines, dtype=np.int64),
        problems=problems,
    )


def _width_refusal(
    path: Path, row: int, line: int, num_fields: int, width: int, problem: str, exact: bool
) -> str:
    """Why :func:`read_records` refuses a data record (``""``: it does not)."""
    if exact and problem:
        return f"{path} line {line}: {problem}"
    if exact and num_fields != width:
        return (
            f"{path} line {line}: {num_fields} fields where the header has {width}; fix "
            "the quoting or the separators of that row"
        )
    if num_fields > width:
        return (
            f"{path} line {line} (row {row}): {num_fields} fields but the header has "
            f"{width} columns; quote values that contain commas, or name the extra column"
        )
    return ""


def _split_records(path: Path, body: str) -> Iterator[tuple[str, int, int, list[str]]]:
    """``(original text, offset in body, first line, fields)`` of every non-blank record."""
    consumed: list[str] = []

    def physical_lines() -> Iterator[str]:
        for match in PHYSICAL_LINE.finditer(body):  # io.StringIO would copy body 4 bytes a char
            line = match.group()
            consumed.append(line)
            yield line

    reader = csv.reader(physical_lines())
    offset = 0
    while True:
        first = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{path} line {first}: {csv_error_message(exc)}") from None
        chunk = consumed[0] if len(consumed) == 1 else "".join(consumed)
        consumed.clear()
        if fields and not (len(fields) == 1 and not fields[0].strip()):
            yield chunk, offset, first, fields
        offset += len(chunk)


def _line_count(chunk: str) -> int:
    """Physical lines in ``chunk`` (``\\n``, ``\\r\\n`` or a lone ``\\r`` each end one)."""
    return sum(1 for _ in io.StringIO(chunk, newline=""))


def _spans_lines(chunk: str) -> bool:
    """Whether the record ``chunk`` holds a line break before its own line ending."""
    inner = chunk.rstrip("\r\n")
    return "\n" in inner or "\r" in inner


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def csv_error_message(exc: csv.Error) -> str:
    """What a :mod:`csv` error means for the user (the caller adds file and line)."""
    if "field larger than field limit" in str(exc):
        return (
            f"a field is longer than {csv.field_size_limit():,} characters, usually because a "
            "quote ('\"') on this line is never closed; check the quoting"
        )
    return f"malformed CSV ({exc})"


def ends_in_open_quote(chunk: str) -> bool:
    """Whether the record ``chunk`` ends inside a quoted field (the file ends before the quote
    closes), which pandas refuses."""
    try:
        for _ in csv.reader(io.StringIO(chunk, newline=""), strict=True):
            pass
    except csv.Error as exc:
        return "end of data" in str(exc)
    return False


def quote_merge_problem(chunk: str, line: int, width: int) -> str:
    """Why a record that spans several lines is probably several rows joined by a stray quote.

    A quoted field may legitimately hold a line break (a note in two lines). But when two or
    more of the record's lines each have as many comma-separated parts as the header has
    columns, they are rows that a quote character left open swallowed. Returns the skip
    reason, or ``""`` for a single-line or plausible multi-line record.
    """
    lines = list(io.StringIO(chunk, newline=""))
    if len(lines) < 2:
        return ""
    full = sum(
        len(next(csv.reader([text.rstrip("\r\n")], quoting=csv.QUOTE_NONE), [])) >= width
        for text in lines
    )
    if full < 2:
        return ""
    last = line + len(lines) - 1
    return (
        f"lines {line}-{last} were read as one record because a quote ('\"') on line {line} "
        f"closes only on line {last}; fix the quoting and rerun (these {len(lines)} lines "
        "were skipped)"
    )


# --------------------------------------------------------------------------- columns


def _other_delimiter(columns: Sequence[str]) -> str | None:
    """``"semicolon"``/``"tab"``/``"pipe"`` if a one-column header is split by that instead."""
    if len(columns) != 1:
        return None
    try:
        found = csv.Sniffer().sniff(str(columns[0]), delimiters=";\t|").delimiter
    except csv.Error:
        return None
    return {";": "semicolon", "\t": "tab", "|": "pipe"}.get(found)


def check_column(path: Path, name: str, columns: Sequence[str], option: str) -> str:
    """Return ``name`` if it is a column, else raise naming the closest one.

    Raises:
        ConfigError: no such column; the message suggests the closest name (or says that the
            file is separated by something other than commas) and lists the columns.
    """
    if name in columns:
        return name
    lowered = {c.lower().strip(): c for c in columns}
    close = [lowered[name.lower().strip()]] if name.lower().strip() in lowered else []
    close = close or difflib.get_close_matches(name, list(columns), n=1, cutoff=0.5)
    hint = f"did you mean {option} {close[0]!r}? " if close else ""
    delimiter = _other_delimiter(columns)
    if delimiter:
        hint = (
            f"the file looks {delimiter}-separated, and molpeg reads comma-separated files: "
            f"convert it first (e.g. pandas.read_csv(path, sep=...).to_csv('data.csv', "
            "index=False)); "
        )
    raise ConfigError(
        f"{path}: no column {name!r}; {hint}columns are: {', '.join(map(repr, columns))}"
    )


def resolve_column(path: Path, columns: Sequence[str], wanted: str | None, what: str) -> str:
    """The column called ``wanted`` (any case), or the SMILES column if ``wanted`` is None.

    Args:
        path: the file, named in errors.
        columns: the header's names.
        wanted: the name asked for; ``None`` looks for one of :data:`SMILES_COLUMN_NAMES`.
        what: the option that names the column, without dashes (``"smiles-column"``).

    Raises:
        ConfigError: no such column (see :func:`check_column`), or no SMILES column found.
    """
    by_lower = {c.lower(): c for c in columns}
    if wanted is not None:
        if wanted not in columns and wanted.lower() in by_lower:
            return by_lower[wanted.lower()]
        return check_column(path, wanted, columns, f"--{what}")
    for name in SMILES_COLUMN_NAMES:
        if name in by_lower:
            return by_lower[name]
    raise ConfigError(
        f"{path}: cannot tell which column holds the SMILES (columns: {', '.join(columns)}); "
        f"pass --{what}"
    )
