"""Reading a lead file the way a spreadsheet shows it, and refusing what cannot be read without guessing.

- Encoding: UTF-8 (with or without a BOM) and UTF-16 with a BOM are read. Anything else
  (Latin-1, Windows-1252, UTF-16 without a BOM, UTF-32) is refused as a whole before a row
  is read, naming the byte offset and the line, so a file is never half-imported with
  mangled names.
- Delimiter: comma, semicolon (Excel in much of Europe) or tab, whichever splits the header
  into the most columns; Excel's `sep=;` first line is honoured.
- Rows are numbered as a spreadsheet shows them: the header is row 1, a quoted cell that
  spans lines is still one row, a blank line is a row of its own (and skipped).
- A row that cannot be read (a cell over the size limit, text after a closing quote, a quote
  that seems to run over rows of their own) is yielded as `Unreadable` with the reason, so it
  is rejected with its number; a quote never closed makes the rest of the file one cell, so
  the file is refused. No row is ever swallowed silently.
- A cell `leads export` escaped against formula injection ("'=SUM(A1)") reads back as it was.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from cadence.enrollment.lead_columns import LeadError, columns_of

DELIMITERS = (",", ";", "\t")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_SAVE_AS = "save it as UTF-8 (in Excel: Save As > CSV UTF-8) and import again"
_SEP_LINE = re.compile(r'^"?sep=(.)"?\r?\n?$')
_CHUNK = 1 << 20
_SAMPLE = 1 << 16


class CsvRefused(LeadError):
    """The file as a whole cannot be read; nothing of it is imported. The message says where and why."""


class Unreadable(NamedTuple):
    """A row the CSV reader could not take apart; `reason` says why, and the row is rejected."""

    reason: str


Row = dict[Any, Any] | Unreadable


@dataclass(frozen=True, slots=True)
class LeadFile:
    """How to read a file: its codec for `open`, its delimiter, and the lines before the header."""

    encoding: str
    delimiter: str
    skip_lines: int


def inspect(path: Path) -> LeadFile:
    """Check the encoding of the whole file and find its delimiter; raises CsvRefused."""
    encoding = _encoding(path)
    with path.open(newline="", encoding=encoding) as fh:
        sample = fh.read(_SAMPLE)
    if not sample.strip():
        raise CsvRefused("the file is empty: the first row must be the header (id, email, phone, ...)")
    first = sample.splitlines(keepends=True)[0]
    sep = _SEP_LINE.match(first)
    if sep and sep.group(1) in DELIMITERS:
        return LeadFile(encoding, sep.group(1), 1)
    counts = {d: len(next(csv.reader(io.StringIO(sample, newline=""), delimiter=d), [])) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: (counts[d], -DELIMITERS.index(d)))
    return LeadFile(encoding, best, 0)


def _encoding(path: Path) -> str:
    """The codec to open the file with, after decoding all of it once (at C speed)."""
    with path.open("rb") as fh:
        head = fh.read(8)
        if head.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
            raise CsvRefused("the file is an Excel workbook (or another zip file), not CSV; save it as CSV UTF-8")
        if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
            raise CsvRefused(f"the file is UTF-32; {_SAVE_AS}")
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            opened, decoded, offset = "utf-16", "utf-16", 0  # the decoder reads the BOM for the byte order
        else:
            opened, decoded = "utf-8-sig", "utf-8"
            offset = len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0
            fh.seek(offset)
            start = fh.read(4096)
            if start and start.count(b"\x00") * 4 >= len(start):
                raise CsvRefused(f"the file looks like UTF-16 without a byte order mark (byte 0); {_SAVE_AS}")
        fh.seek(offset)
        decoder = codecs.getincrementaldecoder(decoded)("strict")
        line = 1
        while True:
            chunk = fh.read(_CHUNK)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                at = offset - pending + exc.start
                if decoded == "utf-16":
                    raise CsvRefused(f"the file is not UTF-16 at byte {at}; {_SAVE_AS}") from None
                line += chunk[: max(0, exc.start - pending)].count(b"\n")
                raise CsvRefused(f"the file is not UTF-8 at byte {at} (line {line}); {_SAVE_AS}") from None
            if not chunk:
                return opened
            line += chunk.count(b"\n")
            offset += len(chunk)


def _unescaped(cell: str) -> str:
    """A cell `leads export` protected against formula injection, as it was."""
    if cell[:1] == "'" and cell[1:2] in FORMULA_STARTS:
        return cell[1:]
    return cell


def _header(cells: list[str]) -> list[str]:
    """Header names, stripped; a repeated name becomes "Email (2)" so neither column's cells are lost."""
    seen: dict[str, int] = {}
    names = []
    for cell in cells:
        name = _unescaped(cell).strip()
        if name:
            seen[name.lower()] = seen.get(name.lower(), 0) + 1
            if seen[name.lower()] > 1:
                name = f"{name} ({seen[name.lower()]})"
        names.append(name)
    return names


def _lines(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}-{last}"


def _malformed(error: csv.Error, number: int, first: int, last: int) -> Unreadable:
    text = str(error)
    if "field larger than field limit" in text:
        if last > first:
            raise CsvRefused(
                f"row {number} ({_lines(first, last)}): a cell runs over {csv.field_size_limit():,} characters"
                " across several lines; is a quote not closed?"
            )
        return Unreadable(f"a cell is longer than the limit of {csv.field_size_limit():,} characters")
    if "unexpected end of data" in text:
        raise CsvRefused(
            f"row {number} (line {first}): a quote opened here is never closed, so the rest of the file would be"
            " one cell; close the quote or remove it"
        )
    if "expected after" in text and last > first:
        return Unreadable(
            f"lines {first}-{last} read as one row: a quote opened on line {first} closes only on line {last};"
            " is a quote not closed?"
        )
    if "expected after" in text:
        return Unreadable(f"a quoted cell has text after its closing quote (line {first})")
    return Unreadable(f"cannot be read as CSV ({_lines(first, last)}): {text}")


def _runaway(cells: list[str], width: int, delimiter: str, first: int, last: int) -> Unreadable | None:
    """A record over several lines whose cell count is off, or whose quoted cell holds lines that look
    like rows of their own, most likely comes from a quote not closed: reject it, naming the lines."""
    if len(cells) != width:
        return Unreadable(
            f"{_lines(first, last)} read as one row of {len(cells)} cells, the header has {width}:"
            " is a quote not closed?"
        )
    if width >= 4:
        for cell in cells:
            if any(line.count(delimiter) >= width - 1 for line in cell.splitlines()[1:]):
                return Unreadable(
                    f"{_lines(first, last)} read as one row: a quoted cell holds lines that look like rows;"
                    " is a quote not closed?"
                )
    return None


def read_rows(path: Path) -> Iterator[tuple[int, Row]]:
    """(row number as a spreadsheet shows it, cells by header name, or Unreadable); the header is row 1.

    Cells beyond the header go under the key None, as with `csv.DictReader` (blank ones are dropped:
    a trailing delimiter is not a problem). Raises CsvRefused
    (before the first row, or at a quote never closed) when the file cannot be read as a whole.
    """
    source = inspect(path)
    with path.open(newline="", encoding=source.encoding) as fh:
        for _ in range(source.skip_lines):
            fh.readline()
        reader = csv.reader(fh, delimiter=source.delimiter, strict=True)
        try:
            header = _header(next(reader, []))
        except csv.Error as exc:
            raise CsvRefused(f"row 1 (the header) cannot be read: {exc}") from None
        columns = columns_of(tuple(header))
        if not any(name in ("id", "email") for _, name in columns.standard):
            found = ", ".join(h for h in header if h) or "nothing"
            raise CsvRefused(f"the header (row 1) has no id or email column (it has: {found})")
        width, skip = len(header), source.skip_lines
        plain = all(header)  # no blank header names: cells can go in as they are
        number = 1
        while True:
            first = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                number += 1
                yield number, _malformed(exc, number, first + skip, reader.line_num + skip)
                continue
            number += 1
            if not any(cell.strip() for cell in cells):
                continue
            while len(cells) > width and not cells[-1].strip():
                cells.pop()  # blank cells past the header (a trailing delimiter) hold nothing to lose
            if reader.line_num > first:
                odd = _runaway(cells, width, source.delimiter, first + skip, reader.line_num + skip)
                if odd:
                    yield number, odd
                    continue
            raw: dict[Any, Any] = dict.fromkeys(header)
            if plain and "'" not in "".join(cells):
                raw.update(zip(header, cells, strict=False))
            else:
                for name, cell in zip(header, cells, strict=False):
                    if cell and (raw[name] is None or not raw[name].strip()):
                        raw[name] = _unescaped(cell)
            if len(cells) > width:
                raw[None] = cells[width:]
            yield number, raw


def count_rows(path: Path) -> int:
    """Rows after the header, blank ones included (a progress bar's total); raises CsvRefused like `read_rows`."""
    source = inspect(path)
    with path.open(newline="", encoding=source.encoding) as fh:
        for _ in range(source.skip_lines):
            fh.readline()
        reader = csv.reader(fh, delimiter=source.delimiter)
        count = 0
        while True:
            try:
                next(reader)
            except StopIteration:
                return max(0, count - 1)
            except csv.Error:
                pass
            count += 1
